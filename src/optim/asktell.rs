//! The L-BFGS-B driver: it calls its objective ([`minimize`], [`AskTell::calling`]) or, by reverse communication ("ask/tell"), hands out the points it needs and is told their values later.
//!
//! The browser cannot block on a GPU readback, so there the optimiser must not call the
//! objective itself, as the Fortran L-BFGS-B's `task = 'FG'` protocol already arranges. basin,
//! whose port of that code we use, calls its objective from inside an iteration instead. To turn
//! it inside out without forking it, every iteration runs against a tape of the evaluations told
//! so far: the first point the tape cannot answer aborts the iteration (the objective returns an
//! error) and is asked for; once it is told, the iteration is rerun from an exact snapshot of
//! the solver taken where it began, the tape answering every point already told. basin is
//! deterministic, so each rerun takes the same path (checked, point by point) one evaluation
//! further. The solver is not `Clone`, but basin's `serde` feature serialises its exact
//! checkpoints; postcard writes each f64 as its eight bytes, so a snapshot restores bit for bit.
//! An iteration that needs k evaluations runs basin's own arithmetic k + 1 times, and encodes
//! one snapshot and decodes k; the objective is evaluated once per point.
//!
//! A caller that can answer at once (the CPU) gives the objective instead: each iteration then
//! calls it where basin needs it, with no snapshot and no rerun, and still hands back control
//! after every iteration (a worker lets its event loop run there, so that a cancel can arrive).
//! Both ways make the same runs, point for point (tests/lbfgsb.rs checks it bit for bit).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;

use basin::{
    BoxBounds, ConstraintDescription, ConstraintSet, ConstraintSolveError, Constraints,
    CostFunction, ExactCheckpoint, Executor, FirstOrderState, Gradient, Lbfgsb, State,
    StepOutcome,
};

use super::lbfgsb::{clamp, outcome_at, start, stop_reason, Options, Outcome, Stop};

/// The objective an optimiser that calls it is given: the value and the gradient at a point of
/// the box.
pub type Objective<'a> = Box<dyn FnMut(&[f64]) -> (f64, Vec<f64>) + 'a>;

/// Minimise `f` over the box `lower <= x <= upper` from `x0` (projected into the box first):
/// [`AskTell::calling`] asked to the end.
///
/// `f` returns the value and the gradient at a point; it is only ever called at points inside
/// the box. Bounds may be infinite. `progress` is called after each completed iteration with
/// (iteration, f, &x) and returns `false` to stop with [`Stop::Cancelled`].
///
/// # Panics
/// If `x0`, `lower` and `upper` differ in length, a lower bound exceeds its upper bound or is
/// NaN, `options.memory` is zero, or `f` returns a gradient of the wrong length (the backend's
/// own validation of the box panics too, should it find something these checks let through).
pub fn minimize(
    f: impl FnMut(&[f64]) -> (f64, Vec<f64>),
    x0: &[f64],
    lower: &[f64],
    upper: &[f64],
    options: &Options,
    mut progress: impl FnMut(usize, f64, &[f64]) -> bool,
) -> Outcome {
    let mut run = AskTell::calling(Box::new(f), x0, lower, upper, options);
    loop {
        match run.ask() {
            Ask::Iteration { iteration, f, x } => {
                if !progress(iteration, f, &x) {
                    run.cancel();
                }
            }
            Ask::Done(outcome) => return outcome,
            Ask::Evaluate(_) => unreachable!("an optimiser that calls its objective asks for no evaluation"),
        }
    }
}

type Solver = Lbfgsb<Vec<f64>>;
type Snapshot = ExactCheckpoint<Solver, FirstOrderState<Vec<f64>>>;

