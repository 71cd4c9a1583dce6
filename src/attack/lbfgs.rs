//! The paper's attack: minimise c ||r||^2 + loss(x + r) over x + r in [0,1]^m with L-BFGS-B, for
//! a sequence of c found by bracketing then bisecting, keeping the least-distortion success.
//!
//! How this settles the paper's ambiguities (see docs/attack.md):
//! - "|r|" is taken as the squared L2 norm ||r||^2, as every public implementation does; the
//!   distortion reported is the paper's sqrt(mean r^2).
//! - c multiplies the distance term, so a larger c buys a smaller perturbation at the risk of
//!   missing the target: the least distortion comes from the LARGEST c that still reaches the goal
//!   (the paper's "minimum c" would hold for c on the loss term, as in Foolbox and CleverHans).
//!   The search starts at `c_initial`, multiplies or divides by 10 until one c succeeds and a
//!   larger one fails, then bisects (geometric means) between them, and keeps the success with
//!   the least distortion among all runs.
//!
//! The search is a state machine, [`Search`], that asks for the model's outputs at each point
//! instead of calling the model, so that a GPU whose results come back asynchronously can answer
//! (docs/attack.md, "Ask and tell"). On the CPU, [`Search::ask_with`] lets L-BFGS-B call the
//! model itself and still hands back control after every iteration; [`attack`] drives it.

use std::cell::RefCell;
use std::rc::Rc;

use super::{check_input, metrics, outcome, Goal, Instant, Loss, LossAt, Outcome, Spent};
use crate::grad::Evaluation;
use crate::model::argmax;
use crate::optim::asktell::{self, AskTell};
use crate::optim::lbfgsb::{self, Stop};
use crate::{Classifier, Error, Result};

/// The attack's knobs; the defaults follow Foolbox 1.x's LBFGSAttack where the paper is silent.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// L-BFGS-B iterations per value of c.
    pub max_iterations: usize,
    /// Bisection steps after bracketing.
    pub c_steps: usize,
    /// Tries at multiplying or dividing c by 10 while bracketing.
    pub bracket_steps: usize,
    pub c_initial: f64,
    /// L-BFGS memory (correction pairs).
    pub memory: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { max_iterations: 150, c_steps: 5, bracket_steps: 6, c_initial: 1.0, memory: 15 }
    }
}

/// Reported after each L-BFGS iteration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    pub c: f64,
    /// Iterations so far over the whole attack.
    pub iteration: usize,
    /// c ||r||^2 + loss at the current iterate.
    pub loss: f64,
    pub distortion: f64,
}

/// What the search needs next (see [`Search::ask`]).
#[derive(Debug, Clone)]
pub enum Ask {
    /// The loss graph of [`Goal::objective`] at this image, with its one-hot parameter: the
    /// objective, the logits and the gradient with respect to the image. Answer with [`Search::tell`].
    Gradient(Vec<f32>),
    /// The model's logits for this image (the end of one L-BFGS-B run). Answer with
    /// [`Search::tell_logits`].
    Classify(Vec<f32>),
    /// An L-BFGS-B iteration has completed; [`Search::cancel`] now ends the attack.
    Progress(Progress),
    /// The attack is over ([`Error::Cancelled`] if it was cancelled); asking again repeats it.
    Done(Result<Outcome>),
}

/// The whole attack as a state machine that asks for model evaluations: every L-BFGS-B run of
/// the search over c, the bookkeeping, the progress reports and the final [`Outcome`].
///
/// ```ignore
/// let mut search = Search::new(&x, goal, &Options::default());
/// let outcome = loop {
///     match search.ask() {
///         Ask::Gradient(image) => search.tell(loss_graph.evaluate(&image, &one_hot)?),
///         Ask::Classify(image) => search.tell_logits(classifier.classify(&image)?.logits),
///         Ask::Progress(p) => if !report(&p) { search.cancel() },
///         Ask::Done(outcome) => break outcome?,
///     }
/// };
/// ```
pub struct Search {
    x: Vec<f32>,
    x64: Vec<f64>,
    goal: Goal,
    lbfgs: lbfgsb::Options,
    schedule: Schedule,
    /// The c of the current run, and the iterations of the runs before it.
    c: f64,
    iterations_before: usize,
    stage: Stage,
    iterations: usize,
    gradient_evaluations: usize,
    best: Option<(Run, f64, f64)>, // (run, c, distortion)
    last: Option<(Run, f64)>,
    started: Instant,
}

