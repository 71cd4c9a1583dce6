//! The thin `#[wasm_bindgen]` facade the page's worker calls; all logic lives in the core.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use wasm_bindgen::prelude::*;

use crate::attack::{baselines, lbfgs, Goal, Outcome};
use crate::gpu::{Gpu, GpuModel};
use crate::grad::{Evaluation, GradientModel, Objective};
use crate::{Classification, Classifier};

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs a panic hook that keeps the message, so the worker can report it after the trap.
#[wasm_bindgen(start)]
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        let message = info.to_string();
        web_sys::console::error_1(&JsValue::from_str(&message));
        LAST_PANIC.with(|p| *p.borrow_mut() = Some(message));
    }));
}

/// The message of the last panic, if the module trapped on one.
#[wasm_bindgen(js_name = lastPanic)]
pub fn last_panic() -> Option<String> {
    LAST_PANIC.with(|p| p.borrow().clone())
}

fn js_error(e: crate::Error) -> JsError {
    JsError::new(&e.to_string())
}

/// A grey drawing (`w` x `h`, ink high, values in [0,1]) made to look like an MNIST digit.
#[wasm_bindgen(js_name = mnistLike)]
pub fn mnist_like(pixels: &[f32], w: usize, h: usize) -> Vec<f32> {
    crate::image::mnist_like(pixels, w, h)
}

/// An RGBA image (`w` x `h`, e.g. canvas ImageData) of a digit, photographed, scanned or drawn,
/// made into an MNIST-style digit (ink high, centred); an error when no stroke stands out.
#[wasm_bindgen(js_name = mnistFromRgba)]
pub fn mnist_from_rgba(rgba: &[u8], w: usize, h: usize) -> Result<Vec<f32>, JsError> {
    crate::image::mnist_from_rgba(rgba, w, h).map_err(js_error)
}

/// RGBA bytes (canvas ImageData, `w` x `h`) as a model input of `channels` planes in [0,1]:
/// grey (colour averaged) for 1, R, G, B for 3.
#[wasm_bindgen(js_name = planesFromRgba)]
pub fn planes_from_rgba(rgba: &[u8], w: usize, h: usize, channels: usize) -> Result<Vec<f32>, JsError> {
    crate::image::planes_from_rgba(rgba, w, h, channels).map_err(js_error)
}

/// The tables' target for test digit `index` of class `label` (as `blindspot table1` picks it).
/// The roofline's peak kernel (`bench::simd_peak`): returns its checksum; the page times it.
#[wasm_bindgen(js_name = simdPeak)]
pub fn simd_peak(iterations: u32) -> f32 {
    crate::bench::simd_peak(iterations)
}

/// Floating-point operations in one `simdPeak(iterations)` call.
#[wasm_bindgen(js_name = simdPeakFlops)]
pub fn simd_peak_flops(iterations: u32) -> f64 {
    crate::bench::simd_peak_flops(iterations)
}

#[wasm_bindgen(js_name = paperTarget)]
pub fn paper_target(label: usize, index: usize, seed: u64, classes: usize) -> usize {
    crate::paper::target_for(label, index, seed, classes.max(2))
}

/// The paper's amplified example: `x` moved along `adversarial - x` to distortion `to`.
#[wasm_bindgen]
pub fn amplified(x: &[f32], adversarial: &[f32], to: f64) -> Vec<f32> {
    crate::paper::amplified(x, adversarial, to)
}

/// `images` (concatenated, `size` pixels each) plus clipped Gaussian noise, once per standard
/// deviation in `stddevs`, all from one seeded stream (concatenated in that order), as
/// `blindspot table2` and `table3` make their noise rows.
#[wasm_bindgen(js_name = paperNoise)]
pub fn paper_noise(images: &[f32], size: usize, stddevs: &[f64], seed: u64) -> Vec<f32> {
    let mut rng = crate::rng::Rng(seed);
    let mut out = Vec::with_capacity(images.len() * stddevs.len());
    for &stddev in stddevs {
        for x in images.chunks(size.max(1)) {
            out.extend(crate::paper::noisy_image(x, stddev, &mut rng));
        }
    }
    out
}

