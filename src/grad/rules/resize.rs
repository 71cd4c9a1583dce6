//! Resize (nearest, linear, cubic; tract's clean subset of ONNX Resize and Upsample): linear in
//! the image and separable, so each resized axis's gradient is dy times the transpose of that
//! axis's resampling matrix, built once from tract's own plan.

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::change_axes::AxisOp;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::nn::{NearestUpsample, Resize};

use super::{Backward, Grads};

pub fn handles(node: &TypedNode) -> bool {
    node.op_is::<Resize>() || node.op_is::<NearestUpsample>()
}

/// An integer nearest upsample (what tract's declutter makes of the common Resize/Upsample):
/// each input cell is copied `s` times along an axis, so its gradient is the sum of the copies'.
fn upsample(b: &mut Backward, node: &TypedNode, op: &NearestUpsample, dy: OutletId) -> TractResult<OutletId> {
    let x = b.shape(node.inputs[0])?;
    let mut g = dy;
    for (axis, &s) in op.scales.iter().enumerate() {
        if s == 1 {
            continue;
        }
        let split = AxisOp::Reshape(axis, tvec!((x[axis] * s).to_dim()), tvec!(x[axis].to_dim(), s.to_dim()));
        g = b.wire(&node.name, split, &[g])?;
        g = b.sum_keep(&node.name, g, &[axis + 1])?;
        g = b.wire(&node.name, AxisOp::Rm(axis + 1), &[g])?;
    }
    Ok(g)
}

/// The per-axis scales tract's eval uses: the scales input when it has one per axis, else the
/// ratio of the output's length to the input's.
fn scales(b: &Backward, node: &TypedNode, op: &Resize, x: &[usize], y: &[usize]) -> TractResult<Vec<f32>> {
    if let Some(ix) = op.optional_scales_input {
        if let Some(k) = node.inputs.get(ix).map(|i| b.fact(*i)).transpose()?.and_then(|f| f.konst) {
            if k.len() == x.len() {
                return Ok(k.cast_to::<f32>()?.to_plain_array_view::<f32>()?.iter().copied().collect());
            }
        }
    }
    Ok(y.iter().zip(x).map(|(o, i)| *o as f32 / *i as f32).collect())
}

pub fn vjp(b: &mut Backward, node: &TypedNode, dy: OutletId) -> TractResult<Grads> {
    if let Some(op) = node.op_as::<NearestUpsample>() {
        let g = upsample(b, node, op, dy)?;
        return Ok(node.inputs.iter().enumerate().map(|(i, _)| (i == 0).then_some(g)).collect());
    }
    let op = node.op_as::<Resize>().unwrap();
    let x = b.shape(node.inputs[0])?;
    let y = b.shape(OutletId::new(node.id, 0))?;
    let scales = scales(b, node, op, &x, &y)?;
    let letters: Vec<char> = "abcdefghijklmnopqrstuvwy".chars().collect();
    ensure!(x.len() <= letters.len(), "too many axes");
    let mut g = dy;
    for axis in 0..x.len() {
        let (len_in, len_out) = (x[axis], y[axis]);
        if len_in == len_out && scales[axis] == 1.0 {
            continue;
        }
        // M[o, i]: how much input cell i makes output cell o (extrapolated cells: nothing)
        let plan = op.plan_axis(scales[axis], len_in, len_out);
        let mut m = vec![0f32; len_out * len_in];
        for o in 0..len_out {
            if plan.extrapolated[o] {
                continue;
            }
            for k in 0..plan.window {
                m[o * len_in + plan.indices[o * plan.window + k]] += plan.weights[o * plan.window + k];
            }
        }
        let m = b.konst(&node.name, Tensor::from_shape(&[len_out, len_in], &m)?)?;
        let own: String = letters[..x.len()].iter().collect();
        let back: String = own.chars().enumerate().map(|(a, c)| if a == axis { 'z' } else { c }).collect();
        let expr = format!("{own},{}z->{back}", letters[axis]);
        g = b.wire(&node.name, EinSum::new(expr.parse()?, f32::datum_type()), &[g, m])?;
    }
    Ok(node.inputs.iter().enumerate().map(|(i, _)| (i == 0).then_some(g)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grad::check::{check_graph, Rng};
    use tract_onnx::tract_core::ops::nn::{CoordTransformer, Interpolator, Nearest};

    fn check(interpolator: Interpolator, coord_transformer: CoordTransformer, scales: [f32; 4]) -> TractResult<()> {
        // tract resizes in f32 whatever the input type: checked in f32 with a larger step, as Erf
        check_graph(&[1, 2, 3, 4], &mut Rng(12), 1e-3, 1e-3, |v| v, |m, x| {
            let s = m.add_const("scales", tensor1(&scales))?;
            let op = Resize {
                coord_transformer,
                interpolator,
                nearest: Nearest::Floor,
                optional_scales_input: Some(1),
                optional_sizes_input: None,
            };
            Ok(m.wire_node("resize", op, &[x, s])?[0])
        })
    }

    #[test]
    fn integer_nearest_upsample() -> TractResult<()> {
        crate::grad::check::check_unary_graph(&[1, 2, 3, 2], &mut Rng(13), |m, x| {
            Ok(m.wire_node("up", NearestUpsample { scales: tvec!(1, 1, 2, 3) }, &[x])?[0])
        })
    }

    #[test]
    fn nearest_linear_and_cubic_up_and_down() -> TractResult<()> {
        check(Interpolator::Nearest, CoordTransformer::Asymmetric, [1.0, 1.0, 2.0, 1.5])?;
        check(Interpolator::Linear, CoordTransformer::HalfPixel, [1.0, 1.0, 2.0, 0.5])?;
        check(Interpolator::Linear, CoordTransformer::AlignCorners, [1.0, 1.0, 1.7, 2.0])?;
        check(Interpolator::Cubic, CoordTransformer::HalfPixel, [1.0, 1.0, 2.0, 2.0])
    }
}
