//! Reverse-mode gradients over tract: a TypedModel that returns the objective, the logits,
//! d objective / d input and, for a forward graph whose weights are inputs too
//! ([`crate::model::Trainable`]), d objective / d each weight; built from the decluttered forward
//! graph and then optimised by tract.

pub mod check;
pub mod objective;
pub mod ops;
pub mod rules;
mod wire;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tract_onnx::tract_core::internal::*;

pub use objective::Objective;
pub use wire::Backward;

use crate::error::{chain, Error, Result};

/// The gradient graph of one classifier and objective, ready to run.
#[derive(Debug, Clone)]
pub struct GradientModel {
    /// The graph before tract's optimiser: forward, objective and backward nodes.
    graph: TypedModel,
    plan: Arc<TypedRunnableModel>,
    input_shape: Vec<usize>,
    parameter_shape: Vec<usize>,
    /// The shapes of the forward graph's other inputs (its weights), in order.
    weight_shapes: Vec<Vec<usize>>,
}

/// One evaluation: the objective, the class scores and the objective's gradient at the input.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub objective: f32,
    pub logits: Vec<f32>,
    pub gradient: Vec<f32>,
}

impl GradientModel {
    /// Builds the gradient graph of `forward` (a decluttered model whose first input is the image,
    /// any others its weights, and whose first output holds the logits) for `objective`. Refuses,
    /// naming op and node, any op without a rule.
    pub fn build(forward: &TypedModel, objective: &Objective) -> Result<GradientModel> {
        GradientModel::build_with(forward, objective, true)
    }

    /// [`build`](Self::build) for training: d objective / d each weight only. The input gradient
    /// (a third of a dense layer's backward work) is left out: its output holds zeros.
    pub fn build_for_weights(forward: &TypedModel, objective: &Objective) -> Result<GradientModel> {
        GradientModel::build_with(forward, objective, false)
    }

