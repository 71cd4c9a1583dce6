//! The paper's per-layer adversarial training (section 4.2): the layers above a hidden layer's
//! output as a model of their own, and a pool of adversarial examples of that output for each.
//!
//! "Generating adversarial examples for each layer's outputs and using them to train the layers
//! above": for a Sigmoid layer (outputs in (0,1), the box the L-BFGS attack searches), the graph
//! from its output to the logits is cut out as an ONNX model ([`upper`]); the paper's attack finds
//! a small change of a training digit's activations that the layers above misclassify, and the
//! changed activations, with the digit's true label, train those layers' weights.

use std::collections::HashSet;

use crate::attack::lbfgs::{self, Options};
use crate::attack::Goal;
use crate::error::{Error, Result};
use crate::grad::{GradientModel, Objective};
use crate::model::Trainable;
use crate::rng::Rng;
use crate::train::Pool;
use crate::Classifier;

/// The ONNX model `bytes` from tensor `tensor` (of `shape` per image) on: its input that tensor
/// ([N, shape...]), the nodes and initializers the outputs need from it, the outputs unchanged.
pub fn upper(bytes: &[u8], tensor: &str, shape: &[usize]) -> Result<Vec<u8>> {
    use prost::Message;
    use tract_onnx::pb::tensor_shape_proto::{dimension, Dimension};
    let mut proto = crate::model::decode(bytes)?;
    let graph = proto.graph.as_mut().ok_or_else(|| Error::NotOnnx("the file holds no graph".into()))?;
    let initializers: HashSet<String> = graph.initializer.iter().map(|t| t.name.clone()).collect();
    let mut needed: HashSet<String> = graph.output.iter().map(|o| o.name.clone()).collect();
    let mut keep = vec![false; graph.node.len()];
    // nodes are in topological order: walk back from the outputs, stopping at `tensor`
    for (i, node) in graph.node.iter().enumerate().rev() {
        if node.output.iter().any(|o| needed.contains(o)) && !node.output.iter().any(|o| o == tensor) {
            keep[i] = true;
            needed.extend(node.input.iter().filter(|n| !n.is_empty() && *n != tensor).cloned());
        }
    }
    if !graph.node.iter().any(|n| n.output.iter().any(|o| o == tensor)) {
        return Err(Error::Input(format!("the graph has no node output \"{tensor}\": {}", crate::units::PICK_A_TENSOR)));
    }
    let mut input = graph
        .input
        .iter()
        .find(|i| !initializers.contains(&i.name))
        .cloned()
        .ok_or_else(|| Error::Model("the graph has no input".into()))?;
    if needed.contains(&input.name) {
        return Err(Error::Model(format!(
            "the layers above \"{tensor}\" read the image too (a skip connection): per-layer pools need a chain of layers"
        )));
    }
    let Some(tract_onnx::pb::type_proto::Value::TensorType(t)) = input.r#type.as_mut().and_then(|t| t.value.as_mut()) else {
        return Err(Error::Model("the graph's input is not a tensor".into()));
    };
    let dims = &mut t.shape.get_or_insert_with(Default::default).dim;
    let batch = dims.first().cloned().unwrap_or(Dimension { value: Some(dimension::Value::DimValue(1)), denotation: String::new() });
    *dims = std::iter::once(batch)
        .chain(shape.iter().map(|&d| Dimension { value: Some(dimension::Value::DimValue(d as i64)), denotation: String::new() }))
        .collect();
    input.name = tensor.to_string();
    let mut kept = keep.iter();
    graph.node.retain(|_| *kept.next().unwrap());
    graph.initializer.retain(|t| needed.contains(&t.name));
    graph.input = std::iter::once(input).chain(graph.input.iter().filter(|i| initializers.contains(&i.name) && needed.contains(&i.name)).cloned()).collect();
    graph.value_info.retain(|v| needed.contains(&v.name));
    Ok(proto.encode_to_vec())
}

/// The hidden layers a per-layer pool can attack: the named outputs of Sigmoid nodes, in (0,1),
/// that feed further layers (not the logits).
pub fn sigmoid_layers(bytes: &[u8]) -> Result<Vec<String>> {
    let proto = crate::model::decode(bytes)?;
    let graph = proto.graph.as_ref().ok_or_else(|| Error::NotOnnx("the file holds no graph".into()))?;
    let outputs: HashSet<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    Ok(graph
        .node
        .iter()
        .filter(|n| n.op_type == "Sigmoid")
        .filter_map(|n| n.output.first())
        .filter(|o| !outputs.contains(o.as_str()))
        .cloned()
        .collect())
}

