//! Numerical optimisers for the attacks: bound-constrained L-BFGS-B (see [`lbfgsb`]).

pub mod lbfgsb;

pub use lbfgsb::{minimize, projected_gradient_norm, Convergence, Options, Outcome, Stop};