/// A loaded classifier.
#[wasm_bindgen]
pub struct Model {
    inner: Rc<Classifier>,
    /// Gradient graphs built so far, by objective: building one costs more than evaluating it.
    gradients: Rc<RefCell<HashMap<String, GradientModel>>>,
    /// The WebGPU side; shared (`Rc`) with the futures of the async exports, which outlive the
    /// call that started them.
    gpu: Rc<RefCell<GpuSide>>,
}

// The worker's one WebGPU device, requested on first use and shared by every model.
thread_local! {
    static DEVICE: RefCell<Option<Gpu>> = const { RefCell::new(None) };
}

async fn shared_gpu() -> crate::Result<Gpu> {
    if let Some(gpu) = DEVICE.with(|d| d.borrow().clone()) {
        return Ok(gpu);
    }
    let gpu = Gpu::request().await?;
    DEVICE.with(|d| *d.borrow_mut() = Some(gpu.clone()));
    Ok(gpu)
}

/// A model's WebGPU state: the device once `useGpu` has succeeded, the compiled gradient graphs
/// by objective (weights uploaded once each), and whether the GPU is the backend in use.
#[derive(Default)]
struct GpuSide {
    gpu: Option<Gpu>,
    models: HashMap<String, Rc<GpuModel>>,
    on: bool,
}

/// What an async export needs of a Model, owned.
#[derive(Clone)]
struct Shared {
    inner: Rc<Classifier>,
    gradients: Rc<RefCell<HashMap<String, GradientModel>>>,
    gpu: Rc<RefCell<GpuSide>>,
}

impl Shared {
    /// The gradient graph of `objective` (built on first use) and its one-hot parameter for `class`.
    fn parameter(&self, objective: &str, class: usize) -> crate::Result<Vec<f32>> {
        let mut cache = self.gradients.borrow_mut();
        if !cache.contains_key(objective) {
            cache.insert(objective.to_string(), self.inner.gradient(&Objective::parse(objective)?)?);
        }
        cache[objective].one_hot(class)
    }

    /// The GPU compilation of the gradient graph of `objective`, built on first use; an error
    /// naming the op when the backend has no kernel for it.
    fn gpu_model(&self, objective: &str) -> crate::Result<Rc<GpuModel>> {
        if let Some(m) = self.gpu.borrow().models.get(objective) {
            return Ok(m.clone());
        }
        let gpu = self.gpu.borrow().gpu.clone().ok_or_else(|| crate::Error::Run("WebGPU is not set up for this model (useGpu)".into()))?;
        self.parameter(objective, 0)?;
        let model = Rc::new(GpuModel::for_gradient(&gpu, &self.gradients.borrow()[objective])?);
        self.gpu.borrow_mut().models.insert(objective.to_string(), model.clone());
        Ok(model)
    }

    fn goal(&self, pixels: &[f32], target: i32) -> crate::Result<Goal> {
        Ok(if target < 0 {
            Goal::Untargeted { label: self.inner.classify(pixels)?.label }
        } else {
            Goal::Target(target as usize)
        })
    }
}

/// A Promise of `work`, rejected with a JS Error carrying the core's message.
fn promise<T: Into<JsValue>>(work: impl std::future::Future<Output = crate::Result<T>> + 'static) -> js_sys::Promise {
    wasm_bindgen_futures::future_to_promise(async move { work.await.map(Into::into).map_err(|e| js_error(e).into()) })
}

/// What a dropped file suggests for its input: `{ query, shape, channels }` as JSON, where
/// `query` is the preprocessing (layout from the shape, Windows ML metadata) and `shape` the
/// declared input shape (a symbolic dimension as 0).
#[wasm_bindgen(js_name = suggestPreprocessing)]
pub fn suggest_preprocessing(bytes: &[u8]) -> Result<String, JsError> {
    let proto = crate::model::decode(bytes).map_err(js_error)?;
    let pre = crate::preprocess::Preprocessing::suggested(&proto).map_err(js_error)?;
    let shape = crate::preprocess::declared_shape(&proto);
    let channels = shape.get(pre.layout.channel_axis());
    Ok(format!(
        "{{\"query\":\"{}\",\"shape\":[{}],\"channels\":{}}}",
        pre.to_query(),
        shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(","),
        channels.copied().unwrap_or(0)
    ))
}

