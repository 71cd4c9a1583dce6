//! Adversarial examples: the paper's box-constrained L-BFGS with its search over c, and baselines.

pub mod baselines;
pub mod lbfgs;
pub mod metrics;

use crate::grad::{Evaluation, GradientModel, Objective};
use crate::model::{argmax, softmax};
use crate::{Classifier, Error, Result};

/// What the attack aims for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// Make the model say this class.
    Target(usize),
    /// Make the model say anything but `label` (the digit's true or current class).
    Untargeted { label: usize },
}

impl Goal {
    /// The loss graph the goal needs and the class its one-hot parameter marks: cross-entropy
    /// towards a target, the margin of the label for an untargeted goal.
    pub fn objective(&self) -> (Objective, usize) {
        match *self {
            Goal::Target(t) => (Objective::CrossEntropy, t),
            Goal::Untargeted { label } => (Objective::Margin, label),
        }
    }

    /// Whether `predicted` meets the goal.
    pub fn reached(&self, predicted: usize) -> bool {
        match *self {
            Goal::Target(t) => predicted == t,
            Goal::Untargeted { label } => predicted != label,
        }
    }
}

/// An attack's answer, with the numbers the paper reports (serialised as the page reads it).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub success: bool,
    pub adversarial: Vec<f32>,
    /// The model's class for the adversarial example, and its probabilities.
    pub label: usize,
    pub probabilities: Vec<f32>,
    /// sqrt(mean (x' - x)^2): the paper's distortion.
    pub distortion: f64,
    pub l2: f64,
    pub linf: f64,
    /// Optimiser iterations (L-BFGS) or steps (FGSM, PGD), over all values of c.
    pub iterations: usize,
    pub gradient_evaluations: usize,
    pub seconds: f64,
    /// The c of the L-BFGS run that gave this example (None for the baselines).
    pub c: Option<f64>,
}

/// The loss the attacks drive down, with its gradient: cross-entropy against the target, or for
/// an untargeted attack the margin of the original label over the best other class, floored at 0
/// (once another class wins there is nothing left to gain, only distance to lose).
pub struct Loss {
    model: GradientModel,
    parameter: Vec<f32>,
    goal: Goal,
    pub evaluations: usize,
}

/// One evaluation of the loss.
pub struct LossAt {
    pub value: f64,
    pub gradient: Vec<f32>,
    pub logits: Vec<f32>,
}

impl Loss {
    pub fn new(classifier: &Classifier, goal: Goal) -> Result<Loss> {
        let (objective, class) = goal.objective();
        let model = classifier.gradient(&objective)?;
        let parameter = model.one_hot(class)?;
        Ok(Loss { model, parameter, goal, evaluations: 0 })
    }

    pub fn goal(&self) -> Goal {
        self.goal
    }

    pub fn at(&mut self, x: &[f32]) -> Result<LossAt> {
        Ok(LossAt::new(self.goal, self.evaluate(x)?))
    }

    /// The loss graph's raw outputs at `x` (see [`LossAt::new`] for the loss they give).
    pub fn evaluate(&mut self, x: &[f32]) -> Result<Evaluation> {
        self.evaluations += 1;
        self.model.evaluate(x, &self.parameter)
    }
}

impl LossAt {
    /// The loss for `goal` from its graph's outputs ([`Goal::objective`]): the margin floored at 0.
    pub fn new(goal: Goal, e: Evaluation) -> LossAt {
        let (value, gradient) = match goal {
            Goal::Untargeted { .. } if e.objective < 0.0 => (0.0, vec![0.0; e.gradient.len()]),
            _ => (e.objective as f64, e.gradient),
        };
        LossAt { value, gradient, logits: e.logits }
    }
}

/// What an attack spent: steps, gradients, time since it started.
pub(crate) struct Spent {
    pub iterations: usize,
    pub gradient_evaluations: usize,
    pub started: Instant,
}

/// The outcome of `adversarial` (with the model's `logits` there) as an example of `x` for `goal`.
pub(crate) fn outcome(x: &[f32], adversarial: Vec<f32>, logits: &[f32], goal: Goal, spent: Spent, c: Option<f64>) -> Outcome {
    let Spent { iterations, gradient_evaluations, started } = spent;
    let label = argmax(logits);
    Outcome {
        success: goal.reached(label),
        label,
        probabilities: softmax(logits),
        distortion: metrics::distortion(x, &adversarial),
        l2: metrics::l2(x, &adversarial),
        linf: metrics::linf(x, &adversarial),
        adversarial,
        iterations,
        gradient_evaluations,
        seconds: started.elapsed().as_secs_f64(),
        c,
    }
}

/// A clock that also works in the browser (std's Instant panics on wasm32-unknown-unknown).
#[derive(Debug, Clone, Copy)]
pub struct Instant(f64);

impl Instant {
    pub fn now() -> Instant {
        Instant(now_ms())
    }

    pub fn elapsed(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(((now_ms() - self.0) / 1000.0).max(0.0))
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn now_ms() -> f64 {
    use std::sync::OnceLock;
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed().as_secs_f64() * 1000.0
}

#[cfg(target_arch = "wasm32")]
fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// Refuses an image whose size is not the model's.
pub(crate) fn check_len(classifier: &Classifier, x: &[f32]) -> Result<()> {
    if x.len() != classifier.image_len() {
        return Err(Error::Input(format!(
            "the image has {} values but the model takes {}",
            x.len(),
            classifier.image_len()
        )));
    }
    Ok(())
}

/// Checks an input against the model and the box.
pub(crate) fn check_input(classifier: &Classifier, x: &[f32]) -> Result<()> {
    check_len(classifier, x)?;
    if let Some(at) = x.iter().position(|v| !(0.0..=1.0).contains(v)) {
        return Err(Error::Input(format!(
            "pixel {at} is {}; pixels must lie in [0,1], the attack's box: divide 0-255 values by 255 (a model that \
             takes another range declares it in its preprocessing, which maps [0,1] pixels to it)",
            x[at]
        )));
    }
    Ok(())
}
