//! An ONNX classifier loaded through tract: decluttered for analysis, optimised for running.

use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;
use tract_onnx::tract_hir::internal::DimLike;

use crate::error::{chain, Error, Result};
use crate::output::{self, Output, OutputKind};
use crate::preprocess::Preprocessing;

/// A loaded classifier: one float input of a fixed shape, class scores out.
#[derive(Debug, Clone)]
pub struct Classifier {
    /// The typed graph before simplification: it still carries every ONNX tensor name.
    typed: TypedModel,
    /// The decluttered typed graph: the form later analyses (gradients, layers) work on.
    decluttered: TypedModel,
    plan: Arc<TypedRunnableModel>,
    input_shape: Vec<usize>,
    classes: usize,
    /// What the graph's output is and which op made it (see [`crate::output`]).
    output: Output,
    /// Every ONNX node's name and op type, to name refused ops as the file has them.
    sources: Arc<Vec<(String, String)>>,
}

/// A classifier whose trainable weights are inputs of its graph after the image
/// ([`crate::weights`]): for gradients with respect to the weights, and training.
#[derive(Debug, Clone)]
pub struct Trainable {
    /// Decluttered; inputs: the image, then each weight; output: the logits.
    graph: TypedModel,
    input_shape: Vec<usize>,
    weights: Vec<crate::weights::Weight>,
    frozen: Vec<crate::weights::Frozen>,
}

impl Trainable {
    /// Loads ONNX bytes as [`Classifier::load`] does (the same checks, the same logits), with the
    /// weights free.
    pub fn load(bytes: &[u8], input_shape: Option<&[usize]>) -> Result<Trainable> {
        Trainable::load_at(bytes, input_shape, None)
    }

    /// [`load`](Self::load) at the file's input shape with its batch axis set to `batch`.
    pub fn load_batch(bytes: &[u8], batch: usize) -> Result<Trainable> {
        Trainable::load_at(bytes, None, Some(batch))
    }

    fn load_at(bytes: &[u8], input_shape: Option<&[usize]>, batch: Option<usize>) -> Result<Trainable> {
        let classifier = Classifier::load(bytes, input_shape)?;
        let mut shape = classifier.input_shape().to_vec();
        if let Some(batch) = batch {
            shape[0] = batch;
        }
        if classifier.output.kind == OutputKind::ProbabilitiesByValue {
            return Err(Error::Model(format!(
                "its output {} sums to 1 without a Softmax op; blindspot trains on logits: re-export it with its \
                 Softmax, or without one",
                classifier.output.describe()
            )));
        }
        guarded("loading", || {
            let (mut typed, shape, _, (weights, frozen)) = typed_graph(bytes, Some(&shape), None, true)?;
            if weights.is_empty() {
                return Err(Error::Model(
                    "the model has no float weights to train (no Conv, Gemm, MatMul, Add or Mul takes a float initializer): \
                     pick a model with layers"
                        .into(),
                ));
            }
            keep_logits(&mut typed, shape[0])?;
            let graph = typed.into_decluttered().map_err(|e| {
                Error::Model(format!("simplifying the graph with its weights free: {}", chain(&e)))
            })?;
            Ok(Trainable { graph, input_shape: shape, weights, frozen })
        })
    }

    /// The weights, in the order the gradient graph takes them.
    pub fn weights(&self) -> &[crate::weights::Weight] {
        &self.weights
    }

    /// The input shape, batch first.
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// The weights a training run leaves as they are, each with why (a trainer says so).
    pub fn frozen(&self) -> &[crate::weights::Frozen] {
        &self.frozen
    }

    /// The decluttered graph: the image and each weight in, the logits out.
    pub fn graph(&self) -> &TypedModel {
        &self.graph
    }

    /// The gradient graph of `objective` with respect to the image and every weight.
    pub fn gradient(&self, objective: &crate::grad::Objective) -> Result<crate::grad::GradientModel> {
        guarded("building its gradient", || crate::grad::GradientModel::build(&self.graph, objective))
    }

    /// [`gradient`](Self::gradient) with respect to the weights alone (training steps that need
    /// no input gradient: its output holds zeros).
    pub fn weight_gradient(&self, objective: &crate::grad::Objective) -> Result<crate::grad::GradientModel> {
        guarded("building its gradient", || crate::grad::GradientModel::build_for_weights(&self.graph, objective))
    }
}

