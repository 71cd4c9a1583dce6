//! The lab's requests, answers and progress events, as the page's worker and `cargo test` send them.
//!
//! A request is one object keyed by its op, `{"classify": {"key": "cnn", "pixels": [...]}}`;
//! field names are the page's (camelCase). Defaults live here, not in the page: a field left out
//! takes the value the CLI uses.

use serde::{Deserialize, Serialize};

use crate::attack::Outcome;
use crate::grad::Evaluation;
use crate::Classification;

/// Everything the page asks of the core.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase", deny_unknown_fields)]
pub enum Request {
    /// Loads ONNX bytes under `key` (replacing a model loaded there). `shape`: the input shape
    /// from the model card (else the file's); `preprocessing`: a query such as
    /// "layout=nhwc&range=imagenet" wired in front of the input; `backend`: the preference to
    /// set first; `detected`: the browser's WebGPU adapter, when the preference may use it.
    Load {
        key: String,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
        shape: Option<Vec<usize>>,
        preprocessing: Option<String>,
        backend: Option<Preference>,
        detected: Option<Detected>,
    },
    /// Frees model `key`, its gradient graphs, GPU buffers and activations.
    Unload { key: String },
    /// Sets the backend preference and applies it to model `key` when given.
    Backend { preference: Preference, key: Option<String>, detected: Option<Detected> },
    /// The model's answer for one image of pixels in [0,1].
    Classify { key: String, pixels: Vec<f32> },
    /// An objective ("ce" or "margin", against class `target`) and its input gradient, on the
    /// model's backend or on `backend` when given.
    Gradient { key: String, objective: String, pixels: Vec<f32>, target: usize, backend: Option<Backend> },
    /// The paper's L-BFGS attack towards `target`, or away from the model's answer when null.
    Attack {
        key: String,
        pixels: Vec<f32>,
        target: Option<usize>,
        #[serde(default = "defaults::max_iterations")]
        max_iterations: usize,
        #[serde(default = "defaults::c_steps")]
        c_steps: usize,
    },
    /// FGSM (`steps` 0) or PGD (L-infinity, or L2 when `l2`) of radius `epsilon`.
    Baseline {
        key: String,
        pixels: Vec<f32>,
        target: Option<usize>,
        #[serde(default = "defaults::epsilon")]
        epsilon: f64,
        #[serde(default)]
        steps: usize,
        #[serde(default)]
        l2: bool,
    },
    /// Gaussian noise scaled to `distortion` (then clipped to the box), seeded, classified.
    Noise {
        key: String,
        pixels: Vec<f32>,
        target: Option<usize>,
        distortion: f64,
        #[serde(default = "defaults::noise_seed")]
        seed: u64,
    },
    /// A grey drawing (`width` x `height`, ink high) as a 28x28 MNIST-style digit.
    MnistLike { pixels: Vec<f32>, width: usize, height: usize },
    /// An RGBA image (ImageData bytes) of a digit as an MNIST-style digit; blank images refused.
    MnistFromRgba { rgba: Vec<u8>, width: usize, height: usize },
    /// What an ONNX file suggests for its input (see [`crate::preprocess`]).
    Suggest {
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// RGBA bytes as a model input of `channels` planes in [0,1] (1 grey, 3 RGB).
    Planes { rgba: Vec<u8>, width: usize, height: usize, channels: usize },
    /// The tables' seeded target for each test digit (`indices` with their `labels`).
    PaperTargets {
        labels: Vec<usize>,
        indices: Vec<usize>,
        #[serde(default = "defaults::paper_seed")]
        seed: u64,
        #[serde(default = "defaults::classes")]
        classes: usize,
    },
    /// Each adversarial example moved along its perturbation to distortion `to` (Table 3).
    Amplified { originals: Vec<Vec<f32>>, adversarials: Vec<Vec<f32>>, to: f64 },
    /// The paper's distortion, sqrt(mean (image - original)^2), of each image from its original.
    Distortion { originals: Vec<Vec<f32>>, images: Vec<Vec<f32>> },
    /// Images (adversarial examples made for another model, noisy digits) fed to model `key`:
    /// the fraction it does not give their true `labels`, and its answer for each (Tables 2-4).
    Transfer { key: String, images: Vec<Vec<f32>>, labels: Vec<usize> },
    /// Clipped Gaussian noise of each stddev on `images`, from one seeded stream (Table 2).
    PaperNoise {
        images: Vec<Vec<f32>>,
        stddevs: Vec<f64>,
        #[serde(default = "defaults::paper_seed")]
        seed: u64,
    },
    /// The paper's Table 5 (spectral bounds) for the model; progress per linear layer.
    Lipschitz { key: String },
    /// The model's named tensors (input left out) with their shapes for one image.
    Tensors { key: String },
    /// Adds `images` (laid end to end) to the activations of `tensor` kept as `set` (a new set
    /// when `fresh`); answers how many images the set holds.
    Activations {
        key: String,
        tensor: String,
        set: String,
        #[serde(default)]
        images: Vec<f32>,
        #[serde(default)]
        fresh: bool,
    },
    /// The `k` images of a set maximising unit `unit`, and the random direction of `seed`.
    Rank {
        key: String,
        tensor: String,
        set: String,
        unit: usize,
        seed: u64,
        #[serde(default = "defaults::k")]
        k: usize,
    },
    /// Gradient ascent on <phi(x), e_unit> (or the direction of `seed` when `unit` is null).
    Maximise {
        key: String,
        tensor: String,
        unit: Option<usize>,
        #[serde(default = "defaults::direction_seed")]
        seed: u64,
        start: Vec<f32>,
        #[serde(default = "defaults::ascent_iterations")]
        iterations: usize,
    },
    /// Forward and forward + gradient evaluations per second, each timed for about `ms`, and on
    /// WebGPU when the browser has it (`detected`).
    Bench {
        key: String,
        pixels: Vec<f32>,
        #[serde(default = "defaults::bench_ms")]
        ms: f64,
        detected: Option<Detected>,
    },
    /// The paper's Table `table` (1, 2 or 3) over the first `n` digits of the digit pack `pack`
    /// (its file's bytes) for the loaded models `keys`, computed as `blindspot table1/2/3` does
    /// (which asks this): Table 1 a row per model; Table 2 the examples made for each model, and
    /// Gaussian noise, fed to each; Table 3 `keys` = [the source (FC100-100-10 on P1), another
    /// architecture on P1, the same on P2]. The page's tour asks the cells one by one instead, to
    /// spread them over its workers.
    Table {
        table: u8,
        keys: Vec<String>,
        #[serde(with = "serde_bytes")]
        pack: Vec<u8>,
        #[serde(default = "defaults::table_n")]
        n: usize,
        #[serde(default = "defaults::paper_seed")]
        seed: u64,
    },
    /// Trains the model file `bytes` (its weights, or fresh ones when `fromScratch`) on the first
    /// `n` digits of the digit pack `pack` as `blindspot train` does (which shares the fields'
    /// defaults), measuring each epoch's error on `testPack` and on up to 10,000 of the training
    /// digits; the trained model is loaded here as `key`. Progress: each step's loss (at most
    /// every 50 ms), the examples entering the pool, and each epoch's errors with the model's
    /// file at that point (kept by the page should a later epoch fail or be cancelled).
    Train {
        key: String,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
        #[serde(default)]
        from_scratch: bool,
        #[serde(with = "serde_bytes")]
        pack: Vec<u8>,
        #[serde(with = "serde_bytes")]
        test_pack: Vec<u8>,
        #[serde(default = "defaults::train_n")]
        n: usize,
        #[serde(default = "defaults::epochs")]
        epochs: usize,
        #[serde(default = "defaults::batch")]
        batch: usize,
        #[serde(default = "defaults::learning_rate")]
        lr: f64,
        #[serde(default = "defaults::optimizer")]
        optimizer: String,
        #[serde(default)]
        weight_decay: f64,
        /// "constant" or "cosine" (down to 1% of `lr` over the run).
        #[serde(default = "defaults::schedule")]
        schedule: String,
        #[serde(default = "defaults::adversarial")]
        adversarial: String,
        #[serde(default = "defaults::epsilon")]
        epsilon: f64,
        #[serde(default = "defaults::pool")]
        pool: usize,
        #[serde(default = "defaults::refresh")]
        refresh: f64,
        /// The pool batch's share of each step's loss.
        #[serde(default = "defaults::pool_weight")]
        pool_weight: f64,
        #[serde(default = "defaults::paper_seed")]
        seed: u64,
    },
}

/// The values a request takes for the fields it leaves out: the CLI's.
mod defaults {
    pub fn max_iterations() -> usize {
        crate::attack::lbfgs::Options::default().max_iterations
    }
    pub fn c_steps() -> usize {
        crate::attack::lbfgs::Options::default().c_steps
    }
    pub fn epsilon() -> f64 {
        0.1
    }
    pub fn noise_seed() -> u64 {
        1
    }
    pub fn paper_seed() -> u64 {
        crate::paper::SEED
    }
    pub fn classes() -> usize {
        10
    }
    pub fn k() -> usize {
        8
    }
    pub fn direction_seed() -> u64 {
        1
    }
    pub fn ascent_iterations() -> usize {
        50
    }
    pub fn bench_ms() -> f64 {
        1000.0
    }
    pub fn table_n() -> usize {
        1000
    }
    pub fn train_n() -> usize {
        60_000
    }
    pub fn epochs() -> usize {
        1
    }
    pub fn batch() -> usize {
        crate::train::Settings::default().batch
    }
    pub fn learning_rate() -> f64 {
        crate::train::Settings::default().learning_rate
    }
    pub fn optimizer() -> String {
        "sgd".into()
    }
    pub fn schedule() -> String {
        "constant".into()
    }
    pub fn adversarial() -> String {
        "none".into()
    }
    pub fn pool() -> usize {
        1000
    }
    pub fn refresh() -> f64 {
        0.1
    }
    pub fn pool_weight() -> f64 {
        0.5
    }
}

/// Where the page wants models to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Preference {
    #[default]
    Cpu,
    Webgpu,
    /// WebGPU when the browser has a hardware adapter, else the CPU.
    Auto,
}

