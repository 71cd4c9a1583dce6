//! Rewrites of an ONNX graph that tract 0.23.9 would read otherwise than ONNX does, made before
//! tract parses it, and the checks on the typed graph that the rewrites were sound.

use tract_onnx::pb;
use tract_onnx::prelude::*;

use crate::error::{Error, Result};

/// A Pad in wrap mode rewritten as slices and concatenations: per padded axis, the Concat node's
/// name and the lengths it adds before and after. Checked on the typed graph ([`check_wraps`]).
pub(crate) struct Wrap {
    node: String,
    concats: Vec<(String, usize, i64, i64)>,
}

/// Applies every rewrite; `input_rank` is the rank of the input shape given, if any.
pub(crate) fn mend(proto: &mut pb::ModelProto, input_rank: Option<usize>) -> Result<Vec<Wrap>> {
    let opset = proto.opset_import.iter().find(|o| o.domain.is_empty() || o.domain == "ai.onnx").map_or(0, |o| o.version);
    let Some(graph) = proto.graph.as_mut() else { return Ok(vec![]) };
    distinct_names(graph);
    prelu_6(graph, opset, input_rank)?;
    wrap_pads(graph)
}

/// ONNX keeps node names and tensor names apart; tract names its nodes after both (an
/// initializer or an input becomes a node of its tensor's name), so a node named like a weight,
/// an input or an earlier node stops the analysis ("Duplicate node name"). Such a node gets the
/// first free name of `name_1`, `name_2`, ...; every other name stays as the file has it.
fn distinct_names(graph: &mut pb::GraphProto) {
    use std::collections::HashSet;
    let mut taken: HashSet<String> =
        graph.initializer.iter().map(|t| t.name.clone()).chain(graph.input.iter().map(|i| i.name.clone())).collect();
    for node in graph.node.iter_mut().filter(|n| !n.name.is_empty()) {
        if !taken.contains(&node.name) {
            taken.insert(node.name.clone());
            continue;
        }
        let name = (1..).map(|k| format!("{}_{k}", node.name)).find(|c| !taken.contains(c)).unwrap();
        taken.insert(name.clone());
        node.name = name;
    }
}

/// PRelu before opset 7 applies a 1-D slope per channel (axis 1); tract reads every opset with
/// numpy broadcasting, against the last axis, which gives other numbers (or none) wherever the
/// data has more than 2 axes. Such a slope is reshaped to [C, 1, ...] where the file (or the
/// given input shape) says the data's rank, and refused by node where it does not.
fn prelu_6(graph: &mut pb::GraphProto, opset: i64, input_rank: Option<usize>) -> Result<()> {
    if opset >= 7 || !graph.node.iter().any(|n| n.op_type == "PRelu") {
        return Ok(());
    }
    let rank_of = |v: &pb::ValueInfoProto| match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(pb::type_proto::Value::TensorType(t)) => t.shape.as_ref().map(|s| s.dim.len()),
        None => None,
    };
    let initializers: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut ranks: std::collections::HashMap<String, usize> = graph
        .value_info
        .iter()
        .chain(graph.input.iter().filter(|i| !initializers.contains(&i.name.as_str())))
        .filter_map(|v| Some((v.name.clone(), rank_of(v)?)))
        .collect();
    let first_input = graph.input.iter().find(|i| !initializers.contains(&i.name.as_str())).map(|i| i.name.clone());
    if let (Some(name), Some(rank)) = (first_input, input_rank) {
        ranks.insert(name, rank);
    }
    let pb::GraphProto { node, initializer, .. } = graph;
    for (index, node) in node.iter().enumerate() {
        if node.op_type != "PRelu" || node.input.len() < 2 {
            continue;
        }
        let Some(slope) = initializer.iter_mut().find(|t| t.name == node.input[1]) else { continue };
        if slope.dims.len() != 1 || slope.dims[0] <= 1 {
            continue;
        }
        match ranks.get(&node.input[0]) {
            Some(&rank) if rank > 2 => slope.dims.extend(std::iter::repeat_n(1, rank - 2)),
            Some(_) => {}
            None => {
                return Err(Error::Model(format!(
                    "node {} (PRelu, opset {opset}): its slope of {} values is per channel, and the file does \
                     not say its input's rank; re-export with opset 7 or later (a slope of shape [C, 1, 1])",
                    crate::model::node_label(index, node),
                    slope.dims[0]
                )))
            }
        }
    }
    Ok(())
}

/// The integers of a tensor proto (int64 or int32, raw or not).
fn ints(t: &pb::TensorProto) -> Option<Vec<i64>> {
    match t.data_type {
        7 if !t.raw_data.is_empty() => Some(t.raw_data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect()),
        7 => Some(t.int64_data.clone()),
        6 if !t.raw_data.is_empty() => Some(t.raw_data.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64).collect()),
        6 => Some(t.int32_data.iter().map(|&v| v as i64).collect()),
        _ => None,
    }
}

/// The constant integers named `name`: an initializer or a Constant node's value.
fn constant_ints(graph: &pb::GraphProto, name: &str) -> Option<Vec<i64>> {
    if let Some(t) = graph.initializer.iter().find(|t| t.name == name) {
        return ints(t);
    }
    let node = graph.node.iter().find(|n| n.op_type == "Constant" && n.output.first().is_some_and(|o| o == name))?;
    let value = node.attribute.iter().find(|a| a.name == "value")?;
    match &value.t {
        Some(t) => ints(t),
        None => (value.name == "value_ints").then(|| value.ints.clone()),
    }
}

fn int64s(name: String, values: &[i64]) -> pb::TensorProto {
    pb::TensorProto { name, dims: vec![values.len() as i64], data_type: 7, int64_data: values.to_vec(), ..Default::default() }
}