/// What a classifier says about one input.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    pub label: usize,
    pub logits: Vec<f32>,
    pub probabilities: Vec<f32>,
}

impl Classifier {
    /// Loads ONNX bytes. `input_shape` is the input fact from the model card (batch first);
    /// `None` takes the shape declared in the file, with a symbolic batch set to 1.
    pub fn load(bytes: &[u8], input_shape: Option<&[usize]>) -> Result<Classifier> {
        guarded("loading", || Classifier::load_unguarded(bytes, input_shape, None))
    }

    /// Loads ONNX bytes with `preprocessing` wired in front of the input (see
    /// [`crate::preprocess`]): the classifier then takes [0,1] pixel planes [N, C, H, W] in R, G, B
    /// order, and `input_shape` is that shape.
    pub fn load_with(bytes: &[u8], input_shape: Option<&[usize]>, preprocessing: &Preprocessing) -> Result<Classifier> {
        guarded("loading", || Classifier::load_unguarded(bytes, input_shape, Some(preprocessing)))
    }

    fn load_unguarded(bytes: &[u8], input_shape: Option<&[usize]>, pre: Option<&Preprocessing>) -> Result<Classifier> {
        let (mut typed, shape, sources, _) = typed_graph(bytes, input_shape, pre, false)?;
        let output = keep_logits(&mut typed, shape[0])?;
        let classifier = Classifier::finish(typed, shape.clone(), output, Arc::new(sources))?;
        if classifier.output.kind != OutputKind::Logits || !classifier.probes_as_probabilities()? {
            return Ok(classifier);
        }
        // values that sum to 1 without a Softmax at the output: the logits are ln(output)
        let mut typed = classifier.typed;
        let p = typed.output_outlets().map_err(|e| Error::Model(chain(&e)))?[0];
        let logits = output::wire_log(&mut typed, p).map_err(|e| Error::Model(chain(&e)))?;
        typed.select_output_outlets(&[logits]).map_err(|e| Error::Model(chain(&e)))?;
        let output = Output { kind: OutputKind::ProbabilitiesByValue, ..classifier.output };
        Classifier::finish(typed, shape, output, classifier.sources)
    }

