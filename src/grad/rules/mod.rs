//! The op registry: one family per file, each declaring in its `FAMILY` what it handles, its
//! vector-Jacobian rule, its WebGPU lowering and its Lipschitz factor; the rest of the crate asks here.

mod axis;
mod binary;
mod conv;
mod einsum;
mod gather;
mod lrn;
mod mask;
mod norm;
mod pool;
mod reduce;
mod resize;
mod shape;
mod softmax;
mod unary;

use tract_onnx::tract_core::internal::*;

use super::wire::Backward;
use crate::gpu::plan::{Planner, View};

/// Gradients for a node's inputs: `dys` per output (None: no gradient flows there), `wanted` per
/// input (false: the input is a constant or off the path; its gradient may be skipped).
pub type Grads = TVec<Option<OutletId>>;

/// What an op contributes to the product of per-layer Lipschitz bounds (the paper's Table 5).
#[derive(Debug, Clone, PartialEq)]
pub enum Lipschitz {
    /// A known factor, with a description when it is worth showing (bias adds and reshapes are
    /// 1 and silent).
    Factor(Option<String>, f64),
    /// A linear layer: its operator norm, measured by power iteration (`spectral::LayerOperator`).
    OperatorNorm,
}

/// One op family's whole story.
pub struct Family {
    pub name: &'static str,
    /// Whether the family differentiates this node of a forward graph.
    pub handles: fn(&TypedNode) -> bool,
    /// Wires the backward nodes of a node it handles, given the gradient `dy` reaching its first
    /// output and which inputs want one; returns one gradient per input.
    pub vjp: fn(&mut Backward, &TypedNode, OutletId, &[bool]) -> TractResult<Grads>,
    /// The WebGPU steps of a node (forward, or a backward op its rule emits) with input views
    /// `ins` and output shape; None when the node is none of the family's ops.
    pub lower: fn(&mut Planner, &TypedNode, &[View], &[usize]) -> Option<TractResult<View>>,
    /// The Lipschitz factor of a node of one varying input; None when it is none of the family's
    /// ops or its factor is not known.
    pub lipschitz: fn(&TypedModel, &TypedNode) -> Option<Lipschitz>,
}

/// Every family. Adding an op family is one file and one line here.
pub const FAMILIES: &[Family] = &[
    axis::FAMILY,
    binary::FAMILY,
    conv::FAMILY,
    einsum::FAMILY,
    gather::FAMILY,
    lrn::FAMILY,
    mask::FAMILY,
    norm::FAMILY,
    pool::FAMILY,
    reduce::FAMILY,
    resize::FAMILY,
    shape::FAMILY,
    softmax::FAMILY,
    unary::FAMILY,
];

/// The family that differentiates `node`, if any.
pub fn family_of(node: &TypedNode) -> Option<&'static Family> {
    FAMILIES.iter().find(|f| (f.handles)(node))
}

/// Whether blindspot can differentiate this node.
pub fn has_rule(node: &TypedNode) -> bool {
    family_of(node).is_some()
}

/// Wires the backward nodes of `node` and returns one gradient per input.
pub fn vjp(b: &mut Backward, node: &TypedNode, dys: &[Option<OutletId>], wanted: &[bool]) -> TractResult<Grads> {
    let dy = match dys {
        [Some(dy), ..] => *dy,
        _ => bail!("no gradient reaches the node's first output"),
    };
    match family_of(node) {
        Some(family) => (family.vjp)(b, node, dy, wanted),
        None => bail!("no gradient rule for {}", node.op.name()),
    }
}

/// The WebGPU steps of `node`, or None when no family lowers it.
pub fn lower(p: &mut Planner, node: &TypedNode, ins: &[View], shape: &[usize]) -> Option<TractResult<View>> {
    FAMILIES.iter().find_map(|f| (f.lower)(p, node, ins, shape))
}

/// What `node` contributes to a Lipschitz bound, or None when no family knows.
pub fn lipschitz(model: &TypedModel, node: &TypedNode) -> Option<Lipschitz> {
    FAMILIES.iter().find_map(|f| (f.lipschitz)(model, node))
}

/// For families with no WebGPU kernel: the backend refuses their ops by name (and the page falls
/// back to the CPU).
pub fn no_lowering(_: &mut Planner, _: &TypedNode, _: &[View], _: &[usize]) -> Option<TractResult<View>> {
    None
}

/// For families whose Lipschitz factor is not known: Table 5 says so, naming the node.
pub fn no_factor(_: &TypedModel, _: &TypedNode) -> Option<Lipschitz> {
    None
}