#[wasm_bindgen]
impl Model {
    /// Loads ONNX bytes; `shape` is the input shape from the model card, or undefined to use the
    /// shape the file declares. `preprocessing` (a query such as "layout=nhwc&range=imagenet",
    /// see [`crate::preprocess`]) is wired in front of the input when given: the model then takes
    /// [0,1] RGB planes and `shape` is theirs.
    #[wasm_bindgen(constructor)]
    pub fn new(bytes: &[u8], shape: Option<Vec<u32>>, preprocessing: Option<String>) -> Result<Model, JsError> {
        let shape: Option<Vec<usize>> = shape.map(|s| s.into_iter().map(|d| d as usize).collect());
        let inner = match preprocessing {
            Some(query) => {
                let pre = crate::preprocess::Preprocessing::parse(&query).map_err(js_error)?;
                Classifier::load_with(bytes, shape.as_deref(), &pre)
            }
            None => Classifier::load(bytes, shape.as_deref()),
        }
        .map_err(js_error)?;
        Ok(Model { inner: Rc::new(inner), gradients: Rc::default(), gpu: Rc::default() })
    }

    #[wasm_bindgen(getter, js_name = inputShape)]
    pub fn input_shape(&self) -> Vec<u32> {
        self.inner.input_shape().iter().map(|&d| d as u32).collect()
    }

    #[wasm_bindgen(getter)]
    pub fn classes(&self) -> usize {
        self.inner.classes()
    }

    /// What the graph's score output is, in words: "logits", or "probabilities (Softmax \"s\") of
    /// output \"probs\"" (the attack works on the logits behind it).
    #[wasm_bindgen(getter)]
    pub fn output(&self) -> String {
        self.inner.output().describe()
    }

    /// The objective (`ce` or `margin`, against class `target`) at `pixels` and its gradient.
    pub fn gradient(&self, objective: &str, pixels: &[f32], target: usize) -> Result<Gradient, JsError> {
        let mut cache = self.gradients.borrow_mut();
        if !cache.contains_key(objective) {
            let parsed = Objective::parse(objective).map_err(js_error)?;
            cache.insert(objective.to_string(), self.inner.gradient(&parsed).map_err(js_error)?);
        }
        let model = &cache[objective];
        let eval = model.evaluate(pixels, &model.one_hot(target).map_err(js_error)?).map_err(js_error)?;
        Ok(Gradient(eval))
    }

    /// The paper's L-BFGS attack on `pixels`: towards class `target`, or any class but the model's
    /// own answer when `target` is negative. `progress(c, iteration, loss, distortion)` is called
    /// after every L-BFGS iteration; returning `false` cancels.
    pub fn attack(
        &self,
        pixels: &[f32],
        target: i32,
        max_iterations: usize,
        c_steps: usize,
        progress: &js_sys::Function,
    ) -> Result<Attack, JsError> {
        let goal = self.goal(pixels, target)?;
        let options = lbfgs::Options { max_iterations, c_steps, ..Default::default() };
        let outcome = lbfgs::attack(&self.inner, pixels, goal, &options, |p| {
            let args = js_sys::Array::of4(
                &p.c.into(),
                &(p.iteration as f64).into(),
                &p.loss.into(),
                &p.distortion.into(),
            );
            progress.apply(&JsValue::NULL, &args).map(|v| v.as_bool() != Some(false)).unwrap_or(false)
        })
        .map_err(js_error)?;
        Ok(Attack(outcome))
    }