    /// Declutters and optimises a typed graph whose only output is the logits.
    fn finish(typed: TypedModel, shape: Vec<usize>, output: Output, sources: Arc<Vec<(String, String)>>) -> Result<Classifier> {
        let decluttered =
            typed.clone().into_decluttered().map_err(|e| {
                Error::Model(format!(
                    "simplifying: {}; re-export it with opset 13 or later and constant folding (onnx-simplifier)",
                    chain(&e)
                ))
            })?;
        refuse_non_finite_weights(&decluttered)?;
        let logits = decluttered.output_outlets().map_err(|e| Error::Model(chain(&e)))?[0];
        let classes = classes_of(&decluttered, logits, shape[0])?;
        let plan = decluttered
            .clone()
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| Error::Model(format!("optimising: {}", chain(&e))))?;
        Ok(Classifier { typed, decluttered, plan, input_shape: shape, classes, output, sources })
    }

    /// Whether raw outputs at two fixed inputs (mid-grey, and a seeded pattern in [0,1]) are
    /// probability distributions: a graph that normalises without a Softmax op.
    fn probes_as_probabilities(&self) -> Result<bool> {
        let n = self.image_len();
        let grey = vec![0.5f32; n];
        let mut rng = crate::rng::Rng(7);
        let pattern: Vec<f32> = (0..n).map(|_| (rng.uniform() + 1.0) / 2.0).collect();
        let rows = [self.logits(&grey)?, self.logits(&pattern)?].concat();
        Ok(output::looks_like_probabilities(&rows))
    }

    /// What the chosen graph output is (logits, probabilities, log-probabilities) and its name.
    pub fn output(&self) -> &Output {
        &self.output
    }

    /// The input shape the model was loaded with, batch first.
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// How many images one evaluation takes (the first dimension of the input).
    pub fn batch(&self) -> usize {
        self.input_shape[0]
    }

    /// Values per image: the input size over the batch.
    pub fn image_len(&self) -> usize {
        self.input_shape[1..].iter().product()
    }

    /// Number of classes the output scores.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// The decluttered typed graph.
    pub fn graph(&self) -> &TypedModel {
        &self.decluttered
    }

    /// The typed graph before simplification, where every ONNX tensor name is still a label.
    pub fn typed_graph(&self) -> &TypedModel {
        &self.typed
    }

    /// The outlet of the tensor named `tensor` (ONNX tensor name, or node name) in the typed graph.
    pub(crate) fn named_outlet(&self, tensor: &str) -> Result<OutletId> {
        self.typed
            .find_outlet_label(tensor)
            .or_else(|| self.typed.node_id_by_name(tensor).ok().map(|id| OutletId::new(id, 0)))
            .ok_or_else(|| Error::Input(format!("the graph has no tensor named \"{tensor}\": {}", crate::units::PICK_A_TENSOR)))
    }

    /// The gradient graph of `objective` over this model (see [`crate::grad`]).
    pub fn gradient(&self, objective: &crate::grad::Objective) -> Result<crate::grad::GradientModel> {
        guarded("building its gradient", || match objective {
            crate::grad::Objective::Projection { tensor } => {
                let forward = self.with_probe(tensor)?;
                crate::grad::GradientModel::build(&forward, objective)
            }
            _ => crate::grad::GradientModel::build(&self.decluttered, objective),
        })
        .map_err(|e| match e {
            Error::NoGradient(ops) => Error::NoGradient(ops.into_iter().map(|(op, node)| (self.as_in_file(op, &node), node)).collect()),
            other => other,
        })
    }

    /// `op` (tract's name for the op of the simplified graph's node `node`) as the file names it:
    /// the ONNX op of the node it came from (the longest ONNX node name `node` starts with, whole
    /// or before a `.`), with tract's name beside it where the two differ.
    fn as_in_file(&self, op: String, node: &str) -> String {
        let source = self
            .sources
            .iter()
            .filter(|(name, _)| {
                !name.is_empty() && node.strip_prefix(name.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
            })
            .max_by_key(|(name, _)| name.len());
        match source {
            Some((_, onnx)) if *onnx != op => format!("{onnx} (tract's {op})"),
            _ => op,
        }
    }

    /// The decluttered graph with the tensor named `tensor` (ONNX name, or node name) kept as a
    /// second output, so simplification cannot fold it away; it carries `tensor` as its label.
    fn with_probe(&self, tensor: &str) -> Result<TypedModel> {
        let mut model = self.typed.clone();
        let outlet = self.named_outlet(tensor)?;
        let logits = model.output_outlets().map_err(|e| Error::Model(chain(&e)))?[0];
        model.select_output_outlets(&[logits, outlet]).map_err(|e| Error::Model(chain(&e)))?;
        let mut model = model.into_decluttered().map_err(|e| Error::Model(chain(&e)))?;
        let probe = model.output_outlets().map_err(|e| Error::Model(chain(&e)))?[1];
        model.set_outlet_label(probe, tensor.to_string()).map_err(|e| Error::Model(chain(&e)))?;
        Ok(model)
    }

    /// Class scores (the model's raw output) for any number of images laid end to end.
    /// Images are run `batch()` at a time; a short last batch is padded with zeros.
    pub fn logits(&self, images: &[f32]) -> Result<Vec<Vec<f32>>> {
        let per = self.image_len();
        if images.is_empty() || !images.len().is_multiple_of(per) {
            return Err(Error::Input(format!(
                "{} values do not make whole images of {} values (input shape {:?})",
                images.len(),
                per,
                self.input_shape
            )));
        }
        if let Some(bad) = images.iter().find(|v| !v.is_finite()) {
            return Err(Error::Input(format!("the input holds a non-finite value ({bad})")));
        }
        let batch = self.batch();
        let mut out = Vec::with_capacity(images.len() / per);
        for chunk in images.chunks(per * batch) {
            let mut data = chunk.to_vec();
            data.resize(per * batch, 0.0);
            let input = Tensor::from_shape(&self.input_shape, &data)
                .map_err(|e| Error::Input(chain(&e)))?;
            let result = self.plan.run(tvec!(input.into())).map_err(|e| crate::error::run_failed(&e))?;
            let scores = result[0].to_plain_array_view::<f32>().map_err(|e| Error::Run(chain(&e)))?;
            let flat: Vec<f32> = scores.iter().copied().collect();
            crate::grad::refuse_non_finite("class scores", &flat)?;
            for row in flat.chunks(self.classes).take(chunk.len() / per) {
                out.push(row.to_vec());
            }
        }
        Ok(out)
    }

    /// Classifies one image of `image_len()` values.
    pub fn classify(&self, image: &[f32]) -> Result<Classification> {
        if image.len() != self.image_len() {
            return Err(Error::Input(format!(
                "the image has {} values but the model takes {} (shape {:?})",
                image.len(),
                self.image_len(),
                &self.input_shape[1..]
            )));
        }
        let logits = self.logits(image)?.remove(0);
        Ok(Classification::from_logits(logits))
    }
}

