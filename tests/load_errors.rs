//! Bad models and bad inputs are refused with messages that say what is wrong.

use blindspot::{Classifier, Error};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn load_err(bytes: &[u8], shape: Option<&[usize]>) -> Error {
    Classifier::load(bytes, shape).expect_err("the model should have been refused")
}

#[test]
fn empty_file_is_refused() {
    assert_eq!(load_err(&[], None), Error::NotOnnx("the file is empty".into()));
}

#[test]
fn garbage_is_not_onnx() {
    let e = load_err(b"\x89PNG\r\n\x1a\n this is an image, not a model", None);
    assert!(matches!(e, Error::NotOnnx(_)), "{e}");
    assert!(e.to_string().starts_with("not a readable ONNX model"), "{e}");
    // and what to do about it
    assert!(e.to_string().contains("export or download it again"), "{e}");
}

#[test]
fn truncated_model_is_refused() {
    let bytes = fixture("tiny-linear.onnx");
    for cut in [10, bytes.len() / 2, bytes.len() - 3] {
        let e = load_err(&bytes[..cut], None);
        assert!(matches!(e, Error::NotOnnx(_) | Error::Model(_)), "cut at {cut}: {e}");
    }
}

#[test]
fn unsupported_op_is_named_with_its_node() {
    let e = load_err(&fixture("unsupported-op.onnx"), None);
    assert_eq!(e, Error::UnsupportedOps(vec![("FancyWarp".into(), "warp_layer".into())]));
    assert!(
        e.to_string().starts_with(
            "the model uses operators blindspot cannot run: FancyWarp (node \"warp_layer\"); re-export the model with these \
             written as standard ONNX ops"
        ),
        "{e}"
    );
}

#[test]
fn two_inputs_are_refused() {
    let e = load_err(&fixture("two-inputs.onnx"), None);
    assert!(matches!(e, Error::Model(_)), "{e}");
    let e = e.to_string();
    assert!(e.contains("it has 2 inputs; an image classifier has one: re-export it with the image as its only input"), "{e}");
}

#[test]
fn a_rank_0_input_is_refused_not_a_panic() {
    let e = load_err(&fixture("scalar-input.onnx"), None);
    assert!(matches!(e, Error::Model(_)), "{e}");
    assert!(e.to_string().contains("its input is a single number (rank 0)") && e.to_string().contains("re-export it with a batch axis"), "{e}");
}

#[test]
fn wrong_input_shape_is_refused() {
    let e = load_err(&fixture("tiny-linear.onnx"), Some(&[1, 3, 28, 28]));
    let e = e.to_string();
    // the node tract stopped at, the shape, and both ways out
    assert!(e.contains("tract cannot work out the shapes at node #"), "{e}");
    assert!(e.contains("with input shape [1, 3, 28, 28]"), "{e}");
    assert!(e.contains("give it (the CLI's --shape)") && e.contains("re-export it with fixed shapes"), "{e}");
}

#[test]
fn declared_shape_with_symbolic_batch_loads_as_one_image() {
    let model = Classifier::load(&fixture("tiny-linear.onnx"), None).unwrap();
    assert_eq!(model.input_shape(), &[1, 1, 28, 28]);
    assert_eq!(model.classes(), 10);
}

#[test]
fn wrong_image_size_and_non_finite_pixels_are_refused() {
    let model = Classifier::load(&fixture("tiny-linear.onnx"), None).unwrap();
    let e = model.classify(&[0.5; 100]).unwrap_err();
    assert!(e.to_string().contains("the image has 100 values but the model takes 784"), "{e}");
    let mut nan = vec![0.0; 784];
    nan[5] = f32::NAN;
    assert!(model.classify(&nan).unwrap_err().to_string().contains("non-finite"));
}

