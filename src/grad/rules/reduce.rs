//! Reductions over axes kept as size 1 (sum, mean as sum times a constant, max, min, mean of
//! squares): their gradients, their WebGPU reduction kernel, a sum's factor √n.

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::logic::comp_eq;
use tract_onnx::tract_core::ops::nn::{Reduce, Reducer};

use super::{Backward, Family, Grads, Lipschitz};
use crate::gpu::plan::{refuse, Planner, Reduction, View};

pub const FAMILY: Family = Family { name: "reduce", handles, vjp, lower, lipschitz };

fn handles(node: &TypedNode) -> bool {
    node.op_as::<Reduce>().is_some_and(|r| {
        matches!(r.reducer, Reducer::Sum | Reducer::Max | Reducer::Min | Reducer::MeanOfSquares)
    })
}

fn vjp(b: &mut Backward, node: &TypedNode, dy: OutletId, _: &[bool]) -> TractResult<Grads> {
    let reduce = node.op_as::<Reduce>().unwrap();
    let n = node.name.as_str();
    let x = node.inputs[0];
    let y = OutletId::new(node.id, 0);
    let shape = b.shape(x)?;
    let spread = b.broadcast(n, dy, &shape)?;
    let dx = match reduce.reducer {
        Reducer::Sum => spread,
        // every input equal to the extremum shares its window's gradient equally
        Reducer::Max | Reducer::Min => {
            let winners = b.mask(n, comp_eq(), x, y)?;
            let count = b.sum_keep(n, winners, &reduce.axes)?;
            let share = b.div(n, winners, count)?;
            b.mul(n, spread, share)?
        }
        // mean(x^2)' = 2 x / count
        Reducer::MeanOfSquares => {
            let count: usize = reduce.axes.iter().map(|&a| shape[a]).product();
            let two_x = b.scale(n, x, 2.0 / count as f32)?;
            b.mul(n, spread, two_x)?
        }
        _ => bail!("no gradient rule for {:?}", reduce.reducer),
    };
    Ok(tvec!(Some(dx)))
}

fn lower(p: &mut Planner, node: &TypedNode, ins: &[View], _: &[usize]) -> Option<TractResult<View>> {
    let reduce = node.op_as::<Reduce>()?;
    let r = match reduce.reducer {
        Reducer::Sum => Reduction::Sum,
        Reducer::Max => Reduction::Max,
        Reducer::Min => Reduction::Min,
        Reducer::Prod => Reduction::Prod,
        Reducer::MeanOfSquares => Reduction::MeanOfSquares,
        _ => return Some(Err(refuse(node, None))),
    };
    Some(Ok(p.reduce(r, &ins[0], &reduce.axes)))
}

/// A sum of n values is √n-Lipschitz (Cauchy-Schwarz, attained by equal values); a global
/// average pool is this sum followed by a scale 1/n.
fn lipschitz(model: &TypedModel, node: &TypedNode) -> Option<Lipschitz> {
    let reduce = node.op_as::<Reduce>()?;
    let shape = model.outlet_fact(node.inputs[0]).ok()?.shape.as_concrete()?.to_vec();
    let n: usize = reduce.axes.iter().map(|&a| shape[a]).product();
    match reduce.reducer {
        Reducer::Sum => Some(Lipschitz::Factor(Some(format!("sum of {n}")), (n as f64).sqrt())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grad::check::{check_graph, check_unary_graph, Rng};

    fn check(axes: &[usize], reducer: Reducer) -> TractResult<()> {
        check_unary_graph(&[2, 3, 4], &mut Rng(17), |m, x| {
            Ok(m.wire_node("reduce", Reduce::new(axes.into(), reducer), &[x])?[0])
        })
    }

    #[test]
    fn sum() -> TractResult<()> {
        check(&[1], Reducer::Sum)?;
        check(&[0, 2], Reducer::Sum)
    }

    #[test]
    fn mean_of_squares() -> TractResult<()> {
        // tract computes it in f32 even for f64 inputs: a step of 1e-3 keeps rounding at 1e-4
        check_graph(&[2, 3, 4], &mut Rng(17), 1e-3, 1e-3, |v| v, |m, x| {
            Ok(m.wire_node("reduce", Reduce::new(tvec!(2), Reducer::MeanOfSquares), &[x])?[0])
        })
    }

    #[test]
    fn max_and_min() -> TractResult<()> {
        let next = std::cell::Cell::new(0usize);
        let distinct = |_: f32| ((next.replace(next.get() + 1) * 7) % 24) as f32 / 24.0;
        check_graph(&[2, 3, 4], &mut Rng(3), 1e-6, 1e-4, distinct, |m, x| {
            Ok(m.wire_node("reduce", Reduce::new(tvec!(2), Reducer::Max), &[x])?[0])
        })?;
        check_graph(&[2, 3, 4], &mut Rng(3), 1e-6, 1e-4, |v| v, |m, x| {
            Ok(m.wire_node("reduce", Reduce::new(tvec!(0, 1), Reducer::Min), &[x])?[0])
        })
    }
}
