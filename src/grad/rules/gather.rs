//! Gather by constant indices (ViT's class token, attention's q/k/v split): the gradient is dy
//! scattered back to the gathered positions, an EinSum with a constant one-hot matrix.

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::array::Gather;
use tract_onnx::tract_core::ops::einsum::EinSum;

use super::{Backward, Family, Grads, no_factor, no_lowering};

pub const FAMILY: Family = Family { name: "gather", handles, vjp, lower: no_lowering, lipschitz: no_factor };

fn handles(node: &TypedNode) -> bool {
    node.op_as::<Gather>().is_some()
}

/// For `y = gather(x, idx, axis)`: dx[.., j, ..] = sum over i of [idx_i = j] dy[.., i, ..], with
/// the one-hot M[i, j] built once from the constant indices (negative ones counted from the end).
fn vjp(b: &mut Backward, node: &TypedNode, dy: OutletId, wanted: &[bool]) -> TractResult<Grads> {
    let gather = node.op_as::<Gather>().unwrap();
    ensure!(!wanted[1], "the indices depend on the image: blindspot differentiates Gather by constant indices only");
    let indices = b
        .fact(node.inputs[1])?
        .konst
        .clone()
        .context("the indices are not a constant: blindspot differentiates Gather by constant indices only")?;
    let indices = indices.cast_to::<i64>()?;
    let indices = indices.to_plain_array_view::<i64>()?;
    let x_shape = b.shape(node.inputs[0])?;
    let axis = gather.axis;
    let len = x_shape[axis];
    let mut one_hot = vec![0f32; indices.len() * len];
    for (i, &at) in indices.iter().enumerate() {
        let j = if at < 0 { at + len as i64 } else { at };
        ensure!((0..len as i64).contains(&j), "index {at} is outside an axis of {len}");
        one_hot[i * len + j as usize] = 1.0;
    }
    let mut m_shape: Vec<usize> = indices.shape().to_vec();
    m_shape.push(len);
    let m = b.konst(&node.name, Tensor::from_shape(&m_shape, &one_hot)?)?;
    // axes: x's own letters, the index axes' letters, and `j` for the gathered axis
    let letters: Vec<char> = "abcdefghiklmnopqrstuvwxyz".chars().collect();
    let rank = x_shape.len();
    let q = indices.ndim();
    ensure!(rank + q <= letters.len(), "too many axes");
    let own: Vec<char> = letters[..rank].to_vec();
    let index_axes: String = letters[rank..rank + q].iter().collect();
    let pre: String = own[..axis].iter().collect();
    let post: String = own[axis + 1..].iter().collect();
    let j = own[axis];
    let expr = format!("{pre}{index_axes}{post},{index_axes}{j}->{pre}{j}{post}");
    let einsum = EinSum::new(expr.parse()?, f32::datum_type());
    let dx = b.wire(&node.name, einsum, &[dy, m])?;
    Ok(tvec!(Some(dx), None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grad::check::{check_unary_graph, Rng};

    fn check(x: &[usize], axis: usize, indices: Tensor) -> TractResult<()> {
        check_unary_graph(x, &mut Rng(8), |m, x| {
            let idx = m.add_const("indices", indices.clone())?;
            Ok(m.wire_node("gather", Gather::new(axis), &[x, idx])?[0])
        })
    }

    #[test]
    fn scalar_vector_and_repeated_indices() -> TractResult<()> {
        // the class token: x[:, 0]
        check(&[2, 5, 3], 1, tensor0(0i64))?;
        // q, k, v out of one tensor, the last counted from the end
        check(&[3, 2, 4], 0, tensor0(-1i64))?;
        // a row gathered twice gets both gradients
        check(&[4, 3], 0, tensor1(&[2i64, 0, 2]))?;
        check(&[2, 6], 1, tensor2(&[[1i64, 5], [5, 3]]))
    }
}
