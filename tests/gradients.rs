//! Every shipped model's input gradient agrees with finite differences, for several digits,
//! targets and both objectives; unsupported ops are refused by name.

use blindspot::grad::check::{finite_differences, Rng};
use blindspot::grad::rules::FAMILIES;
use blindspot::grad::Objective;
use blindspot::{Classifier, DigitPack, Error};
use models::{models, shipped};

#[path = "support/models.rs"]
mod models;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The f32 gradient against central differences of the same graph run in f64 (tract's float
/// precision translator), step 1e-6: the difference quotient is then good to about 1e-9 and a
/// ReLU or max kink inside the step is unlikely. Tolerance 1e-4 relative to max(1, |derivative|),
/// room for the f32 rounding of the reverse pass.
#[test]
fn shipped_models_agree_with_finite_differences() {
    let pack = DigitPack::parse(&std::fs::read(format!("{ROOT}/models/data/mnist-test-1k.bin")).unwrap()).unwrap();
    let mut rng = Rng(2013);
    for (id, model) in shipped() {
        for objective in [Objective::CrossEntropy, Objective::Margin] {
            let grad = model.gradient(&objective).unwrap();
            for digit in [0, 7, 42] {
                // Background pixels make ReLU outputs tie inside max-pool windows, where the
                // objective has a kink; a little noise moves the check to a differentiable point.
                let x: Vec<f32> =
                    pack.input(digit).iter().map(|p| (p + 0.05 * rng.uniform()).clamp(0.0, 1.0)).collect();
                let target = (pack.labels[digit] as usize + 1 + digit % 9) % 10;
                let t = grad.one_hot(target).unwrap();
                let eval = grad.evaluate(&x, &t).unwrap();
                // probe the 8 most sensitive pixels and 8 random ones
                let mut order: Vec<usize> = (0..x.len()).collect();
                order.sort_by(|&a, &b| eval.gradient[b].abs().total_cmp(&eval.gradient[a].abs()));
                let mut probe: Vec<usize> = order[..8].to_vec();
                probe.extend((0..8).map(|_| rng.below(x.len())));
                let worst = finite_differences(&grad, &x, &t, 1e-6, Some(&probe)).unwrap();
                assert!(
                    worst.error <= 1e-4,
                    "{id} {objective:?} digit {digit} target {target}: {worst:?}"
                );
                assert!(eval.gradient.iter().any(|g| *g != 0.0), "{id}: the gradient is all zero");
            }
        }
    }
}

#[test]
fn gradient_logits_equal_the_classifier() {
    let pack = DigitPack::parse(&std::fs::read(format!("{ROOT}/models/data/mnist-test-1k.bin")).unwrap()).unwrap();
    for (id, model) in shipped() {
        let grad = model.gradient(&Objective::CrossEntropy).unwrap();
        let x = pack.input(3);
        let eval = grad.evaluate(&x, &grad.one_hot(0).unwrap()).unwrap();
        let plain = model.classify(&x).unwrap();
        for (a, b) in eval.logits.iter().zip(&plain.logits) {
            assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{id}: {a} vs {b}");
        }
        // ce = -ln softmax(z)_0
        let expected = -(plain.probabilities[0] as f64).ln();
        assert!((eval.objective as f64 - expected).abs() <= 1e-3 * expected.max(1.0), "{id}: ce {} vs {expected}", eval.objective);
    }
}

#[test]
fn projection_of_a_named_tensor() {
    let bytes = std::fs::read(format!("{ROOT}/models/cnn.onnx")).unwrap();
    let model = Classifier::load(&bytes, None).unwrap();
    let grad = model.gradient(&Objective::Projection { tensor: "features".into() }).unwrap();
    assert_eq!(grad.parameter_shape().iter().product::<usize>(), 128);
    let pack = DigitPack::parse(&std::fs::read(format!("{ROOT}/models/data/mnist-test-1k.bin")).unwrap()).unwrap();
    let v = Rng(5).vec(128);
    let mut rng = Rng(9);
    let x: Vec<f32> = pack.input(0).iter().map(|p| (p + 0.05 * rng.uniform()).clamp(0.0, 1.0)).collect();
    let worst = finite_differences(&grad, &x, &v, 1e-6, Some(&(300..340).collect::<Vec<_>>())).unwrap();
    assert!(worst.error <= 1e-4, "{worst:?}");
    let e = model.gradient(&Objective::Projection { tensor: "nowhere".into() }).unwrap_err();
    assert_eq!(
        e,
        Error::Input(
            "the graph has no tensor named \"nowhere\": pick one from the layer list (the CLI's `blindspot units MODEL` lists them)"
                .into()
        )
    );
}

#[test]
fn an_op_without_a_rule_is_named_before_anything_runs() {
    let bytes = std::fs::read(format!("{ROOT}/tests/fixtures/no-gradient.onnx")).unwrap();
    let model = Classifier::load(&bytes, None).unwrap();
    assert!(model.classify(&[0.5; 784]).is_ok(), "the forward pass itself is fine");
    let e = model.gradient(&Objective::CrossEntropy).unwrap_err();
    // named as the file has it, with tract's name for what it became
    assert_eq!(e, Error::NoGradient(vec![("ReduceProd (tract's Reduce<Prod>)".into(), "wobble".into())]));
    assert!(
        e.to_string().starts_with(
            "blindspot has no gradient rule for: ReduceProd (tract's Reduce<Prod>) (node \"wobble\"); the model classifies"
        ),
        "{e}"
    );
}

/// The op registry dispatches to the first family that claims a node: two claiming the same
/// node would make the order of `FAMILIES` decide its gradient or its Lipschitz factor. Every
/// node of every shipped and zoo graph (forward, and the gradient graph built from it) is claimed
/// by at most one family, and every forward node on the path by exactly one.
#[test]
fn every_node_is_claimed_by_at_most_one_op_family() {
    let mut names: Vec<&str> = FAMILIES.iter().map(|f| f.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), FAMILIES.len(), "family names repeat: {names:?}");
    let imagenet = Classifier::load(&std::fs::read(format!("{ROOT}/models/efficientnet-lite0.onnx")).unwrap(), None).unwrap();
    let mut all = models();
    all.push(("efficientnet-lite0".into(), imagenet));
    for (id, model) in &all {
        let forward = model.graph();
        let backward = model.gradient(&Objective::CrossEntropy).unwrap();
        for (graph, which) in [(forward, "forward"), (backward.graph(), "gradient")] {
            for node in graph.nodes() {
                let claims: Vec<&str> = FAMILIES.iter().filter(|f| (f.handles)(node)).map(|f| f.name).collect();
                assert!(claims.len() <= 1, "{id} {which} node {} ({}) is claimed by {claims:?}", node.name, node.op.name());
                let factors: Vec<&str> =
                    FAMILIES.iter().filter(|f| (f.lipschitz)(graph, node).is_some()).map(|f| f.name).collect();
                assert!(factors.len() <= 1, "{id} {which} node {} ({}) has factors from {factors:?}", node.name, node.op.name());
                let is_source_or_const = node.inputs.is_empty();
                if which == "forward" && !is_source_or_const {
                    assert_eq!(claims.len(), 1, "{id}: forward node {} ({}) has no family", node.name, node.op.name());
                }
            }
        }
    }
}
