//! The models the WebGPU tests run: every shipped model (models/models.json) and the two zoo graphs.

use blindspot::Classifier;
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Every shipped model and the two zoo fixtures, by name.
pub fn models() -> Vec<(String, Classifier)> {
    let text = std::fs::read_to_string(format!("{ROOT}/models/models.json")).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    let mut files: Vec<(String, String)> = json["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_str().unwrap().to_string(), format!("{ROOT}/models/{}", m["file"].as_str().unwrap())))
        .collect();
    for zoo in ["mobilenet", "resnet"] {
        files.push((zoo.to_string(), format!("{ROOT}/tests/fixtures/zoo/{zoo}.onnx")));
    }
    files.into_iter().map(|(id, file)| (id, Classifier::load(&std::fs::read(file).unwrap(), None).unwrap())).collect()
}
