//! The ImageNet model (models/efficientnet-lite0.onnx, EfficientNet-Lite0 with float16 weight
//! storage): it loads, matches onnxruntime on a photo, its gradients agree with f64 finite
//! differences along random directions, and the paper's attack turns the photo into an ostrich.

use blindspot::attack::{lbfgs, Goal};
use blindspot::grad::check::{directional_derivatives, F64Objective, Rng};
use blindspot::grad::Objective;
use blindspot::Classifier;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const OSTRICH: usize = 9;
const DALMATIAN: usize = 251;

fn model() -> Classifier {
    Classifier::load(&std::fs::read(format!("{ROOT}/models/efficientnet-lite0.onnx")).unwrap(), None).unwrap()
}

/// foolbox's Dalmatian, 224x224, as the RGB planes the model takes.
fn photo() -> Vec<f32> {
    let bytes = std::fs::read(format!("{ROOT}/tests/fixtures/imagenet/dalmatian.png")).unwrap();
    let (w, h, planes) = blindspot::image::decode_png(&bytes, 3).unwrap();
    assert_eq!((w, h), (224, 224));
    planes
}

#[test]
fn loads_and_matches_onnxruntime_on_a_photo() {
    let model = model();
    assert_eq!(model.input_shape(), &[1, 3, 224, 224]);
    let ours = model.classify(&photo()).unwrap();
    let reference: ndarray::ArrayD<f32> =
        ndarray_npy::read_npy(format!("{ROOT}/tests/fixtures/imagenet/dalmatian-logits.npy")).unwrap();
    assert_eq!(ours.logits.len(), 1000);
    let worst = ours.logits.iter().zip(reference.iter()).map(|(a, b)| (a - b).abs() / b.abs().max(1.0)).fold(0.0, f32::max);
    assert!(worst <= 1e-4, "logits differ from onnxruntime by {worst} (relative)");
    assert_eq!(ours.label, DALMATIAN);
    assert!(ours.probabilities[DALMATIAN] > 0.5, "{}", ours.probabilities[DALMATIAN]);
}

/// The gradient rules are exact on this graph: reverse mode evaluated in f64 agrees with f64
/// central differences along random directions to 1e-5 (measured 2.6e-7 at worst). The f32 gradient the page computes
/// differs from that exact one by float32 rounding, which this deep ReLU6 net amplifies (an
/// activation within rounding of 0 or 6 can take the other side of its kink): measured 0.5% in
/// L2 here, bounded at 2% with the direction kept (cosine > 0.999).
#[test]
fn gradients_agree_with_finite_differences_along_random_directions() {
    let model = model();
    let x = photo();
    let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let mut rng = Rng(2013);
    // random unit directions, and one along the photo's own pixels (all inputs move together)
    let mut directions: Vec<Vec<f32>> = (0..4).map(|_| (0..x.len()).map(|_| rng.gaussian()).collect()).collect();
    directions.push(x.clone());
    for d in directions.iter_mut() {
        let norm = d.iter().map(|v| v * v).sum::<f32>().sqrt();
        d.iter_mut().for_each(|v| *v /= norm);
    }
    for (objective, target) in [(Objective::CrossEntropy, OSTRICH), (Objective::Margin, DALMATIAN)] {
        let grad = model.gradient(&objective).unwrap();
        let parameter = grad.one_hot(target).unwrap();
        let f64_objective = F64Objective::new(&grad).unwrap();
        let (_, exact) = f64_objective.with_gradient(&x64, &parameter).unwrap();
        let h = 1e-6;
        for d in &directions {
            let step = |sign: f64| -> Vec<f64> { x64.iter().zip(d).map(|(v, e)| v + sign * h * *e as f64).collect() };
            let numeric = (f64_objective.at(&step(1.0), &parameter).unwrap() - f64_objective.at(&step(-1.0), &parameter).unwrap()) / (2.0 * h);
            let reverse: f64 = exact.iter().zip(d).map(|(g, e)| g * *e as f64).sum();
            // a random unit direction sees about |g| / sqrt(n) of the gradient: the scale compared to
            let error = (reverse - numeric).abs() / numeric.abs().max(norm(exact.iter().copied()) / (x.len() as f64).sqrt());
            eprintln!("{objective:?}: f64 reverse {reverse:.9e}, central difference {numeric:.9e}, error {error:.1e}");
            assert!(error <= 1e-5, "{objective:?}: reverse {reverse} vs central difference {numeric}");
        }
        // what the page uses: f32
        let page = grad.evaluate(&x, &parameter).unwrap().gradient;
        let dot: f64 = page.iter().zip(&exact).map(|(a, b)| *a as f64 * b).sum();
        let (n32, n64) = (norm(page.iter().map(|&v| v as f64)), norm(exact.iter().copied()));
        let l2 = norm(page.iter().zip(&exact).map(|(a, b)| *a as f64 - b)) / n64;
        let cosine = dot / (n32 * n64);
        eprintln!("{objective:?}: f32 gradient vs f64: L2 {l2:.2e} relative, cosine {cosine:.6}");
        assert!(l2 <= 2e-2 && cosine > 0.999, "{objective:?}: L2 {l2}, cosine {cosine}");
        // and the f32 gradient along the directions, as the issue asks, within that rounding
        let pairs = directional_derivatives(&grad, &x, &parameter, h, &directions).unwrap();
        for (reverse, numeric) in pairs {
            assert!((reverse - numeric).abs() <= 2e-2 * numeric.abs().max(n64 / (x.len() as f64).sqrt()), "{reverse} vs {numeric}");
        }
    }
}

fn norm(values: impl Iterator<Item = f64>) -> f64 {
    values.map(|v| v * v).sum::<f64>().sqrt()
}

#[test]
fn the_paper_attack_turns_the_dalmatian_into_an_ostrich() {
    let model = model();
    let x = photo();
    // the page's settings for this model (models/imagenet.json)
    let options = lbfgs::Options { max_iterations: 20, c_steps: 2, ..Default::default() };
    let outcome = lbfgs::attack(&model, &x, Goal::Target(OSTRICH), &options, |_| true).unwrap();
    assert!(outcome.success, "{outcome:?}");
    assert_eq!(outcome.label, OSTRICH);
    assert!(outcome.adversarial.iter().all(|v| (0.0..=1.0).contains(v)), "box respected");
    assert_eq!(model.classify(&outcome.adversarial).unwrap().label, OSTRICH);
    eprintln!("distortion {} in {} gradient evaluations, {:.1} s", outcome.distortion, outcome.gradient_evaluations, outcome.seconds);
    assert!(outcome.distortion < 0.02, "distortion {}", outcome.distortion);
}
