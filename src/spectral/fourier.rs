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
/// that of its real symmetric 2k x 2k form [[Re, -Im], [Im, Re]].
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

/// The largest eigenvalue of the symmetric n x n matrix `a` (destroyed): Householder reduction to
/// a tridiagonal matrix with the same eigenvalues (about n^3 flops, where cyclic Jacobi took ten
/// sweeps of 2 n^3: minutes for a 96-channel convolution), then bisection on its Sturm sequence.
fn largest_eigenvalue(a: &mut [f64], n: usize) -> f64 {
    let (diagonal, off) = tridiagonalize(a, n);
    largest_tridiagonal_eigenvalue(&diagonal, &off)
}

/// The diagonal and sub-diagonal of Q^T A Q, Q a product of Householder reflections.
fn tridiagonalize(a: &mut [f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut off = vec![0.0; n.saturating_sub(1)];
    let mut v = vec![0.0; n];
    let mut p = vec![0.0; n];
    for k in 0..n.saturating_sub(2) {
        // the reflection H = I - 2 v v^T (v on rows k+1..) that maps column k below the diagonal to alpha e_1
        let norm = (k + 1..n).map(|i| a[i * n + k].powi(2)).sum::<f64>().sqrt();
        let first = a[(k + 1) * n + k];
        let alpha = if first > 0.0 { -norm } else { norm };
        for i in k + 1..n {
            v[i] = a[i * n + k];
        }
        v[k + 1] -= alpha;
        let length = (k + 1..n).map(|i| v[i] * v[i]).sum::<f64>().sqrt();
        off[k] = alpha;
        if length == 0.0 {
            off[k] = first;
            continue;
        }
        v[k + 1..n].iter_mut().for_each(|x| *x /= length);
        // H A H on the trailing block = A - 2 v q^T - 2 q v^T, with p = A v and q = p - (v^T p) v
        for i in k + 1..n {
            p[i] = (k + 1..n).map(|j| a[i * n + j] * v[j]).sum();
        }
        let vp: f64 = (k + 1..n).map(|i| v[i] * p[i]).sum();
        for i in k + 1..n {
            p[i] -= vp * v[i];
        }
        for i in k + 1..n {
            for j in k + 1..n {
                a[i * n + j] -= 2.0 * (v[i] * p[j] + p[i] * v[j]);
            }
        }
    }
    if n >= 2 {
        off[n - 2] = a[(n - 1) * n + n - 2];
    }
    ((0..n).map(|i| a[i * n + i]).collect(), off)
}

/// The largest eigenvalue of the symmetric tridiagonal matrix (diagonal, off), by bisection inside
/// the Gershgorin interval on the number of eigenvalues below x (the negative pivots of T - x I).
fn largest_tridiagonal_eigenvalue(diagonal: &[f64], off: &[f64]) -> f64 {
    let n = diagonal.len();
    let radius = |i: usize| if i > 0 { off[i - 1].abs() } else { 0.0 } + if i + 1 < n { off[i].abs() } else { 0.0 };
    let mut lo = (0..n).map(|i| diagonal[i] - radius(i)).fold(f64::INFINITY, f64::min);
    let mut hi = (0..n).map(|i| diagonal[i] + radius(i)).fold(f64::NEG_INFINITY, f64::max);
    let below = |x: f64| {
        let mut count = 0;
        let mut pivot = 1.0;
        for i in 0..n {
            let coupling = if i > 0 { off[i - 1] * off[i - 1] / pivot } else { 0.0 };
            pivot = diagonal[i] - x - coupling;
            if pivot == 0.0 {
                pivot = -f64::EPSILON * (x.abs() + 1e-300);
            }
            if pivot < 0.0 {
                count += 1;
            }
        }
        count
    };
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi || hi - lo <= 4.0 * f64::EPSILON * lo.abs().max(hi.abs()) {
            break;
        }
        if below(mid) == n {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_largest_eigenvalue() {
        // [[2, 1], [1, 2]] has eigenvalues 1 and 3
        assert!((largest_eigenvalue(&mut [2.0, 1.0, 1.0, 2.0], 2) - 3.0).abs() < 1e-12);
        // diag(1, 5, 2) rotated stays 5
        let mut a = [1.0, 0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0, 2.0];
        assert!((largest_eigenvalue(&mut a, 3) - 5.0).abs() < 1e-12);
        // the n x n matrix of ones has eigenvalues n and 0 (n - 1 times)
        let n = 40;
        assert!((largest_eigenvalue(&mut vec![1.0; n * n], n) - n as f64).abs() < 1e-11);
        // Q diag(1..n) Q^T with Q = I - 2 u u^T, u a unit vector: eigenvalues 1..n, the top two close
        let u: Vec<f64> = (0..n).map(|i| ((i * 7 % 11) as f64 - 5.0) / 10.0).collect();
        let size = u.iter().map(|x| x * x).sum::<f64>().sqrt();
        let u: Vec<f64> = u.iter().map(|x| x / size).collect();
        let q = |i: usize, j: usize| if i == j { 1.0 } else { 0.0 } - 2.0 * u[i] * u[j];
        let spectrum = |k: usize| if k + 1 == n { n as f64 - 1.0 + 1e-9 } else { (k + 1) as f64 };
        let mut a: Vec<f64> = (0..n * n).map(|e| (0..n).map(|k| q(e / n, k) * spectrum(k) * q(e % n, k)).sum()).collect();
        assert!((largest_eigenvalue(&mut a, n) - (n as f64 - 1.0 + 1e-9)).abs() < 1e-11);
        // the 1-D Laplacian's tridiagonal (2, -1): its largest eigenvalue is 2 + 2 cos(pi / (n + 1))
        let top = largest_tridiagonal_eigenvalue(&vec![2.0; n], &vec![-1.0; n - 1]);
        assert!((top - (2.0 + 2.0 * (PI / (n as f64 + 1.0)).cos())).abs() < 1e-12);
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
