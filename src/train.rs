//! Minibatch training of a model's weights ([`crate::model::Trainable`]): SGD with momentum or
//! Adam, weight decay, seeded shuffles; a step refuses a non-finite loss and keeps the last good
//! weights; the trained weights written back into the original .onnx file.

use prost::Message;

use crate::error::{Error, Result};
use crate::grad::{GradientModel, Objective};
use crate::model::Trainable;
use crate::rng::Rng;

/// How a step moves the weights along their gradient.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Optimizer {
    /// Stochastic gradient descent with (heavy-ball) momentum.
    Sgd { momentum: f64 },
    /// Adam (Kingma and Ba, 2014) with its usual constants.
    Adam { beta1: f64, beta2: f64, epsilon: f64 },
}

impl Optimizer {
    /// `sgd` (momentum 0.9) or `adam` (0.9, 0.999, 1e-8).
    pub fn parse(name: &str) -> Result<Optimizer> {
        match name {
            "sgd" => Ok(Optimizer::Sgd { momentum: 0.9 }),
            "adam" => Ok(Optimizer::Adam { beta1: 0.9, beta2: 0.999, epsilon: 1e-8 }),
            other => Err(Error::Input(format!("unknown optimizer \"{other}\": use sgd or adam"))),
        }
    }
}

/// A training run's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub learning_rate: f64,
    pub optimizer: Optimizer,
    /// The L2 penalty lambda: the loss gains lambda / 2 * ||w||^2 over every weight.
    pub weight_decay: f64,
    /// Images per step.
    pub batch: usize,
    /// The shuffles' seed.
    pub seed: u64,
    /// Steps over which the learning rate falls along a cosine to 1% of itself (then stays
    /// there), as tools/train_mnist.py trains the shipped models; `None` keeps it constant.
    pub cosine_steps: Option<u64>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings { learning_rate: 0.01, optimizer: Optimizer::parse("sgd").unwrap(), weight_decay: 0.0, batch: 32, seed: 2013, cosine_steps: None }
    }
}

/// How the learning rate moves over a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    Constant,
    /// Down a cosine to 1% of the rate over the whole run.
    Cosine,
}

impl Schedule {
    /// `constant` or `cosine`.
    pub fn parse(name: &str) -> Result<Schedule> {
        match name {
            "constant" => Ok(Schedule::Constant),
            "cosine" => Ok(Schedule::Cosine),
            other => Err(Error::Input(format!("unknown learning-rate schedule \"{other}\": use constant or cosine"))),
        }
    }

    /// [`Settings::cosine_steps`] for a run of `epochs` over `n` images in batches of `batch`.
    pub fn steps(self, epochs: usize, n: usize, batch: usize) -> Option<u64> {
        (self == Schedule::Cosine).then(|| (epochs * (n / batch.max(1))) as u64)
    }
}

/// A model being trained: its gradient graph at the batch size, its weights and the optimiser's
/// state.
pub struct Trainer {
    trainable: Trainable,
    /// d loss / d weights (no input gradient: the steps that need none).
    gradient: GradientModel,
    /// With the input gradient too, built on FGSM's first step.
    full: Option<GradientModel>,
    weights: Vec<Vec<f32>>,
    /// Per weight: momentum (SGD) or the first moment (Adam), and Adam's second moment.
    first: Vec<Vec<f64>>,
    second: Vec<Vec<f64>>,
    settings: Settings,
    steps: u64,
    rng: Rng,
}

/// What each step of an epoch trains on besides the digits.
pub enum Adversarial<'a> {
    None,
    /// Their FGSM examples of this size ([`Trainer::step_fgsm`]).
    Fgsm(f64),
    /// Examples from the pool ([`Trainer::step_pooled`]), filled first, then `count` new L-BFGS
    /// examples made every `every` steps for the model of that moment (`bytes`: its original
    /// file, for the weights to be written into).
    Pool { pool: &'a mut Pool, bytes: &'a [u8], every: usize, count: usize, options: crate::attack::lbfgs::Options },
    /// The paper's per-layer pools ([`Trainer::step_layered`]): the input's pool as for
    /// [`Adversarial::Pool`], and one of each hidden layer's outputs for the layers above it,
    /// all refreshed alike.
    Layers {
        pool: &'a mut Pool,
        layers: &'a mut [crate::layers::LayerPool],
        bytes: &'a [u8],
        every: usize,
        count: usize,
        options: crate::attack::lbfgs::Options,
    },
}

