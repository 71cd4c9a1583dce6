//! L-BFGS-B with basin calling the objective itself: the fast path for callers that can answer at once.
//!
//! The same runs as [`super::asktell`], point for point (tests/lbfgsb.rs checks it bit for bit),
//! without its replays: on the small MNIST models those cost 2-3 times the optimiser's own work.
//! A closure that answers at once (the CPU) comes here; a GPU in the browser, which answers
//! later, drives the ask/tell optimiser.

use std::cell::{Cell, RefCell};
use std::convert::Infallible;

use basin::{
    BoxBounds, ConstraintDescription, ConstraintSet, Constraints, CostFunction, Executor,
    FirstOrderState, Gradient, GradientState, Lbfgsb, State, StepOutcome,
};

use super::asktell::{clamp, start, stop_reason};
use super::lbfgsb::{projected_gradient_norm, Options, Outcome, Stop};

/// [`super::lbfgsb::minimize`]'s work: basin steps through its iterations calling `f` itself.
pub fn minimize(
    f: impl FnMut(&[f64]) -> (f64, Vec<f64>),
    x0: &[f64],
    lower: &[f64],
    upper: &[f64],
    options: &Options,
    mut progress: impl FnMut(usize, f64, &[f64]) -> bool,
) -> Outcome {
    let n = x0.len();
    let x0 = start(x0, lower, upper, options);

    let evaluations = Cell::new(0usize);
    let problem = BoxProblem {
        f: RefCell::new(f),
        lower: lower.to_vec(),
        upper: upper.to_vec(),
        scratch: RefCell::new(Vec::new()),
        evaluations: &evaluations,
    };
    let factr = (options.factr > 0.0).then_some(options.factr * f64::EPSILON);
    let solver = Lbfgsb::new()
        .with_m_capacity(options.memory)
        .with_absolute_projected_gradient_tolerance(options.pgtol)
        .with_relative_cost_reduction_tolerance(factr);
    let mut stepper = match Executor::new(problem, solver, FirstOrderState::new(x0))
        .max_iter(u64::MAX)
        .into_stepper()
    {
        Ok(stepper) => stepper,
        Err(error) => panic!("L-BFGS-B rejected the problem: {error}"),
    };

    let stop = loop {
        let iterations = stepper.state().iter() as usize;
        if iterations >= options.max_iterations {
            break Stop::MaxIterations;
        }
        if evaluations.get() >= options.max_evaluations {
            break Stop::MaxEvaluations;
        }
        let outcome = match stepper.step() {
            Ok(outcome) => outcome,
            Err(error) => panic!("L-BFGS-B rejected the problem: {error}"),
        };
        let state = stepper.state();
        let completed = state.iter() as usize > iterations;
        let go_on = !completed || progress(state.iter() as usize, state.cost(), state.param());
        match outcome {
            StepOutcome::Continue if go_on => {}
            StepOutcome::Continue => break Stop::Cancelled,
            StepOutcome::Stopped(report) => break stop_reason(report.termination),
        }
    };

    let state = stepper.state();
    let x: Vec<f64> = (0..n)
        .map(|i| clamp(state.param()[i], lower[i], upper[i]))
        .collect();
    let projected_gradient_norm = match state.gradient() {
        Some(g) => projected_gradient_norm(&x, g, lower, upper),
        None => f64::NAN,
    };
    Outcome {
        x,
        f: state.cost(),
        iterations: state.iter() as usize,
        evaluations: evaluations.get(),
        stop,
        projected_gradient_norm,
    }
}

/// The objective as basin sees it: the closure behind a `RefCell` (basin evaluates through
/// `&self`), points clamped into the box, evaluations counted.
struct BoxProblem<'a, F> {
    f: RefCell<F>,
    lower: Vec<f64>,
    upper: Vec<f64>,
    scratch: RefCell<Vec<f64>>,
    evaluations: &'a Cell<usize>,
}

impl<F: FnMut(&[f64]) -> (f64, Vec<f64>)> BoxProblem<'_, F> {
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

impl<F> Constraints for BoxProblem<'_, F> {
    type Set = ConstraintSet<BoxBounds<Vec<f64>>>;
    fn constraints(&self) -> <Self::Set as ConstraintDescription>::Borrowed<'_> {
        ConstraintSet::new().with_bounds(BoxBounds::new(Some(&self.lower), Some(&self.upper)))
    }
}

impl<F: FnMut(&[f64]) -> (f64, Vec<f64>)> CostFunction for BoxProblem<'_, F> {
    type Param = Vec<f64>;
    type Output = f64;
    type Error = Infallible;
    fn cost(&self, x: &Vec<f64>) -> Result<f64, Infallible> {
        Ok(self.evaluate(x).0)
    }
}

impl<F: FnMut(&[f64]) -> (f64, Vec<f64>)> Gradient for BoxProblem<'_, F> {
    type Gradient = Vec<f64>;
    fn gradient(&self, x: &Vec<f64>) -> Result<Vec<f64>, Infallible> {
        Ok(self.evaluate(x).1)
    }
    fn cost_and_gradient(&self, x: &Vec<f64>) -> Result<(f64, Vec<f64>), Infallible> {
        Ok(self.evaluate(x))
    }
}
