//! Ops that move values without arithmetic: concat, slice, constant pad, broadcast, cast, downsample;
//! on WebGPU most are views, concat and pad copies.

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::array::{MultiBroadcastTo, Pad, PadMode, Slice, Tile, TypedConcat};
use tract_onnx::tract_core::ops::cast::{cast, Cast};
use tract_onnx::tract_core::ops::change_axes::AxisOp;
use tract_onnx::tract_core::ops::downsample::Downsample;

use super::{Backward, Family, Grads, no_factor};
use crate::gpu::plan::{refuse, Kernel, MapOp, Planner, Unary, View};

pub const FAMILY: Family = Family { name: "shape", handles, vjp, lower, lipschitz: no_factor };

fn handles(node: &TypedNode) -> bool {
    node.op_is::<TypedConcat>()
        || node.op_is::<Slice>()
        || node.op_is::<Pad>()
        || node.op_is::<MultiBroadcastTo>()
        || node.op_as::<Tile>().is_some_and(|t| t.multipliers.iter().all(|m| m.to_usize().is_ok()))
        || node.op_is::<Cast>()
        || node.op_as::<Downsample>().is_some_and(|d| d.stride > 0)
}

/// `a` reversed along `axis` (of length `len`): a Gather by constant indices len-1, ..., 0.
fn reverse(b: &mut Backward, n: &str, a: OutletId, axis: usize, len: usize) -> TractResult<OutletId> {
    let indices: Vec<i64> = (0..len as i64).rev().collect();
    let indices = b.konst(n, tensor1(&indices))?;
    b.wire(n, tract_onnx::tract_core::ops::array::Gather::new(axis), &[a, indices])
}

/// Downsample keeps every stride-th element from `modulo` on: dy goes back to those places, with
/// zeros between (interleave with zeros, then pad or trim to the input's length).
fn upsample(b: &mut Backward, n: &str, down: &Downsample, dy: OutletId, len: usize) -> TractResult<OutletId> {
    let (axis, stride) = (down.axis, down.stride as usize);
    let kept = b.shape(dy)?[axis];
    let zero = || Tensor::zero_scalar::<f32>().map(|t| PadMode::Constant(Arc::new(t)));
    let rank = b.fact(dy)?.rank();
    let mut g = b.wire(n, AxisOp::Add(axis + 1), &[dy])?;
    let mut pads = vec![(0, 0); rank + 1];
    pads[axis + 1] = (0, stride - 1);
    g = b.wire(n, Pad::new(pads, zero()?), &[g])?;
    g = b.wire(n, AxisOp::Reshape(axis, tvec!(kept.to_dim(), stride.to_dim()), tvec!((kept * stride).to_dim())), &[g])?;
    let spread = down.modulo + kept * stride;
    if spread > len {
        g = b.wire(n, Slice::new(axis, 0, len - down.modulo), &[g])?;
    }
    let mut pads = vec![(0, 0); rank];
    pads[axis] = (down.modulo, len.saturating_sub(spread));
    if pads[axis] != (0, 0) {
        g = b.wire(n, Pad::new(pads, zero()?), &[g])?;
    }
    Ok(g)
}

