//! Pools: MaxPool sends the gradient to each window's winner; average/sum pools spread it evenly;
//! one WebGPU kernel each way; a max pool's factor counts the windows that overlap.

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::{MaxPool, PoolSpec, SumPool};
use tract_onnx::tract_core::ops::nn::DataFormat;

use super::{Backward, Family, Grads, Lipschitz};
use crate::gpu::plan::{nchw, Kernel, Planner, PoolKind, View};
use crate::grad::ops::MaxPoolBackward;

pub const FAMILY: Family = Family { name: "pool", handles, vjp, lower, lipschitz };

fn handles(node: &TypedNode) -> bool {
    node.op_as::<MaxPool>().is_some_and(|p| p.pool_spec.data_format == DataFormat::NCHW)
        || node.op_as::<SumPool>().is_some_and(|p| p.pool_spec.data_format == DataFormat::NCHW)
}

/// Sum and average pools: dy (divided by each window's count when averaging) flows back to every
/// input of its window: a depthwise transposed convolution with a kernel of ones.
fn sum_pool(b: &mut Backward, node: &TypedNode, pool: &SumPool, dy: OutletId) -> TractResult<Grads> {
    let n = node.name.as_str();
    let x_shape = b.shape(node.inputs[0])?;
    let c = x_shape[1];
    let mut dy = dy;
    if pool.normalize {
        // the window sizes tract divided by: the same pool, unnormalised, over an image of ones
        let ones = b.konst(n, tract_ndarray::ArrayD::<f32>::ones(x_shape.to_vec()).into_tensor())?;
        let counting = SumPool { normalize: false, ..pool.clone() };
        let counts = if pool.count_include_pad {
            b.konst(n, padded_counts(&pool.pool_spec, &x_shape, &b.shape(dy)?)?)?
        } else {
            b.wire(n, counting, &[ones])?
        };
        dy = b.div(n, dy, counts)?;
    }
    let mut kshape = vec![c, 1];
    kshape.extend(pool.pool_spec.kernel_shape.iter().copied());
    let kernel = b.konst(n, tract_ndarray::ArrayD::<f32>::ones(kshape).into_tensor())?;
    let spec = tract_onnx::tract_core::ops::cnn::PoolSpec { input_channels: c, output_channels: c, ..pool.pool_spec.clone() };
    let dx = super::conv::transposed(b, n, &spec, c, kernel, dy, &x_shape)?;
    Ok(tvec!(Some(dx)))
}

/// The window sizes of a pool that counts padding: the taps inside the padded input, which is
/// the whole kernel except where a ceil-mode window hangs past the padding. Shape [1, 1, out..].
fn padded_counts(spec: &PoolSpec, x_shape: &[usize], y_shape: &[usize]) -> TractResult<Tensor> {
    let x_geo = spec.data_format.shape(x_shape.to_vec())?;
    let y_geo = spec.data_format.shape(y_shape.to_vec())?;
    let padding = spec.computed_padding(x_geo.hw_dims());
    let (strides, dilations) = (spec.strides(), spec.dilations());
    let mut counts = tract_ndarray::ArrayD::<f32>::ones(vec![1; 2]);
    for (axis, pad) in padding.iter().enumerate() {
        let span = x_geo.hw_dims()[axis] + pad.pad_before + pad.pad_after;
        let along: Vec<f32> = (0..y_geo.hw_dims()[axis])
            .map(|o| {
                (0..spec.kernel_shape[axis]).filter(|t| o * strides[axis] + t * dilations[axis] < span).count() as f32
            })
            .collect();
        let along = tract_ndarray::Array1::from_vec(along).into_dyn();
        let mut shape = counts.shape().to_vec();
        shape.push(1);
        let outer = counts.into_shape_with_order(shape)?;
        counts = &outer * &along;
    }
    Ok(counts.into_tensor())
}

/// Max pool: dy to each window's winner (a dedicated op; tract's generic scatter is slow).
fn vjp(b: &mut Backward, node: &TypedNode, dy: OutletId, _: &[bool]) -> TractResult<Grads> {
    if let Some(pool) = node.op_as::<SumPool>() {
        return sum_pool(b, node, pool, dy);
    }
    let pool = node.op_as::<MaxPool>().unwrap();
    let backward = MaxPoolBackward { pool_spec: pool.pool_spec.clone() };
    Ok(tvec!(Some(b.wire(&node.name, backward, &[node.inputs[0], dy])?)))
}

