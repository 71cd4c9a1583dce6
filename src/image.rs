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
    let mut out = vec![0f32; SIDE * SIDE];
    if w.checked_mul(h) != Some(pixels.len()) {
        return out;
    }
    let ink = |x: usize, y: usize| pixels[y * w + x] > 0.05;
    let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
    for y in 0..h {
        for x in 0..w {
            if ink(x, y) {
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x + 1), y1.max(y + 1));
            }
        }
    }
    if x0 >= x1 {
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

/// The most pixels an image handed to the core may have: what the page decodes (64 megapixels).
pub const MAX_PIXELS: u64 = 64 << 20;

/// Refuses an image of `w` x `h` that is empty, larger than [`MAX_PIXELS`], or whose `len`
/// values (`per_pixel` a pixel, `what` they are) do not make it.
pub fn check_size(w: usize, h: usize, len: u64, per_pixel: u64, what: &str) -> crate::Result<()> {
    let pixels = (w as u64).checked_mul(h as u64).filter(|&p| p > 0 && p <= MAX_PIXELS).ok_or_else(|| {
        crate::Error::Input(format!(
            "an image of {w}x{h} is empty or larger than blindspot reads (at most {} megapixels): scale it down and try again",
            MAX_PIXELS >> 20
        ))
    })?;
    if len != pixels * per_pixel {
        return Err(crate::Error::Input(format!(
            "an image of {w}x{h} needs {} {what}, not {len}: draw or pick it again (reload the page if it repeats)",
            pixels * per_pixel
        )));
    }
    Ok(())
}

/// An RGBA photo or scan of a digit (`w` x `h`, 8-bit) as an MNIST-style digit: luminance, turned
/// so that ink is high (dark ink on a light page is inverted, judged by the border), the paper's
/// level subtracted and the ink stretched to reach 1, then [`mnist_like`].
pub fn mnist_from_rgba(rgba: &[u8], w: usize, h: usize) -> crate::Result<Vec<f32>> {
    check_size(w, h, rgba.len() as u64, 4, "RGBA bytes")?;
    let grey: Vec<f32> = rgba
        .chunks_exact(4)
        .map(|p| {
            let (r, g, b, a) = (p[0] as f32, p[1] as f32, p[2] as f32, p[3] as f32 / 255.0);
            // transparent pixels count as a white page
            ((0.299 * r + 0.587 * g + 0.114 * b) * a + 255.0 * (1.0 - a)) / 255.0
        })
        .collect();
    let border: Vec<f32> = (0..w)
        .flat_map(|x| [grey[x], grey[(h - 1) * w + x]])
        .chain((0..h).flat_map(|y| [grey[y * w], grey[y * w + w - 1]]))
        .collect();
    let light_page = border.iter().sum::<f32>() / border.len() as f32 > 0.5;
    let ink: Vec<f32> = grey.iter().map(|&v| if light_page { 1.0 - v } else { v }).collect();
    let mut sorted: Vec<f32> = border.iter().map(|&v| if light_page { 1.0 - v } else { v }).collect();
    sorted.sort_by(f32::total_cmp);
    let page = sorted[sorted.len() / 2];
    let top = ink.iter().cloned().fold(0.0f32, f32::max);
    if top - page < 0.1 {
        return Err(crate::Error::Input("the image has no digit in it: no stroke stands out from the page".into()));
    }
    // what stays below a fifth of the way from page to ink is paper texture, shadow or noise
    let stretched: Vec<f32> = ink
        .iter()
        .map(|&v| ((v - page) / (top - page)).clamp(0.0, 1.0))
        .map(|v| if v < 0.2 { 0.0 } else { v })
        .collect();
    Ok(mnist_like(&stretched, w, h))
}

/// RGBA bytes (a canvas's `ImageData`) to a model's input in [0,1], channels first: one grey
/// plane (colour averaged) when `channels` is 1, R, G and B planes when it is 3; alpha ignored.
pub fn planes_from_rgba(rgba: &[u8], w: usize, h: usize, channels: usize) -> crate::Result<Vec<f32>> {
    use crate::Error;
    check_size(w, h, rgba.len() as u64, 4, "RGBA bytes")?;
    match channels {
        1 => Ok(rgba.chunks(4).map(|p| (p[0] as f32 + p[1] as f32 + p[2] as f32) / (3.0 * 255.0)).collect()),
        3 => Ok((0..3).flat_map(|c| rgba.chunks(4).map(move |p| p[c] as f32 / 255.0)).collect()),
        _ => Err(Error::Input(format!("images have 1 or 3 channels, not {channels}"))),
    }
}

/// Decodes a PNG into a model input of 1 (grey) or 3 (RGB) planes in [0,1] (see
/// [`planes_from_rgba`]); returns `(width, height, planes)`.
#[cfg(not(target_arch = "wasm32"))]
pub fn decode_png(bytes: &[u8], channels: usize) -> crate::Result<(usize, usize, Vec<f32>)> {
    use crate::Error;
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(|e| Error::Data(format!("not a PNG image: {e}")))?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| Error::Data("the PNG is too large".into()))?;
    let mut buf = vec![0; size];
    let info = reader.next_frame(&mut buf).map_err(|e| Error::Data(format!("broken PNG: {e}")))?;
    let samples = info.color_type.samples();
    let rgba: Vec<u8> = buf[..info.buffer_size()]
        .chunks(samples)
        .flat_map(|px| if samples >= 3 { [px[0], px[1], px[2], 255] } else { [px[0], px[0], px[0], 255] })
        .collect();
    let (w, h) = (info.width as usize, info.height as usize);
    Ok((w, h, planes_from_rgba(&rgba, w, h, channels)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dark_ink_on_a_light_page_becomes_a_centred_white_digit() {
        // a grey-ish page (200) with a dark (30) 10x40 stroke off to the right, RGBA
        let (w, h) = (80, 60);
        let mut rgba = vec![0u8; w * h * 4];
        for y in 0..h {
            for x in 0..w {
                let v = if (60..70).contains(&x) && (10..50).contains(&y) { 30 } else { 200 };
                rgba[(y * w + x) * 4..][..4].copy_from_slice(&[v, v, v, 255]);
            }
        }
        let digit = mnist_from_rgba(&rgba, w, h).unwrap();
        assert_eq!(digit.len(), 784);
        assert!((digit.iter().cloned().fold(0.0, f32::max) - 1.0).abs() < 1e-6, "ink reaches 1");
        assert_eq!(digit[0], 0.0, "the page is black");
        let mass: f32 = digit.iter().sum();
        let cx: f32 = digit.iter().enumerate().map(|(i, v)| (i % 28) as f32 * v).sum::<f32>() / mass;
        assert!((cx - 13.5).abs() <= 1.0, "centred by mass, cx = {cx}");
        // white ink on black is kept as it is: same digit
        let inverted: Vec<u8> = rgba.chunks(4).flat_map(|p| [255 - p[0], 255 - p[1], 255 - p[2], 255]).collect();
        assert_eq!(mnist_from_rgba(&inverted, w, h).unwrap(), digit);
        // a blank page and a wrong byte count are refused with a message
        assert!(mnist_from_rgba(&vec![255; w * h * 4], w, h).unwrap_err().to_string().contains("no digit"));
        assert!(mnist_from_rgba(&rgba[4..], w, h).is_err());
    }

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
    fn rgba_becomes_grey_or_rgb_planes() {
        // 2x1: a red and a grey pixel
        let rgba = [255, 0, 0, 255, 51, 102, 153, 0];
        let planes = planes_from_rgba(&rgba, 2, 1, 3).unwrap();
        assert_eq!(planes, vec![1.0, 0.2, 0.0, 0.4, 0.0, 0.6]);
        assert_eq!(planes_from_rgba(&rgba, 2, 1, 1).unwrap(), vec![1.0 / 3.0, 0.4]);
        assert!(planes_from_rgba(&rgba, 3, 1, 3).is_err());
        assert!(planes_from_rgba(&rgba, 2, 1, 2).is_err());
    }

    #[test]
    fn no_ink_gives_a_blank_digit() {
        assert!(mnist_like(&[0.0; 400], 20, 20).iter().all(|v| *v == 0.0));
    }
}
