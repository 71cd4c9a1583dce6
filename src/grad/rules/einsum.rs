//! EinSum (MatMul, Gemm, decluttered dense layers): each operand's gradient is another EinSum.

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::change_axes::AxisOp;
use tract_onnx::tract_core::ops::einsum::EinSum;

use super::{Backward, Grads};

pub fn handles(node: &TypedNode) -> bool {
    node.op_as::<EinSum>().is_some_and(|op| op.q_params.is_none())
}

/// For `a,b->o`, d/da = einsum(`o,b->a`) (and likewise for every operand). An axis found only in
/// the operand was summed away: its gradient is the same along it, so it is re-added and broadcast.
pub fn vjp(b: &mut Backward, node: &TypedNode, dy: OutletId, wanted: &[bool]) -> TractResult<Grads> {
    let op = node.op_as::<EinSum>().unwrap();
    let (inputs, outputs) = op.axes.to_strs();
    let out = &outputs[0];
    let mut grads = tvec!();
    for (i, want) in wanted.iter().enumerate() {
        if !want {
            grads.push(None);
            continue;
        }
        let target = &inputs[i];
        let others: Vec<&str> =
            inputs.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, s)| s.as_str()).collect();
        let elsewhere = |c: char| out.contains(c) || others.iter().any(|s| s.contains(c));
        let kept: String = target.chars().filter(|&c| elsewhere(c)).collect();
        let operands: Vec<&str> = std::iter::once(out.as_str()).chain(others.iter().copied()).collect();
        let expr = format!("{}->{}", operands.join(","), kept);
        let mut wires = vec![dy];
        wires.extend(node.inputs.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, o)| *o));
        let einsum = EinSum::new(expr.parse()?, op.operating_dt);
        let mut g = b.wire(&node.name, einsum, &wires)?;
        for (pos, c) in target.chars().enumerate() {
            if !elsewhere(c) {
                g = b.wire(&node.name, AxisOp::Add(pos), &[g])?;
            }
        }
        // an axis the operand holds once and the others many times (numpy broadcasting in
        // MatMul): its gradient is summed over the copies
        let shape = b.shape(node.inputs[i])?;
        let got = b.shape(g)?;
        let copies: Vec<usize> = (0..shape.len()).filter(|&a| shape[a] == 1 && got[a] != 1).collect();
        if !copies.is_empty() {
            g = b.sum_keep(&node.name, g, &copies)?;
        }
        grads.push(Some(b.broadcast(&node.name, g, &shape)?));
    }
    Ok(grads)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grad::check::{check_unary_graph, Rng};

    fn check(expr: &str, x_shape: &[usize], w_shape: &[usize], x_first: bool) -> TractResult<()> {
        let mut rng = Rng(21);
        let w = tract_ndarray::ArrayD::from_shape_vec(w_shape.to_vec(), rng.vec(w_shape.iter().product()))?;
        check_unary_graph(x_shape, &mut rng, |m, x| {
            let k = m.add_const("w", w.into_tensor())?;
            let inputs = if x_first { [x, k] } else { [k, x] };
            Ok(m.wire_node("einsum", EinSum::new(expr.parse()?, f32::datum_type()), &inputs)?[0])
        })
    }

    #[test]
    fn matmul_both_sides_and_transposes() -> TractResult<()> {
        check("mk,kn->mn", &[3, 4], &[4, 5], true)?;
        check("mk,kn->mn", &[4, 5], &[3, 4], false)?;
        check("mk,nk->mn", &[3, 4], &[5, 4], true)?;
        check("km,kn->mn", &[4, 3], &[4, 5], true)
    }

    #[test]
    fn batched_and_summed_axes() -> TractResult<()> {
        check("bmk,kn->bmn", &[2, 3, 4], &[4, 5], true)?;
        // a lonely axis (summed over, in the operand only), as decluttered Gemm with batch 1 gives
        check("mbak,bakn->n", &[2, 3, 2, 2], &[3, 2, 2, 4], true)?;
        check("k,kn->mn", &[4], &[4, 3], true)
    }

    #[test]
    fn broadcast_batch_axes() -> TractResult<()> {
        // MatMul of [3,1,3,4] by [1,2,4,2] (onnx's test_matmul_bcast): each operand broadcast
        // along an axis the other holds
        check("bhmk,bhkn->bhmn", &[3, 1, 3, 4], &[1, 2, 4, 2], true)?;
        check("bhmk,bhkn->bhmn", &[1, 2, 4, 2], &[3, 1, 3, 4], false)
    }

    #[test]
    fn x_times_itself() -> TractResult<()> {
        check_unary_graph(&[3, 3], &mut Rng(2), |m, x| {
            Ok(m.wire_node("einsum", EinSum::new("ij,jk->ik".parse()?, f32::datum_type()), &[x, x])?[0])
        })
    }
}
