//! Element-wise ops: sigmoid, tanh, exp, ln, sqrt, recip, abs, neg, square, erf, x^c.

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_core::ops::math;

use super::{Backward, Grads};

const RULES: &[&str] =
    &["Sigmoid", "Tanh", "Exp", "Ln", "Sqrt", "Recip", "Abs", "Neg", "Square", "Erf", "PowConst"];

pub fn handles(node: &TypedNode) -> bool {
    node.op_as::<ElementWiseOp>().is_some_and(|op| RULES.contains(&op.0.name().as_ref()))
}

pub fn vjp(b: &mut Backward, node: &TypedNode, dy: OutletId) -> TractResult<Grads> {
    let op = node.op_as::<ElementWiseOp>().unwrap();
    let x = node.inputs[0];
    let y = OutletId::new(node.id, 0);
    let n = node.name.as_str();
    let dx = match op.0.name().as_ref() {
        // s' = s (1 - s)
        "Sigmoid" => {
            let one = b.scalar_like(n, 1.0, y)?;
            let c = b.sub(n, one, y)?;
            let d = b.mul(n, y, c)?;
            b.mul(n, dy, d)?
        }
        // tanh' = 1 - tanh^2
        "Tanh" => {
            let one = b.scalar_like(n, 1.0, y)?;
            let sq = b.mul(n, y, y)?;
            let d = b.sub(n, one, sq)?;
            b.mul(n, dy, d)?
        }
        "Exp" => b.mul(n, dy, y)?,
        "Ln" => b.div(n, dy, x)?,
        // sqrt' = 1 / (2 sqrt)
        "Sqrt" => {
            let two_y = b.scale(n, y, 2.0)?;
            b.div(n, dy, two_y)?
        }
        // (1/x)' = -1/x^2 = -y^2
        "Recip" => {
            let sq = b.mul(n, y, y)?;
            let d = b.mul(n, dy, sq)?;
            b.neg(n, d)?
        }
        "Abs" => {
            let sign = b.wire(n, math::sign(), &[x])?;
            b.mul(n, dy, sign)?
        }
        "Neg" => b.neg(n, dy)?,
        "Square" => {
            let two_x = b.scale(n, x, 2.0)?;
            b.mul(n, dy, two_x)?
        }
        // erf' = 2/sqrt(pi) exp(-x^2)
        "Erf" => {
            let sq = b.mul(n, x, x)?;
            let neg = b.neg(n, sq)?;
            let e = b.wire(n, math::exp(), &[neg])?;
            let d = b.scale(n, e, std::f32::consts::FRAC_2_SQRT_PI)?;
            b.mul(n, dy, d)?
        }
        // (x^c)' = c x^(c-1)
        "PowConst" => {
            let c = op.0.downcast_ref::<math::PowConst>().context("PowConst")?.exponent;
            let p = b.wire(n, math::pow_const(c - 1.0), &[x])?;
            let d = b.scale(n, p, c)?;
            b.mul(n, dy, d)?
        }
        other => bail!("no gradient rule for element-wise op {other}"),
    };
    Ok(tvec!(Some(dx)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grad::check::{check_graph, Rng};
    use tract_onnx::tract_core::ops::nn::sigmoid;

    fn check(op: ElementWiseOp, domain: fn(f32) -> f32) -> TractResult<()> {
        check_graph(&[3, 7], &mut Rng(5), 1e-6, 1e-4, domain, |m, x| Ok(m.wire_node("op", op, &[x])?[0]))
    }

    #[test]
    fn erf() -> TractResult<()> {
        // tract evaluates erf in f32 only: f32 rounding (6e-8) over a step of 1e-3 costs 3e-5
        check_graph(&[3, 7], &mut Rng(5), 1e-3, 1e-3, |v| v * 2.0, |m, x| Ok(m.wire_node("op", math::erf(), &[x])?[0]))
    }

    #[test]
    fn smooth_ops() -> TractResult<()> {
        let id = |v: f32| v * 2.0;
        check(sigmoid(), id)?;
        check(math::tanh(), id)?;
        check(math::exp(), id)?;
        check(math::neg(), id)?;
        check(math::square(), id)
    }

    #[test]
    fn ops_with_a_domain() -> TractResult<()> {
        let positive = |v: f32| 0.5 + v.abs();
        check(math::ln(), positive)?;
        check(math::sqrt(), positive)?;
        check(math::recip(), positive)?;
        check(math::abs(), |v| v.signum() * (0.1 + v.abs()))
    }
}
