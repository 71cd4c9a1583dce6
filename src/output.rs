//! What a classifier's output is (logits, probabilities, log-probabilities) and where its logits are.
//!
//! Every objective is computed on logits: for a graph that ends in a Softmax the logits are the
//! Softmax's input, so cross-entropy is exactly -log p_target and the probabilities shown are the
//! model's own. An output blindspot cannot read as one distribution over classes is refused.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_core::ops::nn::{Softmax, SoftmaxKind};

use crate::error::{chain, Error, Result};

/// How the graph's class-score output relates to the logits blindspot works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// Raw scores: the output is the logits.
    Logits,
    /// A final Softmax: the logits are its input.
    Probabilities,
    /// A final LogSoftmax (or ln of a Softmax): the logits are the Softmax's input.
    LogProbabilities,
    /// Non-negative values summing to 1 made by ops other than a Softmax: logits = ln(output).
    ProbabilitiesByValue,
}

impl OutputKind {
    /// The word the CLI and the page print.
    pub fn name(self) -> &'static str {
        match self {
            OutputKind::Logits => "logits",
            OutputKind::Probabilities => "probabilities",
            OutputKind::LogProbabilities => "log-probabilities",
            OutputKind::ProbabilitiesByValue => "probabilities (by value)",
        }
    }
}

/// What the chosen graph output is: its name, its kind, the op that turned logits into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The graph output used (its ONNX name).
    pub name: String,
    pub kind: OutputKind,
    /// The node that turns logits into the output (the Softmax), when there is one.
    pub through: Option<String>,
}

impl Output {
    /// In words, for the page and the CLI: `logits "logits"`, `probabilities "probs" (Softmax "softmax")`.
    pub fn describe(&self) -> String {
        match &self.through {
            Some(node) => format!("{} \"{}\" (Softmax \"{node}\")", self.kind.name(), self.name),
            None => format!("{} \"{}\"", self.kind.name(), self.name),
        }
    }
}

fn model_err(e: TractError) -> Error {
    Error::Model(chain(&e))
}

/// The name a graph output carries: its ONNX tensor name, or its node's name.
pub fn outlet_name(model: &TypedModel, outlet: OutletId) -> String {
    model
        .outlet_label(outlet)
        .map(str::to_string)
        .unwrap_or_else(|| model.node(outlet.node).name.clone())
}

fn per_image(fact: &TypedFact, batch: usize) -> Option<usize> {
    let dims = fact.shape.as_concrete()?;
    let total: usize = dims.iter().product();
    (total > 0 && total.is_multiple_of(batch)).then_some(total / batch)
}

