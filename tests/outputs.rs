//! Output kinds: graphs ending in Softmax, LogSoftmax, a [1,K,1,1] Softmax, a hand-written
//! normalisation or skl2onnx's label + probabilities give onnxruntime's probabilities, the shipped
//! model's logits and gradients, and the same attack; graphs with no single-label score output are
//! refused naming what was found. Fixtures and oracle: tools/make_output_fixtures.py.

use blindspot::attack::{lbfgs, Goal};
use blindspot::grad::Objective;
use blindspot::{Classifier, Error, OutputKind};

fn read(path: &str) -> Vec<u8> {
    std::fs::read(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn fixture(name: &str) -> Classifier {
    Classifier::load(&read(&format!("tests/fixtures/outputs/{name}")), None).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn expected() -> serde_json::Value {
    serde_json::from_slice(&read("tests/fixtures/outputs/expected.json")).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

const KINDS: [(&str, &str, OutputKind); 9] = [
    ("mlp-softmax.onnx", "fc100-100-10.onnx", OutputKind::Probabilities),
    ("mlp-softmax-reshape.onnx", "fc100-100-10.onnx", OutputKind::Probabilities),
    ("mlp-softmax-opset11.onnx", "fc100-100-10.onnx", OutputKind::Probabilities),
    ("mlp-softmax-4d.onnx", "fc100-100-10.onnx", OutputKind::Probabilities),
    ("mlp-logsoftmax.onnx", "fc100-100-10.onnx", OutputKind::LogProbabilities),
    ("mlp-logsoftmax-opset11.onnx", "fc100-100-10.onnx", OutputKind::LogProbabilities),
    ("mlp-manual-softmax.onnx", "fc100-100-10.onnx", OutputKind::ProbabilitiesByValue),
    ("mlp-label-and-probs.onnx", "fc100-100-10.onnx", OutputKind::Probabilities),
    ("cnn-softmax.onnx", "cnn.onnx", OutputKind::Probabilities),
];

#[test]
fn probabilities_are_the_models_own_and_logits_the_shipped_models() {
    let oracle = expected();
    let digits: Vec<Vec<f32>> = oracle["digits"].as_array().unwrap().iter().map(floats).collect();
    for (name, base, kind) in KINDS {
        let model = fixture(name);
        let shipped = Classifier::load(&read(&format!("models/{base}")), None).unwrap();
        assert_eq!(model.output().kind, kind, "{name}");
        assert_eq!(model.classes(), 10, "{name}");
        let case = &oracle["models"][name];
        assert_eq!(model.output().name, case["output"].as_str().unwrap(), "{name}");
        for (i, x) in digits.iter().enumerate() {
            let got = model.classify(x).unwrap();
            let ort = floats(&case["values"][i]);
            let own: Vec<f32> = match kind {
                OutputKind::LogProbabilities => ort.iter().map(|l| l.exp()).collect(),
                _ => ort.clone(),
            };
            for (k, (p, q)) in got.probabilities.iter().zip(&own).enumerate() {
                assert!((p - q).abs() < 1e-5, "{name} digit {i} class {k}: blindspot {p}, onnxruntime {q}");
            }
            let reference = shipped.classify(x).unwrap();
            assert_eq!(got.label, reference.label, "{name} digit {i}");
            if kind != OutputKind::ProbabilitiesByValue {
                // the logits are the Softmax's input: the shipped model's logits exactly
                assert_eq!(got.logits, reference.logits, "{name} digit {i}");
            }
        }
    }
}

#[test]
fn the_output_is_described_with_its_name_and_node() {
    assert_eq!(fixture("mlp-softmax.onnx").output().describe(), "probabilities \"probs\" (Softmax \"softmax\")");
    assert_eq!(fixture("mlp-label-and-probs.onnx").output().describe(), "probabilities \"probabilities\" (Softmax \"softmax\")");
    let shipped = Classifier::load(&read("models/fc100-100-10.onnx"), None).unwrap();
    assert_eq!(shipped.output().describe(), "logits \"logits\"");
}

#[test]
fn gradients_and_attacks_are_the_shipped_models() {
    let oracle = expected();
    let x = floats(&oracle["digits"][0]);
    let shipped = Classifier::load(&read("models/fc100-100-10.onnx"), None).unwrap();
    let reference = shipped.gradient(&Objective::CrossEntropy).unwrap();
    let t = reference.one_hot(3).unwrap();
    let want = reference.evaluate(&x, &t).unwrap();
    let options = lbfgs::Options { max_iterations: 60, c_steps: 3, ..Default::default() };
    let base = lbfgs::attack(&shipped, &x, Goal::Target(3), &options, |_| true).unwrap();
    assert!(base.success);
    for name in ["mlp-softmax.onnx", "mlp-logsoftmax.onnx", "mlp-softmax-4d.onnx", "mlp-manual-softmax.onnx"] {
        let model = fixture(name);
        let g = model.gradient(&Objective::CrossEntropy).unwrap();
        let got = g.evaluate(&x, &t).unwrap();
        // cross-entropy is -log p_target of the model's own probabilities
        let p3 = model.classify(&x).unwrap().probabilities[3] as f64;
        assert!((got.objective as f64 + p3.ln()).abs() < 1e-3 * (1.0 + p3.ln().abs()), "{name}: ce {} vs -ln p {}", got.objective, -p3.ln());
        let scale = want.gradient.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (i, (a, b)) in got.gradient.iter().zip(&want.gradient).enumerate() {
            assert!((a - b).abs() <= 1e-3 * scale, "{name}: gradient[{i}] {a} vs shipped {b}");
        }
        let outcome = lbfgs::attack(&model, &x, Goal::Target(3), &options, |_| true).unwrap();
        assert!(outcome.success, "{name}");
        let rel = (outcome.distortion - base.distortion).abs() / base.distortion;
        assert!(rel < 0.02, "{name}: distortion {} vs the shipped model's {}", outcome.distortion, base.distortion);
    }
}

fn refusal(name: &str) -> String {
    match Classifier::load(&read(&format!("tests/fixtures/outputs/{name}")), None) {
        Err(Error::Model(why)) => why,
        other => panic!("{name} should be refused, got {other:?}"),
    }
}

#[test]
fn outputs_that_are_not_one_distribution_are_refused_naming_what_was_found() {
    let sigmoid = refusal("mlp-sigmoid.onnx");
    assert!(sigmoid.contains("is a Sigmoid (node \"multi_label\")") && sigmoid.contains("multi-label"), "{sigmoid}");
    let two = refusal("two-score-outputs.onnx");
    assert!(two.contains("2 float outputs") && two.contains("\"logits\"") && two.contains("\"probs\""), "{two}");
    let none = refusal("no-score-output.onnx");
    assert!(none.contains("no class-score output") && none.contains("\"label\""), "{none}");
}
