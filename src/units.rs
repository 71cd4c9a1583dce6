//! Property 1: a named tensor's activations over many images, the images that maximise a unit or a
//! random direction, and activation maximisation inside the [0,1] box.

use tract_onnx::prelude::*;

use crate::error::chain;
use crate::grad::{GradientModel, Objective};
use crate::optim::lbfgsb;
use crate::rng::Rng;
use crate::{Classifier, Error, Result};

/// A named tensor of the graph: its ONNX name and its shape for one image (batch dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
}

impl NamedTensor {
    /// Values per image.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Every named float tensor between the input and the logits, in evaluation order (the input
/// itself left out; the logits included).
pub fn named_tensors(model: &Classifier) -> Vec<NamedTensor> {
    let graph = model.typed_graph();
    let inputs = graph.input_outlets().map(|o| o.to_vec()).unwrap_or_default();
    let order = graph.eval_order().unwrap_or_default();
    let mut out = vec![];
    for id in order {
        for slot in 0..graph.nodes[id].outputs.len() {
            let outlet = OutletId::new(id, slot);
            let Some(name) = graph.outlet_label(outlet) else { continue };
            let Ok(fact) = graph.outlet_fact(outlet) else { continue };
            let Some(shape) = fact.shape.as_concrete() else { continue };
            if inputs.contains(&outlet) || fact.datum_type != f32::datum_type() || out.iter().any(|t: &NamedTensor| t.name == name) {
                continue;
            }
            out.push(NamedTensor { name: name.to_string(), shape: per_image(shape, model.batch()) });
        }
    }
    out
}

fn per_image(shape: &[usize], batch: usize) -> Vec<usize> {
    match shape.split_first() {
        Some((&b, rest)) if b == batch && batch == 1 && !rest.is_empty() => rest.to_vec(),
        _ => shape.to_vec(),
    }
}

/// The model cut at a named tensor: images in, that tensor's values out.
pub struct Probe {
    plan: Arc<TypedRunnableModel>,
    pub tensor: NamedTensor,
    image_len: usize,
    input_shape: Vec<usize>,
}

impl Probe {
    pub fn new(model: &Classifier, tensor: &str) -> Result<Probe> {
        if model.batch() != 1 {
            return Err(Error::Input(format!(
                "activations need a model loaded one image at a time, not {}: load it with input shape [1, ...]",
                model.batch()
            )));
        }
        let outlet = model.named_outlet(tensor)?;
        let mut graph = model.typed_graph().clone();
        let fact = graph.outlet_fact(outlet).map_err(|e| Error::Model(chain(&e)))?.clone();
        let shape = fact
            .shape
            .as_concrete()
            .ok_or_else(|| Error::Model(format!("tensor \"{tensor}\" has no fixed shape")))?
            .to_vec();
        graph.select_output_outlets(&[outlet]).map_err(|e| Error::Model(chain(&e)))?;
        let plan = graph
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| Error::Model(format!("cutting the graph at \"{tensor}\": {}", chain(&e))))?;
        Ok(Probe {
            plan,
            tensor: NamedTensor { name: tensor.to_string(), shape: per_image(&shape, 1) },
            image_len: model.image_len(),
            input_shape: model.input_shape().to_vec(),
        })
    }

    /// The tensor's values for each image of `images` (laid end to end), laid end to end.
    pub fn run(&self, images: &[f32]) -> Result<Vec<f32>> {
        if images.is_empty() || !images.len().is_multiple_of(self.image_len) {
            return Err(Error::Input(format!("{} values do not make whole images of {}", images.len(), self.image_len)));
        }
        let mut out = Vec::with_capacity(images.len() / self.image_len * self.tensor.len());
        for image in images.chunks(self.image_len) {
            let x = Tensor::from_shape(&self.input_shape, image).map_err(|e| Error::Input(chain(&e)))?;
            let result = self.plan.run(tvec!(x.into())).map_err(|e| crate::error::run_failed(&e))?;
            let view = result[0].to_plain_array_view::<f32>().map_err(|e| Error::Run(chain(&e)))?;
            out.extend(view.iter().copied());
        }
        Ok(out)
    }
}

/// What to do about a tensor name the graph does not have.
pub(crate) const PICK_A_TENSOR: &str = "pick one from the layer list (the CLI's `blindspot units MODEL` lists them)";