    fn build_with(forward: &TypedModel, objective: &Objective, input_gradient: bool) -> Result<GradientModel> {
        let graph = build_graph(forward, objective, input_gradient)?;
        let inputs = graph.input_outlets().map_err(model_err)?.to_vec();
        let input_shape = concrete_shape(&graph, inputs[0])?;
        let parameter_shape = concrete_shape(&graph, *inputs.last().unwrap_or(&inputs[0]))?;
        let weight_shapes =
            inputs[1..inputs.len() - 1].iter().map(|&o| concrete_shape(&graph, o)).collect::<Result<Vec<_>>>()?;
        let plan = graph
            .clone()
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| Error::Model(format!("optimising the gradient graph: {}", chain(&e))))?;
        Ok(GradientModel { graph, plan, input_shape, parameter_shape, weight_shapes })
    }

    /// The unoptimised gradient graph (forward, objective and backward nodes).
    pub fn graph(&self) -> &TypedModel {
        &self.graph
    }

    /// Evaluates at `input` (the model's whole input tensor) with the objective's parameter
    /// (a one-hot target for `ce`/`margin`, the direction v for a projection).
    pub fn evaluate(&self, input: &[f32], parameter: &[f32]) -> Result<Evaluation> {
        if !self.weight_shapes.is_empty() {
            return Err(Error::Input(format!(
                "this gradient graph takes the model's {} weights as inputs: evaluate it with them (evaluate_weights)",
                self.weight_shapes.len()
            )));
        }
        Ok(self.evaluate_weights(input, &[], parameter)?.0)
    }

    /// Evaluates at `input` with the model's weights `weights` (in the order of
    /// [`crate::model::Trainable::weights`]) and the objective's parameter: the evaluation, and
    /// d objective / d each weight.
    pub fn evaluate_weights(&self, input: &[f32], weights: &[&[f32]], parameter: &[f32]) -> Result<(Evaluation, Vec<Vec<f32>>)> {
        if weights.len() != self.weight_shapes.len() {
            return Err(Error::Input(format!("the model has {} weights, not {}", self.weight_shapes.len(), weights.len())));
        }
        let mut inputs: TVec<TValue> = tvec!(tensor(&self.input_shape, input, "input")?.into());
        for (k, (shape, values)) in self.weight_shapes.iter().zip(weights).enumerate() {
            inputs.push(tensor(shape, values, &format!("weight {k}"))?.into());
        }
        inputs.push(tensor(&self.parameter_shape, parameter, "objective parameter")?.into());
        let out = self.plan.run(inputs).map_err(|e| crate::error::run_failed(&e))?;
        let flat = |i: usize| -> Result<Vec<f32>> {
            Ok(out[i]
                .to_plain_array_view::<f32>()
                .map_err(|e| Error::Run(chain(&e)))?
                .iter()
                .copied()
                .collect())
        };
        let evaluation = Evaluation { objective: flat(0)?[0], logits: flat(1)?, gradient: flat(2)? };
        refuse_non_finite("class scores", &evaluation.logits)?;
        refuse_non_finite("objective", &[evaluation.objective])?;
        refuse_non_finite("gradient", &evaluation.gradient)?;
        let weight_gradients = (0..self.weight_shapes.len()).map(|k| flat(3 + k)).collect::<Result<Vec<_>>>()?;
        for g in &weight_gradients {
            refuse_non_finite("weight gradient", g)?;
        }
        Ok((evaluation, weight_gradients))
    }

    /// The shapes of the weights the graph takes as inputs (none for a [`crate::Classifier`]'s).
    pub fn weight_shapes(&self) -> &[Vec<usize>] {
        &self.weight_shapes
    }

    /// The one-hot parameter of `ce` and `margin` for class `target`.
    pub fn one_hot(&self, target: usize) -> Result<Vec<f32>> {
        let len: usize = self.parameter_shape.iter().product();
        if target >= len {
            return Err(Error::Input(format!("target {target} is not a class of this model: pick one from 0 to {}", len - 1)));
        }
        let mut t = vec![0.0; len];
        t[target] = 1.0;
        Ok(t)
    }

    /// The model's input shape.
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// The objective's parameter shape (the logits' shape for `ce`/`margin`).
    pub fn parameter_shape(&self) -> &[usize] {
        &self.parameter_shape
    }
}

/// A NaN or infinity the graph computed from a finite input (a Softmax over a row masked to
/// -inf, an overflow) is an error, never a number handed on to a plot or an optimiser.
pub(crate) fn refuse_non_finite(what: &str, values: &[f32]) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(at) => Err(Error::Run(format!(
            "the model computed {} in its {what} (value {at} of {}) from a finite input",
            values[at],
            values.len()
        ))),
    }
}

fn model_err(e: TractError) -> Error {
    Error::Model(chain(&e))
}

fn tensor(shape: &[usize], data: &[f32], what: &str) -> Result<Tensor> {
    let expected: usize = shape.iter().product();
    if data.len() != expected {
        return Err(Error::Input(format!(
            "the {what} has {} values; shape {shape:?} takes {expected}",
            data.len()
        )));
    }
    if data.iter().any(|v| !v.is_finite()) {
        return Err(Error::Input(format!("the {what} holds a non-finite value")));
    }
    Tensor::from_shape(shape, data).map_err(|e| Error::Input(chain(&e)))
}

fn concrete_shape(model: &TypedModel, outlet: OutletId) -> Result<Vec<usize>> {
    let fact = model.outlet_fact(outlet).map_err(model_err)?;
    fact.shape
        .as_concrete()
        .map(|s| s.to_vec())
        .ok_or_else(|| Error::Model(format!("the shape {:?} is not fixed", fact.shape)))
}