/// What the optimiser wants next (see [`AskTell::ask`]).
#[derive(Clone, Debug)]
pub enum Ask {
    /// The objective and its gradient at this point, which lies inside the box: answer with
    /// [`AskTell::tell`].
    Evaluate(Vec<f64>),
    /// An iteration has completed at `x`, with value `f` ([`minimize`]'s progress
    /// report); [`AskTell::cancel`] now stops the run there.
    Iteration {
        iteration: usize,
        f: f64,
        x: Vec<f64>,
    },
    /// The run is over; asking again gives the same outcome.
    Done(Outcome),
}

/// Box-constrained L-BFGS-B that asks for evaluations instead of calling an objective; the same
/// iterates, counts and stops as [`minimize`], which drives it calling its objective.
///
/// ```
/// use blindspot::optim::{asktell::{Ask, AskTell}, Options};
/// let mut optimiser = AskTell::new(&[3.0, -2.0], &[-1.0; 2], &[1.0; 2], &Options::default());
/// let outcome = loop {
///     match optimiser.ask() {
///         Ask::Evaluate(x) => {
///             let (f, g) = (x[0] * x[0] + x[1] * x[1], vec![2.0 * x[0], 2.0 * x[1]]);
///             optimiser.tell(f, g)
///         }
///         Ask::Iteration { .. } => {}
///         Ask::Done(outcome) => break outcome,
///     }
/// };
/// assert!(outcome.stop.is_converged() && outcome.f < 1e-12);
/// ```
pub struct AskTell<'a> {
    lower: Rc<Vec<f64>>,
    upper: Rc<Vec<f64>>,
    options: Options,
    tape: Rc<RefCell<Tape>>,
    /// The objective, when the optimiser calls it itself ([`AskTell::calling`]).
    objective: Option<Rc<RefCell<Objective<'a>>>>,
    stage: Stage,
    evaluations: Rc<Cell<usize>>,
    cancelled: bool,
    /// The last snapshot's buffer, reused so that encoding never grows a vector.
    spare: Vec<u8>,
}

enum Stage {
    /// basin's `init`, which evaluates the (projected) start, has not completed.
    Start(Vec<f64>),
    /// Between iterations.
    Between(Box<Snapshot>),
    /// An iteration begun from this snapshot (postcard bytes) waits for an evaluation.
    Within(Vec<u8>),
    /// An iteration has just completed and been reported; `Some` stop if it ended the run.
    Reported(Box<Snapshot>, Option<Stop>),
    Done(Outcome),
    /// Only while [`AskTell::ask`] moves from one stage to the next.
    Moving,
}

