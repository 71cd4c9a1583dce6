//! L-BFGS-B with basin calling the objective itself, an iteration per step: the fast path for callers that can answer at once.
//!
//! The same runs as [`super::asktell`], point for point (tests/lbfgsb.rs checks it bit for bit),
//! without its replays: on the small MNIST models those cost 2-3 times the optimiser's own work.
//! A closure that answers at once (the CPU) comes here; a GPU in the browser, which answers
//! later, drives the ask/tell optimiser.

use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::rc::Rc;

use basin::{
    BoxBounds, ConstraintDescription, ConstraintSet, Constraints, CostFunction, Executor,
    FirstOrderState, Gradient, Lbfgsb, State, StepOutcome,
};

use super::lbfgsb::{clamp, outcome_at, start, stop_reason, Options, Outcome, Stop};

/// Minimise `f` over the box `lower <= x <= upper` from `x0` (projected into the box first).
///
/// `f` returns the value and the gradient at a point; it is only ever called at points inside
/// the box. Bounds may be infinite. `progress` is called after each completed iteration with
/// (iteration, f, &x) and returns `false` to stop with [`Stop::Cancelled`].
///
/// # Panics
/// If `x0`, `lower` and `upper` differ in length, a lower bound exceeds its upper bound or is
/// NaN, `options.memory` is zero, or `f` returns a gradient of the wrong length (the backend's
/// own validation of the box panics too, should it find something these checks let through).
///
/// [`Direct`] stepped to the end, `progress` after each iteration.
pub fn minimize(
    f: impl FnMut(&[f64]) -> (f64, Vec<f64>),
    x0: &[f64],
    lower: &[f64],
    upper: &[f64],
    options: &Options,
    mut progress: impl FnMut(usize, f64, &[f64]) -> bool,
) -> Outcome {
    let mut run = Direct::new(Box::new(f), x0, lower, upper, options);
    loop {
        match run.step() {
            Step::Iteration { iteration, f, x } => {
                if !progress(iteration, f, x) {
                    run.cancel();
                }
            }
            Step::Done(outcome) => return outcome,
        }
    }
}

/// The objective a [`Direct`] run calls: the value and the gradient at a point of the box.
pub type Objective<'a> = Box<dyn FnMut(&[f64]) -> (f64, Vec<f64>) + 'a>;

type Stepper<'a> = basin::Stepper<BoxProblem<'a>, FirstOrderState<Vec<f64>>, Lbfgsb<Vec<f64>>>;

/// One L-BFGS-B run that basin steps through calling its objective itself, an iteration per
/// [`step`](Direct::step): a caller can stop between iterations (a worker lets its event loop
/// run there, so that a cancel can arrive) and go on.
pub struct Direct<'a> {
    stepper: Stepper<'a>,
    evaluations: Rc<Cell<usize>>,
    options: Options,
    lower: Vec<f64>,
    upper: Vec<f64>,
    cancelled: bool,
    /// The stop basin reported in the iteration last handed out, ending the run at the next step.
    stopped: Option<Stop>,
    done: Option<Outcome>,
}

/// What [`Direct::step`] did.
pub enum Step<'s> {
    /// An iteration completed: the iterations so far, the value and the point.
    Iteration { iteration: usize, f: f64, x: &'s [f64] },
    /// The run is over; stepping again gives the same outcome.
    Done(Outcome),
}