impl Classification {
    /// Softmax and argmax of class scores.
    pub fn from_logits(logits: Vec<f32>) -> Classification {
        let probabilities = softmax(&logits);
        let label = argmax(&logits);
        Classification { label, logits, probabilities }
    }
}

/// Index of the largest value (the first one on ties).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

/// Numerically stable softmax, summed in f64.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let exps: Vec<f64> = logits.iter().map(|&z| (z as f64 - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| (e / sum) as f32).collect()
}

/// Any single-input ONNX graph, typed at `input_shape` (`None`: the declared shape, a symbolic
/// batch set to 1), with the checks a classifier gets before tract sees it: a readable protobuf,
/// outputs that exist, raw data tract can read, window attributes that fit, every op known to
/// tract. Returns the typed graph (not decluttered: it keeps every ONNX tensor name) and the shape.
/// [`Classifier::load`] is this plus the class-score output; the conformance replay
/// (tests/conformance.rs) loads ONNX's own test graphs through it.
pub fn load_graph(bytes: &[u8], input_shape: Option<&[usize]>) -> Result<(TypedModel, Vec<usize>)> {
    guarded("loading", || typed_graph(bytes, input_shape, None, false).map(|(typed, shape, ..)| (typed, shape)))
}

/// The ONNX protobuf of `bytes`, or why it is not one.
pub fn decode(bytes: &[u8]) -> Result<tract_onnx::pb::ModelProto> {
    if bytes.is_empty() {
        return Err(Error::NotOnnx("the file is empty".into()));
    }
    tract_onnx::onnx()
        .proto_model_for_read(&mut &bytes[..])
        .map_err(|e| Error::NotOnnx(format!("the protobuf does not decode ({})", chain(&e))))
}

/// Makes the logits of the graph's class-score output ([`crate::output`]) its one output; what
/// that output is.
fn keep_logits(typed: &mut TypedModel, batch: usize) -> Result<Output> {
    let chosen = output::choose(typed, batch)?;
    classes_of(typed, chosen, batch)?;
    let (output, logits) = output::read(typed, chosen, batch)?;
    typed.select_output_outlets(&[logits]).map_err(|e| Error::Model(chain(&e)))?;
    Ok(output)
}

