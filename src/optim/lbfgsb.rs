//! Box-constrained L-BFGS-B (Byrd, Lu, Nocedal & Zhu): a closure API over the pinned `basin` port of L-BFGS-B 3.0.
//!
//! The algorithm is the one behind scipy's `fmin_l_bfgs_b`: at each iteration the generalised
//! Cauchy point along the projected-gradient path fixes the active set, a subspace minimisation
//! of the limited-memory (compact representation) model over the free variables gives the search
//! direction, and a Moré–Thuente (`dcsrch`) line search, kept inside the box, takes the step.
//! Memory is O(m n) and each iteration costs O(m n) plus an O(n log n) breakpoint sort, so it
//! scales to image-sized problems (n = 150,528).
//!
//! The numerics come from the `basin` crate (pinned to an exact version in Cargo.toml), a
//! line-for-line port of the L-BFGS-B 3.0 Fortran that its own tests check iterate by iterate
//! against the reference; `tests/lbfgsb.rs` checks this wrapper against scipy
//! (`tools/lbfgsb_reference.py`): same optima, same iteration and evaluation counts. This module
//! only adapts the interface: scipy's stopping parameters, evaluations clamped into the box, and
//! a per-iteration progress callback that can cancel. [`minimize`] takes the objective as a
//! closure that basin calls from inside its iterations; [`super::asktell`] makes the same runs
//! by ask/tell for callers that cannot answer at once (a GPU in the browser).


/// Stopping parameters, with scipy's `fmin_l_bfgs_b` defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// Number of correction pairs kept (scipy's `m`). Default 10.
    pub memory: usize,
    /// Stop after this many iterations (scipy's `maxiter`). Default 15,000.
    pub max_iterations: usize,
    /// Stop once this many objective evaluations have been made (scipy's `maxfun`). Checked
    /// between iterations, so the last line search may go past it (by at most 20). Default 15,000.
    pub max_evaluations: usize,
    /// Converged when the infinity norm of the projected gradient is at most this. Default 1e-5.
    pub pgtol: f64,
    /// Converged when `(f_old - f_new) / max(|f_old|, |f_new|, 1) <= factr * f64::EPSILON`.
    /// Default 1e7 (scipy's; about 2.2e-9 relative). Zero disables the test.
    pub factr: f64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            memory: 10,
            max_iterations: 15_000,
            max_evaluations: 15_000,
            pgtol: 1e-5,
            factr: 1e7,
        }
    }
}

/// Which convergence test passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Convergence {
    /// `projected_gradient_norm <= pgtol` (scipy: "NORM OF PROJECTED GRADIENT <= PGTOL").
    ProjectedGradient,
    /// The relative reduction of f fell to `factr * eps` (scipy: "RELATIVE REDUCTION OF F <= FACTR*EPSMCH").
    RelativeReduction,
}

/// Why [`minimize`] stopped.
#[derive(Clone, Debug, PartialEq)]
pub enum Stop {
    Converged(Convergence),
    MaxIterations,
    MaxEvaluations,
    /// The progress callback returned `false`.
    Cancelled,
    /// No step along the search direction gave sufficient decrease, even after discarding the
    /// curvature memory and retrying along the projected steepest descent (scipy: "ABNORMAL").
    /// Typical when the objective is noisy at the scale of the steps, e.g. single precision.
    LineSearchFailed,
    /// The objective returned a non-finite value or gradient, or the model broke down.
    NumericalFailure(String),
}

impl Stop {
    pub fn is_converged(&self) -> bool {
        matches!(self, Stop::Converged(_))
    }
}

/// The result of [`minimize`]. `x` is the last accepted iterate (inside the box), `f` its value.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub x: Vec<f64>,
    pub f: f64,
    /// Completed iterations (scipy's `nit`).
    pub iterations: usize,
    /// Objective evaluations, the one at `x0` included (scipy's `nfev`).
    pub evaluations: usize,
    pub stop: Stop,
    /// Infinity norm of the projected gradient at `x` (see [`projected_gradient_norm`]).
    pub projected_gradient_norm: f64,
}

/// L-BFGS-B's `projgr`: the infinity norm of `P(x - g) - x`, with `P` the projection onto the box.
/// Zero exactly at a first-order (KKT) point of the box-constrained problem.
pub fn projected_gradient_norm(x: &[f64], g: &[f64], lower: &[f64], upper: &[f64]) -> f64 {
    let mut norm = 0.0f64;
    for i in 0..x.len() {
        let gi = if g[i] < 0.0 {
            g[i].max(x[i] - upper[i])
        } else {
            g[i].min(x[i] - lower[i])
        };
        norm = norm.max(gi.abs());
    }
    norm
}

/// Minimise `f` over the box `lower <= x <= upper` from `x0` (projected into the box first).
///
/// `f` returns the value and the gradient at a point; it is only ever called at points inside
/// the box. Bounds may be infinite. `progress` is called after each completed iteration with
/// (iteration, f, &x) and returns `false` to stop with [`Stop::Cancelled`].
///
/// # Panics
/// If `x0`, `lower` and `upper` differ in length, a lower bound exceeds its upper bound or is
/// NaN, `options.memory` is zero, or `f` returns a gradient of the wrong length (the backend's
/// own validation of the box panics too, should it find something these checks let through).
pub fn minimize(
    f: impl FnMut(&[f64]) -> (f64, Vec<f64>),
    x0: &[f64],
    lower: &[f64],
    upper: &[f64],
    options: &Options,
    progress: impl FnMut(usize, f64, &[f64]) -> bool,
) -> Outcome {
    super::direct::minimize(f, x0, lower, upper, options, progress)
}
