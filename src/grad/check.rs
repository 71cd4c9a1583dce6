//! Gradient checking: reverse mode (f32) against central finite differences of the objective in f64.

use tract_onnx::tract_core::internal::*;

use super::{GradientModel, Objective};

pub use crate::rng::Rng;

/// The worst disagreement found by [`finite_differences`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Disagreement {
    pub coordinate: usize,
    pub reverse: f64,
    pub numeric: f64,
    /// |reverse - numeric| / max(1, |numeric|)
    pub error: f64,
    /// Coordinates compared.
    pub checked: usize,
}

/// The objective of a gradient graph evaluated in f64: the whole graph translated by tract's
/// float-precision translator, so finite differences can take steps of 1e-6 and seldom cross a
/// ReLU or max kink.
pub struct F64Objective {
    plan: std::sync::Arc<TypedRunnableModel>,
    input_shape: Vec<usize>,
    parameter_shape: Vec<usize>,
    weight_shapes: Vec<Vec<usize>>,
}

impl F64Objective {
    pub fn new(model: &GradientModel) -> TractResult<F64Objective> {
        use tract_onnx::tract_core::floats::FloatPrecisionTranslator;
        use tract_onnx::tract_core::transform::ModelTransform;
        use tract_onnx::tract_core::model::translator::Translate;
        let mut graph = ExpandForF64.translate_model(model.graph())?;
        // Erf, GELU, SiLU, hard swish and Resize have no f64 kernel and no closed form: they stay in f32 (casts around
        // them), so a check through them needs a larger step.
        let f64_capable = |node: &TypedNode| !matches!(node.op.name().as_ref(), "Erf" | "GeluExact" | "GeluApproximate" | "Silu" | "HardSwish" | "Resize");
        FloatPrecisionTranslator::with_filter(f32::datum_type(), f64::datum_type(), f64_capable)
            .transform(&mut graph)?;
        Ok(F64Objective {
            plan: graph.into_runnable()?,
            input_shape: model.input_shape().to_vec(),
            parameter_shape: model.parameter_shape().to_vec(),
            weight_shapes: model.weight_shapes().to_vec(),
        })
    }

    pub fn at(&self, x: &[f64], parameter: &[f32]) -> TractResult<f64> {
        self.at_weights(x, &[], parameter)
    }

    /// The objective at `x` with the model's weights `weights` (a graph whose weights are inputs).
    pub fn at_weights(&self, x: &[f64], weights: &[Vec<f64>], parameter: &[f32]) -> TractResult<f64> {
        ensure!(weights.len() == self.weight_shapes.len(), "{} weights for {}", weights.len(), self.weight_shapes.len());
        let p: Vec<f64> = parameter.iter().map(|&v| v as f64).collect();
        let mut inputs: TVec<TValue> = tvec!(Tensor::from_shape(&self.input_shape, x)?.into());
        for (shape, w) in self.weight_shapes.iter().zip(weights) {
            inputs.push(Tensor::from_shape(shape, w)?.into());
        }
        inputs.push(Tensor::from_shape(&self.parameter_shape, &p)?.into());
        let out = self.plan.run(inputs)?;
        Ok(out[0].cast_to::<f64>()?.to_plain_array_view::<f64>()?.iter().next().copied().unwrap_or(f64::NAN))
    }

    /// The objective and its reverse-mode gradient, both computed in f64.
    pub fn with_gradient(&self, x: &[f64], parameter: &[f32]) -> TractResult<(f64, Vec<f64>)> {
        let p: Vec<f64> = parameter.iter().map(|&v| v as f64).collect();
        let out = self.plan.run(tvec!(
            Tensor::from_shape(&self.input_shape, x)?.into(),
            Tensor::from_shape(&self.parameter_shape, &p)?.into()
        ))?;
        let value = out[0].cast_to::<f64>()?.to_plain_array_view::<f64>()?.iter().next().copied().unwrap_or(f64::NAN);
        Ok((value, out[2].cast_to::<f64>()?.to_plain_array_view::<f64>()?.iter().copied().collect()))
    }
}

/// Rewrites the element-wise ops tract runs in f32 only as compositions it runs in f64:
/// sigmoid(x) = 1 / (1 + exp(-x)), x^c = exp(c ln x), leaky_relu(x) = max(x, alpha x) (alpha < 1).
#[derive(Debug)]
struct ExpandForF64;

impl tract_onnx::tract_core::model::translator::Translate<TypedFact, Box<dyn TypedOp>, TypedFact, Box<dyn TypedOp>>
    for ExpandForF64
{
    fn translate_node(
        &self,
        _source: &TypedModel,
        node: &TypedNode,
        target: &mut TypedModel,
        mapping: &HashMap<OutletId, OutletId>,
    ) -> TractResult<TVec<OutletId>> {
        use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
        use tract_onnx::tract_core::ops::math;
        let inputs: TVec<OutletId> = node.inputs.iter().map(|i| mapping[i]).collect();
        let name = &node.name;
        let Some(op) = node.op_as::<ElementWiseOp>() else {
            return target.wire_node(name, node.op.clone(), &inputs);
        };
        let rank = target.outlet_fact(inputs[0])?.rank();
        match op.0.name().as_ref() {
            "Sigmoid" => {
                let neg = target.wire_node(format!("{name}.neg"), math::neg(), &inputs)?;
                let exp = target.wire_node(format!("{name}.exp"), math::exp(), &neg)?;
                let one = target.add_const(format!("{name}.one"), tensor0(1f32).broadcast_into_rank(rank)?)?;
                let den = target.wire_node(format!("{name}.den"), math::add(), &[exp[0], one])?;
                target.wire_node(name, math::recip(), &den)
            }
            "PowConst" => {
                let c = op.0.downcast_ref::<math::PowConst>().context("PowConst")?.exponent;
                let ln = target.wire_node(format!("{name}.ln"), math::ln(), &inputs)?;
                let k = target.add_const(format!("{name}.c"), tensor0(c).broadcast_into_rank(rank)?)?;
                let scaled = target.wire_node(format!("{name}.scaled"), math::mul(), &[ln[0], k])?;
                target.wire_node(name, math::exp(), &scaled)
            }
            "LeakyRelu" => {
                let alpha = op.0.downcast_ref::<tract_onnx::tract_core::ops::nn::LeakyRelu>().context("LeakyRelu")?.alpha;
                ensure!(alpha <= 1.0, "leaky ReLU with alpha > 1");
                let k = target.add_const(format!("{name}.alpha"), tensor0(alpha).broadcast_into_rank(rank)?)?;
                let scaled = target.wire_node(format!("{name}.scaled"), math::mul(), &[inputs[0], k])?;
                target.wire_node(name, math::max(), &[inputs[0], scaled[0]])
            }
            _ => target.wire_node(name, node.op.clone(), &inputs),
        }
    }
}