    /// FGSM (`steps` = 0) or PGD (`steps` > 0, in the L-infinity ball, or L2 when `l2`) of radius
    /// `epsilon`, towards `target` or, when negative, away from the model's own answer.
    pub fn baseline(&self, pixels: &[f32], target: i32, epsilon: f64, steps: usize, l2: bool) -> Result<Attack, JsError> {
        let goal = self.goal(pixels, target)?;
        let budget = baselines::Budget { epsilon, step: epsilon / 10.0, iterations: steps };
        let outcome = match (steps, l2) {
            (0, _) => baselines::fgsm(&self.inner, pixels, goal, epsilon),
            (_, false) => baselines::pgd_linf(&self.inner, pixels, goal, &budget),
            (_, true) => baselines::pgd_l2(&self.inner, pixels, goal, &budget),
        };
        Ok(Attack(outcome.map_err(js_error)?))
    }

    /// Gaussian noise scaled to `distortion` (then clipped to the box), seeded: the same size of
    /// change as an adversarial example, in a random direction.
    pub fn noise(&self, pixels: &[f32], target: i32, distortion: f64, seed: u64) -> Result<Attack, JsError> {
        let goal = self.goal(pixels, target)?;
        let mut rng = crate::rng::Rng(seed);
        let outcome = baselines::noise_of_distortion(&self.inner, pixels, goal, distortion, &mut rng);
        Ok(Attack(outcome.map_err(js_error)?))
    }

    fn goal(&self, pixels: &[f32], target: i32) -> Result<Goal, JsError> {
        Ok(if target < 0 {
            Goal::Untargeted { label: self.inner.classify(pixels).map_err(js_error)?.label }
        } else {
            Goal::Target(target as usize)
        })
    }

    /// Classifies one image of pixels in [0,1].
    pub fn classify(&self, pixels: &[f32]) -> Result<Prediction, JsError> {
        self.inner.classify(pixels).map(Prediction).map_err(js_error)
    }

    /// The paper's Table 5 for this model (see `spectral`): { rows, product, unavailable, excluded,
    /// markdown }, each row a plain object; `progress(done, total, node)` before each linear layer.
    pub fn lipschitz(&self, progress: &js_sys::Function) -> Result<JsValue, JsError> {
        let table = crate::spectral::lipschitz_graph(self.inner.graph(), |done, total, node| {
            let _ = progress.call3(&JsValue::NULL, &(done as f64).into(), &(total as f64).into(), &node.into());
        })
        .map_err(js_error)?;
        let number = |v: Option<f64>| v.map(JsValue::from).unwrap_or(JsValue::NULL);
        let rows = js_sys::Array::new();
        for r in &table.rows {
            let then = js_sys::Array::new();
            for (what, factor) in &r.then {
                then.push(&plain(&[("what", what.as_str().into()), ("factor", (*factor).into())]));
            }
            rows.push(&plain(&[
                ("node", r.node.as_str().into()),
                ("op", r.op.as_str().into()),
                ("shape", r.shape.as_str().into()),
                ("power", number(r.power)),
                ("iterations", number(r.iterations.map(|i| i as f64))),
                ("fourier", number(r.fourier)),
                ("strided", r.strided.into()),
                ("then", then.into()),
                ("factor", r.factor.into()),
                ("bound", r.bound.into()),
            ]));
        }
        let excluded: js_sys::Array = table.excluded.iter().map(|e| JsValue::from(e.as_str())).collect();
        Ok(plain(&[
            ("rows", rows.into()),
            ("product", number(table.product)),
            ("unavailable", table.unavailable.as_deref().map(JsValue::from).unwrap_or(JsValue::NULL)),
            ("excluded", excluded.into()),
            ("markdown", table.markdown().into()),
        ]))
    }
}

/// The WebGPU backend (see [`crate::gpu`]): gradients and the L-BFGS attack evaluated on the
/// GPU. FGSM, PGD, noise, Property 1 and Table 5 stay on the CPU.
#[wasm_bindgen]
impl Model {
    fn shared(&self) -> Shared {
        Shared { inner: self.inner.clone(), gradients: self.gradients.clone(), gpu: self.gpu.clone() }
    }