/// Where one model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    Cpu,
    Webgpu,
}

/// The browser's WebGPU adapter as the worker found it (navigator.gpu.requestAdapter).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Detected {
    pub available: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
    /// Why there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A software adapter (SwiftShader): the GPU emulated on the CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_adapter: Option<bool>,
}

/// The backend as the page shows it: the preference, the browser's adapter, where the model runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub preference: Preference,
    /// Whether the browser has a WebGPU adapter, and its name (when it was asked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_adapter: Option<bool>,
    pub backend: Backend,
    /// Why the model is not on WebGPU (null when it is).
    pub reason: Option<String>,
    /// The adapter's name as wgpu reports it, once the model has been set up on it.
    pub wgpu_adapter: Option<String>,
    /// The automatic choice is still to be made (the page asks for it after its first answer).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
}

/// An answer; its shape depends on the request.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Response {
    Loaded(Loaded),
    Status(Status),
    Done(bool),
    Prediction(Prediction),
    Gradient(Gradient),
    Attack(Attack),
    Pixels(Vec<f32>),
    Images(Vec<Vec<f32>>),
    NoiseRows(Vec<Vec<Vec<f32>>>),
    Classes(Vec<usize>),
    Numbers(Vec<f64>),
    Transfer(Transfer),
    Suggestion(Suggestion),
    Lipschitz(Lipschitz),
    Tensors(Vec<Tensor>),
    Activations(ActivationCount),
    Ranking(Ranking),
    Maximised(Maximised),
    Bench(Bench),
    Distortions(Vec<crate::paper::DistortionRow>),
    TransferTable(crate::paper::TransferTable),
    Trained(Trained),
}

