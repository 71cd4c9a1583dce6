//! Element-wise ops: sigmoid, tanh, exp, ln, sqrt, rsqrt, recip, abs, neg, square, erf, x^c, leaky ReLU, GELU,
//! SiLU, hard swish, the trigonometric and hyperbolic functions, and the step functions: their
//! derivatives, the ones with a WebGPU map kernel, the factors of sigmoid, tanh, neg and abs.

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_core::ops::logic::{comp_gt, comp_lt};
use tract_onnx::tract_core::ops::{math, nn};

use super::{Backward, Family, Grads, Lipschitz};
use crate::gpu::plan::{refuse, MapOp, Planner, Unary, View};

pub const FAMILY: Family = Family { name: "unary", handles, vjp, lower, lipschitz };

const RULES: &[&str] = &[
    "Sigmoid", "Tanh", "Exp", "Ln", "Sqrt", "Recip", "Abs", "Neg", "Square", "Erf", "PowConst", "LeakyRelu",
    "GeluExact", "GeluApproximate", "Silu", "Rsqrt", "HardSwish", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan",
    "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Floor", "Ceil", "Round", "RoundHalfToEven", "Sign",
];

fn handles(node: &TypedNode) -> bool {
    node.op_as::<ElementWiseOp>().is_some_and(|op| RULES.contains(&op.0.name().as_ref()))
}