    /// Switches this model to WebGPU: requests the worker's adapter and device (once per worker)
    /// and compiles the cross-entropy gradient graph for it, uploading its weights, then checks
    /// one evaluation against the CPU. Resolves to the adapter's name; rejects, naming the op,
    /// when the backend has no kernel for one, or when the check fails.
    #[wasm_bindgen(js_name = useGpu)]
    pub fn use_gpu(&self) -> js_sys::Promise {
        let shared = self.shared();
        promise(async move {
            let gpu = shared_gpu().await?;
            shared.gpu.borrow_mut().gpu = Some(gpu.clone());
            let model = shared.gpu_model("ce")?;
            // A shader the browser refuses fails silently (its dispatches are skipped, the
            // results read back as zeros): one evaluation is checked against the CPU's first.
            let x = vec![0.5; shared.inner.image_len()];
            let parameter = shared.parameter("ce", 0)?;
            let ours = model.evaluate(&x, &parameter).await?;
            let theirs = shared.gradients.borrow()["ce"].evaluate(&x, &parameter)?;
            let rel = |a: &f32, b: &f32| (a - b).abs() / b.abs().max(1.0);
            let worst = std::iter::once((&ours.objective, &theirs.objective))
                .chain(ours.logits.iter().zip(&theirs.logits))
                .chain(ours.gradient.iter().zip(&theirs.gradient))
                .map(|(a, b)| rel(a, b))
                .fold(0f32, f32::max);
            if worst.is_nan() || worst > 1e-3 {
                shared.gpu.borrow_mut().models.clear();
                return Err(crate::Error::Run(format!(
                    "its results differ from the CPU's by {worst:.1e} relative (a kernel this browser's WebGPU refused?)"
                )));
            }
            shared.gpu.borrow_mut().on = true;
            Ok(gpu.adapter)
        })
    }

    /// Switches this model back to the CPU (its GPU buffers stay, for switching back).
    #[wasm_bindgen(js_name = useCpu)]
    pub fn use_cpu(&self) {
        self.gpu.borrow_mut().on = false;
    }

    /// "webgpu" after `useGpu` succeeded (and no `useCpu` since), else "cpu".
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        if self.gpu.borrow().on { "webgpu" } else { "cpu" }.into()
    }

    /// The WebGPU adapter's name as wgpu reports it, once `useGpu` has succeeded.
    #[wasm_bindgen(getter)]
    pub fn adapter(&self) -> Option<String> {
        self.gpu.borrow().gpu.as_ref().map(|g| g.adapter.clone())
    }

    /// `gradient` on the GPU: resolves to a Gradient.
    #[wasm_bindgen(js_name = gradientGpu)]
    pub fn gradient_gpu(&self, objective: String, pixels: Vec<f32>, target: usize) -> js_sys::Promise {
        let shared = self.shared();
        promise(async move {
            let model = shared.gpu_model(&objective)?;
            let parameter = shared.parameter(&objective, target)?;
            Ok(Gradient(model.evaluate(&pixels, &parameter).await?))
        })
    }

    /// `attack` with every gradient evaluated on the GPU (the end point of each run is classified
    /// on the CPU); resolves to an Attack.
    #[wasm_bindgen(js_name = attackGpu)]
    pub fn attack_gpu(
        &self,
        pixels: Vec<f32>,
        target: i32,
        max_iterations: usize,
        c_steps: usize,
        progress: js_sys::Function,
    ) -> js_sys::Promise {
        let shared = self.shared();
        promise(async move {
            let goal = shared.goal(&pixels, target)?;
            let (objective, class) = goal.objective();
            // the names `Objective::parse` reads: a goal only ever asks for these two
            let name = if objective == Objective::CrossEntropy { "ce" } else { "margin" };
            let model = shared.gpu_model(name)?;
            let parameter = shared.parameter(name, class)?;
            let options = lbfgs::Options { max_iterations, c_steps, ..Default::default() };
            let outcome = crate::gpu::attack::attack(&shared.inner, &model, &parameter, &pixels, goal, &options, |p| {
                let args = js_sys::Array::of4(&p.c.into(), &(p.iteration as f64).into(), &p.loss.into(), &p.distortion.into());
                progress.apply(&JsValue::NULL, &args).map(|v| v.as_bool() != Some(false)).unwrap_or(false)
            })
            .await?;
            Ok(Attack(outcome))
        })
    }
}

