//! Numerical optimisers for the attacks: bound-constrained L-BFGS-B (types and stops in [`lbfgsb`]), called directly (see [`direct`]) or by ask/tell (see [`asktell`]).

pub mod asktell;
pub mod direct;
pub mod lbfgsb;

pub use asktell::{Ask, AskTell};
pub use direct::{minimize, Direct};
pub use lbfgsb::{projected_gradient_norm, Convergence, Options, Outcome, Stop};