fn vjp(b: &mut Backward, node: &TypedNode, dy: OutletId, wanted: &[bool]) -> TractResult<Grads> {
    let n = node.name.as_str();
    if let Some(concat) = node.op_as::<TypedConcat>() {
        // each input gets its own slice of dy
        let mut start = 0;
        let mut grads = tvec!();
        for (input, want) in node.inputs.iter().zip(wanted) {
            let len = b.shape(*input)?[concat.axis];
            grads.push(if *want {
                Some(b.wire(n, Slice::new(concat.axis, start, start + len), &[dy])?)
            } else {
                None
            });
            start += len;
        }
        return Ok(grads);
    }
    if let Some(slice) = node.op_as::<Slice>() {
        // the slice's place in a zero tensor of the input's shape
        let len = b.shape(node.inputs[0])?[slice.axis];
        let start = slice.start.to_usize()?;
        let end = slice.end.to_usize()?;
        let rank = b.fact(dy)?.rank();
        let mut pads = vec![(0, 0); rank];
        pads[slice.axis] = (start, len - end);
        let zero = Arc::new(Tensor::zero_scalar::<f32>()?);
        return Ok(tvec!(Some(b.wire(n, Pad::new(pads, PadMode::Constant(zero)), &[dy])?)));
    }
    if let Some(pad) = node.op_as::<Pad>() {
        // one axis at a time (a pad in every mode is the same pads applied axis by axis): the
        // inner part of dy, plus for edge and reflect what the padding copied, sent back
        let shape = b.shape(node.inputs[0])?;
        let mut g = dy;
        for (axis, &(before, after)) in pad.pads.iter().enumerate() {
            if before + after == 0 {
                continue;
            }
            let len = shape[axis];
            let inner = b.wire(n, Slice::new(axis, before, before + len), &[g])?;
            let left = if before > 0 { Some(b.wire(n, Slice::new(axis, 0, before), &[g])?) } else { None };
            let right =
                if after > 0 { Some(b.wire(n, Slice::new(axis, before + len, before + len + after), &[g])?) } else { None };
            g = inner;
            let rank = b.fact(g)?.rank();
            let zero = || Tensor::zero_scalar::<f32>().map(|t| PadMode::Constant(Arc::new(t)));
            let place = |b: &mut Backward, part: OutletId, at: (usize, usize)| -> TractResult<OutletId> {
                let mut pads = vec![(0, 0); rank];
                pads[axis] = at;
                b.wire(n, Pad::new(pads, zero()?), &[part])
            };
            let mut spread = vec![];
            match pad.mode {
                PadMode::Constant(_) => {}
                // every padded copy is of the first (last) element: their dy summed there
                PadMode::Edge => {
                    if let Some(l) = left {
                        let l = b.sum_keep(n, l, &[axis])?;
                        spread.push(place(b, l, (0, len - 1))?);
                    }
                    if let Some(r) = right {
                        let r = b.sum_keep(n, r, &[axis])?;
                        spread.push(place(b, r, (len - 1, 0))?);
                    }
                }
                // y[before - k] = x[k] and y[before + len - 1 + k] = x[len - 1 - k], k >= 1: the
                // padded parts reversed land on x[1..=before] and x[len-1-after..len-1]
                PadMode::Reflect => {
                    ensure!(before < len && after < len, "a reflect pad wider than its axis");
                    if let Some(l) = left {
                        let l = reverse(b, n, l, axis, before)?;
                        spread.push(place(b, l, (1, len - 1 - before))?);
                    }
                    if let Some(r) = right {
                        let r = reverse(b, n, r, axis, after)?;
                        spread.push(place(b, r, (len - 1 - after, 1))?);
                    }
                }
            }
            for part in spread {
                g = b.add(n, g, part)?;
            }
        }
        return Ok(tvec!(Some(g)));
    }
    if let Some(down) = node.op_as::<Downsample>() {
        let len = b.shape(node.inputs[0])?[down.axis];
        return Ok(tvec!(Some(upsample(b, n, down, dy, len)?)));
    }
    if node.op_is::<MultiBroadcastTo>() {
        let shape = b.shape(node.inputs[0])?;
        return Ok(tvec!(Some(b.unbroadcast(n, dy, &shape)?)));
    }
    if let Some(tile) = node.op_as::<Tile>() {
        // dy [r0 d0, r1 d1, ..] split into [r0, d0, r1, d1, ..]: every copy's share summed
        let shape = b.shape(node.inputs[0])?;
        let mut g = dy;
        for (axis, m) in tile.multipliers.iter().enumerate() {
            let r = m.to_usize()?;
            if r == 1 {
                continue;
            }
            let split = AxisOp::Reshape(axis, tvec!((r * shape[axis]).to_dim()), tvec!(r.to_dim(), shape[axis].to_dim()));
            g = b.wire(n, split, &[g])?;
            g = b.sum_keep(n, g, &[axis])?;
            g = b.wire(n, AxisOp::Rm(axis), &[g])?;
        }
        return Ok(tvec!(Some(g)));
    }
    // Cast: back to the input's type (float to float); an integer or boolean input, piecewise
    // constant in the image (a mask, a Floor through int), takes none
    let dt = b.fact(node.inputs[0])?.datum_type;
    if !dt.is_float() {
        return Ok(tvec!(None));
    }
    Ok(tvec!(Some(b.wire(n, cast(dt), &[dy])?)))
}