impl Adversarial<'_> {
    /// The pool at the input, when there is one.
    pub fn pool(&self) -> Option<&Pool> {
        match self {
            Adversarial::Pool { pool, .. } | Adversarial::Layers { pool, .. } => Some(pool),
            _ => None,
        }
    }
}

/// A run's adversarial training, as `blindspot train --adversarial` and the page name it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    None,
    /// FGSM examples of this size.
    Fgsm { epsilon: f64 },
    /// The paper's pool of `pool` L-BFGS examples, a fraction `refresh` of it replaced every
    /// [`REFRESH_EVERY`] steps, its batch given the share `weight` of each step's loss.
    Lbfgs { pool: usize, refresh: f64, weight: f64 },
    /// [`Method::Lbfgs`], and such a pool for each hidden Sigmoid layer's outputs, training the
    /// layers above it ([`crate::layers`]).
    Layers { pool: usize, refresh: f64, weight: f64 },
}

/// Steps between two refreshes of the pool.
pub const REFRESH_EVERY: usize = 100;

impl Method {
    /// `none`, `fgsm` (of `epsilon`) or `lbfgs` (a pool of `pool`, `refresh` replaced, its
    /// batch weighing `weight` in the loss), checked.
    pub fn parse(name: &str, epsilon: f64, pool: usize, refresh: f64, weight: f64) -> Result<Method> {
        match name {
            "none" => Ok(Method::None),
            "fgsm" if epsilon.is_finite() && epsilon > 0.0 && epsilon <= 1.0 => Ok(Method::Fgsm { epsilon }),
            "fgsm" => Err(Error::Input(format!("FGSM's epsilon is a step in pixel units, above 0 and at most 1, not {epsilon}"))),
            "lbfgs" | "layers" if !(weight > 0.0 && weight < 1.0) => {
                Err(Error::Input(format!("the pool's share of the loss is a fraction above 0 and below 1, not {weight}")))
            }
            "lbfgs" if pool > 0 && (0.0..=1.0).contains(&refresh) => Ok(Method::Lbfgs { pool, refresh, weight }),
            "layers" if pool > 0 && (0.0..=1.0).contains(&refresh) => Ok(Method::Layers { pool, refresh, weight }),
            "lbfgs" | "layers" => Err(Error::Input(format!(
                "the pool takes at least 1 example and the refresh a fraction from 0 to 1, not {pool} and {refresh}"
            ))),
            other => Err(Error::Input(format!("adversarial training \"{other}\" is not one of none, fgsm, lbfgs, layers"))),
        }
    }

    /// The pool this method fills (an unused empty one for the others), seeded by `seed`.
    pub fn pool(&self, seed: u64) -> Pool {
        match *self {
            Method::Lbfgs { pool, weight, .. } | Method::Layers { pool, weight, .. } => Pool { weight, ..Pool::new(pool, seed) },
            _ => Pool::new(1, seed),
        }
    }

