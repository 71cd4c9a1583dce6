//! Numbers an attack hands back: always finite and inside the [0,1] box, on every shipped model
//! and every method; the same inputs and seed give the same bits; hostile settings are refused.

use blindspot::attack::baselines::{self, Budget};
use blindspot::attack::lbfgs::{attack, Options};
use blindspot::attack::{Goal, Outcome};
use blindspot::rng::Rng;
use blindspot::{Classifier, DigitPack, Error};
use models::shipped;

#[path = "support/models.rs"]
mod models;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn pack() -> DigitPack {
    DigitPack::parse(&std::fs::read(format!("{ROOT}/models/data/mnist-test-1k.bin")).unwrap()).unwrap()
}

/// Every number of an outcome is finite, the image is inside the box, the probabilities sum to 1.
fn assert_sane(what: &str, o: &Outcome) {
    assert!(o.adversarial.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)), "{what}: a pixel outside [0,1]");
    assert!(o.distortion.is_finite() && o.distortion >= 0.0, "{what}: distortion {}", o.distortion);
    assert!(o.l2.is_finite() && o.linf.is_finite(), "{what}: l2 {} linf {}", o.l2, o.linf);
    assert!(o.probabilities.iter().all(|p| p.is_finite() && *p >= 0.0), "{what}: probabilities {:?}", o.probabilities);
    let total: f32 = o.probabilities.iter().sum();
    assert!((total - 1.0).abs() < 1e-4, "{what}: probabilities sum to {total}");
    assert!(o.label < o.probabilities.len());
}

/// The methods the page offers, each run once on `x` (L-BFGS with a short budget).
fn every_method(m: &Classifier, x: &[f32], goal: Goal, seed: u64) -> Vec<(&'static str, Outcome)> {
    let short = Options { max_iterations: 30, c_steps: 2, ..Options::default() };
    let budget = Budget { epsilon: 0.1, step: 0.01, iterations: 10 };
    vec![
        ("lbfgs", attack(m, x, goal, &short, |_| true).unwrap()),
        ("fgsm", baselines::fgsm(m, x, goal, 0.1).unwrap()),
        ("pgd-linf", baselines::pgd_linf(m, x, goal, &budget).unwrap()),
        ("pgd-l2", baselines::pgd_l2(m, x, goal, &Budget { epsilon: 2.0, step: 0.2, iterations: 10 }).unwrap()),
        ("noise", baselines::noise_of_distortion(m, x, goal, 0.1, &mut Rng(seed)).unwrap()),
    ]
}

#[test]
fn every_method_on_every_shipped_model_gives_finite_numbers_inside_the_box() {
    let pack = pack();
    let mut runs = 0;
    for (id, m) in shipped() {
        // a digit, an all-black and an all-white image (the box's corners: the gradient pushes out)
        let images = [pack.input(4), vec![0.0; m.image_len()], vec![1.0; m.image_len()]];
        for (k, x) in images.iter().enumerate() {
            for goal in [Goal::Target((pack.labels[4] as usize + 3) % 10), Goal::Untargeted { label: m.classify(x).unwrap().label }] {
                for (method, o) in every_method(&m, x, goal, 7) {
                    assert_sane(&format!("{id} image {k} {goal:?} {method}"), &o);
                    runs += 1;
                }
            }
        }
    }
    println!("{runs} attacks, all finite and inside the box");
}

#[test]
fn the_same_inputs_and_seed_give_the_same_bits() {
    let pack = pack();
    let m = Classifier::load(&std::fs::read(format!("{ROOT}/models/cnn.onnx")).unwrap(), None).unwrap();
    let x = pack.input(11);
    let goal = Goal::Target(2);
    let first = every_method(&m, &x, goal, 42);
    let again = every_method(&m, &x, goal, 42);
    for ((method, a), (_, b)) in first.iter().zip(&again) {
        let bits = |o: &Outcome| o.adversarial.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(a), bits(b), "{method}: two runs differ");
        assert_eq!(a.distortion.to_bits(), b.distortion.to_bits(), "{method}");
    }
    // another seed moves the noise, and only the noise
    let other = every_method(&m, &x, goal, 43);
    assert_ne!(first[4].1.adversarial, other[4].1.adversarial, "the noise ignores its seed");
    assert_eq!(first[0].1.adversarial, other[0].1.adversarial, "L-BFGS depends on the noise seed");
}

#[test]
fn hostile_settings_and_pixels_are_refused_with_a_reason() {
    let pack = pack();
    let m = Classifier::load(&std::fs::read(format!("{ROOT}/models/fc100-100-10.onnx")).unwrap(), None).unwrap();
    let x = pack.input(0);
    let goal = Goal::Target(3);
    let input_error = |r: blindspot::Result<Outcome>, what: &str| match r {
        Err(Error::Input(message)) => println!("{what}: {message}"),
        other => panic!("{what}: expected a refusal, got {:?}", other.map(|o| o.adversarial[0])),
    };
    let mut nan = x.clone();
    nan[5] = f32::NAN;
    input_error(baselines::fgsm(&m, &nan, goal, 0.1), "a NaN pixel");
    let mut big = x.clone();
    big[5] = f32::INFINITY;
    input_error(attack(&m, &big, goal, &Options::default(), |_| true), "an infinite pixel");
    input_error(baselines::fgsm(&m, &x[1..], goal, 0.1), "too few pixels");
    // 0-255 values where [0,1] pixels belong: which pixel, and what to do
    let mut bytes = x.clone();
    bytes[5] = 255.0;
    match attack(&m, &bytes, goal, &Options::default(), |_| true) {
        Err(Error::Input(message)) => {
            assert!(message.starts_with("pixel 5 is 255; pixels must lie in [0,1]"), "{message}");
            assert!(message.contains("divide 0-255 values by 255"), "{message}");
        }
        other => panic!("a 0-255 pixel: expected a refusal, got {:?}", other.map(|o| o.adversarial[0])),
    }
    input_error(baselines::fgsm(&m, &x, Goal::Target(10), 0.1), "a target past the classes");
    for epsilon in [f64::NAN, f64::INFINITY, -0.1] {
        input_error(baselines::fgsm(&m, &x, goal, epsilon), &format!("FGSM epsilon {epsilon}"));
        input_error(baselines::pgd_linf(&m, &x, goal, &Budget { epsilon, step: 0.01, iterations: 5 }), &format!("PGD epsilon {epsilon}"));
        input_error(baselines::noise_of_distortion(&m, &x, goal, epsilon, &mut Rng(1)), &format!("noise of distortion {epsilon}"));
    }
    input_error(baselines::pgd_l2(&m, &x, goal, &Budget { epsilon: 1.0, step: f64::NAN, iterations: 5 }), "a NaN PGD step");
}
