//! The paper's tables, reproduced: Table 1 (average minimal distortion), Table 2 (transfer across
//! models), Table 3 (transfer across training sets).

use crate::attack::lbfgs::{self, Options};
use crate::attack::Goal;
use crate::rng::Rng;
use crate::{Classifier, DigitPack, Result};

/// One model's Table 1 row: our measurements over `digits` attacks.
#[derive(Debug, Clone, PartialEq)]
pub struct DistortionRow {
    pub digits: usize,
    pub successes: usize,
    /// Mean distortion over the successful attacks.
    pub mean_distortion: f64,
    pub seconds: f64,
    /// Each attack, in digit order.
    pub attacks: Vec<Attacked>,
}

/// One digit's attack in a table run.
#[derive(Debug, Clone, PartialEq)]
pub struct Attacked {
    pub digit: usize,
    pub label: usize,
    pub target: usize,
    pub success: bool,
    pub distortion: f64,
    pub adversarial: Vec<f32>,
}

/// The seed of the tables' targets and noise unless one is given (`--seed`): the paper's year.
pub const SEED: u64 = 2013;

/// The target of digit `index` for the tables: a seeded random class other than its label.
pub fn target_for(label: usize, index: usize, seed: u64, classes: usize) -> usize {
    let mut rng = Rng(seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    (label + 1 + rng.below(classes - 1)) % classes
}

/// Attacks the first `n` digits of `pack`, each towards [`target_for`] it, on `threads` threads.
pub fn average_distortion(
    model: &Classifier,
    pack: &DigitPack,
    n: usize,
    seed: u64,
    options: &Options,
    threads: usize,
) -> Result<DistortionRow> {
    let started = crate::attack::Instant::now();
    let n = n.min(pack.len());
    let threads = threads.clamp(1, n.max(1));
    let results: Vec<Result<Vec<Attacked>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let mut out = vec![];
                    for i in (t..n).step_by(threads) {
                        let label = pack.labels[i] as usize;
                        let target = target_for(label, i, seed, model.classes());
                        let o = lbfgs::attack(model, &pack.input(i), Goal::Target(target), options, |_| true)?;
                        out.push(Attacked {
                            digit: i,
                            label,
                            target,
                            success: o.success,
                            distortion: o.distortion,
                            adversarial: o.adversarial,
                        });
                    }
                    Ok(out)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("an attack thread panicked")).collect()
    });
    let mut attacks = vec![];
    for r in results {
        attacks.extend(r?);
    }
    attacks.sort_by_key(|a| a.digit);
    let successes = attacks.iter().filter(|a| a.success).count();
    let total: f64 = attacks.iter().filter(|a| a.success).map(|a| a.distortion).sum();
    Ok(DistortionRow {
        digits: n,
        successes,
        mean_distortion: if successes > 0 { total / successes as f64 } else { f64::NAN },
        seconds: started.elapsed().as_secs_f64(),
        attacks,
    })
}

/// The fraction of `images` (with their true `labels`) that `model` misclassifies.
pub fn error_rate(model: &Classifier, images: &[Vec<f32>], labels: &[usize]) -> Result<f64> {
    Ok(errors(model, images, labels)?.0)
}

/// The fraction of `images` (with their true `labels`) that `model` misclassifies, and its
/// answer for each.
pub fn errors(model: &Classifier, images: &[Vec<f32>], labels: &[usize]) -> Result<(f64, Vec<usize>)> {
    let answers = images.iter().map(|x| Ok(model.classify(x)?.label)).collect::<Result<Vec<usize>>>()?;
    let wrong = answers.iter().zip(labels).filter(|(a, y)| a != y).count();
    Ok((wrong as f64 / images.len().max(1) as f64, answers))
}

/// x plus Gaussian noise of standard deviation `stddev`, clipped to [0,1], for each digit.
pub fn noisy(pack: &DigitPack, n: usize, stddev: f64, rng: &mut Rng) -> Vec<Vec<f32>> {
    (0..n.min(pack.len())).map(|i| noisy_image(&pack.input(i), stddev, rng)).collect()
}

/// One image plus Gaussian noise of standard deviation `stddev`, clipped to [0,1]; images noised
/// one after another from the same `rng` give [`noisy`]'s stream.
pub fn noisy_image(x: &[f32], stddev: f64, rng: &mut Rng) -> Vec<f32> {
    x.iter().map(|&v| (v as f64 + stddev * rng.gaussian() as f64).clamp(0.0, 1.0) as f32).collect()
}

/// The paper's amplified example: x + 0.1 (x' - x) / ||x' - x||, with ||.|| the distortion
/// (root mean square), so the perturbation's distortion becomes 0.1; clipped to [0,1].
pub fn amplified(x: &[f32], adversarial: &[f32], to: f64) -> Vec<f32> {
    let d = crate::attack::metrics::distortion(x, adversarial);
    if d == 0.0 {
        return adversarial.to_vec();
    }
    x.iter()
        .zip(adversarial)
        .map(|(&a, &b)| (a as f64 + to * (b - a) as f64 / d).clamp(0.0, 1.0) as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amplified_examples_have_the_asked_distortion() {
        let x = vec![0.5f32; 100];
        // half the pixels moved by +-0.01: scaled up about 14 times, still inside the box
        let adv: Vec<f32> = (0..100).map(|i| if i % 2 == 0 { 0.5 + if i % 4 == 0 { 0.01 } else { -0.01 } } else { 0.5 }).collect();
        let a = amplified(&x, &adv, 0.1);
        let d = crate::attack::metrics::distortion(&x, &a);
        assert!((d - 0.1).abs() < 1e-6, "{d}");
    }

    #[test]
    fn targets_differ_from_labels_and_repeat() {
        for i in 0..200 {
            let label = i % 10;
            let t = target_for(label, i, 7, 10);
            assert!(t != label && t < 10);
            assert_eq!(t, target_for(label, i, 7, 10));
        }
    }
}