/// Picks the float class-score output among the graph's outputs: the only float32 output with
/// more than one value per image. Several candidates are refused, naming them all.
pub fn choose(model: &TypedModel, batch: usize) -> Result<OutletId> {
    let outputs = model.output_outlets().map_err(model_err)?.to_vec();
    let float = |o: &OutletId| model.outlet_fact(*o).is_ok_and(|f| f.datum_type == f32::datum_type());
    if outputs.len() == 1 && float(&outputs[0]) {
        return Ok(outputs[0]);
    }
    let describe = |o: &OutletId| -> String {
        let fact = model.outlet_fact(*o).map(|f| format!("{:?} {:?}", f.datum_type, f.shape)).unwrap_or_default();
        format!("\"{}\" ({fact})", outlet_name(model, *o))
    };
    let candidates: Vec<OutletId> = outputs
        .iter()
        .copied()
        .filter(|o| {
            float(o) && model.outlet_fact(*o).is_ok_and(|f| per_image(f, batch).is_some_and(|k| k > 1))
        })
        .collect();
    match candidates.as_slice() {
        [one] => Ok(*one),
        [] => Err(Error::Model(format!(
            "this graph has no class-score output: none of its outputs {} is a float32 vector of scores per image; \
             re-export it so that one output is float32 scores [N, classes] (a float64 model: cast to float32; \
             skl2onnx: options={{'zipmap': False}})",
            outputs.iter().map(describe).collect::<Vec<_>>().join(", ")
        ))),
        many => Err(Error::Model(format!(
            "this graph has {} float outputs that could be class scores: {}; blindspot needs one: re-export the classifier with only its class-score output",
            many.len(),
            many.iter().map(describe).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Ops that only move values around: walked through on the way back from the output.
fn is_layout(model: &TypedModel, node: &TypedNode) -> bool {
    let name = node.op.name();
    let layout = matches!(name.as_ref(), "AddAxis" | "RmAxis" | "Reshape" | "IntoShape" | "Identity" | "FiniteReshape");
    let data_inputs = node.inputs.iter().filter(|i| model.outlet_fact(**i).is_ok_and(|f| f.konst.is_none())).count();
    layout && data_inputs == 1
}

fn element_wise(node: &TypedNode, name: &str) -> bool {
    node.op_as::<ElementWiseOp>().is_some_and(|op| op.0.name() == name)
}

/// Reads what `output` is by walking back through layout ops to the op that made it; also
/// returns where its logits are (the output itself, or the input of its final Softmax).
pub fn read(model: &TypedModel, output: OutletId, batch: usize) -> Result<(Output, OutletId)> {
    let name = outlet_name(model, output);
    let classes = per_image(model.outlet_fact(output).map_err(model_err)?, batch).unwrap_or(0);
    let mut at = output;
    loop {
        let node = model.node(at.node);
        if is_layout(model, node) {
            at = node.inputs[0];
            continue;
        }
        let softmax_over_classes = |node: &TypedNode| -> Option<SoftmaxKind> {
            let softmax = node.op_as::<Softmax>()?;
            let fact = model.outlet_fact(node.inputs[0]).ok()?;
            let dims = fact.shape.as_concrete()?;
            let over: usize = softmax.axes.iter().map(|&a| dims[a]).product();
            (over == classes).then_some(softmax.kind)
        };
        if let Some(kind) = softmax_over_classes(node) {
            let kind = match kind {
                SoftmaxKind::Softmax => OutputKind::Probabilities,
                SoftmaxKind::LogSoftmax => OutputKind::LogProbabilities,
            };
            return Ok((Output { name, kind, through: Some(node.name.clone()) }, node.inputs[0]));
        }
        if element_wise(node, "Ln") {
            let inner = model.node(node.inputs[0].node);
            if softmax_over_classes(inner) == Some(SoftmaxKind::Softmax) {
                let through = Some(inner.name.clone());
                return Ok((Output { name, kind: OutputKind::LogProbabilities, through }, inner.inputs[0]));
            }
        }
        if node.op_as::<Softmax>().is_some() {
            return Err(Error::Model(format!(
                "the output \"{name}\" comes from a Softmax (node \"{}\") over other axes than its {classes} class scores; blindspot reads one distribution over classes per image: re-export with the Softmax over the class axis, or without it",
                node.name
            )));
        }
        if element_wise(node, "Sigmoid") || node.op.name() == "Silu" {
            return Err(Error::Model(format!(
                "the output \"{name}\" is a Sigmoid (node \"{}\"): independent per-class scores (multi-label), not one distribution over classes. blindspot attacks single-label classifiers: re-export without the final Sigmoid to use its input as logits",
                node.name
            )));
        }
        return Ok((Output { name, kind: OutputKind::Logits, through: None }, output));
    }
}

/// Whether every row of `rows` looks like a probability distribution (non-negative, sum 1).
pub fn looks_like_probabilities(rows: &[Vec<f32>]) -> bool {
    rows.iter().all(|row| {
        let sum: f64 = row.iter().map(|&p| p as f64).sum();
        row.len() > 1 && row.iter().all(|&p| (0.0..=1.0).contains(&p)) && (sum - 1.0).abs() < 1e-4
    })
}

/// Wires ln(max(p, 1e-30)) after `p`: logits whose softmax is p wherever p sums to 1.
pub fn wire_log(model: &mut TypedModel, p: OutletId) -> TractResult<OutletId> {
    use tract_onnx::tract_core::ops::math;
    let rank = model.outlet_fact(p)?.rank();
    let floor = model.add_const("output.floor", tensor0(1e-30f32).broadcast_into_rank(rank)?)?;
    let kept = model.wire_node("output.floored", math::max(), &[p, floor])?[0];
    Ok(model.wire_node("output.ln", math::ln(), &[kept])?[0])
}