/// The typed graph, its input shape, every ONNX node's (name, op type), and with `free` the
/// trainable weights, made inputs after the image ([`crate::weights`]).
#[allow(clippy::type_complexity)]
fn typed_graph(
    bytes: &[u8],
    input_shape: Option<&[usize]>,
    pre: Option<&Preprocessing>,
    free: bool,
) -> Result<(TypedModel, Vec<usize>, Vec<(String, String)>, (Vec<crate::weights::Weight>, Vec<crate::weights::Frozen>))> {
    let onnx = tract_onnx::onnx();
    let mut proto = decode(bytes)?;
    if let Some(pre) = pre {
        pre.wire(&mut proto)?;
    }
    let weights = if free { crate::weights::free(&mut proto)? } else { (vec![], vec![]) };
    let wraps = crate::mend::mend(&mut proto, input_shape.map(|s| s.len()))?;
    let Some(graph) = proto.graph.as_ref() else {
        return Err(Error::NotOnnx("the file holds no graph".into()));
    };
    check_graph(graph)?;
    refuse_misread(graph)?;
    let sources: Vec<(String, String)> = graph.node.iter().map(|n| (n.name.clone(), n.op_type.clone())).collect();
    let mut model = onnx
        .model_for_proto_model(&proto)
        .map_err(|e| {
            let why = chain(&e);
            let fix = if why.contains("DatumType") || why.contains("TensorProto.DataType") || why.contains("quantization") {
                "it holds a number format tract 0.23.9 cannot read (float8, 2- or 4-bit integers, blocked quantisation): \
                 export it in float32"
            } else {
                "re-export it with opset 13 or later, or check it with onnx.checker"
            };
            Error::Model(format!("parsing the graph failed: {why}; {fix}"))
        })?;
    refuse_unsupported(&model)?;
    let inputs = model.input_outlets().map_err(|e| Error::Model(chain(&e)))?.len() - weights.0.len();
    if inputs != 1 {
        return Err(Error::Model(format!(
            "it has {inputs} inputs; an image classifier has one: re-export it with the image as its only input \
             (weights as initializers, other inputs fixed as constants)"
        )));
    }
    let shape = match input_shape {
        Some(s) => s.to_vec(),
        None => declared_shape(&model)?,
    };
    if shape.is_empty() {
        return Err(Error::Model(
            "its input is a single number (rank 0); an image classifier takes a batch of images such as [1, 3, 224, 224] \
             or of feature vectors such as [1, 784]: re-export it with a batch axis"
                .into(),
        ));
    }
    if shape.contains(&0) {
        return Err(Error::Model(format!(
            "input shape {shape:?} has an empty dimension: give every axis a size of at least 1"
        )));
    }
    model
        .set_input_fact(0, f32::fact(&shape).into())
        .map_err(|e| Error::Model(chain(&e)))?;
    let typed = model.into_typed().map_err(|e| {
        let why = chain(&e);
        let (at, detail) = match failing_node(&why) {
            Some((node, detail)) => (format!("at {node}"), detail),
            None => ("through the graph".to_string(), why.as_str()),
        };
        Error::Model(format!(
            "tract cannot work out the shapes {at} with input shape {shape:?} ({detail}); if the model takes \
             another shape, give it (the CLI's --shape); if not, re-export it with fixed shapes \
             (onnx-simplifier folds shape computations) so that tract 0.23.9 can analyse that node"
        ))
    })?;
    crate::mend::check_wraps(&typed, &wraps)?;
    Ok((typed, shape, sources, weights))
}

/// The node tract's analysis stopped at, as its error names it (`node #37 "name" Op`), and what
/// it says after that.
fn failing_node(why: &str) -> Option<(&str, &str)> {
    let rest = &why[why.find("node #")?..];
    let end = rest.find(": ")?;
    Some((&rest[..end], rest[end + 2..].trim_end_matches('.')))
}

/// Names every node whose op tract does not know, before any typing is attempted.
fn refuse_unsupported(model: &InferenceModel) -> Result<()> {
    let ops: Vec<(String, String)> = model
        .nodes()
        .iter()
        .filter_map(|n| {
            let name = n.op.name();
            name.strip_prefix("Unimplemented(")
                .and_then(|s| s.strip_suffix(')'))
                .map(|op| (op.to_string(), n.name.clone()))
        })
        .collect();
    if ops.is_empty() {
        Ok(())
    } else {
        Err(Error::UnsupportedOps(ops))
    }
}

/// Runs `work`, turning a panic inside it (tract asserts on some malformed graphs: fuzz/) into
/// `Error::Model`. Natively (tests, the CLI in debug builds) the panic unwinds to here. In the
/// page's wasm, built with panic = "abort", it traps instead, and the worker reports the panic's
/// message and is replaced (www/worker.js).
fn guarded<T>(doing: &str, work: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        Err(Error::Model(format!("tract failed {doing} this model (internal error: {message})")))
    })
}

