//! A model's trainable weights: the float initializers of two values or more that its layers
//! multiply and add (Conv, Gemm, MatMul, Add, Mul, layer and instance norms' scales and biases,
//! PRelu's slope; a BatchNormalization's stay constants, see [`Frozen`]),
//! made graph inputs so that tract keeps them as variables and the reverse loop differentiates
//! with respect to them.

use tract_onnx::pb;

use crate::error::{Error, Result};

/// One trainable weight: the ONNX initializer's name, its shape and its values.
#[derive(Debug, Clone, PartialEq)]
pub struct Weight {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// The inputs of an op that hold weights a training run changes (the others, such as a
/// BatchNormalization's running mean and variance or a Reshape's shape, stay constants).
fn weight_slots(op: &str) -> &'static [usize] {
    match op {
        "Conv" | "ConvTranspose" => &[1, 2],
        "Gemm" => &[0, 1, 2],
        "MatMul" | "Add" | "Mul" => &[0, 1],
        "InstanceNormalization" | "LayerNormalization" => &[1, 2],
        "PRelu" => &[1],
        _ => &[],
    }
}

/// A weight left a constant, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Frozen {
    pub name: String,
    pub why: String,
}

/// What [`free`] leaves constant: a BatchNormalization's scale and bias (tract folds the norm
/// into constants as it loads, so they cannot be graph inputs; a model exported for inference,
/// its norms folded into the convolutions, has none).
fn frozen(graph: &pb::GraphProto) -> Vec<Frozen> {
    graph
        .node
        .iter()
        .filter(|n| n.op_type == "BatchNormalization")
        .flat_map(|n| {
            n.input.iter().skip(1).take(2).map(move |name| Frozen {
                name: name.clone(),
                why: format!(
                    "the scale or bias of BatchNormalization node \"{}\" stays fixed: tract folds the norm into constants \
                     (export the model with its norms folded into the convolutions to train every layer)",
                    n.name
                ),
            })
        })
        .collect()
}

/// Moves every float initializer (or Constant node's value) that some op takes as a weight (see
/// [`weight_slots`]) to the graph's inputs, after the image; returns them in input order, and
/// the weights left constants ([`Frozen`]).
pub(crate) fn free(proto: &mut pb::ModelProto) -> Result<(Vec<Weight>, Vec<Frozen>)> {
    let Some(graph) = proto.graph.as_mut() else { return Ok((vec![], vec![])) };
    let frozen = frozen(graph);
    let mut wanted: Vec<String> = vec![];
    for node in &graph.node {
        for &slot in weight_slots(&node.op_type) {
            if let Some(name) = node.input.get(slot).filter(|n| !n.is_empty()) {
                if !wanted.contains(name) {
                    wanted.push(name.clone());
                }
            }
        }
    }
    // a weight held by a Constant node (some exporters write them so) becomes an initializer
    // first, so it is trained like the others rather than left fixed without a word
    let mut index = 0;
    while index < graph.node.len() {
        let node = &graph.node[index];
        let value = node.attribute.iter().find(|a| a.name == "value").and_then(|a| a.t.clone());
        match (node.op_type.as_str(), node.output.first(), value) {
            ("Constant", Some(output), Some(mut t)) if wanted.contains(output) => {
                t.name = output.clone();
                graph.initializer.push(t);
                graph.node.remove(index);
            }
            _ => index += 1,
        }
    }
    let mut weights = vec![];
    let mut kept = vec![];
    for t in graph.initializer.drain(..) {
        let float = t.data_type == pb::tensor_proto::DataType::Float as i32;
        let len: i64 = t.dims.iter().product();
        if !float || len < 2 || !wanted.contains(&t.name) {
            kept.push(t);
            continue;
        }
        weights.push(Weight { name: t.name.clone(), shape: t.dims.iter().map(|&d| d as usize).collect(), values: values(&t)? });
    }
    graph.initializer = kept;
    // an initializer is also listed as an input in files of IR version < 4: listed once, as ours
    graph.input.retain(|i| !weights.iter().any(|w| w.name == i.name));
    for w in &weights {
        graph.input.push(value_info(&w.name, &w.shape));
    }
    Ok((weights, frozen))
}

/// The float values of an initializer (`float_data`, or little-endian `raw_data`).
fn values(t: &pb::TensorProto) -> Result<Vec<f32>> {
    let len: usize = t.dims.iter().map(|&d| d as usize).product();
    let values: Vec<f32> = if !t.float_data.is_empty() {
        t.float_data.clone()
    } else if !t.raw_data.is_empty() {
        t.raw_data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
    } else if !t.external_data.is_empty() {
        return Err(Error::Model(format!(
            "weight \"{}\" is stored in an external file; save the model with its weights inside (onnx.save with \
             save_as_external_data=False)",
            t.name
        )));
    } else {
        vec![]
    };
    if values.len() != len {
        return Err(Error::Model(format!(
            "weight \"{}\" holds {} values for its shape {:?}: the file is damaged; export it again",
            t.name,
            values.len(),
            t.dims
        )));
    }
    Ok(values)
}

fn value_info(name: &str, shape: &[usize]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value as Dim, Dimension};
    let dim = shape.iter().map(|&d| Dimension { value: Some(Dim::DimValue(d as i64)), ..Default::default() }).collect();
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}
