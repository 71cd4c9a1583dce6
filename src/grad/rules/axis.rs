//! Reshape, flatten, squeeze, unsqueeze, transpose (tract's AxisOp): the gradient takes the
//! inverse, the GPU sees the same values through other strides, the Lipschitz factor is 1.

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::change_axes::AxisOp;

use super::{Backward, Family, Grads, Lipschitz};
use crate::gpu::plan::{Planner, View};

pub const FAMILY: Family = Family { name: "axis", handles, vjp, lower, lipschitz };

fn handles(node: &TypedNode) -> bool {
    node.op_is::<AxisOp>()
}

fn vjp(b: &mut Backward, node: &TypedNode, dy: OutletId, _: &[bool]) -> TractResult<Grads> {
    let op = node.op_as::<AxisOp>().unwrap();
    Ok(tvec!(Some(b.wire(&node.name, op.recip(), &[dy])?)))
}

fn lipschitz(_: &TypedModel, node: &TypedNode) -> Option<Lipschitz> {
    let moves_values = node.op_is::<AxisOp>() || matches!(node.op.name().as_ref(), "Reshape" | "Flatten" | "Identity");
    moves_values.then_some(Lipschitz::Factor(None, 1.0))
}

fn lower(p: &mut Planner, node: &TypedNode, ins: &[View], shape: &[usize]) -> Option<TractResult<View>> {
    let op = node.op_as::<AxisOp>()?;
    Some(view_through(p, op, &ins[0], shape))
}

/// `v` seen through `op`: strides moved, inserted or merged (copied first when the merged axes
/// do not lie back to back).
fn view_through(p: &mut Planner, op: &AxisOp, v: &View, shape: &[usize]) -> TractResult<View> {
    let mut v = v.clone();
    match op {
        AxisOp::Add(a) => {
            v.shape.insert(*a, 1);
            v.strides.insert(*a, 0);
        }
        AxisOp::Rm(a) => {
            ensure!(v.shape[*a] == 1, "removing an axis of size {}", v.shape[*a]);
            v.shape.remove(*a);
            v.strides.remove(*a);
        }
        AxisOp::Move(from, to) => {
            let (d, s) = (v.shape.remove(*from), v.strides.remove(*from));
            v.shape.insert(*to, d);
            v.strides.insert(*to, s);
        }
        AxisOp::Reshape(at, from, _) => {
            let range = *at..*at + from.len();
            // the axes being merged must lie back to back in memory (size-1 axes do anywhere)
            let kept: Vec<usize> = range.clone().filter(|&i| v.shape[i] != 1).collect();
            let mergeable = kept.windows(2).all(|w| v.strides[w[0]] == v.strides[w[1]] * v.shape[w[1]] as isize);
            if !mergeable {
                v = p.contiguous(&v);
            }
            let inner = kept.last().map(|&i| v.strides[i]).unwrap_or(1);
            let new_len = shape.len() - (v.shape.len() - from.len());
            let new_dims = &shape[*at..*at + new_len];
            let mut strides = vec![0isize; new_len];
            let mut s = inner;
            for (i, &d) in new_dims.iter().enumerate().rev() {
                strides[i] = s;
                s *= d as isize;
            }
            v.shape.splice(range.clone(), new_dims.iter().copied());
            v.strides.splice(range, strides);
        }
    }
    ensure!(v.shape == shape, "{op:?} gave {:?}, expected {shape:?}", v.shape);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grad::check::{check_unary_graph, Rng};

    #[test]
    fn reshape_move_add_rm() -> TractResult<()> {
        let mut rng = Rng(7);
        check_unary_graph(&[2, 3, 4], &mut rng, |m, x| {
            let r = m.wire_node("reshape", AxisOp::Reshape(1, tvec!(3.into(), 4.into()), tvec!(12.into())), &[x])?;
            let t = m.wire_node("move", AxisOp::Move(0, 1), &r)?;
            let a = m.wire_node("add", AxisOp::Add(1), &t)?;
            Ok(m.wire_node("rm", AxisOp::Rm(1), &a)?[0])
        })
    }
}
