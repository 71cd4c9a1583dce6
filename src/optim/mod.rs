//! Numerical optimisers for the attacks: bound-constrained L-BFGS-B, one driver ([`asktell`])
//! that calls its objective or asks for each value, over the types and stops of [`lbfgsb`].

pub mod asktell;
pub mod lbfgsb;

pub use asktell::{minimize, Ask, AskTell, Objective};
pub use lbfgsb::{projected_gradient_norm, Convergence, Options, Outcome, Stop};
