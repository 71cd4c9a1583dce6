//! The paper's Table 5 for any chain-shaped model: per-layer upper Lipschitz bounds and their product.

use std::collections::HashSet;

use tract_onnx::tract_core::internal::*;

use super::{fourier_norm, linear_layer, Kind, LayerOperator};
use crate::error::{chain, Error, Result};
use crate::grad::rules::{self, Lipschitz};
use crate::Classifier;

/// The seed of every power iteration's start vector (the CLI and the page agree to the last digit).
const SEED: u64 = 2013;

/// One row: a linear layer and what follows it up to the next one, or the input's preprocessing
/// (serialised as the page reads it: `then` as `{ what, factor }` objects).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Row {
    /// The node's name in the graph.
    pub node: String,
    pub op: String,
    /// Kernel and geometry ("3x3x1x16, stride 1, pad 1") or "784 → 100".
    pub shape: String,
    /// ||W|| by power iteration on the layer (None for the preprocessing row).
    pub power: Option<f64>,
    pub iterations: Option<usize>,
    /// ||W|| by the Fourier formula (convolutions; for strided ones the stride-1 bound).
    pub fourier: Option<f64>,
    pub strided: bool,
    /// What follows (nonlinearity, pooling, scaling), each with its factor.
    #[serde(serialize_with = "then_objects")]
    pub then: Vec<(String, f64)>,
    /// The product of the factors of `then`.
    pub factor: f64,
    /// ||W|| (power iteration) times `factor`: this row's upper Lipschitz bound.
    pub bound: f64,
}

/// Table 5 for one model: rows in graph order and their product, or why there is none.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Table {
    pub rows: Vec<Row>,
    /// The product of the rows' bounds: a Lipschitz constant of input -> logits (L2 norms).
    pub product: Option<f64>,
    /// Why there is no product (not a chain, an op with no known factor), naming the node.
    pub unavailable: Option<String>,
    /// Ops at the output left out of the bound (a softmax after the logits).
    pub excluded: Vec<String>,
}

fn then_objects<S: serde::Serializer>(then: &[(String, f64)], s: S) -> std::result::Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    #[derive(serde::Serialize)]
    struct Then<'a> {
        what: &'a str,
        factor: f64,
    }
    let mut seq = s.serialize_seq(Some(then.len()))?;
    for (what, factor) in then {
        seq.serialize_element(&Then { what, factor: *factor })?;
    }
    seq.end()
}

fn model_err(e: TractError) -> Error {
    Error::Model(chain(&e))
}

/// Table 5 for a loaded classifier.
pub fn lipschitz(model: &Classifier) -> Result<Table> {
    lipschitz_graph(model.graph(), |_, _, _| {})
}

