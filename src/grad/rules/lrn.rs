//! Local response normalisation across channels (ONNX LRN, AlexNet's and GoogLeNet's).

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat, PaddingSpec, PoolSpec};
use tract_onnx::tract_core::ops::math;
use tract_onnx::tract_core::ops::nn::DataFormat;
use tract_onnx_opl::lrn::Lrn;

use super::{Backward, Family, Grads, no_factor, no_lowering};

pub const FAMILY: Family = Family { name: "lrn", handles, vjp, lower: no_lowering, lipschitz: no_factor };

fn handles(node: &TypedNode) -> bool {
    node.op_as::<Lrn>().is_some()
}

/// y_c = x_c d_c^(-b), d_c = bias + a/size sum_{c' in W(c)} x_c'^2, W(c) = [c - (size-1)/2,
/// c + ceil((size-1)/2)] as tract evaluates it. With M[c, c'] = [c' in W(c)]:
/// dx = dy d^(-b) - x (2 a b / size) M^T (dy x d^(-b-1)). The window sums are 1x1 convolutions.
fn vjp(b: &mut Backward, node: &TypedNode, dy: OutletId, _: &[bool]) -> TractResult<Grads> {
    let lrn = node.op_as::<Lrn>().unwrap();
    let n = node.name.as_str();
    let x = node.inputs[0];
    let shape = b.shape(x)?;
    ensure!(shape.len() == 4, "LRN gradients are for NCHW inputs (rank 4), this one has rank {}", shape.len());
    let c = shape[1];
    let (below, above) = ((lrn.size - 1) / 2, (lrn.size - 1).div_ceil(2));
    let window = |t: usize, s: usize| s + below >= t && s <= t + above;
    let m = tract_ndarray::Array4::from_shape_fn((c, c, 1, 1), |(t, s, _, _)| if window(t, s) { 1f32 } else { 0.0 });
    let mt = tract_ndarray::Array4::from_shape_fn((c, c, 1, 1), |(t, s, _, _)| if window(s, t) { 1f32 } else { 0.0 });
    let sq = b.mul(n, x, x)?;
    let sums = channel_mix(b, n, sq, m.into_tensor(), c)?;
    let scaled = b.scale(n, sums, lrn.alpha / lrn.size as f32)?;
    let bias = b.scalar_like(n, lrn.bias, scaled)?;
    let d = b.add(n, scaled, bias)?;
    let t = b.wire(n, math::pow_const(-lrn.beta), &[d])?;
    let first = b.mul(n, dy, t)?;
    let t_over_d = b.div(n, t, d)?;
    let dyx = b.mul(n, dy, x)?;
    let u = b.mul(n, dyx, t_over_d)?;
    let back = channel_mix(b, n, u, mt.into_tensor(), c)?;
    let coef = b.scale(n, back, 2.0 * lrn.alpha * lrn.beta / lrn.size as f32)?;
    let second = b.mul(n, x, coef)?;
    Ok(tvec!(Some(b.sub(n, first, second)?)))
}

/// out[:, t] = sum_s kernel[t, s] in[:, s]: a 1x1 convolution without bias.
fn channel_mix(b: &mut Backward, n: &str, input: OutletId, kernel: Tensor, c: usize) -> TractResult<OutletId> {
    let k = b.konst(n, kernel)?;
    let zero = b.konst(n, tract_ndarray::Array1::<f32>::zeros(c).into_tensor())?;
    let spec = PoolSpec::new(DataFormat::NCHW, tvec!(1, 1), PaddingSpec::Valid, None, None, c, c);
    let conv = Conv { pool_spec: spec, kernel_fmt: KernelFormat::OIHW, group: 1, q_params: None };
    b.wire(n, conv, &[input, k, zero])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grad::check::{check_graph, Rng};

    #[test]
    fn lrn_odd_and_even_windows() -> TractResult<()> {
        // AlexNet's parameters (size 5), and an even window that tract centres unevenly
        for (size, bias) in [(5, 2.0), (2, 1.0), (3, 0.5)] {
            check_graph(&[1, 6, 3, 2], &mut Rng(29), 1e-6, 1e-4, |v| v * 2.0, |m, x| {
                let op = Lrn { alpha: 0.3, beta: 0.75, bias, size };
                Ok(m.wire_node("lrn", op, &[x])?[0])
            })?;
        }
        Ok(())
    }
}