/// What tract-onnx assumes of a graph and would panic on (found by fuzzing, fuzz/regressions/):
/// the graph has an output, and every graph output is the name of a node's output, a graph input
/// or an initialiser.
fn check_graph(graph: &tract_onnx::pb::GraphProto) -> Result<()> {
    if graph.output.is_empty() {
        return Err(Error::Model("the graph declares no output".into()));
    }
    let known: std::collections::HashSet<&str> = graph
        .node
        .iter()
        .flat_map(|n| n.output.iter().map(String::as_str))
        .chain(graph.input.iter().map(|i| i.name.as_str()))
        .chain(graph.initializer.iter().map(|t| t.name.as_str()))
        .collect();
    if let Some(output) = graph.output.iter().find(|o| !known.contains(o.name.as_str())) {
        return Err(Error::Model(format!("the graph's output \"{}\" is not produced by any node", output.name)));
    }
    // tract reads raw bytes of numbers and booleans only (strings, complex, bfloat16: unimplemented!)
    const RAW_READABLE: [i32; 12] = [1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13];
    let node_tensors = graph.node.iter().flat_map(|n| n.attribute.iter().flat_map(|a| a.t.iter().chain(&a.tensors)));
    for t in graph.initializer.iter().chain(node_tensors) {
        if !t.raw_data.is_empty() && !RAW_READABLE.contains(&t.data_type) {
            return Err(Error::Model(format!(
                "tensor \"{}\" holds raw data of ONNX type {}, which blindspot cannot read",
                t.name, t.data_type
            )));
        }
    }
    // a window op's per-axis lists must fit its kernel: tract indexes them by axis
    for node in &graph.node {
        if !matches!(node.op_type.as_str(), "Conv" | "ConvTranspose" | "MaxPool" | "AveragePool" | "LpPool") {
            continue;
        }
        let ints = |name: &str| node.attribute.iter().find(|a| a.name == name).map(|a| a.ints.len());
        let kernel_rank = ints("kernel_shape").or_else(|| {
            let weights = node.input.get(1)?;
            let w = graph.initializer.iter().find(|t| &t.name == weights)?;
            w.dims.len().checked_sub(2)
        });
        let fits = |name: &str, per_axis: usize| match (ints(name), kernel_rank) {
            (Some(n), Some(k)) => n == per_axis * k,
            (Some(n), None) => n % per_axis == 0,
            (None, _) => true,
        };
        for (name, per_axis) in [("pads", 2), ("strides", 1), ("dilations", 1)] {
            if !fits(name, per_axis) {
                return Err(Error::Model(format!(
                    "node \"{}\" ({}): its {name} do not fit its kernel's {} axes",
                    node.name,
                    node.op_type,
                    kernel_rank.map_or("unknown".into(), |k| k.to_string())
                )));
            }
        }
    }
    Ok(())
}

/// How a message names a node: its name, or its place in the file when it has none.
pub(crate) fn node_label(index: usize, node: &tract_onnx::pb::NodeProto) -> String {
    if node.name.is_empty() {
        format!("#{index} (unnamed, output \"{}\")", node.output.iter().find(|o| !o.is_empty()).map_or("", |o| o.as_str()))
    } else {
        format!("\"{}\"", node.name)
    }
}

/// Attributes tract 0.23.9 parses past without reading, so it would compute another function
/// than the file's: found by ONNX's conformance cases (tests/conformance.rs), refused by node.
fn refuse_misread(graph: &tract_onnx::pb::GraphProto) -> Result<()> {
    for (index, node) in graph.node.iter().enumerate() {
        let attr = |name: &str| node.attribute.iter().find(|a| a.name == name);
        let text = |name: &str| attr(name).map(|a| String::from_utf8_lossy(&a.s).to_string());
        let why = match node.op_type.as_str() {
            "SpaceToDepth" if text("mode").is_some_and(|m| m != "DCR") => Some(format!(
                "mode {} is not read by tract, which computes DCR; re-export with SpaceToDepth in DCR mode \
                 (or a Reshape-Transpose-Reshape)",
                text("mode").unwrap_or_default()
            )),
            "Swish" if attr("alpha").is_some_and(|a| a.f != 1.0) => Some(format!(
                "alpha {} is not read by tract, which computes x * sigmoid(x); write it as Mul(x, Sigmoid(Mul(x, alpha)))",
                attr("alpha").map_or(1.0, |a| a.f)
            )),
            "RNN" | "GRU" | "LSTM" if text("direction").is_some_and(|d| d == "reverse") => Some(
                "tract 0.23.9 gives other values than ONNX for direction \"reverse\" (ONNX's own test cases); \
                 reverse the sequence axis before the layer and run it forward"
                    .to_string(),
            ),
            _ => None,
        };
        if let Some(why) = why {
            return Err(Error::Model(format!("node {} ({}): {why}", node_label(index, node), node.op_type)));
        }
    }
    Ok(())
}