/// A finished training run: the trained model's file (loaded in the lab under the request's
/// key) and each epoch's row.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Trained {
    #[serde(with = "serde_bytes")]
    pub model: Vec<u8>,
    pub epochs: Vec<EpochRow>,
    pub steps: usize,
    pub seconds: f64,
    #[serde(flatten)]
    pub loaded: Loaded,
}

/// One epoch of a training run, as `blindspot train` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EpochRow {
    pub epoch: usize,
    pub loss: f64,
    /// On the first 10,000 training digits (or all when fewer).
    pub train_error: f64,
    pub test_error: f64,
    /// Examples in the adversarial pool.
    pub pool: usize,
    pub seconds: f64,
}

/// An adversarial example entering the training pool (progress of a training run).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolExample {
    pub image: Vec<f32>,
    pub label: usize,
    pub target: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Loaded {
    pub input_shape: Vec<usize>,
    pub classes: usize,
    /// What the graph's score output is, in words ("logits", "probabilities (Softmax ...)").
    pub output: String,
    #[serde(flatten)]
    pub status: Status,
}

/// A model's errors on images made elsewhere: one cell of Tables 2-4.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Transfer {
    pub error_rate: f64,
    /// The model's answer for each image.
    pub labels: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    pub label: usize,
    pub probabilities: Vec<f32>,
    pub logits: Vec<f32>,
}

