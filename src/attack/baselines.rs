//! The baselines: FGSM, iterated FGSM / PGD in L-infinity and L2, Gaussian noise of a given size.

use super::{check_input, outcome, Goal, Instant, Loss, Outcome, Spent};
use crate::rng::Rng;
use crate::{Classifier, Result};

/// Step sizes and budgets of the gradient baselines.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    /// The perturbation's radius: L-infinity for FGSM and PGD-Linf, L2 for PGD-L2.
    pub epsilon: f64,
    /// PGD's step (same norm as epsilon).
    pub step: f64,
    pub iterations: usize,
}

fn clamp_box(v: f64) -> f32 {
    v.clamp(0.0, 1.0) as f32
}

/// A size (radius, step, distortion, standard deviation) must be finite and not negative: a NaN
/// would come back as a NaN image.
fn check_size(name: &str, value: f64) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(crate::Error::Input(format!("{name} must be a finite number of at least 0, not {value}")))
    }
}

fn check_budget(budget: &Budget) -> Result<()> {
    check_size("epsilon", budget.epsilon)?;
    check_size("the step", budget.step)
}

/// Fast gradient sign method (Goodfellow et al.): one step of size epsilon down the loss.
pub fn fgsm(classifier: &Classifier, x: &[f32], goal: Goal, epsilon: f64) -> Result<Outcome> {
    check_input(classifier, x)?;
    check_size("epsilon", epsilon)?;
    let started = Instant::now();
    let mut loss = Loss::new(classifier, goal)?;
    let g = loss.at(x)?.gradient;
    let adversarial: Vec<f32> =
        x.iter().zip(&g).map(|(&v, &d)| clamp_box(v as f64 - epsilon * d.signum() as f64)).collect();
    let logits = classifier.classify(&adversarial)?.logits;
    Ok(outcome(x, adversarial, &logits, goal, Spent { iterations: 1, gradient_evaluations: loss.evaluations, started }, None))
}

/// Projected gradient descent (iterated FGSM) in the L-infinity ball of radius epsilon around x,
/// inside the box; stops early once the goal is reached.
pub fn pgd_linf(classifier: &Classifier, x: &[f32], goal: Goal, budget: &Budget) -> Result<Outcome> {
    pgd(classifier, x, goal, budget, |adv, g, b| {
        for ((a, &v), &d) in adv.iter_mut().zip(x).zip(g) {
            let stepped = *a as f64 - b.step * d.signum() as f64;
            let projected = stepped.clamp(v as f64 - b.epsilon, v as f64 + b.epsilon);
            *a = clamp_box(projected);
        }
    })
}

/// Projected gradient descent in the L2 ball of radius epsilon: normalised gradient steps, then
/// projection onto the ball and the box.
pub fn pgd_l2(classifier: &Classifier, x: &[f32], goal: Goal, budget: &Budget) -> Result<Outcome> {
    pgd(classifier, x, goal, budget, |adv, g, b| {
        let norm = g.iter().map(|&d| (d as f64).powi(2)).sum::<f64>().sqrt().max(1e-12);
        let stepped: Vec<f64> =
            adv.iter().zip(g).map(|(&a, &d)| a as f64 - b.step * d as f64 / norm).collect();
        let r: Vec<f64> = stepped.iter().zip(x).map(|(s, &v)| s - v as f64).collect();
        let r_norm = r.iter().map(|d| d * d).sum::<f64>().sqrt();
        let shrink = if r_norm > b.epsilon { b.epsilon / r_norm } else { 1.0 };
        for ((a, &v), d) in adv.iter_mut().zip(x).zip(&r) {
            *a = clamp_box(v as f64 + d * shrink);
        }
    })
}

fn pgd(
    classifier: &Classifier,
    x: &[f32],
    goal: Goal,
    budget: &Budget,
    step: impl Fn(&mut Vec<f32>, &[f32], &Budget),
) -> Result<Outcome> {
    check_input(classifier, x)?;
    check_budget(budget)?;
    let started = Instant::now();
    let mut loss = Loss::new(classifier, goal)?;
    let mut adversarial = x.to_vec();
    let mut iterations = 0;
    let mut at = loss.at(&adversarial)?;
    while iterations < budget.iterations && !goal.reached(crate::model::argmax(&at.logits)) {
        step(&mut adversarial, &at.gradient, budget);
        iterations += 1;
        at = loss.at(&adversarial)?;
    }
    Ok(outcome(x, adversarial, &at.logits, goal, Spent { iterations, gradient_evaluations: loss.evaluations, started }, None))
}

/// x plus Gaussian noise of standard deviation `stddev` per pixel, clipped to the box (the
/// paper's Table 2 rows "Gaussian noise, stddev 0.1 / 0.3"). The goal decides `success`.
pub fn gaussian_noise(classifier: &Classifier, x: &[f32], goal: Goal, stddev: f64, rng: &mut Rng) -> Result<Outcome> {
    check_input(classifier, x)?;
    check_size("the standard deviation", stddev)?;
    let started = Instant::now();
    let adversarial: Vec<f32> = x.iter().map(|&v| clamp_box(v as f64 + stddev * rng.gaussian() as f64)).collect();
    let logits = classifier.classify(&adversarial)?.logits;
    Ok(outcome(x, adversarial, &logits, goal, Spent { iterations: 0, gradient_evaluations: 0, started }, None))
}

/// Gaussian noise scaled so that its distortion (before clipping to the box) is `distortion`:
/// "compare with noise of the same size".
pub fn noise_of_distortion(classifier: &Classifier, x: &[f32], goal: Goal, distortion: f64, rng: &mut Rng) -> Result<Outcome> {
    check_input(classifier, x)?;
    check_size("the distortion", distortion)?;
    let started = Instant::now();
    let noise: Vec<f64> = x.iter().map(|_| rng.gaussian() as f64).collect();
    let rms = (noise.iter().map(|n| n * n).sum::<f64>() / noise.len() as f64).sqrt().max(1e-12);
    let adversarial: Vec<f32> = x.iter().zip(&noise).map(|(&v, n)| clamp_box(v as f64 + n * distortion / rms)).collect();
    let logits = classifier.classify(&adversarial)?.logits;
    Ok(outcome(x, adversarial, &logits, goal, Spent { iterations: 0, gradient_evaluations: 0, started }, None))
}