/// A weight that is NaN or infinite makes the answers NaN: refused at load, naming its node. A
/// single infinite value is a bound (a clip to +inf, a mask of -inf) and is let through.
fn refuse_non_finite_weights(model: &TypedModel) -> Result<()> {
    for node in model.nodes() {
        let Some(konst) = node.op_as::<tract_onnx::tract_core::ops::konst::Const>() else { continue };
        if konst.val().datum_type() != f32::datum_type() {
            continue;
        }
        let Ok(values) = konst.val().to_plain_array_view::<f32>() else { continue };
        let bad = |v: &&f32| v.is_nan() || (values.len() > 1 && v.is_infinite());
        if let Some(bad) = values.iter().find(bad) {
            return Err(Error::Model(format!(
                "the weights of node \"{}\" hold {bad} ({} of {} values are not finite numbers): the training diverged \
                 or the export broke; export it again from a checkpoint whose weights are finite",
                node.name,
                values.iter().filter(|v| v.is_nan() || v.is_infinite()).count(),
                values.len()
            )));
        }
    }
    Ok(())
}

/// The input shape the file declares, a symbolic leading (batch) dimension taken as 1.
fn declared_shape(model: &InferenceModel) -> Result<Vec<usize>> {
    let fact = model.input_fact(0).map_err(|e| Error::Model(chain(&e)))?;
    let rank = fact.shape.rank().concretize().ok_or_else(|| {
        Error::Model(
            "the input's rank is not declared in the file: re-export it with a fixed input shape \
             (onnxsim --overwrite-input-shape 1,3,224,224 sets one), or give it (the CLI's --shape)"
                .into(),
        )
    })?;
    let mut shape = Vec::with_capacity(rank as usize);
    for (axis, dim) in fact.shape.dims().enumerate() {
        let concrete = dim.concretize().and_then(|d| d.to_usize().ok());
        match concrete {
            Some(d) => shape.push(d),
            None if axis == 0 => shape.push(1),
            None => {
                return Err(Error::Model(format!(
                    "input dimension {axis} ({}) is not fixed in the file: re-export it with a fixed input size \
                     (torch.onnx.export with dynamic_axes for the batch only, or onnxsim --overwrite-input-shape), \
                     or give the shape (the CLI's --shape)",
                    dim.concretize().map(|d| d.to_string()).unwrap_or_else(|| "not named".into())
                )))
            }
        }
    }
    Ok(shape)
}

/// Class count of the score output `outlet`: `[batch, k]`, `[k]` or `[batch, k, 1, 1]`.
fn classes_of(model: &TypedModel, outlet: OutletId, batch: usize) -> Result<usize> {
    let fact = model.outlet_fact(outlet).map_err(|e| Error::Model(chain(&e)))?;
    let dims: Option<Vec<usize>> = fact.shape.as_concrete().map(|d| d.to_vec());
    let name = crate::output::outlet_name(model, outlet);
    let fix = "re-export it with a fixed [N, classes] float32 score output";
    let dims = dims.ok_or_else(|| Error::Model(format!("the shape of output \"{name}\" is not fixed: {fix}")))?;
    if fact.datum_type != f32::datum_type() {
        return Err(Error::Model(format!(
            "output \"{name}\" is {:?}, not float32 scores: {fix} (a float64 model: cast its output to float32)",
            fact.datum_type
        )));
    }
    let total: usize = dims.iter().product();
    if total == 0 || !total.is_multiple_of(batch) || dims.first() != Some(&batch) && batch != 1 {
        return Err(Error::Model(format!(
            "output \"{name}\" has shape {dims:?}, not one score vector per image (batch {batch}): {fix}"
        )));
    }
    Ok(total / batch)
}
