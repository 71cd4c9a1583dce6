//! The op kinds in the gradient graphs of the shipped models and the zoo fixtures (what the WebGPU
//! backend must cover): `cargo run --example graph_ops`.
use blindspot::grad::Objective;
use blindspot::Classifier;
use std::collections::BTreeMap;

fn main() {
    let root = env!("CARGO_MANIFEST_DIR");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{root}/models/models.json")).unwrap()).unwrap();
    let mut files: Vec<String> =
        json["models"].as_array().unwrap().iter().map(|m| format!("{root}/models/{}", m["file"].as_str().unwrap())).collect();
    files.push(format!("{root}/tests/fixtures/zoo/mobilenet.onnx"));
    files.push(format!("{root}/tests/fixtures/zoo/resnet.onnx"));
    let mut ops: BTreeMap<String, usize> = BTreeMap::new();
    for file in files {
        let model = Classifier::load(&std::fs::read(&file).unwrap(), None).unwrap();
        for objective in [Objective::CrossEntropy, Objective::Margin] {
            let grad = model.gradient(&objective).unwrap();
            for node in grad.graph().nodes() {
                let detail = format!("{:?}", node.op);
                let short: String = detail.chars().take(160).collect();
                *ops.entry(format!("{} :: {}", node.op.name(), short)).or_default() += 1;
            }
        }
    }
    for (op, n) in ops {
        println!("{n:5} {op}");
    }
}
