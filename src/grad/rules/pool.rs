//! MaxPool: the gradient goes to the input that won each window (indices from tract's MaxPool).

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::array::{ScatterElements, ScatterReduction};
use tract_onnx::tract_core::ops::change_axes::AxisOp;
use tract_onnx::tract_core::ops::cnn::MaxPool;
use tract_onnx::tract_core::ops::nn::DataFormat;

use super::{Backward, Grads};

pub fn handles(node: &TypedNode) -> bool {
    node.op_as::<MaxPool>().is_some_and(|p| p.pool_spec.data_format == DataFormat::NCHW)
}

/// Scatter-adds dy into a zero image at the winners' positions (overlapping windows add up).
pub fn vjp(b: &mut Backward, node: &TypedNode, dy: OutletId) -> TractResult<Grads> {
    let pool = node.op_as::<MaxPool>().unwrap();
    let n = node.name.as_str();
    let x_shape = b.shape(node.inputs[0])?;
    let y_shape = b.shape(dy)?;
    let with_indices = MaxPool { pool_spec: pool.pool_spec.clone(), with_index_outputs: Some(i64::datum_type()) };
    let indices = b.wire_all(n, with_indices, &[node.inputs[0]])?[1];
    let flat = |shape: &[usize]| -> AxisOp {
        let from: TVec<TDim> = shape[2..].iter().map(|d| d.to_dim()).collect();
        AxisOp::Reshape(2, from, tvec!(shape[2..].iter().product::<usize>().to_dim()))
    };
    let indices = b.wire(n, flat(&y_shape), &[indices])?;
    let updates = b.wire(n, flat(&y_shape), &[dy])?;
    let plane: usize = x_shape[2..].iter().product();
    let zeros = b.konst(n, Tensor::zero::<f32>(&[x_shape[0], x_shape[1], plane])?)?;
    let scattered = b.wire(n, ScatterElements::new(2, ScatterReduction::Add), &[zeros, indices, updates])?;
    let dx = b.wire(n, flat(&x_shape).recip(), &[scattered])?;
    Ok(tvec!(Some(dx)))
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