impl<'a> Direct<'a> {
    /// Minimise `f` over the box `lower <= x <= upper` from `x0` (projected into the box first).
    ///
    /// # Panics
    /// As [`minimize`].
    pub fn new(f: Objective<'a>, x0: &[f64], lower: &[f64], upper: &[f64], options: &Options) -> Direct<'a> {
        let x0 = start(x0, lower, upper, options);
        let evaluations = Rc::new(Cell::new(0usize));
        let problem = BoxProblem {
            f: RefCell::new(f),
            lower: lower.to_vec(),
            upper: upper.to_vec(),
            scratch: RefCell::new(Vec::new()),
            evaluations: Rc::clone(&evaluations),
        };
        let factr = (options.factr > 0.0).then_some(options.factr * f64::EPSILON);
        let solver = Lbfgsb::new()
            .with_m_capacity(options.memory)
            .with_absolute_projected_gradient_tolerance(options.pgtol)
            .with_relative_cost_reduction_tolerance(factr);
        let stepper = match Executor::new(problem, solver, FirstOrderState::new(x0)).max_iter(u64::MAX).into_stepper() {
            Ok(stepper) => stepper,
            Err(error) => panic!("L-BFGS-B rejected the problem: {error}"),
        };
        Direct {
            stepper,
            evaluations,
            options: options.clone(),
            lower: lower.to_vec(),
            upper: upper.to_vec(),
            cancelled: false,
            stopped: None,
            done: None,
        }
    }

    /// Runs to the end of the next iteration, or to the end of the run.
    pub fn step(&mut self) -> Step<'_> {
        loop {
            if let Some(outcome) = &self.done {
                return Step::Done(outcome.clone());
            }
            // a stop basin reported wins over a cancel that came after it, as over the limits
            if let Some(stop) = self.stopped.take() {
                self.finish(stop);
                continue;
            }
            if self.cancelled {
                self.finish(Stop::Cancelled);
                continue;
            }
            let iterations = self.stepper.state().iter() as usize;
            if iterations >= self.options.max_iterations {
                self.finish(Stop::MaxIterations);
                continue;
            }
            if self.evaluations.get() >= self.options.max_evaluations {
                self.finish(Stop::MaxEvaluations);
                continue;
            }
            let outcome = match self.stepper.step() {
                Ok(outcome) => outcome,
                Err(error) => panic!("L-BFGS-B rejected the problem: {error}"),
            };
            if let StepOutcome::Stopped(report) = outcome {
                self.stopped = Some(stop_reason(report.termination));
            }
            if self.stepper.state().iter() as usize > iterations {
                let state = self.stepper.state();
                return Step::Iteration { iteration: state.iter() as usize, f: state.cost(), x: state.param() };
            }
        }
    }

    /// Stops the run at its last completed iterate: the next [`step`](Self::step) is
    /// [`Step::Done`] with [`Stop::Cancelled`] (unless the last iteration had already stopped it).
    pub fn cancel(&mut self) {
        self.cancelled = true;
    }

    fn finish(&mut self, stop: Stop) {
        self.done = Some(outcome_at(self.stepper.state(), &self.lower, &self.upper, self.evaluations.get(), stop));
    }
}

/// The objective as basin sees it: the closure behind a `RefCell` (basin evaluates through
/// `&self`), points clamped into the box, evaluations counted.
struct BoxProblem<'a> {
    f: RefCell<Objective<'a>>,
    lower: Vec<f64>,
    upper: Vec<f64>,
    scratch: RefCell<Vec<f64>>,
    evaluations: Rc<Cell<usize>>,
}

impl BoxProblem<'_> {
    fn evaluate(&self, x: &[f64]) -> (f64, Vec<f64>) {
        self.evaluations.set(self.evaluations.get() + 1);
        let inside = (0..x.len()).all(|i| x[i] >= self.lower[i] && x[i] <= self.upper[i]);
        let result = if inside {
            (self.f.borrow_mut())(x)
        } else {
            // The line search forms x + stp d, which can round a last bit past a bound.
            let mut scratch = self.scratch.borrow_mut();
            scratch.clear();
            scratch.extend((0..x.len()).map(|i| clamp(x[i], self.lower[i], self.upper[i])));
            (self.f.borrow_mut())(&scratch)
        };
        assert_eq!(
            result.1.len(),
            x.len(),
            "the objective returned a gradient of the wrong length"
        );
        result
    }
}

impl Constraints for BoxProblem<'_> {
    type Set = ConstraintSet<BoxBounds<Vec<f64>>>;
    fn constraints(&self) -> <Self::Set as ConstraintDescription>::Borrowed<'_> {
        ConstraintSet::new().with_bounds(BoxBounds::new(Some(&self.lower), Some(&self.upper)))
    }
}

impl CostFunction for BoxProblem<'_> {
    type Param = Vec<f64>;
    type Output = f64;
    type Error = Infallible;
    fn cost(&self, x: &Vec<f64>) -> Result<f64, Infallible> {
        Ok(self.evaluate(x).0)
    }
}

impl Gradient for BoxProblem<'_> {
    type Gradient = Vec<f64>;
    fn gradient(&self, x: &Vec<f64>) -> Result<Vec<f64>, Infallible> {
        Ok(self.evaluate(x).1)
    }
    fn cost_and_gradient(&self, x: &Vec<f64>) -> Result<(f64, Vec<f64>), Infallible> {
        Ok(self.evaluate(x))
    }
}