/// Nodes on a path from any of `from` to any of `to`: only these need a backward pass.
fn on_path(model: &TypedModel, from: &[usize], to: &[usize]) -> HashSet<usize> {
    let mut below: HashSet<usize> = from.iter().copied().collect();
    for n in model.eval_order().unwrap_or_default() {
        if model.node(n).inputs.iter().any(|i| below.contains(&i.node)) {
            below.insert(n);
        }
    }
    let mut above: HashSet<usize> = to.iter().copied().collect();
    let mut stack: Vec<usize> = to.to_vec();
    while let Some(n) = stack.pop() {
        for i in &model.node(n).inputs {
            if above.insert(i.node) {
                stack.push(i.node);
            }
        }
    }
    below.intersection(&above).copied().collect()
}

/// Forward graph + objective + one reverse loop over the nodes, gradients keyed by outlet.
fn build_graph(forward: &TypedModel, objective: &Objective, input_gradient: bool) -> Result<TypedModel> {
    let sources = forward.input_outlets().map_err(model_err)?.to_vec();
    let source_nodes: Vec<usize> = sources.iter().map(|o| o.node).collect();
    // the sources whose gradients are wanted: without the input's, the backward pass stops at
    // the first layers' weights
    let differentiated: Vec<usize> = if input_gradient { source_nodes.clone() } else { source_nodes[1..].to_vec() };
    let logits = forward.output_outlets().map_err(model_err)?[0];
    let mut b = Backward::new(forward.clone());
    let seeded = objective.wire(&mut b, logits).map_err(|e| match e.downcast::<Error>() {
        Ok(e) => e,
        Err(e) => Error::Model(format!("wiring the objective: {}", chain(&e))),
    })?;
    let path = on_path(forward, &differentiated, &[seeded.seed_at.node]);
    let order = forward.eval_order().map_err(model_err)?;
    let missing: Vec<(String, String)> = order
        .iter()
        .filter(|n| path.contains(n) && !source_nodes.contains(n))
        .map(|&n| forward.node(n))
        .filter(|node| !rules::has_rule(node))
        .map(|node| (node.op.name().to_string(), node.name.clone()))
        .collect();
    if !missing.is_empty() {
        return Err(Error::NoGradient(missing));
    }
    let mut grads: HashMap<OutletId, OutletId> = HashMap::from([(seeded.seed_at, seeded.seed)]);
    for &n in order.iter().rev() {
        if !path.contains(&n) || source_nodes.contains(&n) {
            continue;
        }
        let node = forward.node(n);
        let dys: TVec<Option<OutletId>> =
            (0..node.outputs.len()).map(|slot| grads.get(&OutletId::new(n, slot)).copied()).collect();
        if dys.iter().all(Option::is_none) {
            continue;
        }
        let wanted: TVec<bool> = node.inputs.iter().map(|i| path.contains(&i.node)).collect();
        let dxs = rules::vjp(&mut b, node, &dys, &wanted).map_err(|e| {
            Error::Model(format!("gradient of {} (node \"{}\"): {}", node.op.name(), node.name, chain(&e)))
        })?;
        for ((inlet, dx), want) in node.inputs.iter().zip(dxs).zip(&wanted) {
            let Some(dx) = dx.filter(|_| *want) else { continue };
            let total = match grads.get(inlet) {
                Some(&previous) => b.add(&format!("{}.acc", node.name), previous, dx),
                None => Ok(dx),
            }
            .map_err(model_err)?;
            grads.insert(*inlet, total);
        }
    }
    let mut outputs = vec![seeded.objective, logits];
    for (k, &source) in sources.iter().enumerate() {
        let name = if k == 0 { "grad.input.zero".to_string() } else { format!("grad.weight{k}.zero") };
        outputs.push(match grads.get(&source) {
            Some(&g) => g,
            None => b.zeros_like(&name, source).map_err(model_err)?,
        });
    }
    let mut model = b.into_model();
    model.select_output_outlets(&outputs).map_err(model_err)?;
    model.declutter().map_err(|e| Error::Model(format!("simplifying the gradient graph: {}", chain(&e))))?;
    Ok(model)
}
