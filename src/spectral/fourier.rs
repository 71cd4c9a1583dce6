//! The paper's Fourier formula for a convolution's norm: the sup over frequencies of the largest
//! singular value of the c_out x c_in matrix of the kernels' 2-D DFTs (per group).

use std::f64::consts::PI;

/// A 2-D convolution kernel, OIHW: `shape` = [c_out, c_in / group, kh, kw].
#[derive(Debug, Clone, PartialEq)]
pub struct ConvKernel {
    pub weights: Vec<f64>,
    pub shape: [usize; 4],
    pub group: usize,
    pub dilations: [usize; 2],
}

impl ConvKernel {
    pub fn new(weights: Vec<f64>, shape: [usize; 4], group: usize, dilations: [usize; 2]) -> ConvKernel {
        ConvKernel { weights, shape, group: group.max(1), dilations }
    }

    /// ||A(theta)||, theta the angular frequency per spatial axis: the largest singular value of
    /// A[o][i] = sum over taps (r, c) of W[o][i][r][c] exp(-i (theta_0 r d_0 + theta_1 c d_1)),
    /// the largest over groups (a grouped convolution is block-diagonal across groups).
    pub fn norm_at(&self, theta: [f64; 2]) -> f64 {
        let [co, ci, kh, kw] = self.shape;
        let per_group = co / self.group;
        let phases: Vec<(f64, f64)> = (0..kh * kw)
            .map(|t| {
                let angle = -(theta[0] * (t / kw * self.dilations[0]) as f64 + theta[1] * (t % kw * self.dilations[1]) as f64);
                (angle.cos(), angle.sin())
            })
            .collect();
        let mut best: f64 = 0.0;
        for g in 0..self.group {
            // the block's DFT matrix, per_group x ci, as (re, im)
            let mut a = vec![(0.0, 0.0); per_group * ci];
            for o in 0..per_group {
                for i in 0..ci {
                    let taps = &self.weights[((g * per_group + o) * ci + i) * kh * kw..][..kh * kw];
                    let (mut re, mut im) = (0.0, 0.0);
                    for (w, (c, s)) in taps.iter().zip(&phases) {
                        re += w * c;
                        im += w * s;
                    }
                    a[o * ci + i] = (re, im);
                }
            }
            best = best.max(largest_singular_value(&a, per_group, ci));
        }
        best
    }
}

/// ||W|| of the circular convolution on an n_0 x n_1 torus, exactly: the largest ||A(theta)|| over
/// the DFT grid theta = 2 pi (u / n_0, v / n_1).
pub fn fourier_norm_on_grid(kernel: &ConvKernel, grid: [usize; 2]) -> f64 {
    let mut best: f64 = 0.0;
    // a real kernel has A(-theta) = conj A(theta), with the same singular values: half the grid
    for u in 0..grid[0] {
        for v in 0..=grid[1] / 2 {
            let theta = [2.0 * PI * u as f64 / grid[0] as f64, 2.0 * PI * v as f64 / grid[1] as f64];
            best = best.max(kernel.norm_at(theta));
        }
    }
    best
}

/// sup over all frequencies of ||A(theta)||: a grid fine for the kernel's extent, then a few rounds of
/// zooming in around the best points. For a zero-padded (or strided) convolution this bounds the
/// operator norm from above; for a circular one it is the norm on a large enough torus.
pub fn fourier_norm(kernel: &ConvKernel) -> f64 {
    let reach = |axis: usize| (kernel.shape[2 + axis] - 1) * kernel.dilations[axis] + 1;
    let grid = [32.max(8 * reach(0)), 32.max(8 * reach(1))];
    let mut points: Vec<(f64, [f64; 2])> = vec![];
    for u in 0..grid[0] {
        for v in 0..=grid[1] / 2 {
            let theta = [2.0 * PI * u as f64 / grid[0] as f64, 2.0 * PI * v as f64 / grid[1] as f64];
            points.push((kernel.norm_at(theta), theta));
        }
    }
    points.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut best = points[0].0;
    for &(value, centre) in points.iter().take(3) {
        let (mut value, mut centre) = (value, centre);
        let mut step = [2.0 * PI / grid[0] as f64, 2.0 * PI / grid[1] as f64];
        for _ in 0..8 {
            for du in -3..=3 {
                for dv in -3..=3 {
                    let theta = [centre[0] + step[0] * du as f64 / 3.0, centre[1] + step[1] * dv as f64 / 3.0];
                    let at = kernel.norm_at(theta);
                    if at > value {
                        (value, centre) = (at, theta);
                    }
                }
            }
            step = [step[0] / 3.0, step[1] / 3.0];
        }
        best = best.max(value);
    }
    best
}