impl From<Classification> for Prediction {
    fn from(c: Classification) -> Self {
        Prediction { label: c.label, probabilities: c.probabilities, logits: c.logits }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gradient {
    pub objective: f32,
    pub logits: Vec<f32>,
    pub gradient: Vec<f32>,
    pub backend: Backend,
}

impl Gradient {
    pub fn new(e: Evaluation, backend: Backend) -> Gradient {
        Gradient { objective: e.objective, logits: e.logits, gradient: e.gradient, backend }
    }
}

/// An attack's outcome (see [`Outcome`]); `backend` says where an L-BFGS attack ran.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attack {
    #[serde(flatten)]
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<Backend>,
}

impl Attack {
    pub fn new(outcome: Outcome, backend: Option<Backend>) -> Attack {
        Attack { outcome, backend }
    }
}

/// What a dropped file suggests: the preprocessing query, the declared input shape (a symbolic
/// dimension as 0) and its channel count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suggestion {
    pub query: String,
    pub shape: Vec<usize>,
    pub channels: usize,
}

/// The paper's Table 5 for a model (see [`crate::spectral::Table`]) and its Markdown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lipschitz {
    #[serde(flatten)]
    pub table: crate::spectral::Table,
    pub markdown: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActivationCount {
    pub count: usize,
    pub len: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ranking {
    pub unit: Vec<Ranked>,
    pub direction: Vec<Ranked>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ranked {
    pub index: usize,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Maximised {
    pub image: Vec<f32>,
    pub value: f64,
    pub start_value: f64,
    pub iterations: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bench {
    pub forward: f64,
    pub gradient: f64,
    /// Forward + gradient per second on WebGPU, when the browser has it.
    pub gpu_gradient: Option<f64>,
    #[serde(flatten)]
    pub status: Status,
}

/// A long request's progress, sent to the page as it runs (at most every 50 ms for iterations).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Progress {
    /// After an L-BFGS iteration of an attack.
    Attack { c: f64, iteration: usize, loss: f64, distortion: f64 },
    /// Before each linear layer of Table 5.
    Layer { done: usize, total: usize, node: String },
    /// After an iteration of activation maximisation.
    Ascent { iteration: usize, value: f64 },
    /// After a training step (`steps` in the epoch): the batch's mean loss before it.
    #[serde(rename_all = "camelCase")]
    Step { epoch: usize, step: usize, steps: usize, loss: f64, pool: usize },
    /// New examples entered the adversarial pool: how many, and the first few.
    #[serde(rename_all = "camelCase")]
    Pool { entered: usize, pool: usize, examples: Vec<PoolExample> },
    /// An epoch ended: its row, and the model's file with the weights at that point.
    #[serde(rename_all = "camelCase")]
    Epoch {
        row: EpochRow,
        #[serde(with = "serde_bytes")]
        model: Vec<u8>,
    },
}
