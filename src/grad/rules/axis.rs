//! Reshape, flatten, squeeze, unsqueeze, transpose (tract's AxisOp): the gradient takes the inverse.

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::change_axes::AxisOp;

use super::{Backward, Grads};

pub fn handles(node: &TypedNode) -> bool {
    node.op_is::<AxisOp>()
}

pub fn vjp(b: &mut Backward, node: &TypedNode, dy: OutletId) -> TractResult<Grads> {
    let op = node.op_as::<AxisOp>().unwrap();
    Ok(tvec!(Some(b.wire(&node.name, op.recip(), &[dy])?)))
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