/// Compares the f32 gradient at `x` with central differences of the f64 objective, step `h`, on
/// `coordinates` (all when None).
pub fn finite_differences(
    model: &GradientModel,
    x: &[f32],
    parameter: &[f32],
    h: f64,
    coordinates: Option<&[usize]>,
) -> TractResult<Disagreement> {
    let gradient = model.evaluate(x, parameter).map_err(|e| anyhow!("{e}"))?.gradient;
    let f = F64Objective::new(model)?;
    let all: Vec<usize> = (0..x.len()).collect();
    let mut worst = Disagreement { coordinate: 0, reverse: 0.0, numeric: 0.0, error: 0.0, checked: 0 };
    let mut probe: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    for &i in coordinates.unwrap_or(&all) {
        probe[i] = x[i] as f64 + h;
        let up = f.at(&probe, parameter)?;
        probe[i] = x[i] as f64 - h;
        let down = f.at(&probe, parameter)?;
        probe[i] = x[i] as f64;
        let numeric = (up - down) / (2.0 * h);
        let reverse = gradient[i] as f64;
        let error = (reverse - numeric).abs() / numeric.abs().max(1.0);
        worst.checked += 1;
        if error >= worst.error {
            worst = Disagreement { coordinate: i, reverse, numeric, error, ..worst };
        }
    }
    Ok(worst)
}

/// Directional derivatives along `directions` (each as long as `x`): the f32 reverse-mode
/// gradient dotted with the direction, beside the central difference of the f64 objective along
/// it with step `h`, as `(reverse, numeric)` pairs. For graphs too big to check coordinate by
/// coordinate: one pair costs two f64 evaluations and tests every input at once.
pub fn directional_derivatives(
    model: &GradientModel,
    x: &[f32],
    parameter: &[f32],
    h: f64,
    directions: &[Vec<f32>],
) -> TractResult<Vec<(f64, f64)>> {
    let gradient = model.evaluate(x, parameter).map_err(|e| anyhow!("{e}"))?.gradient;
    let f = F64Objective::new(model)?;
    directions
        .iter()
        .map(|d| {
            ensure!(d.len() == x.len(), "a direction of {} values for an input of {}", d.len(), x.len());
            let step = |sign: f64| -> Vec<f64> { x.iter().zip(d).map(|(&v, &e)| v as f64 + sign * h * e as f64).collect() };
            let numeric = (f.at(&step(1.0), parameter)? - f.at(&step(-1.0), parameter)?) / (2.0 * h);
            let reverse = gradient.iter().zip(d).map(|(&g, &e)| g as f64 * e as f64).sum();
            Ok((reverse, numeric))
        })
        .collect()
}

/// Builds `x -> build(x)` over an input of `shape`, takes the gradient of <y, v> for a random v,
/// and checks every coordinate at a random x against central differences.
pub fn check_unary_graph(
    shape: &[usize],
    rng: &mut Rng,
    build: impl FnOnce(&mut TypedModel, OutletId) -> TractResult<OutletId>,
) -> TractResult<()> {
    check_graph(shape, rng, 1e-6, 1e-4, |x| x, build)
}

/// As [`check_unary_graph`], with step `h`, tolerance `tol` and a map applied to the random input
/// (to keep it inside an op's domain or away from its kinks).
pub fn check_graph(
    shape: &[usize],
    rng: &mut Rng,
    h: f64,
    tol: f64,
    domain: impl Fn(f32) -> f32,
    build: impl FnOnce(&mut TypedModel, OutletId) -> TractResult<OutletId>,
) -> TractResult<()> {
    let mut model = TypedModel::default();
    let x = model.add_source("x", f32::fact(shape))?;
    let y = build(&mut model, x)?;
    model.select_output_outlets(&[y])?;
    model.set_outlet_label(y, "checked".into())?;
    let model = model.into_decluttered()?;
    let objective = Objective::Projection { tensor: "checked".into() };
    let grad = GradientModel::build(&model, &objective).map_err(|e| anyhow!("{e}"))?;
    let n: usize = shape.iter().product();
    let input: Vec<f32> = rng.vec(n).into_iter().map(&domain).collect();
    let v = rng.vec(grad.parameter_shape().iter().product());
    let worst = finite_differences(&grad, &input, &v, h, None)?;
    ensure!(worst.error <= tol, "gradient disagrees with finite differences: {worst:?}");
    Ok(())
}
