//! Softmax and LogSoftmax over any axes.

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::math;
use tract_onnx::tract_core::ops::nn::{Softmax, SoftmaxKind};

use super::{Backward, Grads};

pub fn handles(node: &TypedNode) -> bool {
    node.op_as::<Softmax>().is_some_and(|s| s.quant_output_dt.is_none())
}

pub fn vjp(b: &mut Backward, node: &TypedNode, dy: OutletId) -> TractResult<Grads> {
    let softmax = node.op_as::<Softmax>().unwrap();
    let n = node.name.as_str();
    let y = OutletId::new(node.id, 0);
    let axes = &softmax.axes;
    let dx = match softmax.kind {
        // dx = y (dy - <dy, y>)
        SoftmaxKind::Softmax => {
            let dy_y = b.mul(n, dy, y)?;
            let dot = b.sum_keep(n, dy_y, axes)?;
            let centred = b.sub(n, dy, dot)?;
            b.mul(n, y, centred)?
        }
        // dx = dy - softmax sum(dy), softmax = exp(y)
        SoftmaxKind::LogSoftmax => {
            let total = b.sum_keep(n, dy, axes)?;
            let p = b.wire(n, math::exp(), &[y])?;
            let share = b.mul(n, p, total)?;
            b.sub(n, dy, share)?
        }
    };
    Ok(tvec!(Some(dx)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grad::check::{check_unary_graph, Rng};

    fn check(axes: &[usize], kind: SoftmaxKind) -> TractResult<()> {
        check_unary_graph(&[2, 3, 4], &mut Rng(19), |m, x| {
            let op = Softmax { axes: axes.into(), quant_output_dt: None, kind };
            Ok(m.wire_node("softmax", op, &[x])?[0])
        })
    }

    #[test]
    fn softmax_and_log_softmax() -> TractResult<()> {
        check(&[2], SoftmaxKind::Softmax)?;
        check(&[1, 2], SoftmaxKind::Softmax)?;
        check(&[2], SoftmaxKind::LogSoftmax)?;
        check(&[0], SoftmaxKind::LogSoftmax)
    }
}
