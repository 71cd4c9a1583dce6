//! The lab: one object that owns the loaded models and answers every request of the page's protocol.
//!
//! The page's worker holds one [`Lab`] and hands it each request ([`protocol::Request`]) as it
//! comes; `cargo test` drives the same requests (tests/lab.rs). A model's gradient graphs are
//! built once per objective and kept ([`Objective`] is the key), its WebGPU compilations beside
//! them; the backend choice, the GPU's cross-check against the CPU and the fallback to the CPU
//! live here ([`backend`]). Long requests report [`Progress`] and are cancelled cooperatively:
//! between optimiser iterations an attack lets the host's event loop run ([`Host::pause`],
//! every 25 ms) and looks whether [`Lab::cancel`] was called for it. Nothing is lost by a
//! cancel: the models, their caches and the GPU stay as they were.

pub mod backend;
pub mod protocol;

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use crate::attack::lbfgs::{self, Evaluate, Search};
use crate::attack::{baselines, check_input, check_len, Goal, Instant};
use crate::grad::{GradientModel, Objective};
use crate::preprocess::Preprocessing;
use crate::{Classifier, Error, Result};

use backend::{Gpus, Placement};
pub use protocol::{Progress, Request, Response};
use protocol::*;

/// What the lab needs of whoever runs it: somewhere to send progress, and a way to let other
/// work in (the browser worker's event loop, where cancel messages arrive). Natively both can
/// be no-ops.
pub trait Host {
    /// A progress event of the request being answered.
    fn progress(&self, event: Progress);
    /// Resolves once the host's pending events have had their turn.
    fn pause(&self) -> Pin<Box<dyn Future<Output = ()> + '_>>;
}

/// A host that drops progress and never pauses (the CLI, tests that do not look).
pub struct Quiet;

impl Host for Quiet {
    fn progress(&self, _: Progress) {}
    fn pause(&self) -> Pin<Box<dyn Future<Output = ()> + '_>> {
        Box::pin(std::future::ready(()))
    }
}

/// How often a long request lets the host's events in.
const PAUSE_EVERY: Duration = Duration::from_millis(25);
/// How often iteration progress is reported at most.
const REPORT_EVERY: Duration = Duration::from_millis(50);

/// A loaded model and everything built for it.
struct Entry {
    classifier: Rc<Classifier>,
    /// What it was loaded from.
    fingerprint: Fingerprint,
    /// Gradient graphs by objective: building one costs more than many evaluations.
    graphs: RefCell<HashMap<Objective, Rc<GradientModel>>>,
    placement: RefCell<Placement>,
    /// Activations of named tensors over sets of images (Property 1), by (tensor, set).
    activations: RefCell<HashMap<(String, String), Activations>>,
}

/// A model file and its load settings, told apart without keeping the bytes: their length and
/// FNV-1a hash.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    len: usize,
    hash: u64,
    shape: Option<Vec<usize>>,
    preprocessing: Option<String>,
}

impl Fingerprint {
    fn of(bytes: &[u8], shape: &Option<Vec<usize>>, preprocessing: &Option<String>) -> Fingerprint {
        let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
        Fingerprint { len: bytes.len(), hash, shape: shape.clone(), preprocessing: preprocessing.clone() }
    }
}

struct Activations {
    probe: crate::units::Probe,
    values: Vec<f32>,
}

impl Entry {
    /// The gradient graph of `objective`, built on first use.
    fn graph(&self, objective: &Objective) -> Result<Rc<GradientModel>> {
        if let Some(g) = self.graphs.borrow().get(objective) {
            return Ok(Rc::clone(g));
        }
        let built = Rc::new(self.classifier.gradient(objective)?);
        self.graphs.borrow_mut().insert(objective.clone(), Rc::clone(&built));
        Ok(built)
    }

    fn goal(&self, pixels: &[f32], target: Option<usize>) -> Result<Goal> {
        Ok(match target {
            Some(t) => Goal::Target(t),
            None => Goal::Untargeted { label: self.classifier.classify(pixels)?.label },
        })
    }
}

