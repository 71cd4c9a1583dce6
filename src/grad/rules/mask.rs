//! Masks and selections: Iff (ONNX Where) routes dy by its condition; comparisons, boolean logic
//! and anything else with only integer or boolean outputs is piecewise constant and passes none.

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::logic::Iff;

use super::{Backward, Family, Grads, no_factor, no_lowering};

pub const FAMILY: Family = Family { name: "mask", handles, vjp, lower: no_lowering, lipschitz: no_factor };

/// Whether every output of the node is boolean or integer: its value cannot change under an
/// infinitesimal change of a float input, so no gradient flows back through it.
fn piecewise_constant(node: &TypedNode) -> bool {
    node.outputs.iter().all(|o| !o.fact.datum_type.is_float())
}

fn handles(node: &TypedNode) -> bool {
    node.op_is::<Iff>() || piecewise_constant(node)
}

/// `Iff(cond, a, b)`: da = dy where cond holds, db = dy where it does not, each summed back over
/// the axes it was broadcast along. The condition gets none.
fn vjp(b: &mut Backward, node: &TypedNode, dy: OutletId, wanted: &[bool]) -> TractResult<Grads> {
    if !node.op_is::<Iff>() {
        return Ok(node.inputs.iter().map(|_| None).collect());
    }
    let n = node.name.as_str();
    let cond = node.inputs[0];
    let zero = b.scalar_like(n, 0.0, dy)?;
    let mut grads = tvec!(None);
    for (slot, (taken, other)) in [(dy, zero), (zero, dy)].into_iter().enumerate() {
        let input = node.inputs[slot + 1];
        if !wanted[slot + 1] {
            grads.push(None);
            continue;
        }
        let routed = b.wire(n, Iff, &[cond, taken, other])?;
        let shape = b.shape(input)?;
        grads.push(Some(b.unbroadcast(n, routed, &shape)?));
    }
    Ok(grads)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grad::check::{check_unary_graph, Rng};
    use tract_onnx::tract_core::ops::binary::TypedBinOp;
    use tract_onnx::tract_core::ops::logic::comp_gt;
    use tract_onnx::tract_core::ops::math;

    #[test]
    fn where_by_a_mask_of_the_input() -> TractResult<()> {
        // y = where(x > 0.3, x^2, -x): both branches from x, the mask computed from x too
        check_unary_graph(&[3, 5], &mut Rng(4), |m, x| {
            let k = m.add_const("threshold", tensor0(0.3f32).broadcast_into_rank(2)?)?;
            let mask = m.wire_node("mask", TypedBinOp(comp_gt(), None), &[x, k])?;
            let sq = m.wire_node("sq", math::square(), &[x])?;
            let neg = m.wire_node("neg", math::neg(), &[x])?;
            Ok(m.wire_node("where", Iff, &[mask[0], sq[0], neg[0]])?[0])
        })
    }

    #[test]
    fn where_with_a_broadcast_branch() -> TractResult<()> {
        // a constant mask over a [3, 4] output, the x branch [1, 4] broadcast over rows
        let mask = tensor2(&[[true, false, true, true], [false, false, true, false], [true, true, false, false]]);
        check_unary_graph(&[1, 4], &mut Rng(6), |m, x| {
            let c = m.add_const("mask", mask.clone())?;
            let other = m.add_const("other", tensor2(&[[0.5f32; 4]; 3]))?;
            Ok(m.wire_node("where", Iff, &[c, x, other])?[0])
        })
    }
}