fn vjp(b: &mut Backward, node: &TypedNode, dy: OutletId, _: &[bool]) -> TractResult<Grads> {
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
        // rsqrt' = -1/2 x^(-3/2) = -y^3 / 2
        "Rsqrt" => {
            let sq = b.mul(n, y, y)?;
            let cube = b.mul(n, sq, y)?;
            let d = b.scale(n, cube, -0.5)?;
            b.mul(n, dy, d)?
        }
        // silu = x s(x): silu' = s (1 + x (1 - s))
        "Silu" => {
            let s = b.wire(n, nn::sigmoid(), &[x])?;
            let one = b.scalar_like(n, 1.0, x)?;
            let c = b.sub(n, one, s)?;
            let xc = b.mul(n, x, c)?;
            let inner = b.add(n, one, xc)?;
            let d = b.mul(n, s, inner)?;
            b.mul(n, dy, d)?
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
        // slope 1 above 0, alpha at and below
        "LeakyRelu" => {
            let alpha = op.0.downcast_ref::<nn::LeakyRelu>().context("LeakyRelu")?.alpha;
            let zero = b.scalar_like(n, 0.0, x)?;
            let above = b.mask(n, comp_gt(), x, zero)?;
            let slope = b.scale(n, above, 1.0 - alpha)?;
            let alpha = b.scalar_like(n, alpha, x)?;
            let slope = b.add(n, slope, alpha)?;
            b.mul(n, dy, slope)?
        }
        // gelu(x) = x Phi(x): gelu' = Phi(x) + x phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2
        "GeluExact" => {
            let scaled = b.scale(n, x, std::f32::consts::FRAC_1_SQRT_2)?;
            let erf = b.wire(n, math::erf(), &[scaled])?;
            let one = b.scalar_like(n, 1.0, x)?;
            let cdf2 = b.add(n, erf, one)?;
            let cdf = b.scale(n, cdf2, 0.5)?;
            let sq = b.mul(n, x, x)?;
            let half_sq = b.scale(n, sq, -0.5)?;
            let e = b.wire(n, math::exp(), &[half_sq])?;
            let pdf = b.scale(n, e, 0.398_942_3)?; // 1 / sqrt(2 pi)
            let x_pdf = b.mul(n, x, pdf)?;
            let d = b.add(n, cdf, x_pdf)?;
            b.mul(n, dy, d)?
        }
        // gelu(x) = x (1 + tanh(u)) / 2, u = k (x + a x^p):
        // gelu' = (1 + t) / 2 + x (1 - t^2) k (1 + p a x^(p-1)) / 2
        "GeluApproximate" => {
            let fast = op.0.downcast_ref::<nn::gelu_approximate::GeluApproximate>().context("Gelu")?.fast_impl;
            let p = if fast { 2.0 } else { 3.0 };
            let k = (2.0 / std::f32::consts::PI).sqrt();
            let xp = b.wire(n, math::pow_const(p), &[x])?;
            let axp = b.scale(n, xp, 0.044715)?;
            let inner = b.add(n, x, axp)?;
            let u = b.scale(n, inner, k)?;
            let t = b.wire(n, math::tanh(), &[u])?;
            let one = b.scalar_like(n, 1.0, x)?;
            let first = b.add(n, one, t)?;
            let first = b.scale(n, first, 0.5)?;
            let t2 = b.mul(n, t, t)?;
            let sech2 = b.sub(n, one, t2)?;
            let xp1 = b.wire(n, math::pow_const(p - 1.0), &[x])?;
            let du = b.scale(n, xp1, p * 0.044715)?;
            let du = b.add(n, one, du)?;
            let du = b.scale(n, du, k * 0.5)?;
            let second = b.mul(n, sech2, du)?;
            let second = b.mul(n, second, x)?;
            let d = b.add(n, first, second)?;
            b.mul(n, dy, d)?
        }
        // hard swish = x clamp(x/6 + 1/2, 0, 1) (MobileNetV3): slope x/3 + 1/2 inside the ramp,
        // 1 above it, 0 below
        "HardSwish" => {
            let sixth = b.scale(n, x, 1.0 / 6.0)?;
            let half = b.scalar_like(n, 0.5, x)?;
            let t = b.add(n, sixth, half)?;
            let zero = b.scalar_like(n, 0.0, x)?;
            let one = b.scalar_like(n, 1.0, x)?;
            let above = b.mask(n, comp_gt(), t, zero)?;
            let below = b.mask(n, comp_lt(), t, one)?;
            let inside = b.mul(n, above, below)?;
            let third = b.scale(n, x, 1.0 / 3.0)?;
            let ramp = b.add(n, third, half)?;
            let ramp = b.mul(n, inside, ramp)?;
            let top = b.sub(n, one, below)?;
            let d = b.add(n, ramp, top)?;
            b.mul(n, dy, d)?
        }
        // sin' = cos, sinh' = cosh, cosh' = sinh; cos' = -sin, tan' = 1 + tan^2
        "Sin" | "Sinh" | "Cosh" => {
            let derivative = match op.0.name().as_ref() {
                "Sin" => math::cos(),
                "Sinh" => math::cosh(),
                _ => math::sinh(),
            };
            let d = b.wire(n, derivative, &[x])?;
            b.mul(n, dy, d)?
        }
        "Cos" => {
            let s = b.wire(n, math::sin(), &[x])?;
            let d = b.mul(n, dy, s)?;
            b.neg(n, d)?
        }
        "Tan" => {
            let one = b.scalar_like(n, 1.0, y)?;
            let sq = b.mul(n, y, y)?;
            let d = b.add(n, one, sq)?;
            b.mul(n, dy, d)?
        }
        // asin' = 1 / sqrt(1 - x^2) = -acos'; asinh' = 1 / sqrt(x^2 + 1); acosh' = 1 / sqrt(x^2 - 1)
        "Asin" | "Acos" | "Asinh" | "Acosh" => {
            let sq = b.mul(n, x, x)?;
            let one = b.scalar_like(n, 1.0, x)?;
            let inner = match op.0.name().as_ref() {
                "Asin" | "Acos" => b.sub(n, one, sq)?,
                "Asinh" => b.add(n, sq, one)?,
                _ => b.sub(n, sq, one)?,
            };
            let root = b.wire(n, math::sqrt(), &[inner])?;
            let d = b.div(n, dy, root)?;
            if op.0.name() == "Acos" {
                b.neg(n, d)?
            } else {
                d
            }
        }
        // atan' = 1 / (1 + x^2), atanh' = 1 / (1 - x^2)
        "Atan" | "Atanh" => {
            let sq = b.mul(n, x, x)?;
            let one = b.scalar_like(n, 1.0, x)?;
            let inner = if op.0.name() == "Atan" { b.add(n, one, sq)? } else { b.sub(n, one, sq)? };
            b.div(n, dy, inner)?
        }
        // steps: constant between their jumps, so no gradient flows (an attack through a
        // quantiser sees none, which is the truth about it)
        "Floor" | "Ceil" | "Round" | "RoundHalfToEven" | "Sign" => return Ok(tvec!(None)),
        other => bail!("no gradient rule for element-wise op {other}"),
    };
    Ok(tvec!(Some(dx)))
}

fn lower(p: &mut Planner, node: &TypedNode, ins: &[View], shape: &[usize]) -> Option<TractResult<View>> {
    let ew = node.op_as::<ElementWiseOp>()?;
    let Some(u) = kernel_of(ew) else { return Some(Err(refuse(node, None))) };
    if ew.1.is_some_and(|dt| dt != f32::datum_type()) {
        return Some(Err(refuse(node, Some("a non-f32 output".into()))));
    }
    Some(p.map(MapOp::Unary(u), Some(&ins[0]), None, shape))
}

