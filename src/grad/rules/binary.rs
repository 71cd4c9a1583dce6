//! Broadcasting binary ops (add, sub, mul, div, max, min, pow): each operand's share, unbroadcast;
//! one WebGPU map kernel per op (comparisons included, whose gradient is mask.rs's); the factor
//! of a bias, a scale, a ReLU.

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::logic::{comp_gt, comp_lt, comp_gte, comp_lte};
use tract_onnx::tract_core::ops::math;

use super::{Backward, Family, Grads, Lipschitz};
use crate::gpu::plan::{refuse, Binary, MapOp, Planner, View};
use crate::grad::ops::ReluBackward;

pub const FAMILY: Family = Family { name: "binary", handles, vjp, lower, lipschitz };

const RULES: &[&str] = &["Add", "Sub", "Mul", "Div", "Max", "Min", "Pow"];

fn handles(node: &TypedNode) -> bool {
    node.op_as::<TypedBinOp>().is_some_and(|op| RULES.contains(&op.0.name()))
}

fn vjp(b: &mut Backward, node: &TypedNode, dy: OutletId, wanted: &[bool]) -> TractResult<Grads> {
    let op = node.op_as::<TypedBinOp>().unwrap();
    let (x, y) = (node.inputs[0], node.inputs[1]);
    let out = OutletId::new(node.id, 0);
    let n = node.name.as_str();
    let (dx, dy_) = match op.0.name() {
        "Add" => (Some(dy), Some(dy)),
        "Sub" => (Some(dy), Some(b.neg(n, dy)?)),
        // d(xy) = y dx + x dy
        "Mul" => (Some(b.mul(n, dy, y)?), Some(b.mul(n, dy, x)?)),
        // d(x/y) = dx / y - (x/y) dy / y
        "Div" => {
            let dx = b.div(n, dy, y)?;
            let q = b.mul(n, dx, out)?;
            (Some(dx), Some(b.neg(n, q)?))
        }
        // ReLU, max(x, 0): one pass reading the output
        "Max" if is_zero(b, y)? && !wanted[1] => {
            (Some(b.wire(n, ReluBackward, &[out, dy])?), None)
        }
        // the larger operand takes the gradient; at a tie the first one does not (relu'(0) = 0)
        "Max" => {
            let mx = b.mask(n, comp_gt(), x, y)?;
            let my = b.mask(n, comp_lte(), x, y)?;
            (Some(b.mul(n, dy, mx)?), Some(b.mul(n, dy, my)?))
        }
        "Min" => {
            let mx = b.mask(n, comp_lt(), x, y)?;
            let my = b.mask(n, comp_gte(), x, y)?;
            (Some(b.mul(n, dy, mx)?), Some(b.mul(n, dy, my)?))
        }
        // d(x^y) = y x^(y-1) dx + x^y ln(x) dy
        "Pow" => {
            let dx = if wanted[0] {
                let one = b.scalar_like(n, 1.0, y)?;
                let y1 = b.sub(n, y, one)?;
                let p = b.wire(n, math::pow(), &[x, y1])?;
                let s = b.mul(n, p, y)?;
                Some(b.mul(n, dy, s)?)
            } else {
                None
            };
            let dy_ = if wanted[1] {
                let ln = b.wire(n, math::ln(), &[x])?;
                let s = b.mul(n, out, ln)?;
                Some(b.mul(n, dy, s)?)
            } else {
                None
            };
            (dx, dy_)
        }
        other => bail!("no gradient rule for binary op {other}"),
    };
    let mut grads = tvec!();
    for (g, (input, want)) in [dx, dy_].into_iter().zip(node.inputs.iter().zip(wanted)) {
        grads.push(match g.filter(|_| *want) {
            Some(g) => {
                let shape = b.shape(*input)?;
                Some(b.unbroadcast(n, g, &shape)?)
            }
            None => None,
        });
    }
    Ok(grads)
}

