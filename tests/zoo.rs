//! MobileNet- and ResNet-class graphs as exporters write them (BatchNormalization, Clip as ReLU6,
//! depthwise convs, residual adds, global pooling, Dropout, Identity): they load, match
//! onnxruntime, and their gradients agree with finite differences.

use blindspot::grad::check::{finite_differences, Rng};
use blindspot::grad::Objective;
use blindspot::Classifier;

const ZOO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/zoo");

fn npy(path: &str) -> Vec<f32> {
    let a: ndarray::ArrayD<f32> = ndarray_npy::read_npy(path).unwrap();
    a.iter().copied().collect()
}

fn check(name: &str) {
    let model = Classifier::load(&std::fs::read(format!("{ZOO}/{name}.onnx")).unwrap(), None).unwrap();
    assert_eq!(model.input_shape(), &[1, 3, 64, 64]);
    let x = npy(&format!("{ZOO}/{name}-input.npy"));
    let reference = npy(&format!("{ZOO}/{name}-logits.npy"));
    let ours = model.classify(&x).unwrap().logits;
    for (a, b) in ours.iter().zip(&reference) {
        assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{name}: logits {ours:?} vs onnxruntime {reference:?}");
    }
    let mut rng = Rng(64);
    for objective in [Objective::CrossEntropy, Objective::Margin] {
        let grad = model.gradient(&objective).unwrap();
        let eval = grad.evaluate(&x, &grad.one_hot(3).unwrap()).unwrap();
        let mut order: Vec<usize> = (0..x.len()).collect();
        order.sort_by(|&a, &b| eval.gradient[b].abs().total_cmp(&eval.gradient[a].abs()));
        let mut probe: Vec<usize> = order[..6].to_vec();
        probe.extend((0..10).map(|_| rng.below(x.len())));
        let worst = finite_differences(&grad, &x, &grad.one_hot(3).unwrap(), 1e-6, Some(&probe)).unwrap();
        assert!(worst.error <= 1e-4, "{name} {objective:?}: {worst:?}");
    }
}

#[test]
fn mobilenet_class_graph() {
    check("mobilenet");
}

#[test]
fn resnet_class_graph() {
    check("resnet");
}