/// The models one page (one worker) has loaded, and the requests running on them.
#[derive(Default)]
pub struct Lab {
    models: RefCell<HashMap<String, Rc<Entry>>>,
    preference: RefCell<Preference>,
    gpus: Gpus,
    /// Requests being answered, and those of them asked to stop.
    running: RefCell<HashSet<u64>>,
    cancelled: RefCell<HashSet<u64>>,
}

impl Lab {
    pub fn new() -> Lab {
        Lab::default()
    }

    /// Asks request `id` to stop: an attack ends at its next iteration with [`Error::Cancelled`].
    /// An id that is not running is ignored.
    pub fn cancel(&self, id: u64) {
        if self.running.borrow().contains(&id) {
            self.cancelled.borrow_mut().insert(id);
        }
    }

    fn is_cancelled(&self, id: u64) -> bool {
        self.cancelled.borrow().contains(&id)
    }

    /// The keys of the loaded models, sorted.
    pub fn loaded(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.models.borrow().keys().cloned().collect();
        keys.sort();
        keys
    }

    fn entry(&self, key: &str) -> Result<Rc<Entry>> {
        self.models
            .borrow()
            .get(key)
            .cloned()
            .ok_or_else(|| Error::Input(format!("no model \"{key}\" is loaded here: load it first (in the page, pick the model again)")))
    }

    /// Answers request `id`; `host` receives its progress and lets other events in.
    pub async fn answer(&self, id: u64, request: Request, host: &dyn Host) -> Result<Response> {
        self.running.borrow_mut().insert(id);
        let answer = self.dispatch(id, request, host).await;
        self.running.borrow_mut().remove(&id);
        self.cancelled.borrow_mut().remove(&id);
        answer
    }