#[test]
fn batched_logits_equal_one_at_a_time() {
    let bytes = fixture("tiny-linear.onnx");
    let single = Classifier::load(&bytes, None).unwrap();
    let batched = Classifier::load(&bytes, Some(&[4, 1, 28, 28])).unwrap();
    let images: Vec<f32> = (0..784 * 6).map(|i| ((i * 37) % 255) as f32 / 255.0).collect();
    let all = batched.logits(&images).unwrap();
    assert_eq!(all.len(), 6, "a short last batch is padded, and the padding dropped");
    for (k, row) in all.iter().enumerate() {
        let one = single.classify(&images[k * 784..(k + 1) * 784]).unwrap();
        for (a, b) in row.iter().zip(&one.logits) {
            assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "image {k}: {a} vs {b}");
        }
    }
}

#[test]
fn nan_or_infinite_weights_are_refused_naming_the_node() {
    let e = load_err(&fixture("nan-weights.onnx"), None);
    assert!(matches!(e, Error::Model(_)), "{e}");
    assert!(e.to_string().contains("hold NaN (1 of 7840 values are not finite numbers)"), "{e}");
    assert!(e.to_string().contains("export it again from a checkpoint whose weights are finite"), "{e}");
    let e = load_err(&fixture("inf-weights.onnx"), None);
    assert!(e.to_string().contains("hold inf (10 of 7840"), "{e}");
    println!("{e}");
}

#[test]
fn a_symbolic_image_size_asks_for_the_shape() {
    let e = load_err(&fixture("dynamic-shape.onnx"), None);
    println!("{e}");
    assert!(matches!(e, Error::Model(_)), "{e}");
    // which axis, its name in the file, and the ways out, including one open to the page's user
    let text = e.to_string();
    assert!(text.contains("input dimension 2 (H) is not fixed in the file"), "{e}");
    assert!(text.contains("onnxsim --overwrite-input-shape") && text.contains("the CLI's --shape"), "{e}");
    // given a shape, the same file loads
    let m = Classifier::load(&fixture("dynamic-shape.onnx"), Some(&[1, 1, 28, 28])).unwrap();
    assert_eq!(m.classes(), 10);
}

#[test]
fn an_opset_6_prelu_whose_input_rank_is_unknown_is_refused_by_node() {
    // its 1-D slope is per channel before opset 7; tract would apply it along the last axis
    let e = load_err(&fixture("prelu-6.onnx"), None).to_string();
    assert!(e.contains("node \"prelu\" (PRelu, opset 6)"), "{e}");
    assert!(e.contains("re-export with opset 7 or later"), "{e}");
}

#[test]
fn a_wrap_pad_without_an_output_is_refused_by_node_not_a_panic() {
    let e = load_err(&fixture("wrap-pad-no-output.onnx"), None).to_string();
    assert!(e.contains("(Pad, mode wrap): it has no data input or no output; re-export the model"), "{e}");
}

/// A grey digit classifier as exporters lay it out ([N, 784], [N, 28, 28, 1]; the shipped
/// fc100-100-10 behind a Reshape whose node shares its name with its shape's initializer, which
/// tract once refused as a duplicate node name) loads and answers as the shipped model does.
#[test]
fn flat_and_channels_last_digit_models_answer_as_the_shipped_one() {
    let shipped = Classifier::load(&std::fs::read(format!("{}/models/fc100-100-10.onnx", env!("CARGO_MANIFEST_DIR"))).unwrap(), None).unwrap();
    let x: Vec<f32> = (0..784).map(|i| ((i * 37) % 255) as f32 / 255.0).collect();
    let want = shipped.classify(&x).unwrap();
    for (name, shape) in [("digits-flat.onnx", vec![1, 784]), ("digits-nhwc.onnx", vec![1, 28, 28, 1])] {
        let m = Classifier::load(&fixture(name), None).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(m.input_shape(), &shape[..], "{name}");
        assert_eq!(m.classify(&x).unwrap().logits, want.logits, "{name}");
    }
}
