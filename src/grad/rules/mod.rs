//! Vector-Jacobian rules, one file per op family; `vjp` dispatches on the node's op.

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

/// Gradients for a node's inputs: `dys` per output (None: no gradient flows there), `wanted` per
/// input (false: the input is a constant or off the path; its gradient may be skipped).
pub type Grads = TVec<Option<OutletId>>;

/// Whether blindspot can differentiate this node.
pub fn has_rule(node: &TypedNode) -> bool {
    axis::handles(node)
        || binary::handles(node)
        || conv::handles(node)
        || einsum::handles(node)
        || gather::handles(node)
        || lrn::handles(node)
        || mask::handles(node)
        || norm::handles(node)
        || pool::handles(node)
        || reduce::handles(node)
        || resize::handles(node)
        || shape::handles(node)
        || softmax::handles(node)
        || unary::handles(node)
}

/// Wires the backward nodes of `node` and returns one gradient per input.
pub fn vjp(b: &mut Backward, node: &TypedNode, dys: &[Option<OutletId>], wanted: &[bool]) -> TractResult<Grads> {
    let dy = match dys {
        [Some(dy)] => *dy,
        [Some(dy), ..] => *dy,
        _ => bail!("no gradient reaches the node's first output"),
    };
    if axis::handles(node) {
        axis::vjp(b, node, dy)
    } else if binary::handles(node) {
        binary::vjp(b, node, dy, wanted)
    } else if conv::handles(node) {
        conv::vjp(b, node, dy, wanted)
    } else if einsum::handles(node) {
        einsum::vjp(b, node, dy, wanted)
    } else if gather::handles(node) {
        gather::vjp(b, node, dy, wanted)
    } else if lrn::handles(node) {
        lrn::vjp(b, node, dy)
    } else if mask::handles(node) {
        mask::vjp(b, node, dy, wanted)
    } else if norm::handles(node) {
        norm::vjp(b, node, dy, wanted)
    } else if pool::handles(node) {
        pool::vjp(b, node, dy)
    } else if reduce::handles(node) {
        reduce::vjp(b, node, dy)
    } else if resize::handles(node) {
        resize::vjp(b, node, dy)
    } else if shape::handles(node) {
        shape::vjp(b, node, dy, wanted)
    } else if softmax::handles(node) {
        softmax::vjp(b, node, dy)
    } else if unary::handles(node) {
        unary::vjp(b, node, dy)
    } else {
        bail!("no gradient rule for {}", node.op.name())
    }
}