    /// The per-layer pools of [`Method::Layers`] for the model `bytes` trained by `trainer` (none
    /// for the other methods): one for each hidden Sigmoid layer; a model without one is refused.
    pub fn layer_pools(&self, bytes: &[u8], trainer: &Trainer, seed: u64) -> Result<Vec<crate::layers::LayerPool>> {
        let Method::Layers { pool, weight, .. } = *self else { return Ok(vec![]) };
        let tensors = crate::layers::sigmoid_layers(bytes)?;
        if tensors.is_empty() {
            return Err(Error::Input(
                "per-layer pools attack hidden layers whose outputs lie in (0,1), Sigmoid layers as in the paper's nets; \
                 this model has none: use lbfgs (the pool at the input)"
                    .into(),
            ));
        }
        let names: Vec<String> = trainer.trainable().weights().iter().map(|w| w.name.clone()).collect();
        tensors
            .iter()
            .map(|t| {
                let mut layer = crate::layers::LayerPool::new(bytes, t, &names, trainer.settings.batch, pool, seed)?;
                layer.pool.weight = weight;
                Ok(layer)
            })
            .collect()
    }

    /// What each step of an epoch trains on; `bytes` is the model's original file, `pool` and
    /// `layers` [`pool`](Self::pool)'s and [`layer_pools`](Self::layer_pools)'s answers, all
    /// kept from epoch to epoch.
    pub fn adversarial<'a>(
        &self,
        pool: &'a mut Pool,
        layers: &'a mut [crate::layers::LayerPool],
        bytes: &'a [u8],
    ) -> Adversarial<'a> {
        let count = |size: usize, refresh: f64| ((refresh * size as f64).ceil() as usize).max(1);
        let options = crate::attack::lbfgs::Options::default();
        match *self {
            Method::None => Adversarial::None,
            Method::Fgsm { epsilon } => Adversarial::Fgsm(epsilon),
            Method::Lbfgs { pool: size, refresh, .. } => {
                Adversarial::Pool { pool, bytes, every: REFRESH_EVERY, count: count(size, refresh), options }
            }
            Method::Layers { pool: size, refresh, .. } => {
                Adversarial::Layers { pool, layers, bytes, every: REFRESH_EVERY, count: count(size, refresh), options }
            }
        }
    }
}

/// One epoch's mean loss and how long it took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Epoch {
    pub loss: f64,
    pub steps: usize,
    pub seconds: f64,
}

/// An epoch under way ([`Trainer::begin_epoch`]): its order, and the steps taken so far.
pub struct Pass {
    order: Vec<usize>,
    batch: usize,
    /// Steps taken.
    pub steps: usize,
    total: f64,
    /// How many new examples entered the pool before the last step.
    pub entered: usize,
    started: crate::attack::Instant,
}

impl Pass {
    /// The epoch's steps in all.
    pub fn total_steps(&self) -> usize {
        self.order.len() / self.batch
    }

    /// Its mean loss and time so far.
    pub fn end(&self) -> Epoch {
        Epoch { loss: self.total / self.steps.max(1) as f64, steps: self.steps, seconds: self.started.elapsed().as_secs_f64() }
    }
}

impl Trainer {
    /// Loads the ONNX `bytes` for training with `settings` (its input shape's batch set to theirs).
    pub fn new(bytes: &[u8], settings: Settings) -> Result<Trainer> {
        if !(settings.learning_rate.is_finite() && settings.learning_rate > 0.0) {
            return Err(Error::Input(format!("the learning rate must be a positive number, not {}", settings.learning_rate)));
        }
        if !(settings.weight_decay.is_finite() && settings.weight_decay >= 0.0) {
            return Err(Error::Input(format!("the weight decay must be a number of at least 0, not {}", settings.weight_decay)));
        }
        if settings.batch == 0 || settings.batch > 4096 {
            return Err(Error::Input(format!("a batch holds 1 to 4096 images, not {}", settings.batch)));
        }
        let trainable = Trainable::load_batch(bytes, settings.batch)?;
        let gradient = trainable.weight_gradient(&Objective::CrossEntropy)?;
        let weights: Vec<Vec<f32>> = trainable.weights().iter().map(|w| w.values.clone()).collect();
        let zeros: Vec<Vec<f64>> = weights.iter().map(|w| vec![0.0; w.len()]).collect();
        let rng = Rng(settings.seed);
        Ok(Trainer { trainable, gradient, full: None, weights, first: zeros.clone(), second: zeros, settings, steps: 0, rng })
    }

