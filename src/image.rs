//! Pixel helpers: bytes to [0,1] model input, PNG decoding to the model's grey input.

/// Bytes 0..=255 to pixels in [0,1] (value / 255, as the models were trained).
pub fn unit_pixels(bytes: &[u8]) -> Vec<f32> {
    bytes.iter().map(|&b| b as f32 / 255.0).collect()
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
