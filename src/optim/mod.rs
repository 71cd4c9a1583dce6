//! Numerical optimisers for the attacks: bound-constrained L-BFGS-B (see [`lbfgsb`]), also by ask/tell (see [`asktell`]).

pub mod asktell;
pub mod direct;
pub mod lbfgsb;

pub use asktell::{Ask, AskTell};
pub use direct::Direct;
pub use lbfgsb::{minimize, projected_gradient_norm, Convergence, Options, Outcome, Stop};