/// Table 5 for a decluttered single-input graph whose first output holds the logits;
/// `progress(done, total, node)` is called before each linear layer is measured.
pub fn lipschitz_graph(model: &TypedModel, mut progress: impl FnMut(usize, usize, &str)) -> Result<Table> {
    let input = model.input_outlets().map_err(model_err)?[0];
    let output = model.output_outlets().map_err(model_err)?[0];
    let path = on_path(model, input.node, output.node);
    let order: Vec<usize> = model
        .eval_order()
        .map_err(model_err)?
        .into_iter()
        .filter(|n| path.contains(n) && *n != input.node)
        .collect();
    let total = order.iter().filter(|&&n| linear_layer(model, n).is_some()).count();
    let mut table = Table { rows: vec![], product: None, unavailable: None, excluded: vec![] };
    for &id in &order {
        let node = model.node(id);
        let branches = node.inputs.iter().filter(|i| path.contains(&i.node)).count();
        if branches > 1 && table.unavailable.is_none() {
            table.unavailable = Some(format!(
                "node \"{}\" ({}) combines {branches} branches, so the graph is not a chain and the product of per-layer bounds does not bound it",
                node.name,
                node.op.name()
            ));
        }
        // each op's factor is its family's (grad::rules); a linear layer's is measured here
        let lipschitz = rules::lipschitz(model, node);
        let layer = match lipschitz {
            Some(Lipschitz::OperatorNorm) => linear_layer(model, id),
            _ => None,
        };
        if let Some(layer) = layer {
            progress(table.rows.iter().filter(|r| r.power.is_some()).count(), total, &layer.node);
            let power = LayerOperator::new(model, id)?.norm(SEED)?;
            let fourier = match &layer.kind {
                Kind::Conv { kernel: Some(k), .. } => Some(fourier_norm(k)),
                _ => None,
            };
            table.rows.push(Row {
                node: layer.node.clone(),
                op: layer.op(),
                shape: layer.describe(),
                power: Some(power.norm),
                iterations: Some(power.iterations),
                fourier,
                strided: layer.strided(),
                then: vec![],
                factor: 1.0,
                bound: power.norm,
            });
            continue;
        }
        if branches > 1 {
            continue;
        }
        match lipschitz {
            Some(Lipschitz::Factor(what, factor)) => {
                if table.rows.is_empty() {
                    table.rows.push(Row {
                        node: node.name.clone(),
                        op: "input preprocessing".into(),
                        shape: model.outlet_fact(input).ok().and_then(|f| f.shape.as_concrete().map(|s| s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x"))).unwrap_or_default(),
                        power: None,
                        iterations: None,
                        fourier: None,
                        strided: false,
                        then: vec![],
                        factor: 1.0,
                        bound: 1.0,
                    });
                }
                let row = table.rows.last_mut().unwrap();
                row.factor *= factor;
                row.bound *= factor;
                if let Some(what) = what {
                    row.then.push((what, factor));
                }
            }
            None if id == output.node && node.op.name() == "Softmax" => {
                table.excluded.push(format!("Softmax (node \"{}\") after the logits", node.name));
            }
            // no factor known, or a product whose operands both vary (not a linear layer)
            None | Some(Lipschitz::OperatorNorm) => {
                table.unavailable.get_or_insert_with(|| {
                    format!("no known Lipschitz factor for {} (node \"{}\")", node.op.name(), node.name)
                });
            }
        }
    }
    progress(total, total, "");
    if table.unavailable.is_none() {
        table.product = Some(table.rows.iter().map(|r| r.bound).product());
    }
    Ok(table)
}

/// Nodes on a path from `from` to `to`.
fn on_path(model: &TypedModel, from: usize, to: usize) -> HashSet<usize> {
    let mut below = HashSet::from([from]);
    for n in model.eval_order().unwrap_or_default() {
        if model.node(n).inputs.iter().any(|i| below.contains(&i.node)) {
            below.insert(n);
        }
    }
    let mut above = HashSet::from([to]);
    let mut stack = vec![to];
    while let Some(n) = stack.pop() {
        for i in &model.node(n).inputs {
            if above.insert(i.node) {
                stack.push(i.node);
            }
        }
    }
    below.intersection(&above).copied().collect()
}

/// `v` with `digits` significant digits (trailing zeros dropped).
pub fn significant(v: f64, digits: usize) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let magnitude = v.abs().log10().floor() as i32;
    let decimals = (digits as i32 - 1 - magnitude).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

impl Table {
    /// The table as Markdown, then one line on what the product bounds.
    pub fn markdown(&self) -> String {
        let num = |v: Option<f64>| v.map(|v| significant(v, 7)).unwrap_or_else(|| "–".into());
        let mut out = String::from(
            "| layer | op | shape | ‖W‖ power iteration | iterations | ‖W‖ Fourier | then | factor | upper bound |\n|---|---|---|---:|---:|---:|---|---:|---:|\n",
        );
        for r in &self.rows {
            let fourier = match (r.fourier, r.strided) {
                (Some(f), true) => format!("{} (stride-1 bound)", significant(f, 7)),
                (f, _) => num(f),
            };
            let then: Vec<String> = r.then.iter().map(|(what, f)| format!("{what} ({})", significant(*f, 7))).collect();
            out += &format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                r.node,
                r.op,
                r.shape,
                num(r.power),
                r.iterations.map(|i| i.to_string()).unwrap_or_else(|| "–".into()),
                fourier,
                if then.is_empty() { "–".into() } else { then.join(", ") },
                significant(r.factor, 7),
                significant(r.bound, 7),
            );
        }
        match (self.product, &self.unavailable) {
            (Some(p), _) => {
                out += &format!("| **product** | | | | | | | | **{}** |\n\n", significant(p, 7));
                out += "The product bounds ‖logits(x + r) − logits(x)‖ ≤ L ‖r‖ for every input x and perturbation r (Euclidean norms, input to logits)";
                if !self.excluded.is_empty() {
                    out += &format!("; left out: {}", self.excluded.join(", "));
                }
                out += ".\n";
            }
            (None, Some(why)) => out += &format!("\nNo product bound: {why}.\n"),
            (None, None) => out += "\nNo product bound.\n",
        }
        out
    }
}