/// The model's loss graph at an image, for [`Search::ask_with`] (called by L-BFGS-B itself).
pub type Evaluate = Rc<RefCell<dyn FnMut(&[f32]) -> Result<Evaluation>>>;

enum Stage {
    /// The L-BFGS-B run at the current c is to begin, at the next ask: by ask/tell ([`Search::ask`])
    /// or calling the model itself ([`Search::ask_with`]).
    Ready,
    /// L-BFGS-B at the current c; `asked` is the point of an outstanding [`Ask::Gradient`];
    /// `failure`, for a run that calls the model, the first error it returned (which ends the
    /// attack).
    Minimising { run: AskTell<'static>, asked: Option<Vec<f64>>, failure: Rc<RefCell<Option<Error>>> },
    /// The run at the current c ended at `adversarial`, whose class is asked for.
    Classifying { adversarial: Vec<f32> },
    Done(Result<Outcome>),
}

/// Where one L-BFGS-B run at a fixed c ended.
struct Run {
    adversarial: Vec<f32>,
    logits: Vec<f32>,
}

impl Search {
    /// The attack on `x` (pixels in [0, 1], as many as the model takes) for `goal`.
    pub fn new(x: &[f32], goal: Goal, options: &Options) -> Search {
        let started = Instant::now();
        let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let lbfgs = lbfgsb::Options {
            memory: options.memory,
            max_iterations: options.max_iterations,
            max_evaluations: options.max_iterations.saturating_mul(20),
            ..Default::default()
        };
        let (schedule, c) = Schedule::new(options);
        Search {
            x: x.to_vec(),
            x64,
            goal,
            lbfgs,
            schedule,
            c,
            iterations_before: 0,
            stage: Stage::Ready,
            iterations: 0,
            gradient_evaluations: 0,
            best: None,
            last: None,
            started,
        }
    }

    pub fn goal(&self) -> Goal {
        self.goal
    }

    /// What the search needs next. Until an evaluation is told, asking repeats it.
    pub fn ask(&mut self) -> Ask {
        self.next(None)
    }

    /// What the search needs next when L-BFGS-B calls the model itself through `evaluate`
    /// (the CPU): the run `ask`/`tell` would make, point for point, without stopping for answers.
    /// Never [`Ask::Gradient`]: a [`Ask::Progress`] after every iteration, then [`Ask::Classify`]
    /// for each run's end point, then [`Ask::Done`]. A run begun by `ask_with` calls the model
    /// to its end.
    pub fn ask_with(&mut self, evaluate: &Evaluate) -> Ask {
        self.next(Some(evaluate))
    }

    /// [`ask_with`](Self::ask_with) with `classifier` answering its classifications: the search
    /// on the CPU up to its next progress report (`Ok(Some(p))`, where a caller may pause or
    /// [`cancel`](Self::cancel)) or its end (`Ok(None)`, the outcome in [`finish`](Self::finish)).
    /// [`attack`] and the lab's attack are loops over this step.
    pub fn advance(&mut self, evaluate: &Evaluate, classifier: &Classifier) -> Result<Option<Progress>> {
        loop {
            match self.ask_with(evaluate) {
                Ask::Gradient(_) => unreachable!("ask_with evaluates the loss itself"),
                Ask::Classify(image) => self.tell_logits(classifier.classify(&image)?.logits),
                Ask::Progress(p) => return Ok(Some(p)),
                Ask::Done(_) => return Ok(None),
            }
        }
    }

    /// The outcome of a search that is over ([`Error::Cancelled`] if it was cancelled).
    pub fn finish(self) -> Result<Outcome> {
        match self.stage {
            Stage::Done(result) => result,
            _ => Err(Error::Run("the attack was asked for its outcome before it ended".into())),
        }
    }

