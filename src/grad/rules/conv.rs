//! Convolution: the input gradient is the transposed convolution (tract's Deconv) of the same
//! kernel; both are one WebGPU kernel each; the factor is the layer's operator norm.

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::change_axes::AxisOp;
use tract_onnx::tract_core::ops::cnn::{Conv, Deconv, KernelFormat, PaddingSpec, PoolSpec};

use super::{Backward, Family, Grads, Lipschitz};
use crate::gpu::plan::{nchw, Kernel, Planner, View};

pub const FAMILY: Family = Family { name: "conv", handles, vjp, lower, lipschitz };

fn handles(node: &TypedNode) -> bool {
    node.op_as::<Conv>().is_some_and(|c| c.q_params.is_none() && c.kernel_fmt == KernelFormat::OIHW)
}

fn vjp(b: &mut Backward, node: &TypedNode, dy: OutletId, wanted: &[bool]) -> TractResult<Grads> {
    let conv = node.op_as::<Conv>().unwrap();
    let mut grads = tvec!(None, None);
    if wanted[0] {
        let x_shape = b.shape(node.inputs[0])?;
        grads[0] = Some(transposed(b, &node.name, &conv.pool_spec, conv.group, node.inputs[1], dy, &x_shape)?);
    }
    // the kernel is a weight being trained (crate::weights), or depends on the image
    if wanted[1] {
        grads[1] = Some(kernel_gradient(b, &node.name, conv, node.inputs[0], dy)?);
    }
    // tract's declutter folds an Add that follows the convolution into its bias when the shapes
    // allow (a residual Add over 1x1 maps at batch 1: ResNet's last stage at small inputs), so
    // the bias can carry the image's gradient: dy summed over every axis but the channels
    grads.extend(node.inputs[2..].iter().map(|_| None));
    if wanted.get(2).copied().unwrap_or(false) {
        grads[2] = Some(bias_gradient(b, &node.name, conv, node.inputs[2], dy)?);
    }
    Ok(grads)
}

/// d objective / d kernel (OIHW) of a 2-D convolution (any layout, taken as NCHW): per group, the correlation of the
/// padded input with dy over the batch and the output's positions,
/// dW[o, i, r, c] = sum over n, y, x of dy[n, o, y, x] * x_pad[n, i, y*s + r*d, x*s + c*d],
/// written as one grouped convolution with the roles of batch and channels swapped (dy is its
/// kernel, the forward stride s its dilation, the forward dilation d its stride), cut to the
/// kernel's size (a strided convolution that never reached the last padded rows leaves more).
fn kernel_gradient(b: &mut Backward, n: &str, conv: &Conv, x: OutletId, dy: OutletId) -> TractResult<OutletId> {
    use tract_onnx::tract_core::ops::array::Slice;
    use tract_onnx::tract_core::ops::nn::DataFormat;
    let spec = &conv.pool_spec;
    ensure!(
        spec.kernel_shape.len() == 2,
        "blindspot differentiates the kernels of 2-D convolutions only, not of one over {} axes",
        spec.kernel_shape.len()
    );
    let padded = spec.computed_padding(spec.data_format.shape(b.shape(x)?.to_vec())?.hw_dims());
    // as NCHW: a batch axis of 1 where there is none, channels before space
    let (x, dy) = (as_nchw(b, n, spec.data_format, x)?, as_nchw(b, n, spec.data_format, dy)?);
    let (x_shape, dy_shape) = (b.shape(x)?, b.shape(dy)?);
    let (batch, ci, co, g) = (x_shape[0], spec.input_channels, spec.output_channels, conv.group);
    let cig = ci / g;
    let dims = |v: &[usize]| -> TVec<TDim> { v.iter().map(|d| d.to_dim()).collect() };
    // x [n, ci, h, w] -> [ci/g, g * n, h, w]: per group, its input channels become the batch
    let xs = b.wire(n, AxisOp::Reshape(1, dims(&[ci]), dims(&[g, cig])), &[x])?;
    let xs = b.wire(n, AxisOp::Move(2, 0), &[xs])?; // [cig, n, g, h, w]
    let xs = b.wire(n, AxisOp::Move(2, 1), &[xs])?; // [cig, g, n, h, w]
    let xs = b.wire(n, AxisOp::Reshape(1, dims(&[g, batch]), dims(&[g * batch])), &[xs])?;
    // dy [n, co, oh, ow] -> [co, n, oh, ow]: the kernel, its input channels the batch
    let k = b.wire(n, AxisOp::Move(0, 1), &[dy])?;
    let pool_spec = PoolSpec {
        data_format: DataFormat::NCHW,
        kernel_shape: tvec!(dy_shape[2], dy_shape[3]),
        padding: PaddingSpec::Explicit(padded.iter().map(|p| p.pad_before).collect(), padded.iter().map(|p| p.pad_after).collect()),
        dilations: Some(spec.strides().iter().copied().collect()),
        strides: Some(spec.dilations().iter().copied().collect()),
        input_channels: g * batch,
        output_channels: co,
    };
    let zero = b.konst(n, tract_ndarray::Array1::<f32>::zeros(co).into_tensor())?;
    let correlation = Conv { pool_spec, kernel_fmt: KernelFormat::OIHW, group: g, q_params: None };
    let mut out = b.wire(n, correlation, &[xs, k, zero])?; // [cig, co, >= kh, >= kw]
    for (axis, &size) in [2, 3].iter().zip(spec.kernel_shape.iter()) {
        if b.shape(out)?[*axis] != size {
            out = b.wire(n, Slice::new(*axis, 0, size), &[out])?;
        }
    }
    b.wire(n, AxisOp::Move(1, 0), &[out]) // [co, cig, kh, kw]
}