/// A plain JS object of `fields` (structured-clonable, for the worker's reply).
fn plain(fields: &[(&str, JsValue)]) -> JsValue {
    let object = js_sys::Object::new();
    for (key, value) in fields {
        let _ = js_sys::Reflect::set(&object, &JsValue::from(*key), value);
    }
    object.into()
}

/// The model's answer for one image.
#[wasm_bindgen]
pub struct Prediction(Classification);

#[wasm_bindgen]
impl Prediction {
    #[wasm_bindgen(getter)]
    pub fn label(&self) -> usize {
        self.0.label
    }

    #[wasm_bindgen(getter)]
    pub fn probabilities(&self) -> Vec<f32> {
        self.0.probabilities.clone()
    }

    #[wasm_bindgen(getter)]
    pub fn logits(&self) -> Vec<f32> {
        self.0.logits.clone()
    }
}

/// An objective's value, the logits and the gradient at one input.
#[wasm_bindgen]
pub struct Gradient(Evaluation);

#[wasm_bindgen]
impl Gradient {
    #[wasm_bindgen(getter)]
    pub fn objective(&self) -> f32 {
        self.0.objective
    }

    #[wasm_bindgen(getter)]
    pub fn logits(&self) -> Vec<f32> {
        self.0.logits.clone()
    }

    #[wasm_bindgen(getter)]
    pub fn gradient(&self) -> Vec<f32> {
        self.0.gradient.clone()
    }
}

/// An attack's result (see `attack::Outcome`).
#[wasm_bindgen]
pub struct Attack(Outcome);

#[wasm_bindgen]
impl Attack {
    #[wasm_bindgen(getter)]
    pub fn success(&self) -> bool {
        self.0.success
    }

    #[wasm_bindgen(getter)]
    pub fn label(&self) -> usize {
        self.0.label
    }

    #[wasm_bindgen(getter)]
    pub fn probabilities(&self) -> Vec<f32> {
        self.0.probabilities.clone()
    }

    #[wasm_bindgen(getter)]
    pub fn adversarial(&self) -> Vec<f32> {
        self.0.adversarial.clone()
    }

    #[wasm_bindgen(getter)]
    pub fn distortion(&self) -> f64 {
        self.0.distortion
    }

    #[wasm_bindgen(getter)]
    pub fn l2(&self) -> f64 {
        self.0.l2
    }

    #[wasm_bindgen(getter)]
    pub fn linf(&self) -> f64 {
        self.0.linf
    }

    #[wasm_bindgen(getter)]
    pub fn iterations(&self) -> usize {
        self.0.iterations
    }

    #[wasm_bindgen(getter, js_name = gradientEvaluations)]
    pub fn gradient_evaluations(&self) -> usize {
        self.0.gradient_evaluations
    }

    #[wasm_bindgen(getter)]
    pub fn seconds(&self) -> f64 {
        self.0.seconds
    }

    #[wasm_bindgen(getter)]
    pub fn c(&self) -> Option<f64> {
        self.0.c
    }
}

/// Property 1 (see [`crate::units`]): named tensors, activations, rankings, maximisation.
#[wasm_bindgen]
impl Model {
    /// The graph's named tensors, input left out, in evaluation order.
    #[wasm_bindgen(js_name = tensorNames)]
    pub fn tensor_names(&self) -> Vec<String> {
        crate::units::named_tensors(&self.inner).into_iter().map(|t| t.name).collect()
    }

    /// The shape of named tensor `name` for one image.
    #[wasm_bindgen(js_name = tensorShape)]
    pub fn tensor_shape(&self, name: &str) -> Result<Vec<u32>, JsError> {
        crate::units::named_tensors(&self.inner)
            .into_iter()
            .find(|t| t.name == name)
            .map(|t| t.shape.iter().map(|&d| d as u32).collect())
            .ok_or_else(|| JsError::new(&format!("the graph has no tensor named \"{name}\"")))
    }