    fn next(&mut self, evaluate: Option<&Evaluate>) -> Ask {
        loop {
            if matches!(self.stage, Stage::Ready) {
                self.stage = self.run(evaluate);
            }
            let (run, asked, failure) = match &mut self.stage {
                Stage::Ready => unreachable!("a run has just begun"),
                Stage::Minimising { run, asked, failure } => (run, asked, failure),
                Stage::Classifying { adversarial } => return Ask::Classify(adversarial.clone()),
                Stage::Done(result) => return Ask::Done(result.clone()),
            };
            if let Some(point) = asked {
                return Ask::Gradient(single(point));
            }
            match run.ask() {
                asktell::Ask::Evaluate(point) => {
                    let image = single(&point);
                    *asked = Some(point);
                    return Ask::Gradient(image);
                }
                asktell::Ask::Iteration { .. } if failure.borrow().is_some() => run.cancel(),
                asktell::Ask::Iteration { iteration, f, x } => {
                    self.iterations = self.iterations_before + iteration;
                    return Ask::Progress(Progress { c: self.c, iteration: self.iterations, loss: f, distortion: rms(&x, &self.x64) });
                }
                asktell::Ask::Done(result) => {
                    let failed = failure.borrow_mut().take();
                    self.gradient_evaluations += result.evaluations;
                    self.iterations = self.iterations_before + result.iterations;
                    self.stage = if let Some(e) = failed {
                        Stage::Done(Err(e))
                    } else if matches!(result.stop, Stop::Cancelled) {
                        Stage::Done(Err(Error::Cancelled))
                    } else {
                        let adversarial = result.x.iter().map(|&v| v.clamp(0.0, 1.0) as f32).collect();
                        Stage::Classifying { adversarial }
                    };
                }
            }
        }
    }

    /// Answers [`Ask::Gradient`] with the loss graph's outputs there.
    ///
    /// # Panics
    /// If no [`Ask::Gradient`] is outstanding.
    pub fn tell(&mut self, evaluation: Evaluation) {
        let Stage::Minimising { run, asked: asked @ Some(_), .. } = &mut self.stage else {
            panic!("tell answers an Ask::Gradient, and none is outstanding");
        };
        let point = asked.take().expect("matched as Some");
        let (value, gradient) = penalised(self.goal, self.c, &self.x64, &point, evaluation);
        run.tell(value, gradient);
    }

    /// The L-BFGS-B run at the current c: asking for each evaluation, or calling `evaluate`.
    fn run(&self, evaluate: Option<&Evaluate>) -> Stage {
        let (goal, c, n) = (self.goal, self.c, self.x64.len());
        let (lower, upper) = (vec![0.0; n], vec![1.0; n]);
        let failure: Rc<RefCell<Option<Error>>> = Rc::default();
        let Some(evaluate) = evaluate else {
            return Stage::Minimising { run: AskTell::new(&self.x64, &lower, &upper, &self.lbfgs), asked: None, failure };
        };
        let x64 = Rc::new(self.x64.clone());
        let (evaluate, failed) = (Rc::clone(evaluate), Rc::clone(&failure));
        let objective = move |point: &[f64]| {
            if failed.borrow().is_some() {
                return (f64::NAN, vec![0.0; n]);
            }
            let result = (evaluate.borrow_mut())(&single(point));
            match result {
                Ok(evaluation) => penalised(goal, c, &x64, point, evaluation),
                Err(e) => {
                    *failed.borrow_mut() = Some(e);
                    (f64::NAN, vec![0.0; n])
                }
            }
        };
        let run = AskTell::calling(Box::new(objective), &self.x64, &lower, &upper, &self.lbfgs);
        Stage::Minimising { run, asked: None, failure }
    }

    /// Answers [`Ask::Classify`] with the model's logits there.
    ///
    /// # Panics
    /// If no [`Ask::Classify`] is outstanding.
    pub fn tell_logits(&mut self, logits: Vec<f32>) {
        let Stage::Classifying { adversarial } = &mut self.stage else {
            panic!("tell_logits answers an Ask::Classify, and none is outstanding");
        };
        let run = Run { adversarial: std::mem::take(adversarial), logits };
        let success = self.goal.reached(argmax(&run.logits));
        if success {
            let d = metrics::distortion(&self.x, &run.adversarial);
            if self.best.as_ref().is_none_or(|(_, _, bd)| d < *bd) {
                self.best = Some((run, self.c, d));
            }
        } else {
            self.last = Some((run, self.c));
        }
        self.stage = match self.schedule.next(self.c, success) {
            Some(c) => {
                self.c = c;
                self.iterations_before = self.iterations;
                Stage::Ready
            }
            None => Stage::Done(self.outcome()),
        };
    }