/// `o` (laid out as `format` says) as [N, C, H, W].
fn as_nchw(b: &mut Backward, n: &str, format: tract_onnx::tract_core::ops::nn::DataFormat, o: OutletId) -> TractResult<OutletId> {
    use tract_onnx::tract_core::ops::nn::DataFormat;
    let o = if format.has_n() { o } else { b.wire(n, AxisOp::Add(0), &[o])? };
    Ok(match format {
        DataFormat::NHWC | DataFormat::HWC => b.wire(n, AxisOp::Move(3, 1), &[o])?,
        DataFormat::NCHW | DataFormat::CHW => o,
    })
}

/// d objective / d bias: dy summed over batch and space, shaped like the bias ([C], [1] or a scalar).
fn bias_gradient(b: &mut Backward, n: &str, conv: &Conv, bias: OutletId, dy: OutletId) -> TractResult<OutletId> {
    let dy_shape = b.shape(dy)?;
    let bias_shape = b.shape(bias)?;
    let channel = conv.pool_spec.data_format.shape(dy_shape.clone())?.c_axis();
    let per_channel = bias_shape.iter().product::<usize>() == dy_shape[channel] && dy_shape[channel] > 1;
    let summed: Vec<usize> = (0..dy_shape.len()).filter(|&a| !(per_channel && a == channel)).collect();
    let mut g = b.sum_keep(n, dy, &summed)?;
    for &axis in summed.iter().rev() {
        g = b.wire(n, AxisOp::Rm(axis), &[g])?;
    }
    let target: TVec<TDim> = bias_shape.iter().map(|d| d.to_dim()).collect();
    let now: TVec<TDim> = b.shape(g)?.iter().map(|d| d.to_dim()).collect();
    if now != target {
        g = b.wire(n, AxisOp::Reshape(0, now, target), &[g])?;
    }
    Ok(g)
}

