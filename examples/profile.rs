//! Per-node time of a model's gradient graph: `cargo run --release --example profile MODEL.onnx`.
use blindspot::grad::Objective;
use blindspot::Classifier;
use std::collections::HashMap;
use tract_onnx::tract_core::internal::*;
fn main() -> TractResult<()> {
    let path = std::env::args().nth(1).unwrap();
    let model = Classifier::load(&std::fs::read(path)?, None).unwrap();
    let g = model.gradient(&Objective::CrossEntropy).unwrap();
    let plan = g.graph().clone().into_optimized()?.into_runnable()?;
    let n: usize = model.image_len();
    let x = Tensor::from_shape(model.input_shape(), &vec![0.3f32; n])?;
    let t = Tensor::from_shape(g.parameter_shape(), &g.one_hot(0).unwrap())?;
    let mut times: HashMap<String, f64> = HashMap::new();
    for _ in 0..200 {
        let mut state = plan.spawn()?;
        state.run_plan_with_eval(tvec!(x.clone().into(), t.clone().into()), |ctx, st, node, inputs| {
            let start = std::time::Instant::now();
            let r = tract_onnx::tract_core::plan::eval(ctx, st, node, inputs);
            *times.entry(format!("{} {}", node.op().name(), node.name)).or_default() += start.elapsed().as_secs_f64();
            r
        })?;
    }
    let mut v: Vec<_> = times.into_iter().collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = v.iter().map(|x| x.1).sum();
    for (k, t) in v.iter().take(15) { println!("{:6.1}% {:8.1}us {}", 100.0 * t / total, t * 1e6 / 200.0, k); }
    Ok(())
}