fn lower(p: &mut Planner, node: &TypedNode, ins: &[View], shape: &[usize]) -> Option<TractResult<View>> {
    if let Some(pool) = node.op_as::<MaxPool>() {
        if pool.with_index_outputs.is_some() {
            return Some(Err(format_err!("max pool with indices")));
        }
        return Some(steps(p, &pool.pool_spec, PoolKind::Max, &ins[0], shape));
    }
    if let Some(pool) = node.op_as::<SumPool>() {
        let kind = PoolKind::Sum { normalize: pool.normalize, count_include_pad: pool.count_include_pad };
        return Some(steps(p, &pool.pool_spec, kind, &ins[0], shape));
    }
    let back = node.op_as::<MaxPoolBackward>()?;
    Some((|| {
        let (x, window) = nchw(&back.pool_spec, &ins[0])?;
        let (dy, _) = nchw(&back.pool_spec, &ins[1])?;
        let out = p.alloc(shape);
        let (out_nchw, _) = nchw(&back.pool_spec, &out)?;
        p.push(Kernel::MaxPoolBackward { out: out_nchw, x, dy, window });
        Ok(out)
    })())
}

fn steps(p: &mut Planner, spec: &PoolSpec, kind: PoolKind, x: &View, shape: &[usize]) -> TractResult<View> {
    let (x, window) = nchw(spec, x)?;
    let out = p.alloc(shape);
    let (out_nchw, _) = nchw(spec, &out)?;
    p.push(Kernel::Pool { kind, out: out_nchw, x, window });
    Ok(out)
}

/// A max pool is 1-Lipschitz per window, √(the most windows covering one pixel) in all; the
/// factor of average pools is their sum's (reduce.rs) times the scale, not known here.
fn lipschitz(_: &TypedModel, node: &TypedNode) -> Option<Lipschitz> {
    let spec = &node.op_as::<MaxPool>()?.pool_spec;
    let (strides, dilations) = (spec.strides(), spec.dilations());
    // the most windows that can cover one pixel
    let covering: usize = (0..spec.kernel_shape.len())
        .map(|a| {
            let k = spec.kernel_shape[a];
            k.min(((k - 1) * dilations[a] + 1).div_ceil(strides[a]))
        })
        .product();
    let kernel: Vec<String> = spec.kernel_shape.iter().map(|k| k.to_string()).collect();
    let mut what = format!("max-pool {}/{}", kernel.join("x"), strides[0]);
    if covering > 1 {
        what += &format!(" (windows overlap: √{covering})");
    }
    Some(Lipschitz::Factor(Some(what), (covering as f64).sqrt()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grad::check::{check_graph, Rng};
    use tract_onnx::tract_core::ops::cnn::{PaddingSpec, PoolSpec};

    fn check(x: [usize; 4], k: [usize; 2], strides: [usize; 2], padding: PaddingSpec) -> TractResult<()> {
        // all values distinct and at least 1/n apart: no window has two maxima within the step
        let n: usize = x.iter().product();
        let next = std::cell::Cell::new(0usize);
        let distinct = |_: f32| {
            let i = next.replace(next.get() + 1);
            ((i * 37) % n) as f32 / n as f32
        };
        check_graph(&x, &mut Rng(41), 1e-6, 1e-4, distinct, |m, input| {
            let spec = PoolSpec::new(DataFormat::NCHW, k.iter().copied().collect(), padding, None, Some(strides.iter().copied().collect()), x[1], x[1]);
            Ok(m.wire_node("pool", MaxPool { pool_spec: spec, with_index_outputs: None }, &[input])?[0])
        })
    }

    fn check_sum(x: [usize; 4], k: [usize; 2], strides: [usize; 2], padding: PaddingSpec, normalize: bool, count_include_pad: bool) -> TractResult<()> {
        check_graph(&x, &mut Rng(43), 1e-6, 1e-4, |v| v, |m, input| {
            let spec = PoolSpec::new(DataFormat::NCHW, k.iter().copied().collect(), padding, None, Some(strides.iter().copied().collect()), x[1], x[1]);
            Ok(m.wire_node("pool", SumPool { pool_spec: spec, normalize, count_include_pad }, &[input])?[0])
        })
    }

    #[test]
    fn average_and_sum_pools() -> TractResult<()> {
        check_sum([1, 2, 6, 6], [2, 2], [2, 2], PaddingSpec::Valid, true, false)?;
        check_sum([2, 3, 7, 5], [3, 3], [2, 1], PaddingSpec::SameUpper, true, false)?;
        check_sum([1, 2, 5, 5], [3, 3], [1, 1], PaddingSpec::Explicit(tvec!(1, 1), tvec!(1, 1)), true, true)?;
        check_sum([1, 2, 5, 4], [2, 2], [1, 1], PaddingSpec::Valid, false, false)
    }

    #[test]
    fn non_overlapping_windows() -> TractResult<()> {
        check([1, 2, 4, 6], [2, 2], [2, 2], PaddingSpec::Valid)
    }

    #[test]
    fn overlapping_windows_and_padding() -> TractResult<()> {
        check([2, 2, 5, 5], [3, 3], [1, 1], PaddingSpec::Valid)?;
        check([1, 3, 6, 5], [3, 3], [2, 2], PaddingSpec::SameUpper)
    }
}
