//! Softmax and LogSoftmax over any axes: gradient, WebGPU steps (max, shift, exp, sum), factor 1.

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::math;
use tract_onnx::tract_core::ops::nn::{Softmax, SoftmaxKind};

use super::{Backward, Family, Grads, Lipschitz};
use crate::gpu::plan::{Binary, MapOp, Planner, Reduction, Unary, View};

pub const FAMILY: Family = Family { name: "softmax", handles, vjp, lower, lipschitz };

fn handles(node: &TypedNode) -> bool {
    node.op_as::<Softmax>().is_some_and(|s| s.quant_output_dt.is_none())
}

fn vjp(b: &mut Backward, node: &TypedNode, dy: OutletId, _: &[bool]) -> TractResult<Grads> {
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

fn lower(p: &mut Planner, node: &TypedNode, ins: &[View], shape: &[usize]) -> Option<TractResult<View>> {
    let softmax = node.op_as::<Softmax>()?;
    if softmax.quant_output_dt.is_some() {
        return Some(Err(format_err!("quantized softmax")));
    }
    Some((|| {
        let m = p.reduce(Reduction::Max, &ins[0], &softmax.axes);
        let shifted = p.map(MapOp::Binary(Binary::Sub), Some(&ins[0]), Some(&m), shape)?;
        let e = p.map(MapOp::Unary(Unary::Exp), Some(&shifted), None, shape)?;
        let s = p.reduce(Reduction::Sum, &e, &softmax.axes);
        match softmax.kind {
            SoftmaxKind::Softmax => p.map(MapOp::Binary(Binary::Div), Some(&e), Some(&s), shape),
            SoftmaxKind::LogSoftmax => {
                let log_s = p.map(MapOp::Unary(Unary::Ln), Some(&s), None, &s.shape.clone())?;
                p.map(MapOp::Binary(Binary::Sub), Some(&shifted), Some(&log_s), shape)
            }
        }
    })())
}

/// Softmax is 1-Lipschitz (L2); at the graph's output, Table 5 leaves it out of the bound.
fn lipschitz(_: &TypedModel, node: &TypedNode) -> Option<Lipschitz> {
    let feeds_something = node.outputs[0].successors.iter().any(|_| true);
    (node.op.name() == "Softmax" && feeds_something).then(|| Lipschitz::Factor(Some("softmax".into()), 1.0))
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