    /// Values per image.
    pub fn image_len(&self) -> usize {
        self.trainable.input_shape()[1..].iter().product()
    }

    /// The weights now, in [`Trainable::weights`]'s order.
    pub fn weights(&self) -> &[Vec<f32>] {
        &self.weights
    }

    /// The model being trained (its weight names, shapes, and those left fixed).
    pub fn trainable(&self) -> &Trainable {
        &self.trainable
    }

    /// One step on `batch` images (laid end to end) with their `labels`: the mean cross-entropy
    /// before the step. A non-finite loss or gradient leaves the weights as they were.
    pub fn step(&mut self, images: &[f32], labels: &[usize]) -> Result<f64> {
        let (loss, _, gradients) = self.gradients(images, labels, false)?;
        self.apply(&gradients);
        Ok(loss)
    }

    /// Adversarial training with FGSM (Goodfellow et al., 2014): the step on the mean of the
    /// losses at the images and at their fast-gradient-sign examples of size `epsilon` (made with
    /// the weights before the step, clipped to [0,1]). Returns the mean clean loss.
    pub fn step_fgsm(&mut self, images: &[f32], labels: &[usize], epsilon: f64) -> Result<f64> {
        if self.full.is_none() {
            self.full = Some(self.trainable.gradient(&Objective::CrossEntropy)?);
        }
        let (loss, dx, clean) = self.gradients(images, labels, true)?;
        let adversarial: Vec<f32> =
            images.iter().zip(&dx).map(|(&x, &g)| (x as f64 + epsilon * g.signum() as f64).clamp(0.0, 1.0) as f32).collect();
        let (_, _, fooled) = self.gradients(&adversarial, labels, false)?;
        let mean: Vec<Vec<f32>> =
            clean.iter().zip(&fooled).map(|(a, b)| a.iter().zip(b).map(|(x, y)| 0.5 * (x + y)).collect()).collect();
        self.apply(&mean);
        Ok(loss)
    }

    /// The mean loss over the batch, d loss / d images (zeros unless `input`, which needs the
    /// graph [`step_fgsm`](Self::step_fgsm) builds), and d loss / d each weight (summed over the
    /// batch) at the weights now.
    fn gradients(&self, images: &[f32], labels: &[usize], input: bool) -> Result<(f64, Vec<f32>, Vec<Vec<f32>>)> {
        let (batch, len) = (self.settings.batch, self.image_len());
        if labels.len() != batch || images.len() != batch * len {
            return Err(Error::Input(format!(
                "a step takes {batch} images of {len} values and their labels, not {} values and {} labels",
                images.len(),
                labels.len()
            )));
        }
        let classes: usize = self.gradient.parameter_shape()[1..].iter().product();
        let mut targets = vec![0.0f32; batch * classes];
        for (i, &label) in labels.iter().enumerate() {
            if label >= classes {
                return Err(Error::Input(format!("label {label} is not one of the model's {classes} classes")));
            }
            targets[i * classes + label] = 1.0;
        }
        let weights: Vec<&[f32]> = self.weights.iter().map(Vec::as_slice).collect();
        let graph = if input { self.full.as_ref().unwrap_or(&self.gradient) } else { &self.gradient };
        let (evaluation, gradients) = graph.evaluate_weights(images, &weights, &targets).map_err(|e| match e {
            Error::Run(why) if why.contains("computed") => Error::Run(format!(
                "step {}: {why}; the learning rate {} is too high for this model: lower it (the weights are those \
                 before this step)",
                self.steps + 1,
                self.settings.learning_rate
            )),
            other => other,
        })?;
        Ok((evaluation.objective as f64 / batch as f64, evaluation.gradient, gradients))
    }