/// The transposed convolution of `dy` by `kernel` (OIHW, as the forward convolution had it) back
/// to `x_shape`. Explicit padding, strides, dilations and groups carry over; `adjustments`
/// recover the input rows a strided convolution never reached. Pools reuse it with a ones kernel.
pub fn transposed(
    b: &mut Backward,
    n: &str,
    spec: &PoolSpec,
    group: usize,
    kernel: OutletId,
    dy: OutletId,
    x_shape: &[usize],
) -> TractResult<OutletId> {
    let dy_shape = b.shape(dy)?;
    let x_geo = spec.data_format.shape(x_shape.to_vec())?;
    let y_geo = spec.data_format.shape(dy_shape)?;
    let mut padded = spec.computed_padding(x_geo.hw_dims());
    let (strides, dilations) = (spec.strides(), spec.dilations());
    let mut adjustments = tvec!();
    for (axis, pad) in padded.iter_mut().enumerate() {
        let k = spec.kernel_shape[axis];
        let reached = (y_geo.hw_dims()[axis] - 1) * strides[axis] + dilations[axis] * (k - 1) + 1;
        let span = x_geo.hw_dims()[axis] + pad.pad_before + pad.pad_after;
        // a pool in ceil mode: the last window hangs past the padded input, over nothing
        if reached > span {
            pad.pad_after += reached - span;
        }
        adjustments.push(span.max(reached) - reached);
    }
    let padding = PaddingSpec::Explicit(
        padded.iter().map(|p| p.pad_before).collect(),
        padded.iter().map(|p| p.pad_after).collect(),
    );
    let (ci, co, g) = (spec.input_channels, spec.output_channels, group);
    let pads: Vec<(usize, usize)> = padded.iter().map(|p| (p.pad_before, p.pad_after)).collect();
    if let Some(dx) = stride_one_as_conv(b, n, spec, group, kernel, dy, &pads)? {
        return Ok(dx);
    }
    let deconv_spec = PoolSpec { padding, input_channels: co, output_channels: ci, ..spec.clone() };
    // Deconv wants [out, in/group, h, w] of its own: regroup [co, ci/g, ..] to [ci, co/g, ..].
    let split = b.wire(n, AxisOp::Reshape(0, tvec!(co.to_dim()), tvec!(g.to_dim(), (co / g).to_dim())), &[kernel])?;
    let moved = b.wire(n, AxisOp::Move(1, 2), &[split])?;
    let regrouped = b.wire(n, AxisOp::Reshape(0, tvec!(g.to_dim(), (ci / g).to_dim()), tvec!(ci.to_dim())), &[moved])?;
    let zero = b.konst(n, Tensor::zero_scalar::<f32>()?)?;
    let deconv = Deconv::new(deconv_spec, KernelFormat::OIHW, adjustments, g);
    b.wire(n, deconv, &[dy, regrouped, zero])
}

/// With unit strides the transposed convolution is a plain convolution of dy by the kernel
/// flipped in space with its channel roles swapped, padded by dilation*(k-1) minus the forward
/// padding. tract's forward convolution is much faster than its Deconv, so use it when the kernel
/// is a constant (flipped once, here) and the padding stays non-negative.
fn stride_one_as_conv(
    b: &mut Backward,
    n: &str,
    spec: &PoolSpec,
    group: usize,
    kernel: OutletId,
    dy: OutletId,
    pads: &[(usize, usize)],
) -> TractResult<Option<OutletId>> {
    let konst = b.fact(kernel)?.konst.clone();
    let (Some(k), true) = (konst, spec.strides().iter().all(|&s| s == 1)) else { return Ok(None) };
    // one output channel (a first layer over grey images) makes the convolution a
    // matrix-vector product, where tract's Deconv is faster
    if k.rank() != 4 || spec.input_channels == 1 {
        return Ok(None);
    }
    let dil = spec.dilations();
    let reach: Vec<usize> = (0..2).map(|a| dil[a] * (spec.kernel_shape[a] - 1)).collect();
    if (0..2).any(|a| pads[a].0 > reach[a] || pads[a].1 > reach[a]) {
        return Ok(None);
    }
    let (ci, co, g) = (spec.input_channels, spec.output_channels, group);
    let (kh, kw) = (spec.kernel_shape[0], spec.kernel_shape[1]);
    let w = k.cast_to::<f32>()?;
    let w = w.to_plain_array_view::<f32>()?;
    // [co, ci/g, kh, kw] -> [ci, co/g, kh, kw], flipped in space
    let flipped = tract_ndarray::Array4::from_shape_fn((ci, co / g, kh, kw), |(i, o, r, c)| {
        let group_of_i = i / (ci / g);
        w[[group_of_i * (co / g) + o, i % (ci / g), kh - 1 - r, kw - 1 - c]]
    });
    let flipped = b.konst(n, flipped.into_tensor())?;
    let padding = PaddingSpec::Explicit(
        (0..2).map(|a| reach[a] - pads[a].0).collect(),
        (0..2).map(|a| reach[a] - pads[a].1).collect(),
    );
    let conv_spec = PoolSpec { padding, input_channels: co, output_channels: ci, ..spec.clone() };
    let zero = b.konst(n, tract_ndarray::Array1::<f32>::zeros(ci).into_tensor())?;
    let conv = Conv { pool_spec: conv_spec, kernel_fmt: KernelFormat::OIHW, group: g, q_params: None };
    Ok(Some(b.wire(n, conv, &[dy, flipped, zero])?))
}