    /// An empty set of activations of tensor `tensor`, filled by `add`.
    pub fn activations(&self, tensor: &str) -> Result<Activations, JsError> {
        let probe = crate::units::Probe::new(&self.inner, tensor).map_err(js_error)?;
        Ok(Activations { probe, values: vec![] })
    }

    /// Gradient ascent on <phi(x), direction> for tensor `tensor` inside the [0,1] box from
    /// `start`; `progress(iteration, value)` after each iteration, `false` cancels.
    pub fn maximise(
        &self,
        tensor: &str,
        direction: &[f32],
        start: &[f32],
        iterations: usize,
        progress: &js_sys::Function,
    ) -> Result<Maximised, JsError> {
        let key = format!("projection:{tensor}");
        let mut cache = self.gradients.borrow_mut();
        if !cache.contains_key(&key) {
            cache.insert(key.clone(), crate::units::projection(&self.inner, tensor).map_err(js_error)?);
        }
        let found = crate::units::maximise(&self.inner, &cache[&key], direction, start, iterations, |i, value| {
            let args = js_sys::Array::of2(&(i as f64).into(), &value.into());
            progress.apply(&JsValue::NULL, &args).map(|v| v.as_bool() != Some(false)).unwrap_or(false)
        })
        .map_err(js_error)?;
        Ok(Maximised(found))
    }
}

/// A named tensor's activations over a growing set of images (the digit pack, in chunks).
#[wasm_bindgen]
pub struct Activations {
    probe: crate::units::Probe,
    values: Vec<f32>,
}

#[wasm_bindgen]
impl Activations {
    /// Values per image.
    #[wasm_bindgen(getter)]
    pub fn len(&self) -> usize {
        self.probe.tensor.len()
    }

    /// Images added so far.
    #[wasm_bindgen(getter)]
    pub fn count(&self) -> usize {
        self.values.len() / self.probe.tensor.len().max(1)
    }

    /// Runs the model up to the tensor on `images` (laid end to end) and keeps the activations.
    pub fn add(&mut self, images: &[f32]) -> Result<(), JsError> {
        let more = self.probe.run(images).map_err(js_error)?;
        self.values.extend(more);
        Ok(())
    }

    /// The `k` images with the largest <phi(x), direction>, best first, as [index, value, ...].
    pub fn top(&self, direction: &[f32], k: usize) -> Result<Vec<f64>, JsError> {
        let ranked = crate::units::top_k(&self.values, self.len(), direction, k).map_err(js_error)?;
        Ok(ranked.into_iter().flat_map(|(i, v)| [i as f64, v]).collect())
    }
}

/// The unit direction e_i of a tensor of `len` values.
#[wasm_bindgen(js_name = unitDirection)]
pub fn unit_direction(len: usize, i: usize) -> Result<Vec<f32>, JsError> {
    crate::units::unit(len, i).map_err(js_error)
}

/// A seeded random direction of unit length (as `blindspot units --seed`).
#[wasm_bindgen(js_name = randomDirection)]
pub fn random_direction(len: usize, seed: u64) -> Vec<f32> {
    crate::units::random_direction(len, seed)
}

/// An image found by activation maximisation.
#[wasm_bindgen]
pub struct Maximised(crate::units::Maximised);

#[wasm_bindgen]
impl Maximised {
    #[wasm_bindgen(getter)]
    pub fn image(&self) -> Vec<f32> {
        self.0.image.clone()
    }

    #[wasm_bindgen(getter)]
    pub fn value(&self) -> f64 {
        self.0.value
    }

    #[wasm_bindgen(getter, js_name = startValue)]
    pub fn start_value(&self) -> f64 {
        self.0.start_value
    }

    #[wasm_bindgen(getter)]
    pub fn iterations(&self) -> usize {
        self.0.iterations
    }
}
