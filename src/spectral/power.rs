//! A linear layer run alone, forward (A x) and adjoint (A^T y) in f64, and power iteration on A^T A.

use std::sync::Arc;

use tract_onnx::tract_core::floats::FloatPrecisionTranslator;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::transform::ModelTransform;

use crate::error::{chain, Error, Result};
use crate::grad::{GradientModel, Objective};

/// Stop when the norm estimate changes by less than this, relatively, from one step to the next.
pub const TOLERANCE: f64 = 1e-9;
/// At most this many steps (each one A x and one A^T y).
pub const CAP: usize = 5000;

/// One layer of a graph as an operator: the node alone, wired to a source of its input's shape and
/// its constant operands, bias zeroed. A^T comes from blindspot's gradient engine: the gradient of
/// <A x, y> with respect to x is A^T y, so every padding, stride, dilation and group is the one
/// tract runs. The graph is translated to f64, so power iteration converges far below f32 noise.
pub struct LayerOperator {
    plan: Arc<TypedRunnableModel>,
    input_shape: Vec<usize>,
    output_shape: Vec<usize>,
}

/// What power iteration found: the largest singular value and the steps it took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerIteration {
    pub norm: f64,
    pub iterations: usize,
    pub converged: bool,
}

fn model_err(e: TractError) -> Error {
    Error::Model(chain(&e))
}

impl LayerOperator {
    /// The operator of node `id` of `model` (a linear layer: see [`super::linear_layer`]).
    pub fn new(model: &TypedModel, id: usize) -> Result<LayerOperator> {
        let layer = super::linear_layer(model, id)
            .ok_or_else(|| Error::Model(format!("node \"{}\" is not a linear layer", model.node(id).name)))?;
        let node = model.node(id);
        let mut alone = TypedModel::default();
        let mut inputs = tvec!();
        for (slot, &outlet) in node.inputs.iter().enumerate() {
            let fact = model.outlet_fact(outlet).map_err(model_err)?;
            let wired = match &fact.konst {
                // a convolution's bias: the layer's linear part has none
                Some(k) if slot == 2 => alone.add_const(format!("zero.{slot}"), Tensor::zero_dt(k.datum_type(), k.shape()).map_err(model_err)?),
                Some(k) => alone.add_const(format!("const.{slot}"), k.clone().into_tensor()),
                None => alone.add_source("x", f32::fact(&layer.input_shape)),
            }
            .map_err(model_err)?;
            inputs.push(wired);
        }
        let out = alone.wire_node(&node.name, node.op.clone(), &inputs).map_err(model_err)?[0];
        alone.select_output_outlets(&[out]).map_err(model_err)?;
        alone.set_outlet_label(out, "layer".into()).map_err(model_err)?;
        let alone = alone.into_decluttered().map_err(model_err)?;
        let gradient = GradientModel::build(&alone, &Objective::Projection { tensor: "layer".into() })?;
        let mut graph = gradient.graph().clone();
        FloatPrecisionTranslator::new(f32::datum_type(), f64::datum_type())
            .transform(&mut graph)
            .map_err(model_err)?;
        let plan = graph.into_optimized().and_then(|m| m.into_runnable()).map_err(model_err)?;
        Ok(LayerOperator { plan, input_shape: layer.input_shape, output_shape: layer.output_shape })
    }

    pub fn input_len(&self) -> usize {
        self.input_shape.iter().product()
    }

    pub fn output_len(&self) -> usize {
        self.output_shape.iter().product()
    }

    /// (A x, A^T y) in one run.
    fn run(&self, x: &[f64], y: &[f64]) -> Result<(Vec<f64>, Vec<f64>)> {
        let x = Tensor::from_shape(&self.input_shape, x).map_err(|e| Error::Input(chain(&e)))?;
        let y = Tensor::from_shape(&self.output_shape, y).map_err(|e| Error::Input(chain(&e)))?;
        let out = self.plan.run(tvec!(x.into(), y.into())).map_err(|e| crate::error::run_failed(&e))?;
        let flat = |t: &TValue| -> Result<Vec<f64>> {
            let t = t.cast_to::<f64>().map_err(|e| Error::Run(chain(&e)))?;
            Ok(t.to_plain_array_view::<f64>().map_err(|e| Error::Run(chain(&e)))?.iter().copied().collect())
        };
        Ok((flat(&out[1])?, flat(&out[2])?))
    }

    /// A x.
    pub fn apply(&self, x: &[f64]) -> Result<Vec<f64>> {
        Ok(self.run(x, &vec![0.0; self.output_len()])?.0)
    }

    /// A^T y.
    pub fn adjoint(&self, y: &[f64]) -> Result<Vec<f64>> {
        Ok(self.run(&vec![0.0; self.input_len()], y)?.1)
    }

    /// ||A||, by [`power_iteration`] from a start vector seeded by `seed`.
    pub fn norm(&self, seed: u64) -> Result<PowerIteration> {
        power_iteration(self.input_len(), seed, TOLERANCE, CAP, |x| self.apply(x), |y| self.adjoint(y))
    }
}

fn length(v: &[f64]) -> f64 {
    v.iter().map(|a| a * a).sum::<f64>().sqrt()
}

/// The largest singular value of A (x of length `n`), by power iteration on A^T A: x <- A^T A x,
/// normalised, the estimate ||A x|| for unit x, until it changes by less than `tolerance`
/// (relative) or after `cap` steps. The start vector is Gaussian, seeded.
pub fn power_iteration(
    n: usize,
    seed: u64,
    tolerance: f64,
    cap: usize,
    apply: impl Fn(&[f64]) -> Result<Vec<f64>>,
    adjoint: impl Fn(&[f64]) -> Result<Vec<f64>>,
) -> Result<PowerIteration> {
    let mut rng = crate::rng::Rng(seed);
    let mut x: Vec<f64> = (0..n).map(|_| rng.gaussian() as f64).collect();
    let start = length(&x);
    x.iter_mut().for_each(|v| *v /= start);
    let mut previous = 0.0;
    for step in 1..=cap {
        let y = apply(&x)?;
        let norm = length(&y);
        if norm == 0.0 || (step > 1 && (norm - previous).abs() <= tolerance * norm) {
            return Ok(PowerIteration { norm, iterations: step, converged: true });
        }
        let z = adjoint(&y)?;
        let size = length(&z);
        if size == 0.0 {
            return Ok(PowerIteration { norm, iterations: step, converged: true });
        }
        x = z.into_iter().map(|v| v / size).collect();
        previous = norm;
        if step == cap {
            return Ok(PowerIteration { norm, iterations: step, converged: false });
        }
    }
    Ok(PowerIteration { norm: previous, iterations: cap, converged: false })
}
