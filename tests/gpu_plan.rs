//! The WebGPU plan without a GPU: every shipped model's and both zoo graphs' gradient graphs,
//! compiled to kernels and run by the reference interpreter, equal tract's own evaluation.

#[path = "support/models.rs"]
mod support_models;
use support_models::models;

use blindspot::gpu::{compile, reference};
use blindspot::grad::check::Rng;
use blindspot::grad::{Evaluation, Objective};



/// The largest difference relative to max(1, |expected|) over objective, logits and gradient.
pub fn worst(ours: &Evaluation, theirs: &Evaluation) -> f32 {
    let rel = |a: f32, b: f32| (a - b).abs() / b.abs().max(1.0);
    let mut w = rel(ours.objective, theirs.objective);
    for (a, b) in ours.logits.iter().zip(&theirs.logits).chain(ours.gradient.iter().zip(&theirs.gradient)) {
        w = w.max(rel(*a, *b));
    }
    assert_eq!(ours.logits.len(), theirs.logits.len());
    assert_eq!(ours.gradient.len(), theirs.gradient.len());
    w
}

#[test]
fn reference_interpreter_equals_tract() {
    let mut rng = Rng(77);
    for (id, model) in models() {
        for objective in [Objective::CrossEntropy, Objective::Margin] {
            let grad = model.gradient(&objective).unwrap();
            let plan = compile(grad.graph()).unwrap_or_else(|e| panic!("{id}: {e}"));
            for target in [1, 6] {
                let x: Vec<f32> = (0..model.image_len()).map(|_| rng.uniform()).collect();
                let t = grad.one_hot(target).unwrap();
                let theirs = grad.evaluate(&x, &t).unwrap();
                let out = reference::run(&plan, &[&x, &t]);
                let ours = Evaluation { objective: out[0][0], logits: out[1].clone(), gradient: out[2].clone() };
                let w = worst(&ours, &theirs);
                println!("{id} {objective:?} target {target}: worst relative difference {w:.2e}");
                assert!(w <= 1e-4, "{id} {objective:?} target {target}: {w}");
            }
        }
    }
}

#[test]
fn unsupported_ops_are_named() {
    use tract_onnx::tract_core::internal::*;
    let mut m = TypedModel::default();
    let x = m.add_source("x", f32::fact([4])).unwrap();
    let y = m.wire_node("wobble", tract_onnx::tract_core::ops::math::atan(), &[x]).unwrap();
    m.select_output_outlets(&y).unwrap();
    let e = compile(&m).unwrap_err();
    assert_eq!(e.to_string(), "cannot use this model: the WebGPU backend has no kernel for Atan (node \"wobble\")");
}

#[test]
fn intermediates_share_memory() {
    let (_, model) = models().into_iter().find(|(id, _)| id == "resnet").unwrap();
    let plan = compile(model.gradient(&Objective::CrossEntropy).unwrap().graph()).unwrap();
    println!("resnet: {} steps, work {} values ({} without reuse), weights {}", plan.steps.len(), plan.work_len, plan.work_without_reuse, plan.weights.len());
    assert!(plan.work_len * 2 < plan.work_without_reuse);
}