fn kernel_of(op: &ElementWiseOp) -> Option<Unary> {
    Some(match op.0.name().as_ref() {
        "Neg" => Unary::Neg,
        "Abs" => Unary::Abs,
        "Sign" => Unary::Sign,
        "Exp" => Unary::Exp,
        "Ln" => Unary::Ln,
        "Sqrt" => Unary::Sqrt,
        "Rsqrt" => Unary::Rsqrt,
        "Recip" => Unary::Recip,
        "Square" => Unary::Square,
        "Sigmoid" => Unary::Sigmoid,
        "Tanh" => Unary::Tanh,
        "Erf" => Unary::Erf,
        "Sin" => Unary::Sin,
        "Cos" => Unary::Cos,
        "PowConst" => Unary::PowConst(op.0.downcast_ref::<math::PowConst>()?.exponent),
        "LeakyRelu" => Unary::LeakyRelu(op.0.downcast_ref::<nn::LeakyRelu>()?.alpha),
        _ => return None,
    })
}

/// The largest slope: sigmoid's is 1/4, tanh's, neg's and abs's 1.
fn lipschitz(_: &TypedModel, node: &TypedNode) -> Option<Lipschitz> {
    let op = node.op_as::<ElementWiseOp>()?;
    let name = op.0.name();
    let factor = match name.as_ref() {
        "Sigmoid" => 0.25,
        "Tanh" | "Neg" | "Abs" => 1.0,
        _ => return None,
    };
    Some(Lipschitz::Factor(Some(name.to_lowercase()), factor))
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
    fn leaky_relu_and_gelu() -> TractResult<()> {
        // a grid keeps leaky ReLU's inputs off its kink at 0
        check(nn::leaky_relu(0.1), |v| (v * 10.0).round() / 5.0 + 0.05)?;
        check_graph(&[3, 7], &mut Rng(5), 1e-3, 1e-3, |v| v * 2.0, |m, x| {
            Ok(m.wire_node("op", nn::gelu_exact::gelu_exact(), &[x])?[0])
        })?;
        for fast in [false, true] {
            check_graph(&[3, 7], &mut Rng(5), 1e-3, 1e-3, |v| v * 2.0, |m, x| {
                Ok(m.wire_node("op", nn::gelu_approximate::gelu_approximate(fast), &[x])?[0])
            })?;
        }
        Ok(())
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
    fn silu() -> TractResult<()> {
        // no f64 kernel: checked in f32 with a larger step, as erf
        check_graph(&[3, 7], &mut Rng(5), 1e-3, 1e-3, |v| v * 2.0, |m, x| Ok(m.wire_node("op", nn::silu::silu(), &[x])?[0]))
    }

    #[test]
    fn trigonometric_and_hyperbolic() -> TractResult<()> {
        check(math::sin(), |v| v * 2.0)?;
        check(math::cos(), |v| v * 2.0)?;
        check(math::tan(), |v| v * 0.5)?;
        check(math::sinh(), |v| v)?;
        check(math::cosh(), |v| v)?;
        check(math::asinh(), |v| v * 2.0)?;
        check(math::atan(), |v| v * 2.0)?;
        // the inverse functions inside their domains
        let inside = |v: f32| (v * 0.3).clamp(-0.9, 0.9);
        check(math::asin(), inside)?;
        check(math::acos(), inside)?;
        check(math::atanh(), inside)?;
        check(math::acosh(), |v: f32| 1.2 + v.abs())
    }

    #[test]
    fn hard_swish() -> TractResult<()> {
        // no f64 kernel either; inputs over the ramp (-3, 3) and both flat sides
        check_graph(&[4, 9], &mut Rng(6), 1e-3, 1e-3, |v| v * 2.5, |m, x| Ok(m.wire_node("op", nn::hard_swish(), &[x])?[0]))
    }

    #[test]
    fn ops_with_a_domain() -> TractResult<()> {
        let positive = |v: f32| 0.5 + v.abs();
        check(math::ln(), positive)?;
        check(math::sqrt(), positive)?;
        check(math::recip(), positive)?;
        check(math::rsqrt(), positive)?;
        check(math::abs(), |v| v.signum() * (0.1 + v.abs()))
    }
}