fn lower(p: &mut Planner, node: &TypedNode, ins: &[View], shape: &[usize]) -> Option<TractResult<View>> {
    if let Some(conv) = node.op_as::<Conv>() {
        if conv.q_params.is_some() {
            return Some(Err(format_err!("quantized convolution")));
        }
        return Some(steps(p, &conv.pool_spec, &conv.kernel_fmt, conv.group, ins, shape, false));
    }
    let deconv = node.op_as::<Deconv>()?;
    Some(steps(p, &deconv.pool_spec, &deconv.kernel_format, deconv.group, ins, shape, true))
}

/// A linear layer: measured by power iteration (spectral::LayerOperator), bounded by the Fourier
/// formula.
fn lipschitz(_: &TypedModel, node: &TypedNode) -> Option<Lipschitz> {
    node.op_is::<Conv>().then_some(Lipschitz::OperatorNorm)
}

/// The kernel as [O, I/group, KH, KW] strides, whatever its format.
fn oihw(format: &KernelFormat, k: &View) -> TractResult<View> {
    ensure!(*format == KernelFormat::OIHW, "kernel format {format:?}");
    let rank = k.shape.len();
    ensure!(rank == 3 || rank == 4, "a rank-{rank} kernel");
    let mut v = k.clone();
    if rank == 3 {
        v.shape.insert(2, 1);
        v.strides.insert(2, 0);
    }
    Ok(v)
}

