//! Resize (nearest, linear, cubic; core's clean subset and ONNX's edge modes, Upsample): linear
//! in the image and separable, so each resized axis's gradient is dy times the transpose of that
//! axis's resampling matrix, built once from tract's own plan or, for the edge modes, by probing.

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::change_axes::AxisOp;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::nn::{NearestUpsample, Resize};
use tract_onnx_opl::resize::{AspectRatio, CoordTransform, Resize as EdgeResize};

use super::{Backward, Family, Grads, no_factor, no_lowering};

pub const FAMILY: Family = Family { name: "resize", handles, vjp, lower: no_lowering, lipschitz: no_factor };

fn handles(node: &TypedNode) -> bool {
    node.op_is::<Resize>() || node.op_is::<NearestUpsample>() || node.op_is::<EdgeResize>()
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

/// A konst input of the node, if the op has it and the graph holds it as a constant.
fn konst_input(b: &Backward, node: &TypedNode, ix: Option<usize>) -> TractResult<Option<Arc<Tensor>>> {
    match ix.and_then(|i| node.inputs.get(i)) {
        Some(i) => Ok(b.fact(*i)?.konst),
        None => Ok(None),
    }
}

/// ONNX's Resize edge modes (exclude_outside, antialias, tf_crop_and_resize with its ROI, a
/// cubic coefficient, keep_aspect_ratio_policy, the nearest modes core lacks), which tract keeps
/// as tract-onnx-opl's op. Its per-axis plan is private, so each resized axis's matrix is read
/// off the op itself: a rank-1 copy of the op (same attributes, that axis's scale and ROI) run on
/// every basis vector, minus its run on zeros (what extrapolated cells get).
fn edge(b: &mut Backward, node: &TypedNode, op: &EdgeResize, dy: OutletId) -> TractResult<OutletId> {
    let x = b.shape(node.inputs[0])?;
    let y = b.shape(OutletId::new(node.id, 0))?;
    let axes = op.resized_axes(x.len())?;
    let scales = konst_input(b, node, op.optional_scales_input)?.filter(|s| s.len() == axes.len());
    let sizes = konst_input(b, node, op.optional_sizes_input)?.filter(|s| s.len() == axes.len());
    let tf_crop = op.coord_transformer == CoordTransform::TfCropAndResize;
    let roi = if tf_crop {
        let roi = konst_input(b, node, op.optional_roi_input)?
            .filter(|r| r.len() == 2 * axes.len())
            .context("Resize in tf_crop_and_resize mode with a ROI that is not a constant")?;
        Some(roi.cast_to::<f32>()?.to_plain_array_view::<f32>()?.iter().copied().collect::<Vec<f32>>())
    } else {
        None
    };
    // the scale of each resized axis, as the op resolves it
    let per_axis: Vec<f32> = if let Some(s) = &scales {
        s.cast_to::<f32>()?.to_plain_array_view::<f32>()?.iter().copied().collect()
    } else if op.keep_aspect_ratio_policy != AspectRatio::Stretch {
        let sizes = sizes.context("Resize with an aspect-ratio policy and sizes that are not a constant")?;
        let sizes: Vec<i64> = sizes.cast_to::<i64>()?.to_plain_array_view::<i64>()?.iter().copied().collect();
        let ratios = axes.iter().zip(&sizes).map(|(&a, &s)| s as f32 / x[a] as f32);
        let pick = if op.keep_aspect_ratio_policy == AspectRatio::NotLarger { f32::min } else { f32::max };
        vec![ratios.reduce(pick).context("Resize with no axes")?; axes.len()]
    } else {
        axes.iter().map(|&a| y[a] as f32 / x[a] as f32).collect()
    };
    let mut g = dy;
    for (k, &axis) in axes.iter().enumerate() {
        let (len_in, len_out, scale) = (x[axis], y[axis], per_axis[k]);
        if len_in == len_out && scale == 1.0 && !tf_crop {
            continue;
        }
        let probe = EdgeResize {
            axes: None,
            keep_aspect_ratio_policy: AspectRatio::Stretch,
            optional_roi_input: Some(1),
            optional_scales_input: Some(2),
            optional_sizes_input: None,
            ..op.clone()
        };
        let roi = roi.as_ref().map(|r| [r[k], r[k + axes.len()]]).unwrap_or([0.0, 1.0]);
        let run = |v: Vec<f32>| -> TractResult<Vec<f32>> {
            let inputs = tvec!(
                Tensor::from_shape(&[len_in], &v)?.into_tvalue(),
                tensor1(&roi).into_tvalue(),
                tensor1(&[scale]).into_tvalue()
            );
            let out = probe.eval(&EvalContext::out_of_plan(), inputs)?.remove(0).into_tensor();
            // only a sizes-driven keep_aspect_ratio_policy rounds where a scale floors
            ensure!(
                out.shape() == [len_out],
                "this Resize's axis {axis} rounds its length {len_in} x {scale} to {len_out} \
                 (keep_aspect_ratio_policy with sizes), which its gradient cannot be read for; \
                 re-export it with scales instead of sizes"
            );
            Ok(out.to_plain_array_view::<f32>()?.iter().copied().collect())
        };
        let base = run(vec![0.0; len_in])?;
        let mut m = vec![0f32; len_out * len_in];
        for i in 0..len_in {
            let mut e = vec![0f32; len_in];
            e[i] = 1.0;
            for (o, v) in run(e)?.into_iter().enumerate() {
                m[o * len_in + i] = v - base[o];
            }
        }
        g = resample_back(b, node, g, x.len(), axis, len_in, len_out, &m)?;
    }
    Ok(g)
}

/// dy times the transpose of one axis's resampling matrix `m` (`m[o * len_in + i]`: how much
/// input cell i makes output cell o).
#[allow(clippy::too_many_arguments)]
fn resample_back(
    b: &mut Backward,
    node: &TypedNode,
    g: OutletId,
    rank: usize,
    axis: usize,
    len_in: usize,
    len_out: usize,
    m: &[f32],
) -> TractResult<OutletId> {
    let letters: Vec<char> = "abcdefghijklmnopqrstuvwy".chars().collect();
    ensure!(rank <= letters.len(), "too many axes");
    let m = b.konst(&node.name, Tensor::from_shape(&[len_out, len_in], m)?)?;
    let own: String = letters[..rank].iter().collect();
    let back: String = own.chars().enumerate().map(|(a, c)| if a == axis { 'z' } else { c }).collect();
    let expr = format!("{own},{}z->{back}", letters[axis]);
    b.wire(&node.name, EinSum::new(expr.parse()?, f32::datum_type()), &[g, m])
}

fn vjp(b: &mut Backward, node: &TypedNode, dy: OutletId, _: &[bool]) -> TractResult<Grads> {
    if let Some(op) = node.op_as::<NearestUpsample>() {
        let g = upsample(b, node, op, dy)?;
        return Ok(node.inputs.iter().enumerate().map(|(i, _)| (i == 0).then_some(g)).collect());
    }
    if let Some(op) = node.op_as::<EdgeResize>() {
        let g = edge(b, node, op, dy)?;
        return Ok(node.inputs.iter().enumerate().map(|(i, _)| (i == 0).then_some(g)).collect());
    }
    let op = node.op_as::<Resize>().unwrap();
    let x = b.shape(node.inputs[0])?;
    let y = b.shape(OutletId::new(node.id, 0))?;
    let scales = scales(b, node, op, &x, &y)?;
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
        g = resample_back(b, node, g, x.len(), axis, len_in, len_out, &m)?;
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

    /// tract-onnx-opl's op, in the modes core's Resize lacks; inputs: x, roi, scales.
    fn check_edge(edit: impl FnOnce(&mut EdgeResize), roi: [f32; 4], scales: [f32; 2]) -> TractResult<()> {
        use tract_onnx_opl::resize::Nearest as EdgeNearest;
        let mut op = EdgeResize {
            axes: Some(vec![2, 3]),
            coord_transformer: CoordTransform::Plain(CoordTransformer::HalfPixel),
            interpolator: Interpolator::Linear,
            nearest: EdgeNearest::RoundPreferFloor,
            antialias: false,
            cubic_coeff_a_bits: (-0.75f32).to_bits(),
            exclude_outside: false,
            extrapolation_value_bits: 0.0f32.to_bits(),
            keep_aspect_ratio_policy: AspectRatio::Stretch,
            optional_roi_input: Some(1),
            optional_scales_input: Some(2),
            optional_sizes_input: None,
        };
        edit(&mut op);
        check_graph(&[1, 2, 5, 6], &mut Rng(14), 1e-3, 1e-3, |v| v, |m, x| {
            let r = m.add_const("roi", tensor1(&roi))?;
            let s = m.add_const("scales", tensor1(&scales))?;
            Ok(m.wire_node("resize", op, &[x, r, s])?[0])
        })
    }

    #[test]
    fn onnx_edge_modes() -> TractResult<()> {
        let full = [0.0, 0.0, 1.0, 1.0];
        check_edge(|op| op.antialias = true, full, [0.6, 0.5])?;
        check_edge(|op| {
            op.interpolator = Interpolator::Cubic;
            op.exclude_outside = true;
            op.cubic_coeff_a_bits = (-0.5f32).to_bits();
        }, full, [1.7, 0.8])?;
        check_edge(|op| {
            op.interpolator = Interpolator::Cubic;
            op.antialias = true;
        }, full, [0.5, 0.7])?;
        check_edge(|op| {
            op.coord_transformer = CoordTransform::TfCropAndResize;
            op.extrapolation_value_bits = 10.0f32.to_bits();
        }, [0.4, -0.2, 0.9, 0.8], [1.4, 1.5])?;
        check_edge(|op| op.interpolator = Interpolator::Nearest, full, [2.0, 1.5])
    }

    #[test]
    fn nearest_linear_and_cubic_up_and_down() -> TractResult<()> {
        check(Interpolator::Nearest, CoordTransformer::Asymmetric, [1.0, 1.0, 2.0, 1.5])?;
        check(Interpolator::Linear, CoordTransformer::HalfPixel, [1.0, 1.0, 2.0, 0.5])?;
        check(Interpolator::Linear, CoordTransformer::AlignCorners, [1.0, 1.0, 1.7, 2.0])?;
        check(Interpolator::Cubic, CoordTransformer::HalfPixel, [1.0, 1.0, 2.0, 2.0])
    }
}