/// The largest singular value of the complex m x n matrix `a` (row-major, (re, im)): the square
/// root of the largest eigenvalue of the smaller Gram matrix, a Hermitian k x k matrix, found as
/// that of its real symmetric 2k x 2k form [[Re, -Im], [Im, Re]] by cyclic Jacobi.
fn largest_singular_value(a: &[(f64, f64)], m: usize, n: usize) -> f64 {
    let transposed = n > m;
    let (k, rows) = if transposed { (m, n) } else { (n, m) };
    let entry = |r: usize, c: usize| if transposed { a[c * n + r] } else { a[r * n + c] };
    // G = B^H B with B = a (k = n) or a^T (k = m): G[p][q] = sum_r conj(B[r][p]) B[r][q]
    let mut gram = vec![(0.0, 0.0); k * k];
    for p in 0..k {
        for q in p..k {
            let (mut re, mut im) = (0.0, 0.0);
            for r in 0..rows {
                let (a_re, a_im) = entry(r, p);
                let (b_re, b_im) = entry(r, q);
                re += a_re * b_re + a_im * b_im;
                im += a_re * b_im - a_im * b_re;
            }
            gram[p * k + q] = (re, im);
            gram[q * k + p] = (re, -im);
        }
    }
    if k == 1 {
        return gram[0].0.max(0.0).sqrt();
    }
    let size = 2 * k;
    let mut s = vec![0.0; size * size];
    for p in 0..k {
        for q in 0..k {
            let (re, im) = gram[p * k + q];
            s[p * size + q] = re;
            s[(p + k) * size + q + k] = re;
            s[p * size + q + k] = -im;
            s[(p + k) * size + q] = im;
        }
    }
    largest_eigenvalue(&mut s, size).max(0.0).sqrt()
}

/// The largest eigenvalue of the symmetric n x n matrix `a` (destroyed), by cyclic Jacobi rotations.
fn largest_eigenvalue(a: &mut [f64], n: usize) -> f64 {
    let scale: f64 = a.iter().map(|v| v * v).sum::<f64>();
    for _sweep in 0..60 {
        let off: f64 = (0..n).flat_map(|p| (p + 1..n).map(move |q| (p, q))).map(|(p, q)| a[p * n + q].powi(2)).sum();
        if off <= 1e-30 * scale {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for r in 0..n {
                    let (rp, rq) = (a[r * n + p], a[r * n + q]);
                    a[r * n + p] = c * rp - s * rq;
                    a[r * n + q] = s * rp + c * rq;
                }
                for r in 0..n {
                    let (pr, qr) = (a[p * n + r], a[q * n + r]);
                    a[p * n + r] = c * pr - s * qr;
                    a[q * n + r] = s * pr + c * qr;
                }
            }
        }
    }
    (0..n).map(|i| a[i * n + i]).fold(f64::NEG_INFINITY, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_finds_the_largest_eigenvalue() {
        // [[2, 1], [1, 2]] has eigenvalues 1 and 3
        assert!((largest_eigenvalue(&mut [2.0, 1.0, 1.0, 2.0], 2) - 3.0).abs() < 1e-12);
        // diag(1, 5, 2) rotated stays 5
        let mut a = [1.0, 0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0, 2.0];
        assert!((largest_eigenvalue(&mut a, 3) - 5.0).abs() < 1e-12);
    }

    #[test]
    fn singular_value_of_a_complex_matrix() {
        // [[1, i], [0, 1]]: A^H A = [[1, i], [-i, 2]], eigenvalues (3 ± sqrt 5) / 2
        let a = [(1.0, 0.0), (0.0, 1.0), (0.0, 0.0), (1.0, 0.0)];
        let expected = ((3.0 + 5f64.sqrt()) / 2.0).sqrt();
        assert!((largest_singular_value(&a, 2, 2) - expected).abs() < 1e-12);
        // a 1 x 3 row: its length
        let row = [(3.0, 0.0), (0.0, 4.0), (0.0, 0.0)];
        assert!((largest_singular_value(&row, 1, 3) - 5.0).abs() < 1e-12);
    }
}
