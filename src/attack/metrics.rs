//! How far an adversarial example is from its original: the paper's distortion, L2, L-infinity.

/// sqrt(sum_i (x'_i - x_i)^2 / n), pixels in [0,1]: the paper's "distortion" (Table 1).
pub fn distortion(x: &[f32], adversarial: &[f32]) -> f64 {
    l2(x, adversarial) / (x.len() as f64).sqrt()
}

/// ||x' - x||_2 (on MNIST, 28 times the distortion).
pub fn l2(x: &[f32], adversarial: &[f32]) -> f64 {
    x.iter().zip(adversarial).map(|(a, b)| ((b - a) as f64).powi(2)).sum::<f64>().sqrt()
}

/// max_i |x'_i - x_i|.
pub fn linf(x: &[f32], adversarial: &[f32]) -> f64 {
    x.iter().zip(adversarial).map(|(a, b)| (b - a).abs() as f64).fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_distortion_is_rms_difference() {
        // one pixel of four moved by 0.2: L2 0.2, distortion sqrt(0.04 / 4) = 0.1
        let (x, y) = ([0.0, 0.5, 1.0, 0.25], [0.2, 0.5, 1.0, 0.25]);
        assert!((l2(&x, &y) - 0.2).abs() < 1e-7);
        assert!((distortion(&x, &y) - 0.1).abs() < 1e-7);
        assert!((linf(&x, &y) - 0.2).abs() < 1e-7);
    }
}
