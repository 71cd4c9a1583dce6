//! Box-constrained L-BFGS-B (Byrd, Lu, Nocedal & Zhu): the options, outcomes and stops of the driver, over the pinned `basin` port of L-BFGS-B 3.0.
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
//! a per-iteration progress report that can cancel. The one driver, [`super::asktell`], calls
//! the objective itself ([`super::minimize`], the CPU) or asks for each value and is told it
//! later (a GPU in the browser).

use basin::{ConvergenceTest, FirstOrderState, GradientState, NumericalFailure, State, Termination};


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

/// `x0` projected into the box, after checking the problem is well formed.
///
/// # Panics
/// If `x0`, `lower` and `upper` differ in length, a lower bound exceeds its upper bound or is
/// NaN, or `options.memory` is zero.
pub(crate) fn start(x0: &[f64], lower: &[f64], upper: &[f64], options: &Options) -> Vec<f64> {
    let n = x0.len();
    assert!(
        lower.len() == n && upper.len() == n,
        "x0, lower and upper must have the same length"
    );
    assert!(
        lower.iter().zip(upper).all(|(l, u)| l <= u),
        "every lower bound must be <= its upper bound"
    );
    assert!(options.memory >= 1, "memory must be at least 1");
    (0..n).map(|i| clamp(x0[i], lower[i], upper[i])).collect()
}

/// A run's outcome at `state`: its point clamped into the box, and the projected gradient there.
pub(crate) fn outcome_at(state: &FirstOrderState<Vec<f64>>, lower: &[f64], upper: &[f64], evaluations: usize, stop: Stop) -> Outcome {
    let x: Vec<f64> = (0..state.param().len()).map(|i| clamp(state.param()[i], lower[i], upper[i])).collect();
    let projected_gradient_norm = match state.gradient() {
        Some(g) => projected_gradient_norm(&x, g, lower, upper),
        None => f64::NAN,
    };
    Outcome { x, f: state.cost(), iterations: state.iter() as usize, evaluations, stop, projected_gradient_norm }
}

pub(crate) fn clamp(x: f64, lower: f64, upper: f64) -> f64 {
    x.max(lower).min(upper)
}

pub(crate) fn stop_reason(termination: Termination<f64>) -> Stop {
    match termination {
        Termination::Converged(convergence) => {
            let tests: Vec<&ConvergenceTest> =
                convergence.criteria().iter().map(|c| &c.test).collect();
            if tests.iter().any(|t| {
                matches!(
                    t,
                    ConvergenceTest::BoundClippedGradient | ConvergenceTest::ProjectedGradient
                )
            }) {
                Stop::Converged(Convergence::ProjectedGradient)
            } else {
                Stop::Converged(Convergence::RelativeReduction)
            }
        }
        Termination::Limit(_) => Stop::MaxIterations,
        Termination::Cancelled | Termination::Application(_) => Stop::Cancelled,
        Termination::Failed(NumericalFailure::Solver { message, .. })
            if message.contains("line search") =>
        {
            Stop::LineSearchFailed
        }
        Termination::Failed(failure) => Stop::NumericalFailure(format!("{failure:?}")),
        other => Stop::NumericalFailure(format!("{other:?}")),
    }
}