/// The unit direction e_i of a tensor of `len` values.
pub fn unit(len: usize, i: usize) -> Result<Vec<f32>> {
    if i >= len {
        return Err(Error::Input(format!(
            "unit {i} is not in the tensor, which has {len} units (0 to {}): pick a smaller unit",
            len.saturating_sub(1)
        )));
    }
    let mut v = vec![0.0; len];
    v[i] = 1.0;
    Ok(v)
}

/// A random direction of unit length (Gaussian, seeded): the paper's v.
pub fn random_direction(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng(seed);
    let v: Vec<f64> = (0..len).map(|_| rng.gaussian() as f64).collect();
    let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt().max(1e-30);
    v.iter().map(|a| (a / norm) as f32).collect()
}

/// The `k` images whose activations (`per_image` values each, laid end to end) have the largest
/// projection on `direction`, best first, with that projection; ties go to the lower index.
pub fn top_k(activations: &[f32], per_image: usize, direction: &[f32], k: usize) -> Result<Vec<(usize, f64)>> {
    if direction.len() != per_image || per_image == 0 || !activations.len().is_multiple_of(per_image) {
        return Err(Error::Input(format!(
            "a direction of {} values against activations of {} per image",
            direction.len(),
            per_image
        )));
    }
    let mut scores: Vec<(usize, f64)> = activations
        .chunks(per_image)
        .map(|a| a.iter().zip(direction).map(|(&x, &v)| x as f64 * v as f64).sum())
        .enumerate()
        .collect();
    scores.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scores.truncate(k);
    Ok(scores)
}

/// What activation maximisation found.
#[derive(Debug, Clone)]
pub struct Maximised {
    pub image: Vec<f32>,
    /// <phi(x), v> at the start and at the end.
    pub start_value: f64,
    pub value: f64,
    pub iterations: usize,
}

/// Gradient ascent on <phi(x), v> for the tensor `tensor` inside the [0,1] box, from `start`:
/// L-BFGS-B (the attack's optimiser) on -<phi(x), v>, at most `iterations` iterations.
/// `progress(iteration, value)` after each; returning `false` cancels.
pub fn maximise(
    model: &Classifier,
    gradient: &GradientModel,
    direction: &[f32],
    start: &[f32],
    iterations: usize,
    mut progress: impl FnMut(usize, f64) -> bool,
) -> Result<Maximised> {
    if start.len() != model.image_len() {
        return Err(Error::Input(format!("a start image of {} values; the model takes {}", start.len(), model.image_len())));
    }
    let parameter: usize = gradient.parameter_shape().iter().product();
    if direction.len() != parameter {
        return Err(Error::Input(format!("a direction of {} values for a tensor of {parameter}", direction.len())));
    }
    let mut failure = None;
    let mut f = |x: &[f64]| -> (f64, Vec<f64>) {
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        match gradient.evaluate(&x32, direction) {
            Ok(e) => (-(e.objective as f64), e.gradient.iter().map(|&g| -(g as f64)).collect()),
            Err(e) => {
                failure.get_or_insert(e);
                (f64::INFINITY, vec![0.0; x.len()])
            }
        }
    };
    let x0: Vec<f64> = start.iter().map(|&v| v as f64).collect();
    let start_value = -f(&x0).0;
    let n = x0.len();
    let options = lbfgsb::Options { max_iterations: iterations, ..Default::default() };
    let mut cancelled = false;
    let outcome = crate::optim::minimize(&mut f, &x0, &vec![0.0; n], &vec![1.0; n], &options, |i, value, _| {
        cancelled = !progress(i, -value);
        !cancelled
    });
    if let Some(e) = failure {
        return Err(e);
    }
    if cancelled {
        return Err(Error::Cancelled);
    }
    Ok(Maximised {
        image: outcome.x.iter().map(|&v| v as f32).collect(),
        start_value,
        value: -outcome.f,
        iterations: outcome.iterations,
    })
}

/// The gradient graph of <phi(x), v> for the tensor named `tensor`.
pub fn projection(model: &Classifier, tensor: &str) -> Result<GradientModel> {
    model.gradient(&Objective::Projection { tensor: tensor.to_string() })
}