impl<'a> AskTell<'a> {
    /// Minimise over the box `lower <= x <= upper` from `x0` (projected into the box first).
    /// Bounds may be infinite.
    ///
    /// # Panics
    /// If `x0`, `lower` and `upper` differ in length, a lower bound exceeds its upper bound or is
    /// NaN, or `options.memory` is zero.
    pub fn new(x0: &[f64], lower: &[f64], upper: &[f64], options: &Options) -> AskTell<'a> {
        let x0 = start(x0, lower, upper, options);
        AskTell {
            lower: Rc::new(lower.to_vec()),
            upper: Rc::new(upper.to_vec()),
            options: options.clone(),
            tape: Rc::default(),
            objective: None,
            stage: Stage::Start(x0),
            evaluations: Rc::default(),
            cancelled: false,
            spare: Vec::new(),
        }
    }

    /// The same run calling `objective` itself wherever it needs a value: never
    /// [`Ask::Evaluate`], and no iteration is ever rerun (the fast path for a caller that can
    /// answer at once, the CPU). `objective` is only ever called at points inside the box.
    ///
    /// # Panics
    /// As [`new`](Self::new); and at an evaluation if `objective` returns a gradient of the
    /// wrong length.
    pub fn calling(objective: Objective<'a>, x0: &[f64], lower: &[f64], upper: &[f64], options: &Options) -> AskTell<'a> {
        AskTell { objective: Some(Rc::new(RefCell::new(objective))), ..AskTell::new(x0, lower, upper, options) }
    }

    /// What the optimiser needs next. Until an [`Ask::Evaluate`] is told, asking repeats it.
    ///
    /// # Panics
    /// If basin rejects the problem (an invalid box), or a rerun of an iteration strays from
    /// the points already told (a bug: basin is deterministic).
    pub fn ask(&mut self) -> Ask {
        loop {
            if !self.cancelled {
                if let Some(x) = &self.tape.borrow().missing {
                    return Ask::Evaluate(x.clone());
                }
            }
            match std::mem::replace(&mut self.stage, Stage::Moving) {
                Stage::Start(x0) if self.cancelled => {
                    self.stage = Stage::Done(Outcome {
                        x: x0,
                        f: f64::NAN,
                        iterations: 0,
                        evaluations: self.evaluations.get(),
                        stop: Stop::Cancelled,
                        projected_gradient_norm: f64::NAN,
                    })
                }
                Stage::Start(x0) => {
                    self.tape.borrow_mut().rewind();
                    let state = FirstOrderState::new(x0.clone());
                    match Executor::new(self.problem(), self.solver(), state)
                        .max_iter(u64::MAX)
                        .into_stepper()
                    {
                        Ok(stepper) => {
                            self.tape.borrow_mut().clear();
                            self.stage = Stage::Between(Box::new(checkpoint(stepper)));
                        }
                        Err(error) => {
                            self.expect_unanswered(error);
                            self.stage = Stage::Start(x0);
                        }
                    }
                }
                Stage::Between(snapshot) => {
                    let stop = if self.cancelled {
                        Some(Stop::Cancelled)
                    } else if snapshot.state().iter() as usize >= self.options.max_iterations {
                        Some(Stop::MaxIterations)
                    } else if self.evaluations.get() >= self.options.max_evaluations {
                        Some(Stop::MaxEvaluations)
                    } else {
                        None
                    };
                    match stop {
                        Some(stop) => self.stage = Stage::Done(self.outcome(&snapshot, stop)),
                        None => {
                            // an iteration that can stop half-way for an answer needs its start
                            // kept; one that calls its objective runs through
                            let bytes = self.objective.is_none().then(|| {
                                let spare = std::mem::take(&mut self.spare);
                                postcard::to_extend(&*snapshot, spare).expect("an L-BFGS-B snapshot serialises")
                            });
                            if let Some(ask) = self.step(*snapshot, bytes) {
                                return ask;
                            }
                        }
                    }
                }
                Stage::Within(bytes) => {
                    let snapshot: Snapshot =
                        postcard::from_bytes(&bytes).expect("an L-BFGS-B snapshot reads back");
                    if self.cancelled {
                        self.tape.borrow_mut().clear();
                        self.stage = Stage::Done(self.outcome(&snapshot, Stop::Cancelled));
                    } else if let Some(ask) = self.step(snapshot, Some(bytes)) {
                        return ask;
                    }
                }
                Stage::Reported(snapshot, stop) => {
                    // A run that stopped on its own in its last iteration reports that stop,
                    // cancelled or not.
                    let stop = stop.or(self.cancelled.then_some(Stop::Cancelled));
                    self.stage = match stop {
                        Some(stop) => Stage::Done(self.outcome(&snapshot, stop)),
                        None => Stage::Between(snapshot),
                    }
                }
                Stage::Done(outcome) => {
                    self.stage = Stage::Done(outcome.clone());
                    return Ask::Done(outcome);
                }
                Stage::Moving => unreachable!("a panic interrupted an earlier ask"),
            }
        }
    }

    /// Answers the outstanding [`Ask::Evaluate`] with the objective `f` and its `gradient` there.
    ///
    /// # Panics
    /// If no evaluation is outstanding, or the gradient has the wrong length.
    pub fn tell(&mut self, f: f64, gradient: Vec<f64>) {
        let mut tape = self.tape.borrow_mut();
        let x = tape
            .missing
            .take()
            .expect("tell answers an Ask::Evaluate, and none is outstanding");
        assert_eq!(
            gradient.len(),
            x.len(),
            "the objective returned a gradient of the wrong length"
        );
        tape.told.push(Told { x, f, gradient });
        self.evaluations.set(self.evaluations.get() + 1);
    }

    /// Stops the run at its last completed iterate: the next [`ask`](Self::ask) gives
    /// [`Ask::Done`] with [`Stop::Cancelled`] (unless the last iteration had already stopped it).
    pub fn cancel(&mut self) {
        self.cancelled = true;
    }

    /// Objective evaluations so far (told, or made by the objective it calls).
    pub fn evaluations(&self) -> usize {
        self.evaluations.get()
    }

    fn problem(&self) -> Replay<'a> {
        Replay {
            tape: Rc::clone(&self.tape),
            objective: self.objective.clone(),
            evaluations: Rc::clone(&self.evaluations),
            lower: Rc::clone(&self.lower),
            upper: Rc::clone(&self.upper),
        }
    }

    fn solver(&self) -> Solver {
        let factr = (self.options.factr > 0.0).then_some(self.options.factr * f64::EPSILON);
        Lbfgsb::new()
            .with_m_capacity(self.options.memory)
            .with_absolute_projected_gradient_tolerance(self.options.pgtol)
            .with_relative_cost_reduction_tolerance(factr)
    }

    /// Runs (or reruns) the iteration that begins at `snapshot`, whose serialised copy is `bytes`
    /// (None when the objective is called: the iteration cannot stop half-way). Returns the
    /// iteration's report when it completes one; otherwise the stage says what next.
    fn step(&mut self, snapshot: Snapshot, bytes: Option<Vec<u8>>) -> Option<Ask> {
        let before = snapshot.state().iter();
        self.tape.borrow_mut().rewind();
        let mut stepper = Executor::resume_from_checkpoint(self.problem(), snapshot)
            .max_iter(u64::MAX)
            .into_stepper()
            .unwrap_or_else(|error| panic!("L-BFGS-B rejected the problem: {error}"));
        let outcome = match stepper.step() {
            Ok(outcome) => outcome,
            Err(error) => {
                self.expect_unanswered(error);
                self.stage = Stage::Within(bytes.expect("an iteration that calls its objective needs no answer"));
                return None;
            }
        };
        self.tape.borrow_mut().clear();
        if let Some(mut bytes) = bytes {
            bytes.clear();
            self.spare = bytes;
        }
        let stop = match outcome {
            StepOutcome::Continue => None,
            StepOutcome::Stopped(report) => Some(stop_reason(report.termination)),
        };
        let snapshot = Box::new(checkpoint(stepper));
        let state = snapshot.state();
        if state.iter() > before {
            let ask = Ask::Iteration {
                iteration: state.iter() as usize,
                f: state.cost(),
                x: state.param().clone(),
            };
            self.stage = Stage::Reported(snapshot, stop);
            Some(ask)
        } else {
            self.stage = match stop {
                Some(stop) => Stage::Done(self.outcome(&snapshot, stop)),
                None => Stage::Between(snapshot),
            };
            None
        }
    }

    /// Any error but the tape's own means basin refused the problem, as it would have anyway.
    fn expect_unanswered(&self, error: ConstraintSolveError<Unanswered>) {
        let asked = self.tape.borrow().missing.is_some();
        if !(asked && matches!(error, ConstraintSolveError::Evaluation(Unanswered))) {
            panic!("L-BFGS-B rejected the problem: {error}");
        }
    }

    fn outcome(&self, snapshot: &Snapshot, stop: Stop) -> Outcome {
        outcome_at(snapshot.state(), &self.lower, &self.upper, self.evaluations.get(), stop)
    }
}