    /// The paper's adversarial training (section 4.2): the step on the losses at the images and
    /// at `batch` examples drawn from `pool` (adversarial examples with their true labels), the
    /// pool's given its share [`Pool::weight`] (a half by default). Returns the mean clean loss.
    pub fn step_pooled(&mut self, images: &[f32], labels: &[usize], pool: &mut Pool) -> Result<f64> {
        let (loss, _, clean) = self.gradients(images, labels, false)?;
        let (xs, ys) = pool.draw(self.settings.batch);
        let (_, _, adversarial) = self.gradients(&xs, &ys, false)?;
        let w = pool.weight as f32;
        let mixed: Vec<Vec<f32>> =
            clean.iter().zip(&adversarial).map(|(a, b)| a.iter().zip(b).map(|(x, y)| (1.0 - w) * x + w * y).collect()).collect();
        self.apply(&mixed);
        Ok(loss)
    }

    /// The paper's per-layer adversarial training: the step on the losses at the images and at a
    /// batch from each pool (the input's, and each layer's for the layers above it), the pools
    /// sharing [`Pool::weight`] of the loss equally. An empty pool is left out. Returns the mean
    /// clean loss.
    pub fn step_layered(
        &mut self,
        images: &[f32],
        labels: &[usize],
        pool: &mut Pool,
        layers: &mut [crate::layers::LayerPool],
    ) -> Result<f64> {
        let (loss, _, clean) = self.gradients(images, labels, false)?;
        let mut pooled = vec![];
        if !pool.is_empty() {
            let (xs, ys) = pool.draw(self.settings.batch);
            pooled.push(self.gradients(&xs, &ys, false)?.2);
        }
        for layer in layers.iter_mut().filter(|l| !l.pool.is_empty()) {
            pooled.push(layer.gradients(&self.weights, self.settings.batch)?);
        }
        if pooled.is_empty() {
            self.apply(&clean);
            return Ok(loss);
        }
        let (w, share) = (pool.weight as f32, pool.weight as f32 / pooled.len() as f32);
        let mut mixed: Vec<Vec<f32>> = clean.iter().map(|g| g.iter().map(|x| (1.0 - w) * x).collect()).collect();
        for grads in &pooled {
            for (m, g) in mixed.iter_mut().zip(grads) {
                m.iter_mut().zip(g).for_each(|(m, g)| *m += share * g);
            }
        }
        self.apply(&mixed);
        Ok(loss)
    }

    /// The model with the weights now, at batch 1 (for attacks and error rates).
    pub fn classifier(&self, bytes: &[u8]) -> Result<crate::Classifier> {
        crate::Classifier::load(&self.write_onnx(bytes)?, None)
    }

    /// Moves the weights by the optimiser along `gradients` (summed over a batch) plus the decay.
    fn apply(&mut self, gradients: &[Vec<f32>]) {
        let batch = self.settings.batch as f64;
        self.steps += 1;
        let decay = self.settings.weight_decay;
        let lr = match self.settings.cosine_steps {
            Some(total) => {
                let done = (self.steps - 1).min(total) as f64 / total.max(1) as f64;
                self.settings.learning_rate * (0.01 + 0.99 * 0.5 * (1.0 + (std::f64::consts::PI * done).cos()))
            }
            None => self.settings.learning_rate,
        };
        // Adam's bias corrections, once a step rather than once a weight
        let t = self.steps.min(i32::MAX as u64) as i32;
        let corrections = match self.settings.optimizer {
            Optimizer::Adam { beta1, beta2, .. } => (1.0 - beta1.powi(t), 1.0 - beta2.powi(t)),
            Optimizer::Sgd { .. } => (1.0, 1.0),
        };
        for (k, w) in self.weights.iter_mut().enumerate() {
            let (first, second, gradient) = (&mut self.first[k], &mut self.second[k], &gradients[k]);
            match self.settings.optimizer {
                Optimizer::Sgd { momentum } => {
                    for ((value, m), &g) in w.iter_mut().zip(first.iter_mut()).zip(gradient) {
                        let g = g as f64 / batch + decay * *value as f64;
                        *m = momentum * *m + g;
                        *value = (*value as f64 - lr * *m) as f32;
                    }
                }
                Optimizer::Adam { beta1, beta2, epsilon } => {
                    let (c1, c2) = corrections;
                    for (((value, m), v), &g) in w.iter_mut().zip(first.iter_mut()).zip(second.iter_mut()).zip(gradient) {
                        let g = g as f64 / batch + decay * *value as f64;
                        *m = beta1 * *m + (1.0 - beta1) * g;
                        *v = beta2 * *v + (1.0 - beta2) * g * g;
                        *value = (*value as f64 - lr * (*m / c1) / ((*v / c2).sqrt() + epsilon)) as f32;
                    }
                }
            }
        }
    }