/// One Conv (or, `transposed`, Deconv) kernel over NCHW views of the operands.
fn steps(
    p: &mut Planner,
    spec: &PoolSpec,
    format: &KernelFormat,
    group: usize,
    ins: &[View],
    shape: &[usize],
    transposed: bool,
) -> TractResult<View> {
    let (x, window) = nchw(spec, &ins[0])?;
    let kernel = oihw(format, &ins[1])?;
    let out = p.alloc(shape);
    let (out_nchw, _) = nchw(spec, &out)?;
    let channels = out_nchw.shape[1];
    let bias = match ins.get(2) {
        Some(b) if b.len() == 1 => View { shape: vec![channels], strides: vec![0], ..b.clone() },
        Some(b) if b.len() == channels => {
            let axis = b.shape.iter().position(|&d| d == channels).unwrap_or(0);
            View { shape: vec![channels], strides: vec![b.strides[axis]], ..b.clone() }
        }
        Some(b) => bail!("a bias of shape {:?}", b.shape),
        None => {
            let zero = p.constant(&Tensor::zero_scalar::<f32>()?)?;
            View { shape: vec![channels], strides: vec![0], ..zero }
        }
    };
    p.push(if transposed {
        Kernel::Deconv { out: out_nchw, x, kernel, bias, window, group }
    } else {
        Kernel::Conv { out: out_nchw, x, kernel, bias, window, group }
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grad::check::{check_unary_graph, Rng};
    use tract_onnx::tract_core::ops::cnn::conv::Conv;
    use tract_onnx::tract_core::ops::nn::DataFormat;

    struct Case {
        x: [usize; 4],
        co: usize,
        k: [usize; 2],
        padding: PaddingSpec,
        strides: [usize; 2],
        dilations: [usize; 2],
        group: usize,
    }

    fn check(case: Case) -> TractResult<()> {
        let mut rng = Rng(31);
        let ci = case.x[1];
        let kshape = [case.co, ci / case.group, case.k[0], case.k[1]];
        let kernel = tract_ndarray::ArrayD::from_shape_vec(kshape.to_vec(), rng.vec(kshape.iter().product()))?;
        let bias = tract_ndarray::Array1::from_vec(rng.vec(case.co));
        check_unary_graph(&case.x, &mut rng, |m, x| {
            let k = m.add_const("kernel", kernel.into_tensor())?;
            let bias = m.add_const("bias", bias.into_tensor())?;
            let spec = PoolSpec::new(
                DataFormat::NCHW,
                case.k.iter().copied().collect(),
                case.padding,
                Some(case.dilations.iter().copied().collect()),
                Some(case.strides.iter().copied().collect()),
                ci,
                case.co,
            );
            let conv = Conv { pool_spec: spec, kernel_fmt: KernelFormat::OIHW, group: case.group, q_params: None };
            Ok(m.wire_node("conv", conv, &[x, k, bias])?[0])
        })
    }

    fn plain() -> Case {
        Case { x: [1, 2, 6, 5], co: 3, k: [3, 3], padding: PaddingSpec::Valid, strides: [1, 1], dilations: [1, 1], group: 1 }
    }

    #[test]
    fn valid_and_same_padding() -> TractResult<()> {
        check(plain())?;
        check(Case { padding: PaddingSpec::SameUpper, ..plain() })
    }

    #[test]
    fn asymmetric_padding_and_strides() -> TractResult<()> {
        check(Case { padding: PaddingSpec::Explicit(tvec!(1, 0), tvec!(2, 1)), strides: [2, 2], ..plain() })?;
        check(Case { x: [2, 2, 7, 8], strides: [2, 3], ..plain() })
    }

    #[test]
    fn dilation() -> TractResult<()> {
        check(Case { x: [1, 2, 9, 8], dilations: [2, 2], padding: PaddingSpec::Explicit(tvec!(2, 2), tvec!(2, 2)), ..plain() })
    }

    #[test]
    fn groups_and_depthwise() -> TractResult<()> {
        check(Case { x: [1, 4, 6, 6], co: 6, group: 2, ..plain() })?;
        check(Case { x: [1, 3, 6, 6], co: 3, group: 3, padding: PaddingSpec::SameUpper, ..plain() })
    }
}

#[cfg(test)]
mod chain_tests {
    use super::*;
    use crate::grad::check::{check_unary_graph, Rng};
    use tract_onnx::tract_core::ops::math;
    use tract_onnx::tract_core::ops::nn::DataFormat;

    #[test]
    fn conv_then_relu() -> TractResult<()> {
        let mut rng = Rng(3);
        let kernel = tract_ndarray::ArrayD::from_shape_vec(vec![4, 1, 3, 3], rng.vec(36))?;
        check_unary_graph(&[1, 1, 6, 6], &mut rng, |m, x| {
            let k = m.add_const("kernel", kernel.into_tensor())?;
            let bias = m.add_const("bias", tensor1(&[0.1f32, -0.1, 0.2, 0.0]))?;
            let spec = PoolSpec::new(DataFormat::NCHW, tvec!(3, 3), PaddingSpec::Explicit(tvec!(1, 1), tvec!(1, 1)), None, None, 1, 4);
            let conv = Conv { pool_spec: spec, kernel_fmt: KernelFormat::OIHW, group: 1, q_params: None };
            let c = m.wire_node("conv", conv, &[x, k, bias])?;
            let zero = m.add_const("zero", tensor0(0f32).broadcast_into_rank(4)?)?;
            Ok(m.wire_node("relu", math::max(), &[c[0], zero])?[0])
        })
    }

    #[test]
    fn bias_computed_from_the_image() -> TractResult<()> {
        // what tract's declutter makes of ResNet's residual Add over 1x1 maps: the shortcut
        // ([1,3,1,1] -> [3]) folded into the convolution's bias
        let mut rng = Rng(5);
        let kernel = tract_ndarray::ArrayD::from_shape_vec(vec![3, 3, 3, 3], rng.vec(81))?;
        check_unary_graph(&[1, 3, 1, 1], &mut rng, |m, x| {
            let k = m.add_const("kernel", kernel.into_tensor())?;
            let flat = m.wire_node("flat", AxisOp::Reshape(0, tvec!(1.to_dim(), 3.to_dim(), 1.to_dim(), 1.to_dim()), tvec!(3.to_dim())), &[x])?;
            let squared = m.wire_node("sq", math::square(), &flat)?;
            let spec = PoolSpec::new(DataFormat::NCHW, tvec!(3, 3), PaddingSpec::Explicit(tvec!(1, 1), tvec!(1, 1)), None, None, 3, 3);
            let conv = Conv { pool_spec: spec, kernel_fmt: KernelFormat::OIHW, group: 1, q_params: None };
            Ok(m.wire_node("conv", conv, &[x, k, squared[0]])?[0])
        })
    }
}