fn lower(p: &mut Planner, node: &TypedNode, ins: &[View], shape: &[usize]) -> Option<TractResult<View>> {
    let op = &node.op;
    if let Some(slice) = op.downcast_ref::<Slice>() {
        return Some((|| {
            let (start, end) = (slice.start.to_usize()?, slice.end.to_usize()?);
            Ok(ins[0].axis_view(slice.axis, start, end - start, 1))
        })());
    }
    if let Some(down) = op.downcast_ref::<Downsample>() {
        if down.stride <= 0 {
            return Some(Err(format_err!("negative stride")));
        }
        return Some(Ok(ins[0].axis_view(down.axis, down.modulo, shape[down.axis], down.stride as usize)));
    }
    if op.downcast_ref::<MultiBroadcastTo>().is_some() {
        return Some(ins[0].broadcast_to(shape));
    }
    if let Some(cast) = op.downcast_ref::<Cast>() {
        if cast.to == f32::datum_type() || cast.to == bool::datum_type() {
            return Some(Ok(ins[0].clone()));
        }
        return Some(Err(refuse(node, Some(format!("a cast to {:?}", cast.to)))));
    }
    if let Some(concat) = op.downcast_ref::<TypedConcat>() {
        let out = p.alloc(shape);
        let mut start = 0;
        for v in ins {
            let len = v.shape[concat.axis];
            let region = out.axis_view(concat.axis, start, len, 1);
            p.copy_into(&region, v);
            start += len;
        }
        return Some(Ok(out));
    }
    let pad = op.downcast_ref::<Pad>()?;
    let PadMode::Constant(value) = &pad.mode else { return Some(Err(refuse(node, Some("a non-constant pad".into())))) };
    Some((|| {
        let value = value.cast_to_scalar::<f32>()?;
        let out = p.alloc(shape);
        p.push(Kernel::Map { op: MapOp::Unary(Unary::Fill(value)), out: out.clone(), a: None, b: None });
        let mut inner = out.clone();
        for (axis, (before, _)) in pad.pads.iter().enumerate() {
            inner = inner.axis_view(axis, *before, ins[0].shape[axis], 1);
        }
        p.copy_into(&inner, &ins[0]);
        Ok(out)
    })())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grad::check::{check_unary_graph, Rng};

    #[test]
    fn pads_in_every_mode() -> TractResult<()> {
        for mode in [PadMode::Edge, PadMode::Reflect] {
            check_unary_graph(&[2, 4, 5], &mut Rng(10), |m, x| {
                Ok(m.wire_node("pad", Pad::new(vec![(0, 0), (2, 0), (1, 3)], mode.clone()), &[x])?[0])
            })?;
        }
        Ok(())
    }

    #[test]
    fn tile() -> TractResult<()> {
        check_unary_graph(&[2, 3, 1], &mut Rng(9), |m, x| {
            Ok(m.wire_node("tile", Tile { multipliers: tvec!(3.to_dim(), 1.to_dim(), 2.to_dim()) }, &[x])?[0])
        })
    }
    use tract_onnx::tract_core::ops::math;

    #[test]
    fn concat_with_itself_and_a_constant() -> TractResult<()> {
        check_unary_graph(&[2, 3], &mut Rng(23), |m, x| {
            let c = m.add_const("c", tensor2(&[[1f32, 2.0], [3.0, 4.0]]))?;
            let e = m.wire_node("exp", math::exp(), &[x])?[0];
            Ok(m.wire_node("concat", TypedConcat::new(1), &[x, c, e])?[0])
        })
    }

    #[test]
    fn slice_and_pad() -> TractResult<()> {
        check_unary_graph(&[4, 5], &mut Rng(29), |m, x| {
            let s = m.wire_node("slice", Slice::new(1, 1, 4), &[x])?;
            let zero = Arc::new(tensor0(0.5f32));
            Ok(m.wire_node("pad", Pad::new(vec![(1, 2), (0, 3)], PadMode::Constant(zero)), &s)?[0])
        })
    }

    #[test]
    fn downsample() -> TractResult<()> {
        for (len, stride, modulo) in [(8, 2, 0), (7, 2, 0), (7, 3, 1), (9, 2, 1)] {
            check_unary_graph(&[2, len, 3], &mut Rng(37), |m, x| {
                Ok(m.wire_node("down", Downsample { axis: 1, stride, modulo }, &[x])?[0])
            })?;
        }
        Ok(())
    }

    #[test]
    fn broadcast_and_cast() -> TractResult<()> {
        check_unary_graph(&[1, 3], &mut Rng(31), |m, x| {
            let wide = m.wire_node("broadcast", MultiBroadcastTo { shape: tvec!(4, 3).into() }, &[x])?;
            let double = m.wire_node("to_f64", cast(f64::datum_type()), &wide)?;
            Ok(m.wire_node("to_f32", cast(f32::datum_type()), &double)?[0])
        })
    }
}