    /// Ends the attack with [`Error::Cancelled`] at the next [`ask`](Self::ask), as a progress
    /// callback returning `false` does: during a run, unless its last iteration had already
    /// stopped it (the search then goes on to the next c).
    pub fn cancel(&mut self) {
        match &mut self.stage {
            Stage::Minimising { run, .. } => run.cancel(),
            Stage::Ready => self.stage = Stage::Done(Err(Error::Cancelled)),
            Stage::Classifying { .. } => self.stage = Stage::Done(Err(Error::Cancelled)),
            Stage::Done(_) => {}
        }
    }

    fn outcome(&mut self) -> Result<Outcome> {
        match (self.best.take(), self.last.take()) {
            (Some((run, c, _)), _) | (None, Some((run, c))) => {
                let spent = Spent { iterations: self.iterations, gradient_evaluations: self.gradient_evaluations, started: self.started };
                Ok(outcome(&self.x, run.adversarial, &run.logits, self.goal, spent, Some(c)))
            }
            (None, None) => Err(Error::Run("the attack made no attempt".into())),
        }
    }
}

fn single(point: &[f64]) -> Vec<f32> {
    point.iter().map(|&v| v as f32).collect()
}

/// The distortion between two points: sqrt(mean squared difference).
fn rms(a: &[f64], b: &[f64]) -> f64 {
    (a.iter().zip(b).map(|(p, q)| (p - q).powi(2)).sum::<f64>() / a.len() as f64).sqrt()
}

/// The run's objective c ||r||^2 + loss at `point` (r = point - x), and its gradient
/// 2 c r + grad loss, from the loss graph's outputs there.
fn penalised(goal: Goal, c: f64, x: &[f64], point: &[f64], evaluation: Evaluation) -> (f64, Vec<f64>) {
    let at = LossAt::new(goal, evaluation);
    let mut value = at.value;
    let mut gradient = Vec::with_capacity(point.len());
    for ((p, x), g) in point.iter().zip(x).zip(&at.gradient) {
        let r = p - x;
        value += c * r * r;
        gradient.push(2.0 * c * r + *g as f64);
    }
    (value, gradient)
}

/// The values of c to try: from `c_initial`, times or over 10 until one c succeeds and a larger
/// one fails (at most `bracket_steps + 1` tries), then `c_steps` bisections (geometric means).
struct Schedule {
    lo: Option<f64>,
    hi: Option<f64>,
    bracket_tries: usize,
    bisections: usize,
    bisecting: bool,
}

impl Schedule {
    /// The schedule and its first c.
    fn new(options: &Options) -> (Schedule, f64) {
        let schedule = Schedule { lo: None, hi: None, bracket_tries: options.bracket_steps + 1, bisections: options.c_steps, bisecting: false };
        (schedule, options.c_initial)
    }

    /// Records whether the run at `c` reached the goal; the next c to try, if any.
    fn next(&mut self, c: f64, success: bool) -> Option<f64> {
        if self.bisecting {
            if success {
                self.lo = Some(c);
            } else {
                self.hi = Some(c);
            }
            self.bisections -= 1;
        } else {
            self.bracket_tries -= 1;
            // bracket: lo succeeds, hi fails
            let (next, bracketed) = if success {
                self.lo = Some(c);
                (c * 10.0, self.hi.is_some())
            } else {
                self.hi = Some(c);
                (c / 10.0, self.lo.is_some())
            };
            if !bracketed && self.bracket_tries > 0 {
                return Some(next);
            }
            self.bisecting = true;
        }
        match (self.lo, self.hi) {
            (Some(lo), Some(hi)) if self.bisections > 0 => Some((lo * hi).sqrt()),
            _ => None,
        }
    }
}

/// Runs the attack on the CPU, driving [`Search`]; `progress` returns false to cancel (the
/// attack then returns `Error::Cancelled`).
pub fn attack(
    classifier: &Classifier,
    x: &[f32],
    goal: Goal,
    options: &Options,
    mut progress: impl FnMut(&Progress) -> bool,
) -> Result<Outcome> {
    check_input(classifier, x)?;
    let mut search = Search::new(x, goal, options);
    let mut loss = Loss::new(classifier, goal)?;
    let evaluate: Evaluate = Rc::new(RefCell::new(move |image: &[f32]| loss.evaluate(image)));
    while let Some(p) = search.advance(&evaluate, classifier)? {
        if !progress(&p) {
            search.cancel();
        }
    }
    search.finish()
}