fn checkpoint(stepper: basin::Stepper<Replay<'_>, FirstOrderState<Vec<f64>>, Solver>) -> Snapshot {
    stepper
        .into_checkpoint()
        .expect("a stepper that has not failed has a checkpoint")
}

/// The evaluations told during the current iteration, in the order basin asked for them.
#[derive(Default)]
struct Tape {
    told: Vec<Told>,
    /// How many of `told` the current (re)run has been given.
    next: usize,
    /// The point the current run asked for that nothing has answered yet.
    missing: Option<Vec<f64>>,
}

struct Told {
    x: Vec<f64>,
    f: f64,
    gradient: Vec<f64>,
}

impl Tape {
    fn rewind(&mut self) {
        self.next = 0;
    }

    fn clear(&mut self) {
        self.told.clear();
        self.next = 0;
    }

    fn answer(&mut self, x: &[f64]) -> Result<(f64, Vec<f64>), Unanswered> {
        let Some(told) = self.told.get(self.next) else {
            self.missing = Some(x.to_vec());
            return Err(Unanswered);
        };
        assert!(
            told.x.len() == x.len()
                && told
                    .x
                    .iter()
                    .zip(x)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
            "L-BFGS-B took another path when rerun from its snapshot"
        );
        self.next += 1;
        Ok((told.f, told.gradient.clone()))
    }
}

