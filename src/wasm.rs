//! The thin `#[wasm_bindgen]` facade the page's worker calls; all logic lives in the core.

use std::cell::RefCell;
use std::collections::HashMap;

use wasm_bindgen::prelude::*;

use crate::attack::{baselines, lbfgs, Goal, Outcome};
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

/// The tables' target for test digit `index` of class `label` (as `blindspot table1` picks it).
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
    inner: Classifier,
    /// Gradient graphs built so far, by objective: building one costs more than evaluating it.
    gradients: RefCell<HashMap<String, GradientModel>>,
}

#[wasm_bindgen]
impl Model {
    /// Loads ONNX bytes; `shape` is the input shape from the model card, or undefined to use the
    /// shape the file declares.
    #[wasm_bindgen(constructor)]
    pub fn new(bytes: &[u8], shape: Option<Vec<u32>>) -> Result<Model, JsError> {
        let shape: Option<Vec<usize>> = shape.map(|s| s.into_iter().map(|d| d as usize).collect());
        let inner = Classifier::load(bytes, shape.as_deref()).map_err(js_error)?;
        Ok(Model { inner, gradients: RefCell::default() })
    }

    #[wasm_bindgen(getter, js_name = inputShape)]
    pub fn input_shape(&self) -> Vec<u32> {
        self.inner.input_shape().iter().map(|&d| d as u32).collect()
    }

    #[wasm_bindgen(getter)]
    pub fn classes(&self) -> usize {
        self.inner.classes()
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
