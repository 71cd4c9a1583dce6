//! The exporter matrix: classifiers exported by PyTorch (torch.onnx), Keras (tf2onnx) and
//! scikit-learn (skl2onnx) themselves (tools/exporters.py, tests/fixtures/exporters/), loaded as a
//! student would drop them: class scores against onnxruntime, the output kind read right, and the
//! input gradient of cross-entropy against float64 finite differences of -log p_target computed
//! outside tract (onnx's reference evaluator on a float64 copy of the model).

use blindspot::grad::Objective;
use blindspot::model::softmax;
use blindspot::{Classifier, OutputKind};
use ndarray::ArrayD;
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const DIR: &str = "tests/fixtures/exporters";

fn manifest() -> Vec<Value> {
    let text = std::fs::read_to_string(format!("{ROOT}/{DIR}/expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn arrays(name: &str) -> (Vec<f32>, Vec<f32>) {
    let file = std::fs::File::open(format!("{ROOT}/{DIR}/{name}")).unwrap();
    let mut npz = ndarray_npy::NpzReader::new(file).unwrap();
    let x: ArrayD<f32> = npz.by_name("x").unwrap();
    let u: ArrayD<f32> = npz.by_name("directions").unwrap();
    (x.iter().copied().collect(), u.iter().copied().collect())
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|d| d.as_f64().unwrap()).collect()
}

/// What one exported model did: `Ok(notes)` or `Err(what went wrong)`.
fn check(entry: &Value) -> Result<String, String> {
    let name = entry["name"].as_str().unwrap();
    let bytes = std::fs::read(format!("{ROOT}/{DIR}/{}", entry["file"].as_str().unwrap())).unwrap();
    let shape: Vec<usize> = numbers(&entry["input_shape"]).iter().map(|&d| d as usize).collect();
    let model = Classifier::load(&bytes, Some(&shape)).map_err(|e| format!("load: {e}"))?;
    // the symbolic batch the exporters declare, taken as 1 when no shape is given
    let declared = Classifier::load(&bytes, None).map_err(|e| format!("load at the declared shape: {e}"))?;
    if declared.input_shape() != shape.as_slice() {
        return Err(format!("declared shape read as {:?}, not {shape:?}", declared.input_shape()));
    }
    let kind = entry["kind"].as_str().unwrap();
    let expected_kind = if kind == "probabilities" { OutputKind::Probabilities } else { OutputKind::Logits };
    if model.output().kind != expected_kind {
        return Err(format!("output read as {:?}, the exporter wrote {kind}", model.output().kind));
    }
    if model.output().name != entry["output"].as_str().unwrap() {
        return Err(format!("score output {:?}, not {}", model.output().name, entry["output"]));
    }
    let (x, u) = arrays(entry["arrays"].as_str().unwrap());
    let per = model.image_len();
    let gradient = model.gradient(&Objective::CrossEntropy).map_err(|e| format!("gradient graph: {e}"))?;
    let mut worst_scores = 0.0f64;
    let mut worst_gradient = 0.0f64;
    for (i, image) in x.chunks(per).enumerate() {
        // the model's own output, as onnxruntime computes it: probabilities for a Softmax ending
        let ort = numbers(&entry["onnxruntime"][i]);
        let c = model.classify(image).map_err(|e| format!("classify: {e}"))?;
        let ours: Vec<f32> = if kind == "probabilities" { c.probabilities.clone() } else { c.logits.clone() };
        let scale = ort.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        for (a, b) in ours.iter().zip(&ort) {
            worst_scores = worst_scores.max((*a as f64 - b).abs() / scale);
        }
        if worst_scores > 1e-4 {
            return Err(format!("image {i}: scores {ours:?}, onnxruntime {ort:?}"));
        }
        // cross-entropy is -log p_target of the model's own probabilities
        let target = entry["target"][i].as_u64().unwrap() as usize;
        let evaluation = gradient.evaluate(image, &gradient.one_hot(target).unwrap()).map_err(|e| e.to_string())?;
        let p = softmax(&evaluation.logits);
        let loss = entry["loss"][i].as_f64().unwrap();
        if ((evaluation.objective as f64) - loss).abs() > 1e-4 * loss.abs().max(1.0) {
            return Err(format!("image {i}: cross-entropy {}, -log p_target {loss}", evaluation.objective));
        }
        if ((-(p[target] as f64).ln()) - loss).abs() > 1e-3 * loss.abs().max(1.0) {
            return Err(format!("image {i}: -log of the shown probability {} is not {loss}", -(p[target] as f64).ln()));
        }
        // the fine steps: a standard-normal direction on a 3x32x32 input is about 55 long, so
        // at 1e-2..1e-4 a ReLU network's difference quotient already crosses kinks
        let rows = &entry["derivatives_fine"][i];
        let fd: Vec<f64> = (0..3).map(|k| rows[k][1].as_f64().unwrap()).collect();
        let scale = fd.iter().fold(1e-3f64, |m, d| m.max(d.abs()));
        for (k, numeric) in fd.iter().enumerate() {
            let direction = &u[k * per..(k + 1) * per];
            let reverse: f64 = evaluation.gradient.iter().zip(direction).map(|(&g, &d)| g as f64 * d as f64).sum();
            let error = (reverse - numeric).abs() / scale;
            worst_gradient = worst_gradient.max(error);
            if error > 1e-3 {
                return Err(format!("{name} image {i} direction {k}: reverse mode {reverse}, finite differences {numeric}"));
            }
        }
    }
    Ok(format!("scores within {worst_scores:.1e}, gradient within {worst_gradient:.1e}"))
}

#[test]
fn every_exported_classifier_matches_onnxruntime_and_the_float64_oracle() {
    let entries = manifest();
    let exported: Vec<&Value> = entries.iter().filter(|e| e.get("skipped").is_none()).collect();
    assert!(exported.len() >= 18, "only {} exported models", exported.len());
    let mut failures = Vec::new();
    for entry in &exported {
        let name = entry["name"].as_str().unwrap();
        match check(entry) {
            Ok(notes) => println!("{name}: {notes}"),
            Err(why) => failures.push(format!("{name}: {why}")),
        }
    }
    for skipped in entries.iter().filter(|e| e.get("skipped").is_some()) {
        println!("{}: not exported ({})", skipped["name"], skipped["skipped"]);
    }
    assert!(failures.is_empty(), "{} of {} exported models fail:\n{}", failures.len(), exported.len(), failures.join("\n"));
}