/// Whether `o` is a constant of zeros.
fn is_zero(b: &Backward, o: OutletId) -> TractResult<bool> {
    let fact = b.fact(o)?;
    Ok(match &fact.konst {
        Some(k) => k.cast_to::<f32>()?.try_as_plain_ram()?.as_slice::<f32>()?.iter().all(|v| *v == 0.0),
        None => false,
    })
}

fn lower(p: &mut Planner, node: &TypedNode, ins: &[View], shape: &[usize]) -> Option<TractResult<View>> {
    if node.op_is::<ReluBackward>() {
        return Some(p.map(MapOp::Binary(Binary::ReluGate), Some(&ins[0]), Some(&ins[1]), shape));
    }
    let op = node.op_as::<TypedBinOp>()?;
    Some(match kernel_of(op.0.name()) {
        Some(k) => p.map(MapOp::Binary(k), Some(&ins[0]), Some(&ins[1]), shape),
        None => Err(refuse(node, None)),
    })
}

fn kernel_of(name: &str) -> Option<Binary> {
    Some(match name {
        "Add" => Binary::Add,
        "Sub" => Binary::Sub,
        "Mul" => Binary::Mul,
        "Div" => Binary::Div,
        "Max" => Binary::Max,
        "Min" => Binary::Min,
        "Pow" => Binary::Pow,
        "Eq" => Binary::Eq,
        "NE" => Binary::Ne,
        "LT" => Binary::Lt,
        "GT" => Binary::Gt,
        "LTE" => Binary::Le,
        "GTE" => Binary::Ge,
        _ => return None,
    })
}

/// A bias add is 1, a scale by constants c is max |c|, a ReLU (max with 0) is 1, a division by
/// constants is 1 / min |c|; an op of two varying operands has no factor of its own.
fn lipschitz(model: &TypedModel, node: &TypedNode) -> Option<Lipschitz> {
    let bin = node.op_as::<TypedBinOp>()?;
    let (slot, k) = constant_operand(model, node)?;
    let (what, factor) = match bin.0.name() {
        "Add" | "Sub" => (None, 1.0),
        "Max" if largest_abs(&k) == Some(0.0) => (Some("ReLU".into()), 1.0),
        "Max" => (Some("max with a constant".into()), 1.0),
        "Min" => (Some("min with a constant".into()), 1.0),
        "Mul" => (Some("scale".into()), largest_abs(&k)?),
        "Div" if slot == 1 => {
            let t = k.cast_to::<f64>().ok()?;
            let smallest = t.to_plain_array_view::<f64>().ok()?.iter().fold(f64::INFINITY, |m, v| m.min(v.abs()));
            (Some(format!("divide by {}", (smallest * 1e4).round() / 1e4)), 1.0 / smallest)
        }
        _ => return None,
    };
    Some(Lipschitz::Factor(what, factor))
}

/// The constant operand of a binary node, if exactly one operand is constant, with its slot.
fn constant_operand(model: &TypedModel, node: &TypedNode) -> Option<(usize, Arc<Tensor>)> {
    let konst: Vec<Option<Arc<Tensor>>> =
        node.inputs.iter().map(|&i| model.outlet_fact(i).ok().and_then(|f| f.konst.clone())).collect();
    match konst.as_slice() {
        [Some(k), None] => Some((0, k.clone())),
        [None, Some(k)] => Some((1, k.clone())),
        _ => None,
    }
}