fn node(op_type: &str, name: String, input: Vec<String>, output: String, attribute: Vec<pb::AttributeProto>) -> pb::NodeProto {
    pb::NodeProto { op_type: op_type.into(), name, input, output: vec![output], attribute, ..Default::default() }
}

/// Pad in mode "wrap" (opset 19; tract 0.23.9 knows constant, reflect and edge): the data as a
/// torus, so per padded axis the last `before` cells, the data and its first `after` cells,
/// concatenated. Pads must be constant and not negative; each must fit in its axis, which only
/// the typed graph knows ([`check_wraps`]).
fn wrap_pads(graph: &mut pb::GraphProto) -> Result<Vec<Wrap>> {
    let mut wraps = vec![];
    let mut index = 0;
    while index < graph.node.len() {
        let n = &graph.node[index];
        let wrap = n.op_type == "Pad" && n.attribute.iter().any(|a| a.name == "mode" && a.s == b"wrap");
        if !wrap {
            index += 1;
            continue;
        }
        let label = crate::model::node_label(index, n);
        let refuse = |why: &str| Error::Model(format!("node {label} (Pad, mode wrap): {why}"));
        let pads = n.input.get(1).and_then(|p| constant_ints(graph, p)).ok_or_else(|| refuse("its pads are not a constant; export them as one"))?;
        let axes: Option<Vec<i64>> = match n.input.get(3).filter(|a| !a.is_empty()) {
            Some(a) => Some(constant_ints(graph, a).ok_or_else(|| refuse("its axes are not a constant; export them as one"))?),
            None => None,
        };
        let k = pads.len() / 2;
        let axes = axes.unwrap_or_else(|| (0..k as i64).collect());
        if pads.len() % 2 != 0 || axes.len() != k {
            return Err(refuse("its pads do not give a start and an end for each axis"));
        }
        if pads.iter().any(|&p| p < 0) || axes.iter().any(|&a| a < 0) {
            return Err(refuse("negative pads or axes (a crop) are not rewritten; export the crop as a Slice"));
        }
        let base = if n.name.is_empty() { format!("pad{index}") } else { n.name.clone() };
        let (Some(input), Some(output)) = (n.input.first().cloned(), n.output.first().cloned()) else {
            return Err(refuse("it has no data input or no output; re-export the model (onnx.checker finds such nodes)"));
        };
        let mut nodes = vec![];
        let mut concats = vec![];
        let mut current = input;
        let padded: Vec<(usize, i64, i64)> =
            axes.iter().enumerate().map(|(i, &a)| (a as usize, pads[i], pads[i + k])).filter(|(_, b, e)| *b > 0 || *e > 0).collect();
        for (step, &(axis, before, after)) in padded.iter().enumerate() {
            let name = |what: &str| format!("{base}.wrap{axis}.{what}");
            let mut parts = vec![];
            for (what, start, end, len) in [("head", -before, i64::MAX, before), ("tail", 0, after, after)] {
                if len == 0 {
                    continue;
                }
                for (field, v) in [("starts", start), ("ends", end), ("axes", axis as i64)] {
                    graph.initializer.push(int64s(name(&format!("{what}.{field}")), &[v]));
                }
                let inputs = ["starts", "ends", "axes"].map(|f| name(&format!("{what}.{f}")));
                let sliced = name(what);
                nodes.push(node("Slice", sliced.clone(), [vec![current.clone()], inputs.to_vec()].concat(), sliced.clone(), vec![]));
                parts.push((what, sliced));
            }
            let mut inputs: Vec<String> = parts.iter().filter(|p| p.0 == "head").map(|p| p.1.clone()).collect();
            inputs.push(current.clone());
            inputs.extend(parts.iter().filter(|p| p.0 == "tail").map(|p| p.1.clone()));
            let last = step + 1 == padded.len();
            let out = if last { output.clone() } else { name("out") };
            let axis_attr = pb::AttributeProto { name: "axis".into(), r#type: 2, i: axis as i64, ..Default::default() };
            nodes.push(node("Concat", name("concat"), inputs, out.clone(), vec![axis_attr]));
            concats.push((name("concat"), axis, before, after));
            current = out;
        }
        if padded.is_empty() {
            nodes.push(node("Identity", format!("{base}.wrap"), vec![current], output, vec![]));
        }
        let added = nodes.len();
        graph.node.splice(index..=index, nodes);
        index += added;
        wraps.push(Wrap { node: label, concats });
    }
    Ok(wraps)
}

/// Each rewritten wrap Pad's concatenations, on the typed graph: a pad longer than its axis
/// would have been clamped by the Slice, so the output's length proves the rewrite exact.
pub(crate) fn check_wraps(model: &TypedModel, wraps: &[Wrap]) -> Result<()> {
    for wrap in wraps {
        for (concat, axis, before, after) in &wrap.concats {
            let Ok(node) = model.node_by_name(concat) else { continue };
            let middle = if *before > 0 { node.inputs[1] } else { node.inputs[0] };
            let fact = |o: OutletId| model.outlet_fact(o).ok().and_then(|f| f.shape.as_concrete().map(|s| s[*axis] as i64));
            let (len, out) = (fact(middle), fact(OutletId::new(node.id, 0)));
            if out.is_none() || out != len.map(|l| l + before + after) {
                return Err(Error::Model(format!(
                    "node {} (Pad, mode wrap): a pad of {before} before and {after} after is longer than axis {axis} ({} cells); \
                     tract cannot wrap around more than once: pad in several steps",
                    wrap.node,
                    len.map_or("unknown".into(), |l| l.to_string())
                )));
            }
        }
    }
    Ok(())
}
