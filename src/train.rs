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
}

impl Default for Settings {
    fn default() -> Settings {
        Settings { learning_rate: 0.01, optimizer: Optimizer::parse("sgd").unwrap(), weight_decay: 0.0, batch: 32, seed: 2013 }
    }
}

/// A model being trained: its gradient graph at the batch size, its weights and the optimiser's
/// state.
pub struct Trainer {
    trainable: Trainable,
    gradient: GradientModel,
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
}

/// One epoch's mean loss and how long it took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Epoch {
    pub loss: f64,
    pub steps: usize,
    pub seconds: f64,
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
        let gradient = trainable.gradient(&Objective::CrossEntropy)?;
        let weights: Vec<Vec<f32>> = trainable.weights().iter().map(|w| w.values.clone()).collect();
        let zeros: Vec<Vec<f64>> = weights.iter().map(|w| vec![0.0; w.len()]).collect();
        let rng = Rng(settings.seed);
        Ok(Trainer { trainable, gradient, weights, first: zeros.clone(), second: zeros, settings, steps: 0, rng })
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
        let (loss, _, gradients) = self.gradients(images, labels)?;
        self.apply(&gradients);
        Ok(loss)
    }

    /// Adversarial training with FGSM (Goodfellow et al., 2014): the step on the mean of the
    /// losses at the images and at their fast-gradient-sign examples of size `epsilon` (made with
    /// the weights before the step, clipped to [0,1]). Returns the mean clean loss.
    pub fn step_fgsm(&mut self, images: &[f32], labels: &[usize], epsilon: f64) -> Result<f64> {
        let (loss, dx, clean) = self.gradients(images, labels)?;
        let adversarial: Vec<f32> =
            images.iter().zip(&dx).map(|(&x, &g)| (x as f64 + epsilon * g.signum() as f64).clamp(0.0, 1.0) as f32).collect();
        let (_, _, fooled) = self.gradients(&adversarial, labels)?;
        let mean: Vec<Vec<f32>> =
            clean.iter().zip(&fooled).map(|(a, b)| a.iter().zip(b).map(|(x, y)| 0.5 * (x + y)).collect()).collect();
        self.apply(&mean);
        Ok(loss)
    }

    /// The mean loss over the batch, d loss / d images, and d loss / d each weight (summed over
    /// the batch) at the weights now.
    fn gradients(&self, images: &[f32], labels: &[usize]) -> Result<(f64, Vec<f32>, Vec<Vec<f32>>)> {
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
        let (evaluation, gradients) = self.gradient.evaluate_weights(images, &weights, &targets).map_err(|e| match e {
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

    /// The paper's adversarial training (section 4.2): the step on the mean of the losses at the
    /// images and at `batch` examples drawn from `pool` (adversarial examples with their true
    /// labels). Returns the mean clean loss.
    pub fn step_pooled(&mut self, images: &[f32], labels: &[usize], pool: &mut Pool) -> Result<f64> {
        let (loss, _, clean) = self.gradients(images, labels)?;
        let (xs, ys) = pool.draw(self.settings.batch);
        let (_, _, adversarial) = self.gradients(&xs, &ys)?;
        let mean: Vec<Vec<f32>> =
            clean.iter().zip(&adversarial).map(|(a, b)| a.iter().zip(b).map(|(x, y)| 0.5 * (x + y)).collect()).collect();
        self.apply(&mean);
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
        let (lr, decay) = (self.settings.learning_rate, self.settings.weight_decay);
        let t = self.steps as i32;
        for (k, w) in self.weights.iter_mut().enumerate() {
            for (i, value) in w.iter_mut().enumerate() {
                let g = gradients[k][i] as f64 / batch + decay * *value as f64;
                let change = match self.settings.optimizer {
                    Optimizer::Sgd { momentum } => {
                        self.first[k][i] = momentum * self.first[k][i] + g;
                        lr * self.first[k][i]
                    }
                    Optimizer::Adam { beta1, beta2, epsilon } => {
                        self.first[k][i] = beta1 * self.first[k][i] + (1.0 - beta1) * g;
                        self.second[k][i] = beta2 * self.second[k][i] + (1.0 - beta2) * g * g;
                        let m = self.first[k][i] / (1.0 - beta1.powi(t));
                        let v = self.second[k][i] / (1.0 - beta2.powi(t));
                        lr * m / (v.sqrt() + epsilon)
                    }
                };
                *value = (*value as f64 - change) as f32;
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
        let started = crate::attack::Instant::now();
        let (batch, len) = (self.settings.batch, self.image_len());
        if images.len() != labels.len() * len {
            return Err(Error::Input(format!("{} labels for {} values of {len}-value images", labels.len(), images.len())));
        }
        let mut order: Vec<usize> = (0..labels.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, self.rng.below(i + 1));
        }
        let (mut total, mut steps) = (0.0, 0);
        let mut xs = vec![0.0f32; batch * len];
        for chunk in order.chunks_exact(batch) {
            for (slot, &i) in chunk.iter().enumerate() {
                xs[slot * len..(slot + 1) * len].copy_from_slice(&images[i * len..(i + 1) * len]);
            }
            let ys: Vec<usize> = chunk.iter().map(|&i| labels[i]).collect();
            let loss = match &mut adversarial {
                Adversarial::None => self.step(&xs, &ys)?,
                Adversarial::Fgsm(epsilon) => self.step_fgsm(&xs, &ys, *epsilon)?,
                Adversarial::Pool { pool, bytes, every, count, options } => {
                    if pool.is_empty() || steps % *every == 0 && steps > 0 {
                        let model = self.classifier(bytes)?;
                        let want = if pool.is_empty() { pool.size } else { *count };
                        pool.refresh(&model, images, labels, want, options)?;
                    }
                    if pool.is_empty() {
                        self.step(&xs, &ys)?
                    } else {
                        self.step_pooled(&xs, &ys, pool)?
                    }
                }
            };
            total += loss;
            steps += 1;
            if !progress(steps, loss) {
                return Err(Error::Cancelled);
            }
        }
        Ok(Epoch { loss: total / steps.max(1) as f64, steps, seconds: started.elapsed().as_secs_f64() })
    }

    /// The original .onnx file `bytes` with the trained weights in place of its initializers:
    /// the same graph, which onnxruntime and blindspot load alike.
    pub fn write_onnx(&self, bytes: &[u8]) -> Result<Vec<u8>> {
        let mut proto = crate::model::decode(bytes)?;
        let graph = proto.graph.as_mut().ok_or_else(|| Error::NotOnnx("the file holds no graph".into()))?;
        for (w, values) in self.trainable.weights().iter().zip(&self.weights) {
            // an initializer, or the value of the Constant node that held it
            let t = if let Some(i) = graph.initializer.iter().position(|t| t.name == w.name) {
                &mut graph.initializer[i]
            } else {
                graph
                    .node
                    .iter_mut()
                    .filter(|n| n.op_type == "Constant" && n.output.first() == Some(&w.name))
                    .flat_map(|n| n.attribute.iter_mut())
                    .find(|a| a.name == "value")
                    .and_then(|a| a.t.as_mut())
                    .ok_or_else(|| Error::Model(format!("the file has no initializer \"{}\" to write the weight into", w.name)))?
            };
            t.float_data.clear();
            t.raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        }
        Ok(proto.encode_to_vec())
    }
}

/// The paper's pool of adversarial examples (section 4.2): L-BFGS examples of training digits,
/// each pushed towards a random other class with the weights of the moment, kept with their true
/// labels; a random part of it replaced by new ones as training goes on.
pub struct Pool {
    images: Vec<Vec<f32>>,
    labels: Vec<usize>,
    size: usize,
    rng: Rng,
}

impl Pool {
    /// An empty pool that holds up to `size` examples, its draws and targets from `seed`.
    pub fn new(size: usize, seed: u64) -> Pool {
        Pool { images: vec![], labels: vec![], size: size.max(1), rng: Rng(seed ^ 0x5EED_0F_A11) }
    }

    /// How many examples the pool holds.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
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
        let mut entered = 0;
        for _ in 0..count {
            let i = self.rng.below(labels.len());
            let x = &images[i * len..(i + 1) * len];
            let target = (labels[i] + 1 + self.rng.below(classes - 1)) % classes;
            let outcome = crate::attack::lbfgs::attack(model, x, crate::attack::Goal::Target(target), options, |_| true)?;
            if !outcome.success {
                continue;
            }
            if self.images.len() < self.size {
                self.images.push(outcome.adversarial);
                self.labels.push(labels[i]);
            } else {
                let slot = self.rng.below(self.size);
                self.images[slot] = outcome.adversarial;
                self.labels[slot] = labels[i];
            }
            entered += 1;
        }
        Ok(entered)
    }

    /// `batch` examples drawn at random (with replacement), end to end, and their labels.
    fn draw(&mut self, batch: usize) -> (Vec<f32>, Vec<usize>) {
        let picks: Vec<usize> = (0..batch).map(|_| self.rng.below(self.images.len())).collect();
        (picks.iter().flat_map(|&k| self.images[k].iter().copied()).collect(), picks.iter().map(|&k| self.labels[k]).collect())
    }
}
