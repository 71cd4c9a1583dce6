//! EinSum (MatMul, Gemm, decluttered dense layers): each operand's gradient is another EinSum;
//! one WebGPU kernel of strided sums; the factor is the layer's operator norm.

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::change_axes::AxisOp;
use tract_onnx::tract_core::ops::einsum::EinSum;

use super::{Backward, Family, Grads, Lipschitz};
use crate::gpu::plan::{refuse, Kernel, Planner, View, MAX_RANK, MAX_SUM_RANK};

pub const FAMILY: Family = Family { name: "einsum", handles, vjp, lower, lipschitz };

fn handles(node: &TypedNode) -> bool {
    node.op_as::<EinSum>().is_some_and(|op| op.q_params.is_none())
}

/// For `a,b->o`, d/da = einsum(`o,b->a`) (and likewise for every operand). An axis found only in
/// the operand was summed away: its gradient is the same along it, so it is re-added and broadcast.
fn vjp(b: &mut Backward, node: &TypedNode, dy: OutletId, wanted: &[bool]) -> TractResult<Grads> {
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

fn lower(p: &mut Planner, node: &TypedNode, ins: &[View], shape: &[usize]) -> Option<TractResult<View>> {
    let op = node.op_as::<EinSum>()?;
    if op.q_params.is_some() {
        return Some(Err(format_err!("quantized einsum")));
    }
    Some(steps(p, node, op, ins, shape))
}

/// A linear layer when one operand is constant: measured by power iteration.
fn lipschitz(_: &TypedModel, node: &TypedNode) -> Option<Lipschitz> {
    node.op_is::<EinSum>().then_some(Lipschitz::OperatorNorm)
}

/// One EinSum kernel: every operand seen along the output's axes and the summed ones.
fn steps(p: &mut Planner, node: &TypedNode, op: &EinSum, ins: &[View], shape: &[usize]) -> TractResult<View> {
    let (inputs, outputs) = op.axes.to_strs();
    if ins.len() > 2 || ins.is_empty() {
        return Err(refuse(node, Some(format!("{} operands", ins.len()))));
    }
    let out_axes: Vec<char> = outputs[0].chars().collect();
    let operands: Vec<Vec<char>> = inputs.iter().map(|s| s.chars().collect()).collect();
    for axes in operands.iter().chain(std::iter::once(&out_axes)) {
        let mut sorted = axes.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != axes.len() {
            return Err(refuse(node, Some("a repeated axis (a diagonal)".into())));
        }
    }
    if shape.len() > MAX_RANK {
        return Err(refuse(node, Some(format!("rank {} over {MAX_RANK}", shape.len()))));
    }
    let mut summed: Vec<char> = vec![];
    for axes in &operands {
        for &c in axes {
            if !out_axes.contains(&c) && !summed.contains(&c) {
                summed.push(c);
            }
        }
    }
    if summed.len() > MAX_SUM_RANK {
        return Err(refuse(node, Some(format!("{} summed axes", summed.len()))));
    }
    let size_of = |c: char| -> usize {
        for (axes, v) in operands.iter().zip(ins) {
            if let Some(i) = axes.iter().position(|&a| a == c) {
                return v.shape[i];
            }
        }
        1
    };
    let sum_shape: Vec<usize> = summed.iter().map(|&c| size_of(c)).collect();
    let mut sum_strides: [Vec<isize>; 2] = [vec![0; summed.len()], vec![0; summed.len()]];
    let mut views = vec![];
    for (j, (axes, v)) in operands.iter().zip(ins).enumerate() {
        let stride_of = |c: char| axes.iter().position(|&a| a == c).map(|i| if v.shape[i] == 1 { 0 } else { v.strides[i] }).unwrap_or(0);
        let strides: Vec<isize> = out_axes.iter().map(|&c| stride_of(c)).collect();
        sum_strides[j] = summed.iter().map(|&c| stride_of(c)).collect();
        views.push(View { shape: shape.to_vec(), strides, ..v.clone() });
    }
    let out = p.alloc(shape);
    let b = views.get(1).cloned();
    p.push(Kernel::EinSum { out: out.clone(), a: views[0].clone(), b, sum_shape, sum_strides });
    Ok(out)
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