/// One hidden layer's pool: the layers above it (their gradient graph at the trainer's batch,
/// and which of the whole model's weights are theirs) and adversarial examples of its outputs.
pub struct LayerPool {
    pub tensor: String,
    upper: Vec<u8>,
    gradient: GradientModel,
    /// For each weight of the layers above: its index among the whole model's weights.
    map: Vec<usize>,
    /// Those weights' names.
    names: Vec<String>,
    pub pool: Pool,
    len: usize,
}

impl LayerPool {
    /// The pool of `size` for the output `tensor` of the model `bytes` (whose weights are named
    /// `names`, in the trainer's order), trained `batch` examples at a time.
    pub fn new(bytes: &[u8], tensor: &str, names: &[String], batch: usize, size: usize, seed: u64) -> Result<LayerPool> {
        let model = Classifier::load(bytes, None)?;
        let shape = crate::units::named_tensors(&model)
            .into_iter()
            .find(|t| t.name == tensor)
            .ok_or_else(|| Error::Input(format!("the model has no tensor \"{tensor}\": {}", crate::units::PICK_A_TENSOR)))?
            .shape;
        let upper = upper(bytes, tensor, &shape)?;
        let trainable = Trainable::load_batch(&upper, batch)?;
        let map = trainable
            .weights()
            .iter()
            .map(|w| {
                names.iter().position(|n| *n == w.name).ok_or_else(|| {
                    Error::Model(format!("the weight \"{}\" above \"{tensor}\" is not one the model trains", w.name))
                })
            })
            .collect::<Result<Vec<usize>>>()?;
        let gradient = trainable.weight_gradient(&Objective::CrossEntropy)?;
        let len = shape.iter().product();
        let names = trainable.weights().iter().map(|w| w.name.clone()).collect();
        Ok(LayerPool { tensor: tensor.to_string(), upper, gradient, map, names, pool: Pool::new(size, seed ^ fnv(tensor)), len })
    }

    /// Makes `count` new examples: the activations at this layer of random digits of `images`
    /// under `model` (the whole model with the weights now, `weights` its weights), each moved by
    /// the paper's L-BFGS until the layers above give a random other class.
    pub fn refresh(
        &mut self,
        model: &Classifier,
        weights: &[Vec<f32>],
        images: &[f32],
        labels: &[usize],
        count: usize,
        options: &Options,
    ) -> Result<usize> {
        let names: Vec<(&str, &[f32])> =
            self.map.iter().zip(&self.names).map(|(&k, name)| (name.as_str(), weights[k].as_slice())).collect();
        let above = Classifier::load(&crate::train::write_weights(&self.upper, &names)?, None)?;
        let probe = crate::units::Probe::new(model, &self.tensor)?;
        let image_len = model.image_len();
        let mut rng = Rng(self.pool.len() as u64 ^ fnv(&self.tensor) ^ count as u64);
        let mut made = vec![];
        for _ in 0..count {
            let i = rng.below(labels.len());
            let h = probe.run(&images[i * image_len..(i + 1) * image_len])?;
            let target = (labels[i] + 1 + rng.below(above.classes() - 1)) % above.classes();
            let outcome = lbfgs::attack(&above, &h, Goal::Target(target), options, |_| true)?;
            if outcome.success {
                made.push((outcome.adversarial, labels[i], target));
            }
        }
        Ok(self.pool.take(made))
    }

    /// d loss / d each of the whole model's weights (zeros below this layer), summed over a
    /// batch drawn from the pool, at `weights`.
    pub fn gradients(&mut self, weights: &[Vec<f32>], batch: usize) -> Result<Vec<Vec<f32>>> {
        let (xs, ys) = self.pool.draw(batch);
        let classes: usize = self.gradient.parameter_shape()[1..].iter().product();
        let mut targets = vec![0.0f32; batch * classes];
        for (i, &y) in ys.iter().enumerate() {
            targets[i * classes + y] = 1.0;
        }
        let mine: Vec<&[f32]> = self.map.iter().map(|&k| weights[k].as_slice()).collect();
        let (_, grads) = self.gradient.evaluate_weights(&xs, &mine, &targets)?;
        let mut out: Vec<Vec<f32>> = weights.iter().map(|w| vec![0.0; w.len()]).collect();
        for (g, &k) in grads.into_iter().zip(&self.map) {
            out[k] = g;
        }
        debug_assert_eq!(xs.len(), batch * self.len);
        Ok(out)
    }
}

/// FNV-1a of a name: a seed of its own for each layer's pool.
fn fnv(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}
