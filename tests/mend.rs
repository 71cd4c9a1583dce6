//! Graphs tract 0.23.9 reads otherwise than ONNX, mended at load (src/mend.rs): checked against
//! numpy and onnxruntime (tools/make_fixtures.py writes the oracle), or refused by node.

use std::collections::BTreeMap;

use blindspot::grad::{GradientModel, Objective};
use blindspot::model::load_graph;
use ndarray::ArrayD;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{ROOT}/tests/fixtures/{name}")).unwrap()
}

fn npz(name: &str) -> BTreeMap<String, Vec<f32>> {
    let file = std::fs::File::open(format!("{ROOT}/tests/fixtures/{name}")).unwrap();
    let mut npz = ndarray_npy::NpzReader::new(file).unwrap();
    let names = npz.names().unwrap();
    names
        .into_iter()
        .map(|n| {
            let a: ArrayD<f32> = npz.by_name(&n).unwrap();
            (n.trim_end_matches(".npy").to_string(), a.iter().copied().collect())
        })
        .collect()
}

#[test]
fn a_wrap_pad_gives_numpys_values_and_the_exact_gradient() {
    let (typed, _) = load_graph(&fixture("wrap-pad.onnx"), Some(&[1, 2, 3, 4])).unwrap();
    let mut model = typed.into_decluttered().unwrap();
    let out = model.output_outlets().unwrap()[0];
    model.set_outlet_label(out, "padded".into()).unwrap();
    let gradient = GradientModel::build(&model, &Objective::Projection { tensor: "padded".into() }).unwrap();
    let oracle = npz("wrap-pad.npz");
    let evaluation = gradient.evaluate(&oracle["x"], &oracle["v"]).unwrap();
    assert_eq!(evaluation.logits.len(), oracle["expected"].len());
    for (i, (a, b)) in evaluation.logits.iter().zip(&oracle["expected"]).enumerate() {
        assert_eq!(a, b, "value {i}");
    }
    for (i, (a, b)) in evaluation.gradient.iter().zip(&oracle["gradient"]).enumerate() {
        assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "gradient {i}: {a} against {b}");
    }
}

#[test]
fn a_wrap_pad_longer_than_its_axis_is_refused_by_node() {
    let e = load_graph(&fixture("wrap-pad-long.onnx"), Some(&[1, 2, 3, 4])).unwrap_err().to_string();
    assert!(e.contains("node \"wrap\" (Pad, mode wrap)"), "{e}");
    assert!(e.contains("longer than axis 2 (3 cells)"), "{e}");
}
