//! The models the tests run: every shipped model (models/models.json), and with them the two zoo graphs.

use blindspot::Classifier;
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The shipped models' ids and files (models/models.json).
fn shipped_files() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(format!("{ROOT}/models/models.json")).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    json["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_str().unwrap().to_string(), format!("{ROOT}/models/{}", m["file"].as_str().unwrap())))
        .collect()
}

fn load_all(files: Vec<(String, String)>) -> Vec<(String, Classifier)> {
    files.into_iter().map(|(id, file)| (id, Classifier::load(&std::fs::read(file).unwrap(), None).unwrap())).collect()
}

/// Every shipped model, by name.
#[allow(dead_code)] // each test crate that includes this file uses one of the two lists
pub fn shipped() -> Vec<(String, Classifier)> {
    load_all(shipped_files())
}

/// Every shipped model and the two zoo fixtures, by name.
#[allow(dead_code)]
pub fn models() -> Vec<(String, Classifier)> {
    let mut files = shipped_files();
    for zoo in ["mobilenet", "resnet"] {
        files.push((zoo.to_string(), format!("{ROOT}/tests/fixtures/zoo/{zoo}.onnx")));
    }
    load_all(files)
}
