//! The paper's tables, reproduced: Table 1 (per-model errors and average minimal distortion).

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
}

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
                        out.push(Attacked { digit: i, label, target, success: o.success, distortion: o.distortion });
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

#[cfg(test)]
mod tests {
    use super::*;

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