    /// One pass over `images` (`labels.len()` of them, end to end) in a seeded shuffled order, a
    /// step per full batch (the last, short one is left out); `progress` gets each step's number
    /// and loss, and returns false to stop.
    pub fn epoch(&mut self, images: &[f32], labels: &[usize], progress: impl FnMut(usize, f64) -> bool) -> Result<Epoch> {
        self.epoch_with(images, labels, Adversarial::None, progress)
    }

    /// [`epoch`](Self::epoch), each step as `adversarial` says.
    pub fn epoch_with(
        &mut self,
        images: &[f32],
        labels: &[usize],
        adversarial: Adversarial<'_>,
        mut progress: impl FnMut(usize, f64) -> bool,
    ) -> Result<Epoch> {
        let mut adversarial = adversarial;
        let mut pass = self.begin_epoch(images, labels)?;
        while let Some(loss) = self.advance(&mut pass, images, labels, &mut adversarial)? {
            if !progress(pass.steps, loss) {
                return Err(Error::Cancelled);
            }
        }
        Ok(pass.end())
    }

    /// The start of an epoch over `images` with `labels` (checked against each other): its
    /// seeded shuffled order. [`advance`](Self::advance) takes its steps one by one, so a host
    /// can let other work in between them (the page's worker).
    pub fn begin_epoch(&mut self, images: &[f32], labels: &[usize]) -> Result<Pass> {
        let len = self.image_len();
        if images.len() != labels.len() * len {
            return Err(Error::Input(format!("{} labels for {} values of {len}-value images", labels.len(), images.len())));
        }
        if labels.len() < self.settings.batch {
            return Err(Error::Input(format!(
                "{} training images do not fill one batch of {}: use more images or a smaller batch",
                labels.len(),
                self.settings.batch
            )));
        }
        let mut order: Vec<usize> = (0..labels.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, self.rng.below(i + 1));
        }
        Ok(Pass { order, batch: self.settings.batch, steps: 0, total: 0.0, entered: 0, started: crate::attack::Instant::now() })
    }

    /// The epoch's next step (a refresh of the pool first when one is due): its mean clean loss,
    /// or None once every full batch has had its step.
    pub fn advance(
        &mut self,
        pass: &mut Pass,
        images: &[f32],
        labels: &[usize],
        adversarial: &mut Adversarial<'_>,
    ) -> Result<Option<f64>> {
        let (batch, len) = (self.settings.batch, self.image_len());
        let Some(chunk) = pass.order.chunks_exact(batch).nth(pass.steps) else {
            return Ok(None);
        };
        let xs: Vec<f32> = chunk.iter().flat_map(|&i| images[i * len..(i + 1) * len].iter().copied()).collect();
        let ys: Vec<usize> = chunk.iter().map(|&i| labels[i]).collect();
        pass.entered = 0;
        let loss = match adversarial {
            Adversarial::None => self.step(&xs, &ys)?,
            Adversarial::Fgsm(epsilon) => self.step_fgsm(&xs, &ys, *epsilon)?,
            Adversarial::Pool { pool, bytes, every, count, options } => {
                if pool.is_empty() || pass.steps % *every == 0 && pass.steps > 0 {
                    let model = self.classifier(bytes)?;
                    // filled first (topped up where attacks failed), then a part replaced
                    let want = (pool.size - pool.len()) + if pool.is_empty() { 0 } else { *count };
                    pass.entered = pool.refresh(&model, images, labels, want, options)?;
                }
                if pool.is_empty() {
                    self.step(&xs, &ys)?
                } else {
                    self.step_pooled(&xs, &ys, pool)?
                }
            }
            Adversarial::Layers { pool, layers, bytes, every, count, options } => {
                if pool.is_empty() || pass.steps % *every == 0 && pass.steps > 0 {
                    let model = self.classifier(bytes)?;
                    let want = (pool.size - pool.len()) + if pool.is_empty() { 0 } else { *count };
                    pass.entered = pool.refresh(&model, images, labels, want, options)?;
                    for layer in layers.iter_mut() {
                        let want = (layer.pool.size - layer.pool.len()) + if layer.pool.is_empty() { 0 } else { *count };
                        layer.refresh(&model, &self.weights, images, labels, want, options)?;
                    }
                }
                self.step_layered(&xs, &ys, pool, layers)?
            }
        };
        pass.total += loss;
        pass.steps += 1;
        Ok(Some(loss))
    }

    /// Draws every weight afresh (a run from scratch): Glorot and Bengio's uniform
    /// distribution, +-sqrt(6 / (fan_in + fan_out)), for a weight of two or more dimensions
    /// (fans from its first two, times the kernel's size), zeros for a bias; seeded as
    /// tools/init_weights.py is, though not with its numbers.
    pub fn initialise(&mut self, seed: u64) {
        let mut rng = Rng(seed ^ 0x1417_C0DE);
        for (w, values) in self.trainable.weights().iter().zip(self.weights.iter_mut()) {
            if w.shape.len() < 2 {
                values.iter_mut().for_each(|v| *v = 0.0);
                continue;
            }
            let receptive: usize = w.shape[2..].iter().product();
            let bound = (6.0 / ((w.shape[0] + w.shape[1]) * receptive) as f64).sqrt() as f32;
            values.iter_mut().for_each(|v| *v = bound * rng.uniform());
        }
        for moments in self.first.iter_mut().chain(self.second.iter_mut()) {
            moments.iter_mut().for_each(|m| *m = 0.0);
        }
        self.steps = 0;
    }

    /// The original .onnx file `bytes` with the trained weights in place of its initializers:
    /// the same graph, which onnxruntime and blindspot load alike.
    pub fn write_onnx(&self, bytes: &[u8]) -> Result<Vec<u8>> {
        let named: Vec<(&str, &[f32])> =
            self.trainable.weights().iter().zip(&self.weights).map(|(w, v)| (w.name.as_str(), v.as_slice())).collect();
        write_weights(bytes, &named)
    }
}