/// The error that stops an iteration at a point nobody has evaluated yet.
#[derive(Debug)]
struct Unanswered;

impl fmt::Display for Unanswered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an evaluation was asked for and not yet told")
    }
}

/// The objective as basin sees it, at points clamped into the box: the objective called, or
/// answers from the tape.
struct Replay<'a> {
    tape: Rc<RefCell<Tape>>,
    objective: Option<Rc<RefCell<Objective<'a>>>>,
    evaluations: Rc<Cell<usize>>,
    lower: Rc<Vec<f64>>,
    upper: Rc<Vec<f64>>,
}

impl Replay<'_> {
    fn evaluate(&self, x: &[f64]) -> Result<(f64, Vec<f64>), Unanswered> {
        let (lower, upper) = (&self.lower, &self.upper);
        let inside = (0..x.len()).all(|i| x[i] >= lower[i] && x[i] <= upper[i]);
        // The line search forms x + stp d, which can round a last bit past a bound.
        let clamped: Vec<f64>;
        let x = if inside {
            x
        } else {
            clamped = (0..x.len()).map(|i| clamp(x[i], lower[i], upper[i])).collect();
            &clamped
        };
        let Some(objective) = &self.objective else { return self.tape.borrow_mut().answer(x) };
        self.evaluations.set(self.evaluations.get() + 1);
        let (f, gradient) = (objective.borrow_mut())(x);
        assert_eq!(gradient.len(), x.len(), "the objective returned a gradient of the wrong length");
        Ok((f, gradient))
    }
}

impl Constraints for Replay<'_> {
    type Set = ConstraintSet<BoxBounds<Vec<f64>>>;
    fn constraints(&self) -> <Self::Set as ConstraintDescription>::Borrowed<'_> {
        ConstraintSet::new().with_bounds(BoxBounds::new(Some(&*self.lower), Some(&*self.upper)))
    }
}

impl CostFunction for Replay<'_> {
    type Param = Vec<f64>;
    type Output = f64;
    type Error = Unanswered;
    fn cost(&self, x: &Vec<f64>) -> Result<f64, Unanswered> {
        Ok(self.evaluate(x)?.0)
    }
}

impl Gradient for Replay<'_> {
    type Gradient = Vec<f64>;
    fn gradient(&self, x: &Vec<f64>) -> Result<Vec<f64>, Unanswered> {
        Ok(self.evaluate(x)?.1)
    }
    fn cost_and_gradient(&self, x: &Vec<f64>) -> Result<(f64, Vec<f64>), Unanswered> {
        self.evaluate(x)
    }
}
