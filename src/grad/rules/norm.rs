//! Fused normalisations tract's declutter makes of x / sqrt(mean(x^2) + eps): RmsNorm, ScaledRmsNorm.

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::math;
use tract_onnx::tract_core::ops::nn::{Reduce, Reducer, RmsNorm, ScaledRmsNorm};

use super::{Backward, Family, Grads, no_factor, no_lowering};

pub const FAMILY: Family = Family { name: "norm", handles, vjp, lower: no_lowering, lipschitz: no_factor };

fn handles(node: &TypedNode) -> bool {
    node.op_as::<RmsNorm>().is_some() || node.op_as::<ScaledRmsNorm>().is_some_and(|s| s.out_dt.is_none())
}

/// y = x r, r = (mean(x^2) + eps)^(-1/2) over `axis`:
/// dx = r dy - x r^3 mean(dy x); with a scale s, dy is first multiplied by s.
fn vjp(b: &mut Backward, node: &TypedNode, dy: OutletId, wanted: &[bool]) -> TractResult<Grads> {
    let n = node.name.as_str();
    let x = node.inputs[0];
    let (axis, eps, dy) = if let Some(rms) = node.op_as::<RmsNorm>() {
        (rms.axis, rms.eps.cast_to_scalar::<f32>()?, dy)
    } else {
        let scaled = node.op_as::<ScaledRmsNorm>().unwrap();
        ensure!(!wanted.get(1).copied().unwrap_or(false), "gradients flow to the input only; the scale must be a constant");
        let rank = b.fact(x)?.rank();
        let scale = node.inputs[1];
        let mut s = scale;
        for a in 0..rank {
            if a != scaled.axis {
                s = b.wire(n, tract_onnx::tract_core::ops::change_axes::AxisOp::Add(a), &[s])?;
            }
        }
        (scaled.axis, scaled.eps.cast_to_scalar::<f32>()?, b.mul(n, dy, s)?)
    };
    let count = b.shape(x)?[axis] as f32;
    let ms = b.wire(n, Reduce::new(tvec!(axis), Reducer::MeanOfSquares), &[x])?;
    let eps = b.scalar_like(n, eps, ms)?;
    let shifted = b.add(n, ms, eps)?;
    let r = b.wire(n, math::rsqrt(), &[shifted])?;
    let first = b.mul(n, dy, r)?;
    let dyx = b.mul(n, dy, x)?;
    let total = b.sum_keep(n, dyx, &[axis])?;
    let mean = b.scale(n, total, 1.0 / count)?;
    let r2 = b.mul(n, r, r)?;
    let r3 = b.mul(n, r2, r)?;
    let coef = b.mul(n, r3, mean)?;
    let second = b.mul(n, x, coef)?;
    let dx = b.sub(n, first, second)?;
    let mut grads = tvec!(Some(dx));
    grads.extend(node.inputs[1..].iter().map(|_| None));
    Ok(grads)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grad::check::{check_graph, Rng};

    #[test]
    fn rms_norm_over_each_axis() -> TractResult<()> {
        for axis in [1, 2] {
            check_graph(&[2, 3, 5], &mut Rng(23), 1e-3, 1e-3, |v| v * 2.0, |m, x| {
                let op = RmsNorm { axis, eps: tensor0(1e-5f32).into_arc_tensor() };
                Ok(m.wire_node("rms", op, &[x])?[0])
            })?;
        }
        Ok(())
    }
}
