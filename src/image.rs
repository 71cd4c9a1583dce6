//! Pixel helpers: bytes to [0,1] model input, MNIST-style centring of drawings, PNG decoding.

/// Bytes 0..=255 to pixels in [0,1] (value / 255, as the models were trained).
pub fn unit_pixels(bytes: &[u8]) -> Vec<f32> {
    bytes.iter().map(|&b| b as f32 / 255.0).collect()
}

/// Makes a grey drawing (ink high, `w` x `h`, values in [0,1]) look like an MNIST digit, as LeCun
/// et al. prepared them: the ink's bounding box scaled to fit 20x20 (aspect kept, area-averaged),
/// placed in a 28x28 image with its centre of mass at the centre. No ink gives a blank image.
pub fn mnist_like(pixels: &[f32], w: usize, h: usize) -> Vec<f32> {
    const SIDE: usize = 28;
    const FIT: f64 = 20.0;
    let ink = |x: usize, y: usize| pixels[y * w + x] > 0.05;
    let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
    for y in 0..h {
        for x in 0..w {
            if ink(x, y) {
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x + 1), y1.max(y + 1));
            }
        }
    }
    let mut out = vec![0f32; SIDE * SIDE];
    if x0 >= x1 || pixels.len() != w * h {
        return out;
    }
    let (bw, bh) = ((x1 - x0) as f64, (y1 - y0) as f64);
    let scale = FIT / bw.max(bh);
    let (tw, th) = (((bw * scale).round() as usize).max(1), ((bh * scale).round() as usize).max(1));
    // area average: each target pixel takes the mean of the source pixels it covers (4x4 samples each)
    let mut small = vec![0f32; tw * th];
    const S: usize = 4;
    for ty in 0..th {
        for tx in 0..tw {
            let mut sum = 0.0;
            for sy in 0..S {
                for sx in 0..S {
                    let x = x0 as f64 + (tx as f64 + (sx as f64 + 0.5) / S as f64) / scale;
                    let y = y0 as f64 + (ty as f64 + (sy as f64 + 0.5) / S as f64) / scale;
                    sum += pixels[(y as usize).min(h - 1) * w + (x as usize).min(w - 1)] as f64;
                }
            }
            small[ty * tw + tx] = (sum / (S * S) as f64) as f32;
        }
    }
    let mass: f64 = small.iter().map(|&v| v as f64).sum::<f64>().max(1e-9);
    let cx = small.iter().enumerate().map(|(i, &v)| (i % tw) as f64 * v as f64).sum::<f64>() / mass;
    let cy = small.iter().enumerate().map(|(i, &v)| (i / tw) as f64 * v as f64).sum::<f64>() / mass;
    let ox = ((SIDE as f64 / 2.0 - 0.5 - cx).round() as isize).clamp(0, (SIDE - tw) as isize) as usize;
    let oy = ((SIDE as f64 / 2.0 - 0.5 - cy).round() as isize).clamp(0, (SIDE - th) as isize) as usize;
    for y in 0..th {
        for x in 0..tw {
            out[(oy + y) * SIDE + ox + x] = small[y * tw + x];
        }
    }
    out
}

/// Decodes a PNG into greyscale pixels in [0,1] (colour averaged, alpha ignored);
/// returns `(width, height, pixels)`.
#[cfg(not(target_arch = "wasm32"))]
pub fn decode_png_grey(bytes: &[u8]) -> crate::Result<(usize, usize, Vec<f32>)> {
    use crate::Error;
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(|e| Error::Data(format!("not a PNG image: {e}")))?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| Error::Data("the PNG is too large".into()))?;
    let mut buf = vec![0; size];
    let info = reader.next_frame(&mut buf).map_err(|e| Error::Data(format!("broken PNG: {e}")))?;
    let channels = info.color_type.samples();
    let colour = if channels >= 3 { 3 } else { 1 };
    let pixels = buf[..info.buffer_size()]
        .chunks(channels)
        .map(|px| px[..colour].iter().map(|&v| v as f32).sum::<f32>() / (colour as f32 * 255.0))
        .collect();
    Ok((info.width as usize, info.height as usize, pixels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drawing_is_scaled_to_20_pixels_and_centred_by_mass() {
        // a 100x60 canvas with a filled 40x20 bar in its top-left corner
        let (w, h) = (100, 60);
        let mut canvas = vec![0f32; w * h];
        for y in 5..25 {
            for x in 10..50 {
                canvas[y * w + x] = 1.0;
            }
        }
        let digit = mnist_like(&canvas, w, h);
        let inked: Vec<(usize, usize)> = (0..784).filter(|&i| digit[i] > 0.5).map(|i| (i % 28, i / 28)).collect();
        let (xs, ys): (Vec<usize>, Vec<usize>) = inked.iter().copied().unzip();
        assert_eq!(xs.iter().max().unwrap() - xs.iter().min().unwrap() + 1, 20, "the long side becomes 20 pixels");
        assert_eq!(ys.iter().max().unwrap() - ys.iter().min().unwrap() + 1, 10, "aspect kept");
        let cx = xs.iter().sum::<usize>() as f64 / xs.len() as f64;
        let cy = ys.iter().sum::<usize>() as f64 / ys.len() as f64;
        assert!((cx - 13.5).abs() <= 0.5 && (cy - 13.5).abs() <= 0.5, "centre of mass ({cx}, {cy})");
    }

    #[test]
    fn no_ink_gives_a_blank_digit() {
        assert!(mnist_like(&[0.0; 400], 20, 20).iter().all(|v| *v == 0.0));
    }
}