/// The ONNX file `bytes` with `weights` (by name) in place of its initializers, or of the values
/// of the Constant nodes that held them.
pub fn write_weights(bytes: &[u8], weights: &[(&str, &[f32])]) -> Result<Vec<u8>> {
    let mut proto = crate::model::decode(bytes)?;
    let graph = proto.graph.as_mut().ok_or_else(|| Error::NotOnnx("the file holds no graph".into()))?;
    for &(name, values) in weights {
        // an initializer, or the value of the Constant node that held it
        let t = if let Some(i) = graph.initializer.iter().position(|t| t.name == name) {
            &mut graph.initializer[i]
        } else {
            graph
                .node
                .iter_mut()
                .filter(|n| n.op_type == "Constant" && n.output.first().is_some_and(|o| o == name))
                .flat_map(|n| n.attribute.iter_mut())
                .find(|a| a.name == "value")
                .and_then(|a| a.t.as_mut())
                .ok_or_else(|| Error::Model(format!("the file has no initializer \"{name}\" to write the weight into")))?
        };
        t.float_data.clear();
        t.raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    }
    Ok(proto.encode_to_vec())
}

/// The fraction of the first `count` digits of `pack` that `model` misclassifies.
pub fn error(model: &crate::Classifier, pack: &crate::DigitPack, count: usize) -> Result<f64> {
    let count = count.min(pack.len());
    let xs: Vec<Vec<f32>> = (0..count).map(|i| pack.input(i)).collect();
    let ys: Vec<usize> = (0..count).map(|i| pack.labels[i] as usize).collect();
    crate::paper::error_rate(model, &xs, &ys)
}