    /// [`answer`](Self::answer) for a host that cannot wait (the CLI and the tests): the
    /// GPU's futures are driven to the end on this thread.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn answer_blocking(&self, id: u64, request: Request, host: &dyn Host) -> Result<Response> {
        pollster::block_on(self.answer(id, request, host))
    }

    async fn dispatch(&self, id: u64, request: Request, host: &dyn Host) -> Result<Response> {
        use Request as R;
        Ok(match request {
            R::Load { key, bytes, shape, preprocessing, backend, detected } => {
                self.load(key, &bytes, shape, preprocessing, backend, detected).await?
            }
            R::Unload { key } => Response::Done(self.models.borrow_mut().remove(&key).is_some()),
            R::Backend { preference, key, detected } => {
                *self.preference.borrow_mut() = preference;
                match key {
                    Some(key) if self.models.borrow().contains_key(&key) => {
                        let entry = self.entry(&key)?;
                        self.place(&entry, detected.as_ref()).await;
                        Response::Status(self.status(Some(&entry), detected))
                    }
                    _ => Response::Status(self.status(None, detected)),
                }
            }
            R::Classify { key, pixels } => Response::Prediction(self.entry(&key)?.classifier.classify(&pixels)?.into()),
            R::Gradient { key, objective, pixels, target, backend } => {
                let entry = self.entry(&key)?;
                let objective = Objective::parse(&objective)?;
                Response::Gradient(self.gradient(&entry, &objective, &pixels, target, backend).await?)
            }
            R::Attack { key, pixels, target, max_iterations, c_steps } => {
                let entry = self.entry(&key)?;
                let options = lbfgs::Options { max_iterations, c_steps, ..Default::default() };
                Response::Attack(self.attack(id, &entry, &pixels, target, &options, host).await?)
            }
            R::Baseline { key, pixels, target, epsilon, steps, l2 } => {
                // PGD runs to the end (no pause between steps): a bound keeps the worker answering
                if steps > 10_000 {
                    return Err(Error::Input(format!("PGD runs at most 10000 steps, not {steps}")));
                }
                let entry = self.entry(&key)?;
                let goal = entry.goal(&pixels, target)?;
                let classifier = &entry.classifier;
                let budget = baselines::Budget { epsilon, step: epsilon / 10.0, iterations: steps };
                let outcome = match (steps, l2) {
                    (0, _) => baselines::fgsm(classifier, &pixels, goal, epsilon),
                    (_, false) => baselines::pgd_linf(classifier, &pixels, goal, &budget),
                    (_, true) => baselines::pgd_l2(classifier, &pixels, goal, &budget),
                }?;
                Response::Attack(protocol::Attack::new(outcome, None))
            }
            R::Noise { key, pixels, target, distortion, seed } => {
                let entry = self.entry(&key)?;
                let goal = entry.goal(&pixels, target)?;
                let mut rng = crate::rng::Rng(seed);
                let outcome = baselines::noise_of_distortion(&entry.classifier, &pixels, goal, distortion, &mut rng)?;
                Response::Attack(protocol::Attack::new(outcome, None))
            }
            R::MnistLike { pixels, width, height } => {
                crate::image::check_size(width, height, pixels.len() as u64, 1, "grey values")?;
                Response::Pixels(crate::image::mnist_like(&pixels, width, height))
            }
            R::MnistFromRgba { rgba, width, height } => Response::Pixels(crate::image::mnist_from_rgba(&rgba, width, height)?),
            R::Planes { rgba, width, height, channels } => {
                Response::Pixels(crate::image::planes_from_rgba(&rgba, width, height, channels)?)
            }
            R::Suggest { bytes } => {
                let proto = crate::model::decode(&bytes)?;
                let pre = Preprocessing::suggested(&proto)?;
                let shape = crate::preprocess::declared_shape(&proto);
                let channels = shape.get(pre.layout.channel_axis()).copied().unwrap_or(0);
                Response::Suggestion(Suggestion { query: pre.to_query(), shape, channels })
            }
            R::PaperTargets { labels, indices, seed, classes } => {
                if labels.len() != indices.len() {
                    return Err(Error::Input(format!("{} labels for {} digits", labels.len(), indices.len())));
                }
                if classes < 2 {
                    return Err(Error::Input(format!("targets need at least 2 classes, not {classes}")));
                }
                if let Some(bad) = labels.iter().find(|&&l| l >= classes) {
                    return Err(Error::Input(format!("label {bad} is not one of the {classes} classes")));
                }
                Response::Classes(
                    indices.iter().zip(&labels).map(|(&i, &label)| crate::paper::target_for(label, i, seed, classes)).collect(),
                )
            }
            R::Amplified { originals, adversarials, to } => {
                if originals.len() != adversarials.len() || originals.iter().zip(&adversarials).any(|(x, y)| x.len() != y.len()) {
                    return Err(Error::Input("each example needs an original of its size".into()));
                }
                if !(to.is_finite() && to >= 0.0) {
                    return Err(Error::Input(format!("the distortion to amplify to must be a finite number of at least 0, not {to}")));
                }
                Response::Images(originals.iter().zip(&adversarials).map(|(x, a)| crate::paper::amplified(x, a, to)).collect())
            }
            R::Distortion { originals, images } => {
                if originals.len() != images.len() || originals.iter().zip(&images).any(|(x, y)| x.len() != y.len()) {
                    return Err(Error::Input("each image needs an original of its size".into()));
                }
                Response::Numbers(originals.iter().zip(&images).map(|(x, y)| crate::attack::metrics::distortion(x, y)).collect())
            }
            R::Transfer { key, images, labels } => {
                if images.len() != labels.len() {
                    return Err(Error::Input(format!("{} labels for {} images", labels.len(), images.len())));
                }
                let (error_rate, labels) = crate::paper::errors(&self.entry(&key)?.classifier, &images, &labels)?;
                Response::Transfer(protocol::Transfer { error_rate, labels })
            }
            R::PaperNoise { images, stddevs, seed } => {
                if let Some(bad) = stddevs.iter().find(|s| !(s.is_finite() && **s >= 0.0)) {
                    return Err(Error::Input(format!("a standard deviation must be a finite number of at least 0, not {bad}")));
                }
                // one seeded stream, stddev by stddev, as `blindspot table2` and `table3` draw it
                let mut rng = crate::rng::Rng(seed);
                Response::NoiseRows(
                    stddevs
                        .iter()
                        .map(|&s| images.iter().map(|x| crate::paper::noisy_image(x, s, &mut rng)).collect())
                        .collect(),
                )
            }
            R::Table { table, keys, pack, n, seed } => self.table(table, &keys, &pack, n, seed)?,
            R::Train {
                key,
                bytes,
                from_scratch,
                pack,
                test_pack,
                n,
                epochs,
                batch,
                lr,
                optimizer,
                weight_decay,
                schedule,
                adversarial,
                epsilon,
                pool,
                refresh,
                pool_weight,
                seed,
            } => {
                let method = crate::train::Method::parse(&adversarial, epsilon, pool, refresh, pool_weight)?;
                let settings = crate::train::Settings {
                    learning_rate: lr,
                    optimizer: crate::train::Optimizer::parse(&optimizer)?,
                    weight_decay,
                    batch,
                    seed,
                    cosine_steps: None,
                };
                let schedule = crate::train::Schedule::parse(&schedule)?;
                let run = Run { bytes: &bytes, from_scratch, pack: &pack, test_pack: &test_pack, n, epochs, settings, schedule, method };
                let (model, epochs, steps, seconds) = self.train(id, run, host).await?;
                let Response::Loaded(loaded) = self.load(key, &model, None, None, None, None).await? else {
                    unreachable!("load answers Loaded")
                };
                Response::Trained(Trained { model, epochs, steps, seconds, loaded })
            }
            R::Lipschitz { key } => Response::Lipschitz(lipschitz(&*self.entry(&key)?, host)?),
            R::Tensors { key } => Response::Tensors(
                crate::units::named_tensors(&self.entry(&key)?.classifier)
                    .into_iter()
                    .map(|t| Tensor { name: t.name, shape: t.shape })
                    .collect(),
            ),
            R::Activations { key, tensor, set, images, fresh } => {
                let entry = self.entry(&key)?;
                let mut sets = entry.activations.borrow_mut();
                let id = (tensor.clone(), set);
                if fresh || !sets.contains_key(&id) {
                    let probe = crate::units::Probe::new(&entry.classifier, &tensor)?;
                    sets.insert(id.clone(), Activations { probe, values: vec![] });
                }
                let acts = sets.get_mut(&id).expect("inserted above");
                if !images.is_empty() {
                    let more = acts.probe.run(&images)?;
                    acts.values.extend(more);
                }
                let len = acts.probe.tensor.len();
                Response::Activations(ActivationCount { count: acts.values.len() / len.max(1), len })
            }
            R::Rank { key, tensor, set, unit, seed, k } => {
                let entry = self.entry(&key)?;
                let sets = entry.activations.borrow();
                let acts = sets
                    .get(&(tensor.clone(), set.clone()))
                    .ok_or_else(|| {
                        Error::Input(format!(
                            "no activations of \"{tensor}\" over set \"{set}\" are kept here (the worker may have \
                             restarted): compute them again (Find digits)"
                        ))
                    })?;
                let len = acts.probe.tensor.len();
                let ranked = |direction: Vec<f32>| -> Result<Vec<Ranked>> {
                    Ok(crate::units::top_k(&acts.values, len, &direction, k)?
                        .into_iter()
                        .map(|(index, value)| Ranked { index, value })
                        .collect())
                };
                Response::Ranking(Ranking {
                    unit: ranked(crate::units::unit(len, unit)?)?,
                    direction: ranked(crate::units::random_direction(len, seed))?,
                })
            }
            R::Maximise { key, tensor, unit, seed, start, iterations } => {
                Response::Maximised(self.maximise(id, &*self.entry(&key)?, &tensor, unit, seed, &start, iterations, host)?)
            }
            R::Bench { key, pixels, ms, detected } => {
                if !(1.0..=60_000.0).contains(&ms) {
                    return Err(Error::Input(format!("a benchmark runs for 1 to 60000 ms, not {ms}")));
                }
                let entry = self.entry(&key)?;
                Response::Bench(self.bench(&entry, &pixels, Duration::from_secs_f64(ms / 1000.0), detected).await?)
            }
        })
    }

    /// The `table` request: [`crate::paper`]'s Tables 1-3 for loaded models, on every core
    /// natively (the page's worker has one thread).
    fn table(&self, table: u8, keys: &[String], pack: &[u8], n: usize, seed: u64) -> Result<Response> {
        use crate::paper;
        let pack = crate::DigitPack::parse(pack)?;
        let entries = keys.iter().map(|k| self.entry(k)).collect::<Result<Vec<_>>>()?;
        let models: Vec<&Classifier> = entries.iter().map(|e| &*e.classifier).collect();
        let options = crate::attack::lbfgs::Options::default();
        #[cfg(not(target_arch = "wasm32"))]
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        #[cfg(target_arch = "wasm32")]
        let threads = 1;
        Ok(match (table, models.as_slice()) {
            (_, []) => return Err(Error::Input("a table needs at least one loaded model: give their keys".into())),
            (1, _) => Response::Distortions(
                models.iter().map(|m| paper::average_distortion(m, &pack, n, seed, &options, threads)).collect::<Result<_>>()?,
            ),
            (2, _) => {
                let named: Vec<(&str, &Classifier)> = keys.iter().map(String::as_str).zip(models.iter().copied()).collect();
                Response::TransferTable(paper::table2(&named, &pack, n, seed, &options, threads)?)
            }
            (3, [source, _, _]) => Response::TransferTable(paper::table3(source, &models, &pack, n, seed, &options, threads)?),
            (3, _) => {
                return Err(Error::Input(format!(
                    "Table 3 takes three models (the source FC100-100-10 on P1, another architecture on P1, the same on P2), not {}",
                    models.len()
                )))
            }
            (other, _) => {
                return Err(Error::Input(format!(
                    "there is no Table {other} to compute here: ask for 1, 2 or 3 (Table 5 is the lipschitz request)"
                )))
            }
        })
    }

    async fn load(
        &self,
        key: String,
        bytes: &[u8],
        shape: Option<Vec<usize>>,
        preprocessing: Option<String>,
        preference: Option<Preference>,
        detected: Option<Detected>,
    ) -> Result<Response> {
        if let Some(p) = preference {
            *self.preference.borrow_mut() = p;
        }
        // the same file with the same settings again (another panel, the model picked again):
        // the model, its gradient graphs and its activations are kept
        let fingerprint = Fingerprint::of(bytes, &shape, &preprocessing);
        let kept = self.models.borrow().get(&key).filter(|e| e.fingerprint == fingerprint).cloned();
        let entry = match kept {
            Some(entry) => entry,
            None => {
                let classifier = match &preprocessing {
                    Some(query) => Classifier::load_with(bytes, shape.as_deref(), &Preprocessing::parse(query)?)?,
                    None => Classifier::load(bytes, shape.as_deref())?,
                };
                let entry = Rc::new(Entry {
                    classifier: Rc::new(classifier),
                    fingerprint,
                    graphs: RefCell::default(),
                    placement: RefCell::default(),
                    activations: RefCell::default(),
                });
                self.models.borrow_mut().insert(key, Rc::clone(&entry));
                entry
            }
        };
        let pending = *self.preference.borrow() == Preference::Auto;
        if pending {
            // The automatic choice (asking for an adapter, checking the GPU: 0.2-0.5 s) is not
            // worth delaying the first classification for: the model starts on the CPU, and the
            // page asks for the choice (a Backend request) once its first answer is on show.
            *entry.placement.borrow_mut() = Placement::cpu("choosing the backend…");
        } else {
            self.place(&entry, detected.as_ref()).await;
        }
        let mut status = self.status(Some(&entry), if pending { None } else { detected });
        status.pending = pending;
        let c = &entry.classifier;
        Ok(Response::Loaded(Loaded {
            input_shape: c.input_shape().to_vec(),
            classes: c.classes(),
            output: c.output().describe(),
            status,
        }))
    }

    fn status(&self, entry: Option<&Entry>, detected: Option<Detected>) -> Status {
        let placement = entry.map(|e| e.placement.borrow().clone()).unwrap_or_default();
        Status {
            preference: *self.preference.borrow(),
            available: detected.as_ref().map(|d| d.available),
            adapter: detected.as_ref().and_then(|d| d.adapter.clone()),
            fallback_adapter: detected.as_ref().and_then(|d| d.fallback_adapter),
            backend: placement.backend,
            reason: entry.and(placement.reason),
            wgpu_adapter: entry.and_then(|_| placement.gpu.as_ref().map(|g| g.adapter.clone())),
            pending: false,
        }
    }

    /// Puts `entry` on the backend the preference asks for; a GPU that fails (or whose results
    /// differ from the CPU's) leaves it on the CPU, saying why.
    async fn place(&self, entry: &Entry, detected: Option<&Detected>) {
        let preference = *self.preference.borrow();
        let choice = backend::choose(preference, detected);
        if choice.backend == Backend::Cpu {
            let mut placement = entry.placement.borrow_mut();
            placement.backend = Backend::Cpu;
            placement.reason = choice.reason;
            return;
        }
        match self.gpus.set_up(entry).await {
            Ok(()) => {
                let mut placement = entry.placement.borrow_mut();
                placement.backend = Backend::Webgpu;
                placement.reason = None;
            }
            Err(e) => entry.placement.borrow_mut().fall_back(&e),
        }
    }

    async fn gradient(
        &self,
        entry: &Entry,
        objective: &Objective,
        pixels: &[f32],
        target: usize,
        backend: Option<Backend>,
    ) -> Result<protocol::Gradient> {
        let on_gpu = match backend {
            Some(b) => b == Backend::Webgpu,
            None => entry.placement.borrow().backend == Backend::Webgpu,
        };
        // a wrong input is the request's fault, not the GPU's: refused before either runs (the
        // GPU compiles the same gradient graph, so asking for it first costs nothing)
        check_len(&entry.classifier, pixels)?;
        let graph = entry.graph(objective)?;
        let parameter = graph.one_hot(target)?;
        if on_gpu {
            let attempt = self.gpus.gradient(entry, objective, pixels, target).await;
            match attempt {
                Ok(e) => return Ok(protocol::Gradient::new(e, Backend::Webgpu)),
                Err(e) if backend.is_some() => return Err(e),
                Err(e @ Error::Input(_)) => return Err(e),
                Err(e) => entry.placement.borrow_mut().fall_back(&e),
            }
        }
        let evaluation = graph.evaluate(pixels, &parameter)?;
        Ok(protocol::Gradient::new(evaluation, Backend::Cpu))
    }

    /// A training run ([`Request::Train`]): the trained file, each epoch's row, the steps and
    /// seconds in all. A pause between steps lets a cancel in.
    async fn train(&self, id: u64, run: Run<'_>, host: &dyn Host) -> Result<(Vec<u8>, Vec<EpochRow>, usize, f64)> {
        use crate::train::{error, Trainer};
        let started = Instant::now();
        let train = crate::DigitPack::parse(run.pack).map_err(|e| e.in_file("the training digits"))?;
        let test = crate::DigitPack::parse(run.test_pack).map_err(|e| e.in_file("the test digits"))?;
        if run.epochs == 0 || run.epochs > 1000 {
            return Err(Error::Input(format!("a run trains 1 to 1,000 epochs, not {}", run.epochs)));
        }
        let n = run.n.clamp(1, train.len());
        let seed = run.settings.seed;
        let settings = crate::train::Settings { cosine_steps: run.schedule.steps(run.epochs, n, run.settings.batch), ..run.settings };
        let mut trainer = Trainer::new(run.bytes, settings)?;
        if run.from_scratch {
            trainer.initialise(seed);
        }
        let len = trainer.image_len();
        if len != train.rows * train.cols || len != test.rows * test.cols {
            return Err(Error::Input(format!(
                "this model takes {len} values an image; the digits have {}: train a model for {}x{} grey digits",
                train.rows * train.cols,
                train.rows,
                train.cols
            )));
        }
        let images = train.inputs(0..n);
        let labels: Vec<usize> = train.labels[..n].iter().map(|&y| y as usize).collect();
        let mut pool = run.method.pool(seed);
        let mut layers = run.method.layer_pools(run.bytes, &trainer, seed)?;
        let (mut rows, mut steps) = (vec![], 0);
        let mut paused = Instant::now();
        for epoch in 1..=run.epochs {
            let mut reporter = Reporter::default();
            let mut pass = trainer.begin_epoch(&images, &labels)?;
            let total = pass.total_steps();
            let mut adversarial = run.method.adversarial(&mut pool, &mut layers, run.bytes);
            while let Some(loss) = trainer.advance(&mut pass, &images, &labels, &mut adversarial)? {
                if let (true, Some(pool)) = (pass.entered > 0, adversarial.pool()) {
                    let examples = pool
                        .recent()
                        .iter()
                        .map(|e| PoolExample { image: e.image.clone(), label: e.label, target: e.target })
                        .collect();
                    host.progress(Progress::Pool { entered: pass.entered, pool: pool.len(), examples });
                }
                let size = adversarial.pool().map_or(0, |p| p.len());
                reporter.report(host, || Progress::Step { epoch, step: pass.steps, steps: total, loss, pool: size });
                if paused.elapsed() >= PAUSE_EVERY {
                    host.pause().await;
                    paused = Instant::now();
                }
                if self.is_cancelled(id) {
                    return Err(Error::Cancelled);
                }
            }
            let done = pass.end();
            steps += done.steps;
            let model = trainer.write_onnx(run.bytes)?;
            let classifier = Classifier::load(&model, None)?;
            let row = EpochRow {
                epoch,
                loss: done.loss,
                train_error: error(&classifier, &train, n.min(10_000))?,
                test_error: error(&classifier, &test, test.len())?,
                pool: pool.len(),
                seconds: done.seconds,
            };
            host.progress(Progress::Epoch { row: row.clone(), model: model.clone() });
            rows.push(row);
            host.pause().await;
            if self.is_cancelled(id) {
                return Err(Error::Cancelled);
            }
        }
        Ok((trainer.write_onnx(run.bytes)?, rows, steps, started.elapsed().as_secs_f64()))
    }

    /// The paper's L-BFGS attack on the model's backend (a GPU failure falls back to the CPU).
    async fn attack(
        &self,
        id: u64,
        entry: &Entry,
        pixels: &[f32],
        target: Option<usize>,
        options: &lbfgs::Options,
        host: &dyn Host,
    ) -> Result<protocol::Attack> {
        check_input(&entry.classifier, pixels)?;
        let goal = entry.goal(pixels, target)?;
        let mut reporter = Reporter::default();
        if entry.placement.borrow().backend == Backend::Webgpu {
            let attempt = self
                .gpus
                .attack(entry, pixels, goal, options, |p| {
                    reporter.attack(host, p);
                    !self.is_cancelled(id)
                })
                .await;
            match attempt {
                Ok(outcome) => return Ok(protocol::Attack::new(outcome, Some(Backend::Webgpu))),
                Err(Error::Cancelled) => return Err(Error::Cancelled),
                Err(e @ Error::Input(_)) => return Err(e),
                Err(e) => entry.placement.borrow_mut().fall_back(&e),
            }
        }
        let (objective, class) = goal.objective();
        let graph = entry.graph(&objective)?;
        let parameter = graph.one_hot(class)?;
        let evaluate: Evaluate = Rc::new(RefCell::new(move |image: &[f32]| graph.evaluate(image, &parameter)));
        let mut search = Search::new(pixels, goal, options);
        let mut paused = Instant::now();
        // lbfgs::attack's loop, with a pause for the host's messages (a cancel among them)
        while let Some(p) = search.advance(&evaluate, &entry.classifier)? {
            reporter.attack(host, &p);
            if paused.elapsed() >= PAUSE_EVERY {
                host.pause().await;
                paused = Instant::now();
            }
            if self.is_cancelled(id) {
                search.cancel();
            }
        }
        Ok(protocol::Attack::new(search.finish()?, Some(Backend::Cpu)))
    }

    #[allow(clippy::too_many_arguments)]
    fn maximise(
        &self,
        id: u64,
        entry: &Entry,
        tensor: &str,
        unit: Option<usize>,
        seed: u64,
        start: &[f32],
        iterations: usize,
        host: &dyn Host,
    ) -> Result<Maximised> {
        let graph = entry.graph(&Objective::Projection { tensor: tensor.to_string() })?;
        let len: usize = graph.parameter_shape().iter().product();
        let direction = match unit {
            Some(i) => crate::units::unit(len, i)?,
            None => crate::units::random_direction(len, seed),
        };
        let mut reporter = Reporter::default();
        let found = crate::units::maximise(&entry.classifier, &graph, &direction, start, iterations, |iteration, value| {
            reporter.report(host, || Progress::Ascent { iteration, value });
            !self.is_cancelled(id)
        })?;
        Ok(Maximised { image: found.image, value: found.value, start_value: found.start_value, iterations: found.iterations })
    }

    /// Forward and forward + gradient rates on the CPU, and on WebGPU whenever the browser has
    /// it (even with the CPU chosen: then set up, timed and left unused), unless it already
    /// failed for this model.
    async fn bench(&self, entry: &Entry, pixels: &[f32], time: Duration, detected: Option<Detected>) -> Result<Bench> {
        let forward = crate::bench::rate(time, || entry.classifier.classify(pixels).map(|_| ()))?;
        let graph = entry.graph(&Objective::CrossEntropy)?;
        let target = graph.one_hot(0)?;
        let gradient = crate::bench::rate(time, || graph.evaluate(pixels, &target).map(|_| ()))?;
        let mut gpu_gradient = None;
        if detected.as_ref().is_some_and(|d| d.available) && !entry.placement.borrow().failed {
            match self.gpus.rate(entry, pixels, time).await {
                Ok(rate) => gpu_gradient = Some(rate),
                Err(e) => entry.placement.borrow_mut().fall_back(&e),
            }
        }
        Ok(Bench { forward, gradient, gpu_gradient, status: self.status(Some(entry), detected) })
    }
}

