//! The WebGPU backend on a real adapter (Mesa's lavapipe in the test command): for every shipped
//! model and both zoo graphs, GPU evaluation equals the CPU's within 1e-4 relative to
//! max(1, |value|), for several inputs and targets, with the buffers reused between evaluations.
//! No adapter is a failure, not a skip: scripts/test.sh installs lavapipe first.

#[path = "support/models.rs"]
mod support_models;
use support_models::models;

use blindspot::gpu::{Gpu, GpuModel};
use blindspot::grad::check::Rng;
use blindspot::grad::{Evaluation, Objective};
use std::time::Instant;

fn worst(ours: &Evaluation, theirs: &Evaluation) -> f32 {
    assert_eq!(ours.logits.len(), theirs.logits.len());
    assert_eq!(ours.gradient.len(), theirs.gradient.len());
    let rel = |a: f32, b: f32| (a - b).abs() / b.abs().max(1.0);
    let mut w = rel(ours.objective, theirs.objective);
    for (a, b) in ours.logits.iter().zip(&theirs.logits).chain(ours.gradient.iter().zip(&theirs.gradient)) {
        w = w.max(rel(*a, *b));
    }
    w
}

#[test]
fn gpu_equals_cpu_on_every_model() {
    let gpu = Gpu::request_blocking().expect("a WebGPU adapter (scripts/ensure.sh's ensure_lavapipe installs one)");
    println!("adapter: {}", gpu.adapter);
    let mut rng = Rng(1913);
    let mut failures = vec![];
    for (id, model) in models() {
        for objective in [Objective::CrossEntropy, Objective::Margin] {
            let grad = model.gradient(&objective).unwrap();
            let start = Instant::now();
            let on_gpu = GpuModel::for_gradient(&gpu, &grad).unwrap_or_else(|e| panic!("{id}: {e}"));
            let setup = start.elapsed();
            // evaluations one after another on the same buffers: each must see only its own x
            let mut gpu_time = std::time::Duration::ZERO;
            let mut cpu_time = std::time::Duration::ZERO;
            let mut w = 0f32;
            for (i, target) in [2, 7, 0].into_iter().enumerate() {
                let x: Vec<f32> = (0..model.image_len()).map(|_| rng.uniform() * (i as f32 + 1.0) / 3.0).collect();
                let t = grad.one_hot(target).unwrap();
                let start = Instant::now();
                let theirs = grad.evaluate(&x, &t).unwrap();
                cpu_time += start.elapsed();
                let start = Instant::now();
                let ours = on_gpu.evaluate_blocking(&x, &t).unwrap();
                gpu_time += start.elapsed();
                let d = worst(&ours, &theirs);
                if d > 1e-4 {
                    failures.push(format!("{id} {objective:?} evaluation {i} target {target}: {d}"));
                }
                w = w.max(d);
            }
            println!(
                "{id} {objective:?}: worst relative difference {w:.2e}; setup {:.0} ms, per evaluation GPU {:.1} ms, CPU {:.1} ms",
                setup.as_secs_f64() * 1e3,
                gpu_time.as_secs_f64() * 1e3 / 3.0,
                cpu_time.as_secs_f64() * 1e3 / 3.0
            );
        }
    }
    assert!(failures.is_empty(), "GPU and CPU differ:\n{}", failures.join("\n"));
}

#[test]
fn a_wrong_input_size_is_refused() {
    let gpu = Gpu::request_blocking().expect("a WebGPU adapter");
    let (_, model) = models().into_iter().find(|(id, _)| id == "cnn").unwrap();
    let grad = model.gradient(&Objective::CrossEntropy).unwrap();
    let on_gpu = GpuModel::for_gradient(&gpu, &grad).unwrap();
    assert!(on_gpu.evaluate_blocking(&[0.0; 10], &grad.one_hot(0).unwrap()).is_err());
    let x = vec![0.5; model.image_len()];
    let ok = on_gpu.evaluate_blocking(&x, &grad.one_hot(0).unwrap()).unwrap();
    assert!(worst(&ok, &grad.evaluate(&x, &grad.one_hot(0).unwrap()).unwrap()) <= 1e-4);
}