/// The paper's pool of adversarial examples (section 4.2): L-BFGS examples of training digits,
/// each pushed towards a random other class with the weights of the moment, kept with their true
/// labels; a random part of it replaced by new ones as training goes on.
pub struct Pool {
    images: Vec<Vec<f32>>,
    labels: Vec<usize>,
    size: usize,
    rng: Rng,
    recent: Vec<Entered>,
    /// The pool batch's share of a step's loss (the digits have the rest).
    pub weight: f64,
}

/// An example that entered the pool at its last refresh: the digit's true label, and the class
/// the attack pushed it to.
#[derive(Debug, Clone, PartialEq)]
pub struct Entered {
    pub image: Vec<f32>,
    pub label: usize,
    pub target: usize,
}

/// How many of a refresh's new examples [`Pool::recent`] keeps.
const RECENT: usize = 8;

impl Pool {
    /// An empty pool that holds up to `size` examples, its draws and targets from `seed`.
    pub fn new(size: usize, seed: u64) -> Pool {
        Pool { images: vec![], labels: vec![], size: size.max(1), rng: Rng(seed ^ 0x5EED_0F_A11), recent: vec![], weight: 0.5 }
    }

    /// How many examples the pool holds.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// The first few examples that entered at the last refresh.
    pub fn recent(&self) -> &[Entered] {
        &self.recent
    }

    /// The examples and their true labels.
    pub fn examples(&self) -> (&[Vec<f32>], &[usize]) {
        (&self.images, &self.labels)
    }

    /// Makes `count` new examples for `model` from random digits of `images` (with `labels`),
    /// each attacked towards a random other class by the paper's L-BFGS (`options`): the
    /// successful ones fill the pool up to its size, then replace random examples. Returns how
    /// many entered.
    pub fn refresh(
        &mut self,
        model: &crate::Classifier,
        images: &[f32],
        labels: &[usize],
        count: usize,
        options: &crate::attack::lbfgs::Options,
    ) -> Result<usize> {
        let len = model.image_len();
        let classes = model.classes();
        let mut made = vec![];
        for _ in 0..count {
            let i = self.rng.below(labels.len());
            let x = &images[i * len..(i + 1) * len];
            let target = (labels[i] + 1 + self.rng.below(classes - 1)) % classes;
            let outcome = crate::attack::lbfgs::attack(model, x, crate::attack::Goal::Target(target), options, |_| true)?;
            if outcome.success {
                made.push((outcome.adversarial, labels[i], target));
            }
        }
        Ok(self.take(made))
    }

    /// Puts new examples (each with its true label and the class it was pushed to) in the pool:
    /// they fill it up to its size, then replace random examples. Returns how many entered.
    pub(crate) fn take(&mut self, made: Vec<(Vec<f32>, usize, usize)>) -> usize {
        self.recent.clear();
        let entered = made.len();
        for (image, label, target) in made {
            if self.recent.len() < RECENT {
                self.recent.push(Entered { image: image.clone(), label, target });
            }
            if self.images.len() < self.size {
                self.images.push(image);
                self.labels.push(label);
            } else {
                let slot = self.rng.below(self.size);
                self.images[slot] = image;
                self.labels[slot] = label;
            }
        }
        entered
    }

    /// `batch` examples drawn at random (with replacement), end to end, and their labels.
    pub(crate) fn draw(&mut self, batch: usize) -> (Vec<f32>, Vec<usize>) {
        let picks: Vec<usize> = (0..batch).map(|_| self.rng.below(self.images.len())).collect();
        (picks.iter().flat_map(|&k| self.images[k].iter().copied()).collect(), picks.iter().map(|&k| self.labels[k]).collect())
    }
}