fn largest_abs(t: &Tensor) -> Option<f64> {
    let t = t.cast_to::<f64>().ok()?;
    let view = t.to_plain_array_view::<f64>().ok()?;
    Some(view.iter().fold(0.0f64, |m, v| m.max(v.abs())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grad::check::{check_graph, check_unary_graph, Rng};
    use tract_onnx::tract_core::ops::binary::BinMiniOp;

    /// x op c and c op x, with c a constant broadcast along some axes, and x op x.
    fn check_op(op: fn() -> Box<dyn BinMiniOp>, domain: fn(f32) -> f32) -> TractResult<()> {
        let mut rng = Rng(11);
        for (shape, cshape) in [(vec![2, 3, 4], vec![1, 3, 1]), (vec![3, 5], vec![3, 5]), (vec![4, 2], vec![1, 1])] {
            // constants sit 0.05 off the input's grid, so max/min never tie within a step
            let c: Vec<f32> = rng.vec(cshape.iter().product()).into_iter().map(|v| domain(v) + 0.05).collect();
            let c = tract_ndarray::ArrayD::from_shape_vec(cshape.clone(), c)?.into_tensor();
            let c2 = c.clone();
            check_graph(&shape, &mut rng, 1e-6, 1e-4, domain, |m, x| {
                let k = m.add_const("c", c)?;
                Ok(m.wire_node("op", TypedBinOp(op(), None), &[x, k])?[0])
            })?;
            check_graph(&shape, &mut rng, 1e-6, 1e-4, domain, |m, x| {
                let k = m.add_const("c", c2)?;
                Ok(m.wire_node("op", TypedBinOp(op(), None), &[k, x])?[0])
            })?;
        }
        // both operands from the input: gradients of the two sides add up
        check_graph(&[3, 4], &mut rng, 1e-6, 1e-4, domain, |m, x| {
            let e = m.wire_node("exp", math::exp(), &[x])?;
            Ok(m.wire_node("op", TypedBinOp(op(), None), &[x, e[0]])?[0])
        })
    }

    fn box_of(op: tract_onnx::tract_core::ops::binary::TypedBinOp) -> Box<dyn BinMiniOp> {
        op.0
    }

    #[test]
    fn add() -> TractResult<()> {
        check_op(|| box_of(math::add()), |v| v)
    }

    #[test]
    fn sub() -> TractResult<()> {
        check_op(|| box_of(math::sub()), |v| v)
    }

    #[test]
    fn mul() -> TractResult<()> {
        check_op(|| box_of(math::mul()), |v| v)
    }

    #[test]
    fn div() -> TractResult<()> {
        // keep denominators away from 0: |v| in [0.5, 1.5]
        check_op(|| box_of(math::div()), |v| v.signum() * (0.5 + v.abs()))
    }

    #[test]
    fn max_and_min() -> TractResult<()> {
        // values on a grid of 0.1 never sit within the 1e-2 step of one another or of a kink
        check_op(|| box_of(math::max()), |v| (v * 10.0).round() / 10.0 + 0.03)?;
        check_op(|| box_of(math::min()), |v| (v * 10.0).round() / 10.0 + 0.03)
    }

    #[test]
    fn pow() -> TractResult<()> {
        check_op(|| box_of(math::pow()), |v| 0.5 + v.abs())
    }

    #[test]
    fn pow_by_a_constant_exponent() -> TractResult<()> {
        // tract declutters x^c with a constant c to an element-wise PowConst
        check_graph(&[3, 4], &mut Rng(8), 1e-6, 1e-4, |v| 0.5 + v.abs(), |m, x| {
            let c = m.add_const("c", tensor2(&[[1.7f32]]))?;
            Ok(m.wire_node("op", math::pow(), &[x, c])?[0])
        })
    }

    #[test]
    fn relu_as_decluttered() -> TractResult<()> {
        check_unary_graph(&[4, 6], &mut Rng(3), |m, x| {
            let zero = m.add_const("zero", tensor2(&[[0f32]]))?;
            Ok(m.wire_node("relu", math::max(), &[x, zero])?[0])
        })?;
        check_unary_graph(&[1, 3, 5, 5], &mut Rng(3), |m, x| {
            let zero = m.add_const("zero", tensor0(0f32).broadcast_into_rank(4)?)?;
            Ok(m.wire_node("relu", math::max(), &[x, zero])?[0])
        })
    }
}
