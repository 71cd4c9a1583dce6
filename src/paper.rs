//! The paper's tables, reproduced: Table 1 (average minimal distortion), Table 2 (transfer across
//! models), Table 3 (transfer across training sets). `blindspot table1/2/3` and the lab's `table`
//! request compute them here; they only format the answer.

use serde::Serialize;

use crate::attack::lbfgs::{self, Options};
use crate::attack::Goal;
use crate::rng::Rng;
use crate::{Classifier, DigitPack, Result};

/// One model's Table 1 row: our measurements over `digits` attacks.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attacked {
    pub digit: usize,
    pub label: usize,
    pub target: usize,
    pub success: bool,
    pub distortion: f64,
    /// The example (not sent with a table: 784 numbers a digit).
    #[serde(skip)]
    pub adversarial: Vec<f32>,
}

/// A transfer table (the paper's Tables 2 to 4): rows of examples, each with its mean distortion
/// and the error rate each column's model makes on them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferTable {
    /// How many test digits each row holds.
    pub digits: usize,
    pub rows: Vec<TransferRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferRow {
    /// Whose examples: a model's key (made for it), `noise 0.1`, `adversarial`, `amplified`.
    pub examples: String,
    /// Table 2: the model's mean minimal distortion (over its successes; noise rows: over all
    /// images); Table 3: the mean distortion of the row's images.
    pub distortion: f64,
    /// Per column model, the fraction of the row's images it misclassifies.
    pub error_rates: Vec<f64>,
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
    let share = |t: usize| -> Result<Vec<Attacked>> {
        let mut out = vec![];
        for i in (t..n).step_by(threads) {
            let label = pack.labels[i] as usize;
            let target = target_for(label, i, seed, model.classes());
            let o = lbfgs::attack(model, &pack.input(i), Goal::Target(target), options, |_| true)?;
            out.push(Attacked { digit: i, label, target, success: o.success, distortion: o.distortion, adversarial: o.adversarial });
        }
        Ok(out)
    };
    // one thread runs here (the page's worker has no threads to spawn)
    let results: Vec<Result<Vec<Attacked>>> = if threads == 1 {
        vec![share(0)]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads).map(|t| scope.spawn(move || share(t))).collect();
            handles.into_iter().map(|h| h.join().expect("an attack thread panicked")).collect()
        })
    };
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

/// Table 2: examples made for each of `models` (attacked as [`average_distortion`] does) and
/// Gaussian noise of standard deviation 0.1 and 0.3 (one stream from `seed`), each row fed to
/// every model. Rows are the models' keys, then `noise 0.1` and `noise 0.3`; columns the models.
pub fn table2(models: &[(&str, &Classifier)], pack: &DigitPack, n: usize, seed: u64, options: &Options, threads: usize) -> Result<TransferTable> {
    let n = n.min(pack.len());
    let labels: Vec<usize> = (0..n).map(|i| pack.labels[i] as usize).collect();
    let mut rows: Vec<(String, f64, Vec<Vec<f32>>)> = vec![];
    for (key, model) in models {
        let run = average_distortion(model, pack, n, seed, options, threads)?;
        rows.push((key.to_string(), run.mean_distortion, run.attacks.into_iter().map(|a| a.adversarial).collect()));
    }
    let mut rng = Rng(seed);
    for stddev in [0.1, 0.3] {
        let images = noisy(pack, n, stddev, &mut rng);
        rows.push((format!("noise {stddev}"), mean_distortion(pack, &images), images));
    }
    let rows = rows
        .into_iter()
        .map(|(examples, distortion, images)| {
            let error_rates = models.iter().map(|(_, m)| error_rate(m, &images, &labels)).collect::<Result<_>>()?;
            Ok(TransferRow { examples, distortion, error_rates })
        })
        .collect::<Result<_>>()?;
    Ok(TransferTable { digits: n, rows })
}

/// Tables 3 and 4: examples made for `source` (FC100-100-10 on P1), the same moved along their
/// direction to distortion 0.1 ([`amplified`]), and Gaussian noise of standard deviation 0.1,
/// each fed to `columns` (the source itself, another architecture on P1, the same on P2).
pub fn table3(source: &Classifier, columns: &[&Classifier], pack: &DigitPack, n: usize, seed: u64, options: &Options, threads: usize) -> Result<TransferTable> {
    let run = average_distortion(source, pack, n, seed, options, threads)?;
    let labels: Vec<usize> = run.attacks.iter().map(|a| a.label).collect();
    let plain: Vec<Vec<f32>> = run.attacks.iter().map(|a| a.adversarial.clone()).collect();
    let amplified: Vec<Vec<f32>> = run.attacks.iter().map(|a| amplified(&pack.input(a.digit), &a.adversarial, 0.1)).collect();
    let noise = noisy(pack, n, 0.1, &mut Rng(seed));
    let rows = [("adversarial", plain), ("amplified", amplified), ("noise 0.1", noise)]
        .into_iter()
        .map(|(examples, images)| {
            let error_rates = columns.iter().map(|m| error_rate(m, &images, &labels)).collect::<Result<_>>()?;
            Ok(TransferRow { examples: examples.into(), distortion: mean_distortion(pack, &images), error_rates })
        })
        .collect::<Result<_>>()?;
    Ok(TransferTable { digits: labels.len(), rows })
}

/// The mean distortion of `images` from the first test digits of `pack`, one for one.
fn mean_distortion(pack: &DigitPack, images: &[Vec<f32>]) -> f64 {
    let total: f64 = images.iter().enumerate().map(|(i, x)| crate::attack::metrics::distortion(&pack.input(i), x)).sum();
    total / images.len().max(1) as f64
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