/// One op at a time on small graphs: the GPU equals the reference interpreter.
#[test]
fn kernels_equal_the_reference_interpreter() {
    use blindspot::gpu::{compile, reference};
    use tract_onnx::tract_core::internal::*;
    use tract_onnx::tract_core::ops::{einsum::EinSum, math, nn::{Reduce, Reducer}};
    let gpu = Gpu::request_blocking().expect("a WebGPU adapter");
    let mut rng = Rng(3);
    type Build = Box<dyn Fn(&mut TypedModel, OutletId) -> TractResult<OutletId>>;
    let cases: Vec<(&str, Build)> = vec![
        ("exp", Box::new(|m, x| Ok(m.wire_node("exp", math::exp(), &[x])?[0]))),
        ("add a constant", Box::new(|m, x| {
            let c = m.add_const("c", Tensor::from_shape(&[1, 6], &[1f32, 2., 3., 4., 5., 6.])?)?;
            Ok(m.wire_node("add", math::add(), &[x, c])?[0])
        })),
        ("sum", Box::new(|m, x| Ok(m.wire_node("sum", Reduce::new(tvec!(1), Reducer::Sum), &[x])?[0]))),
        ("matmul", Box::new(|m, x| {
            let w = m.add_const("w", Tensor::from_shape(&[6, 3], &(0..18).map(|i| i as f32 / 7.0).collect::<Vec<_>>())?)?;
            Ok(m.wire_node("mm", EinSum::new("mk,kn->mn".parse()?, f32::datum_type()), &[x, w])?[0])
        })),
    ];
    for (name, build) in cases {
        let mut m = TypedModel::default();
        let x = m.add_source("x", f32::fact([4, 6])).unwrap();
        let y = build(&mut m, x).unwrap();
        m.select_output_outlets(&[y]).unwrap();
        let plan = compile(&m).unwrap();
        let input: Vec<f32> = (0..24).map(|_| rng.uniform()).collect();
        let expected = reference::run(&plan, &[&input]);
        let got = pollster::block_on(GpuModel::new(&gpu, &plan).unwrap().run(&[&input])).unwrap();
        assert_eq!(got.len(), expected.len());
        for (a, b) in got[0].iter().zip(&expected[0]) {
            assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{name}: {:?} vs {:?}", got[0], expected[0]);
        }
    }
}

/// Residency: the weights and every step's parameters go up once, at setup; then each evaluation
/// uploads only x and the objective's parameter and downloads only the objective, the logits and
/// the gradient, however many evaluations follow.
#[test]
fn weights_go_up_once_and_each_evaluation_moves_only_its_inputs_and_outputs() {
    use blindspot::gpu::kernels::PARAM_WORDS;
    use blindspot::gpu::{compile, Traffic};
    let gpu = Gpu::request_blocking().expect("a WebGPU adapter");
    let root = env!("CARGO_MANIFEST_DIR");
    let model = blindspot::Classifier::load(&std::fs::read(format!("{root}/models/fc10-1e-4.onnx")).unwrap(), None).unwrap();
    let grad = model.gradient(&Objective::CrossEntropy).unwrap();
    let plan = compile(grad.graph()).unwrap();
    // the softmax regression's 784 x 10 weights and 10 biases are among the plan's constants
    assert!(plan.weights.len() >= 784 * 10 + 10, "{} constants", plan.weights.len());
    let setup = (plan.weights.len() * 4 + plan.steps.len() * PARAM_WORDS * 4) as u64;
    let on_gpu = GpuModel::new(&gpu, &plan).unwrap();
    assert_eq!(on_gpu.traffic(), Traffic { uploaded: setup, downloaded: 0 });
    let (x_bytes, parameter_bytes) = (784 * 4, 10 * 4);
    let (objective_bytes, logits_bytes, gradient_bytes) = (4, 10 * 4, 784 * 4);
    let mut rng = Rng(7);
    let n = 5u64;
    for i in 0..n {
        let x: Vec<f32> = (0..784).map(|_| rng.uniform()).collect();
        let e = on_gpu.evaluate_blocking(&x, &grad.one_hot(i as usize).unwrap()).unwrap();
        assert_eq!((e.logits.len(), e.gradient.len()), (10, 784));
        let t = on_gpu.traffic();
        assert_eq!(t.uploaded, setup + (i + 1) * (x_bytes + parameter_bytes), "after {} evaluations", i + 1);
        assert_eq!(t.downloaded, (i + 1) * (objective_bytes + logits_bytes + gradient_bytes), "after {} evaluations", i + 1);
    }
    println!("fc10-1e-4: setup uploads {setup} bytes ({} constants, {} steps); each evaluation {} up, {} down", plan.weights.len(), plan.steps.len(), x_bytes + parameter_bytes, objective_bytes + logits_bytes + gradient_bytes);
    // a refused input moves nothing
    assert!(on_gpu.evaluate_blocking(&[0.5; 10], &grad.one_hot(0).unwrap()).is_err());
    assert_eq!(on_gpu.traffic().uploaded, setup + n * (x_bytes + parameter_bytes));
}
