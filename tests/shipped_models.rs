//! Every shipped model loads and scores the packed test digits as its model card says.

use blindspot::{model::argmax, Classifier, DigitPack};
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BATCH: usize = 100;

fn manifest() -> Vec<Value> {
    let text = std::fs::read_to_string(format!("{ROOT}/models/models.json")).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    json["models"].as_array().unwrap().clone()
}

fn pack(name: &str) -> DigitPack {
    DigitPack::parse(&std::fs::read(format!("{ROOT}/models/data/{name}")).unwrap()).unwrap()
}

/// Misclassified digits of `pack` under `model`.
fn errors(model: &Classifier, pack: &DigitPack) -> usize {
    let logits = model.logits(&pack.inputs(0..pack.len())).unwrap();
    logits.iter().zip(&pack.labels).filter(|(l, &y)| argmax(l) != y as usize).count()
}

#[test]
fn manifest_lists_the_papers_models() {
    let ids: Vec<String> =
        manifest().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect();
    for id in [
        "cnn", "fc10-1e-4", "fc10-1e-2", "fc10-1", "fc100-100-10", "fc200-200-10", "ae400-10",
        "fc100-100-10-p1", "fc123-456-10-p1", "fc100-100-10-p2",
    ] {
        assert!(ids.iter().any(|i| i == id), "{id} is missing from models/models.json");
    }
}

#[test]
fn packs_hold_the_mnist_test_set() {
    let full = pack("mnist-test-10k.bin");
    let first = pack("mnist-test-1k.bin");
    assert_eq!((full.len(), full.rows, full.cols), (10_000, 28, 28));
    assert_eq!(first.len(), 1_000);
    assert_eq!(first.labels[..], full.labels[..1000]);
    assert_eq!(first.image(999), full.image(999));
    // The first MNIST test digits are 7, 2, 1, 0, 4.
    assert_eq!(&full.labels[..5], &[7, 2, 1, 0, 4]);
}

#[test]
fn every_model_scores_the_packs_as_its_card_says() {
    let full = pack("mnist-test-10k.bin");
    let first = pack("mnist-test-1k.bin");
    for m in manifest() {
        let id = m["id"].as_str().unwrap();
        let bytes = std::fs::read(format!("{ROOT}/models/{}", m["file"].as_str().unwrap())).unwrap();
        let mut shape: Vec<usize> = m["input"]["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        let single = Classifier::load(&bytes, Some(&shape)).unwrap();
        assert_eq!(single.classes(), 10, "{id}");
        shape[0] = BATCH;
        let model = Classifier::load(&bytes, Some(&shape)).unwrap();
        // The card's counts were measured with onnxruntime; another engine's float rounding
        // may flip a digit that sits on a decision boundary, hardly more.
        let card_10k = m["test_errors_10k"].as_u64().unwrap() as i64;
        let ours_10k = errors(&model, &full) as i64;
        assert!((ours_10k - card_10k).abs() <= 2, "{id}: {ours_10k} errors on 10k, card says {card_10k}");
        let card_error = m["test_error"].as_f64().unwrap();
        assert!((ours_10k as f64 / 1e4 - card_error).abs() <= 2e-4, "{id}: card test_error {card_error}");
        let card_1k = m["test_errors_1k"].as_u64().unwrap() as i64;
        let ours_1k = errors(&model, &first) as i64;
        assert!((ours_1k - card_1k).abs() <= 1, "{id}: {ours_1k} errors on 1k, card says {card_1k}");
        println!("{id}: {ours_10k} errors in 10,000 ({:.2}%)", ours_10k as f64 / 100.0);
    }
}
