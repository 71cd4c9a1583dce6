//! The paper's attack as it was before the `Search` state machine (git history:
//! src/attack/lbfgs.rs): the c-search calls L-BFGS-B with the model inside a closure. Kept so tests
//! can check that `attack::lbfgs::attack`, now a loop over `Search`, gives the same examples bit
//! for bit. `minimize` is the L-BFGS-B driver to run it on.

use blindspot::attack::lbfgs::{Options, Progress};
use blindspot::attack::{metrics, Goal, Loss, Outcome};
use blindspot::model::{argmax, softmax};
use blindspot::optim::lbfgsb::{self, Stop};
use blindspot::{Classifier, Error, Result};

/// `optim::minimize`'s signature, with the closures boxed.
pub type Minimize = fn(
    &mut dyn FnMut(&[f64]) -> (f64, Vec<f64>),
    &[f64],
    &[f64],
    &[f64],
    &lbfgsb::Options,
    &mut dyn FnMut(usize, f64, &[f64]) -> bool,
) -> lbfgsb::Outcome;

struct Run {
    adversarial: Vec<f32>,
    logits: Vec<f32>,
    success: bool,
}

pub fn attack(
    minimize: Minimize,
    classifier: &Classifier,
    x: &[f32],
    goal: Goal,
    options: &Options,
    mut progress: impl FnMut(&Progress) -> bool,
) -> Result<Outcome> {
    let started = std::time::Instant::now();
    let mut loss = Loss::new(classifier, goal)?;
    let mut iterations = 0usize;
    let mut best: Option<(Run, f64, f64)> = None; // (run, c, distortion)
    let mut last: Option<(Run, f64)> = None;
    let mut try_c = |c: f64, loss: &mut Loss, iterations: &mut usize| -> Result<bool> {
        let run = minimise_at(minimize, classifier, x, c, loss, options, iterations, &mut progress)?;
        let success = run.success;
        if success {
            let d = metrics::distortion(x, &run.adversarial);
            if best.as_ref().is_none_or(|(_, _, bd)| d < *bd) {
                best = Some((run, c, d));
                return Ok(true);
            }
        } else {
            last = Some((run, c));
        }
        Ok(success)
    };

    // bracket: lo succeeds, hi fails
    let mut c = options.c_initial;
    let (mut lo, mut hi) = (None, None);
    for _ in 0..=options.bracket_steps {
        if try_c(c, &mut loss, &mut iterations)? {
            lo = Some(c);
            if hi.is_some() {
                break;
            }
            c *= 10.0;
        } else {
            hi = Some(c);
            if lo.is_some() {
                break;
            }
            c /= 10.0;
        }
    }
    // bisect between them
    if let (Some(mut lo), Some(mut hi)) = (lo, hi) {
        for _ in 0..options.c_steps {
            let mid = (lo * hi).sqrt();
            if try_c(mid, &mut loss, &mut iterations)? {
                lo = mid;
            } else {
                hi = mid;
            }
        }
    }
    let evaluations = loss.evaluations;
    match (best, last) {
        (Some((run, c, _)), _) | (None, Some((run, c))) => {
            let label = argmax(&run.logits);
            Ok(Outcome {
                success: goal.reached(label),
                label,
                probabilities: softmax(&run.logits),
                distortion: metrics::distortion(x, &run.adversarial),
                l2: metrics::l2(x, &run.adversarial),
                linf: metrics::linf(x, &run.adversarial),
                adversarial: run.adversarial,
                iterations,
                gradient_evaluations: evaluations,
                seconds: started.elapsed().as_secs_f64(),
                c: Some(c),
            })
        }
        (None, None) => Err(Error::Run("the attack made no attempt".into())),
    }
}

#[allow(clippy::too_many_arguments)]
fn minimise_at(
    minimize: Minimize,
    classifier: &Classifier,
    x: &[f32],
    c: f64,
    loss: &mut Loss,
    options: &Options,
    iterations: &mut usize,
    progress: &mut impl FnMut(&Progress) -> bool,
) -> Result<Run> {
    let n = x.len();
    let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let mut failure: Option<Error> = None;
    let mut objective = |xp: &[f64]| -> (f64, Vec<f64>) {
        let xf: Vec<f32> = xp.iter().map(|&v| v as f32).collect();
        match loss.at(&xf) {
            Ok(at) => {
                let mut value = at.value;
                let mut gradient = Vec::with_capacity(n);
                for i in 0..n {
                    let r = xp[i] - x64[i];
                    value += c * r * r;
                    gradient.push(2.0 * c * r + at.gradient[i] as f64);
                }
                (value, gradient)
            }
            Err(e) => {
                failure = Some(e);
                (f64::NAN, vec![f64::NAN; n])
            }
        }
    };
    let lbfgs_options = lbfgsb::Options {
        memory: options.memory,
        max_iterations: options.max_iterations,
        max_evaluations: options.max_iterations * 20,
        ..Default::default()
    };
    let start_iterations = *iterations;
    let result = minimize(
        &mut objective,
        &x64,
        &vec![0.0; n],
        &vec![1.0; n],
        &lbfgs_options,
        &mut |iteration, f, xp| {
            *iterations = start_iterations + iteration;
            let distortion = (xp.iter().zip(&x64).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / n as f64).sqrt();
            progress(&Progress { c, iteration: *iterations, loss: f, distortion })
        },
    );
    *iterations = start_iterations + result.iterations;
    if let Some(e) = failure {
        return Err(e);
    }
    if matches!(result.stop, Stop::Cancelled) {
        return Err(Error::Cancelled);
    }
    let adversarial: Vec<f32> = result.x.iter().map(|&v| v.clamp(0.0, 1.0) as f32).collect();
    let logits = classifier.classify(&adversarial)?.logits;
    let success = loss.goal().reached(argmax(&logits));
    Ok(Run { adversarial, logits, success })
}
