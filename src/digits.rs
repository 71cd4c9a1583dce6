//! The digit pack: labelled grey images in one small binary file (format in models/data/README.md).

use crate::error::{Error, Result};

const MAGIC: &[u8; 4] = b"BSDG";
const HEADER: usize = 20;

/// Labelled greyscale images, pixels as bytes 0..=255 (value / 255 is the model's [0,1] pixel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigitPack {
    pub rows: usize,
    pub cols: usize,
    pub labels: Vec<u8>,
    pixels: Vec<u8>,
}

impl DigitPack {
    /// Parses a pack: magic `BSDG`, version 1, count, rows, cols (u32 LE), labels, pixels.
    pub fn parse(bytes: &[u8]) -> Result<DigitPack> {
        if bytes.len() < HEADER || &bytes[..4] != MAGIC {
            return Err(Error::Data("not a digit pack (no BSDG header)".into()));
        }
        let word = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap()) as usize;
        let (version, count, rows, cols) = (word(4), word(8), word(12), word(16));
        if version != 1 {
            return Err(Error::Data(format!("digit pack version {version} is not supported")));
        }
        let size = rows.checked_mul(cols).and_then(|s| s.checked_mul(count));
        let expected = size.and_then(|s| s.checked_add(HEADER + count));
        if expected != Some(bytes.len()) {
            return Err(Error::Data(format!(
                "digit pack of {count} images of {rows}x{cols} should be {expected:?} bytes, is {}",
                bytes.len()
            )));
        }
        let labels = bytes[HEADER..HEADER + count].to_vec();
        let pixels = bytes[HEADER + count..].to_vec();
        Ok(DigitPack { rows, cols, labels, pixels })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The raw bytes of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.rows * self.cols;
        &self.pixels[i * n..(i + 1) * n]
    }

    /// Image `i` as model input: pixels in [0,1].
    pub fn input(&self, i: usize) -> Vec<f32> {
        crate::image::unit_pixels(self.image(i))
    }

    /// Images `range` laid end to end as model input.
    pub fn inputs(&self, range: std::ops::Range<usize>) -> Vec<f32> {
        let n = self.rows * self.cols;
        crate::image::unit_pixels(&self.pixels[range.start * n..range.end * n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(count: u32, rows: u32, cols: u32, body: usize) -> Vec<u8> {
        let mut b = b"BSDG".to_vec();
        for w in [1, count, rows, cols] {
            b.extend_from_slice(&w.to_le_bytes());
        }
        b.extend((0..body).map(|i| i as u8));
        b
    }

    #[test]
    fn parses_labels_and_images() {
        let p = DigitPack::parse(&pack(2, 2, 3, 2 + 12)).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p.labels, vec![0, 1]);
        assert_eq!(p.image(1), &[8, 9, 10, 11, 12, 13]);
        assert_eq!(p.input(0)[0], 2.0 / 255.0);
    }

    #[test]
    fn refuses_truncated_and_foreign_bytes() {
        let short = pack(2, 2, 3, 13);
        assert!(DigitPack::parse(&short).unwrap_err().to_string().contains("should be"));
        assert!(DigitPack::parse(b"PNG....").is_err());
        let huge = pack(u32::MAX, u32::MAX, u32::MAX, 0);
        assert!(DigitPack::parse(&huge).is_err());
    }
}