/// A training request's model, digits and settings.
struct Run<'a> {
    bytes: &'a [u8],
    from_scratch: bool,
    pack: &'a [u8],
    test_pack: &'a [u8],
    n: usize,
    epochs: usize,
    settings: crate::train::Settings,
    schedule: crate::train::Schedule,
    method: crate::train::Method,
}

/// The paper's Table 5 for the model, progress before each linear layer.
fn lipschitz(entry: &Entry, host: &dyn Host) -> Result<protocol::Lipschitz> {
    let table = crate::spectral::lipschitz_graph(entry.classifier.graph(), |done, total, node| {
        host.progress(Progress::Layer { done, total, node: node.to_string() });
    })?;
    let markdown = table.markdown();
    Ok(protocol::Lipschitz { table, markdown })
}

/// Sends iteration progress at most every [`REPORT_EVERY`] (the first at once).
#[derive(Default)]
struct Reporter {
    last: Option<Instant>,
}

impl Reporter {
    fn report(&mut self, host: &dyn Host, event: impl FnOnce() -> Progress) {
        if self.last.is_none_or(|t| t.elapsed() >= REPORT_EVERY) {
            self.last = Some(Instant::now());
            host.progress(event());
        }
    }

    fn attack(&mut self, host: &dyn Host, p: &lbfgs::Progress) {
        self.report(host, || Progress::Attack { c: p.c, iteration: p.iteration, loss: p.loss, distortion: p.distortion });
    }
}
