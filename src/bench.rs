//! Throughput measurement: evaluations per second of forward and forward + gradient passes, on
//! the CPU (tract) and, natively, on the WebGPU backend.

use std::time::{Duration, Instant};

use crate::grad::Objective;
use crate::{Classifier, Result};

/// One model's measured rates.
#[derive(Debug, Clone, PartialEq)]
pub struct Throughput {
    pub forward_per_s: f64,
    pub gradient_per_s: f64,
}

impl Throughput {
    /// How many forward passes one gradient evaluation costs.
    pub fn gradient_cost(&self) -> f64 {
        self.forward_per_s / self.gradient_per_s
    }
}

/// Calls per second of `run`, after one warm-up call, over at least `time`.
pub fn rate(time: Duration, mut run: impl FnMut() -> Result<()>) -> Result<f64> {
    run()?;
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < time || n < 3 {
        run()?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Forward-only and forward + cross-entropy-gradient rates of `model` at `input`.
pub fn measure(model: &Classifier, input: &[f32], time: Duration) -> Result<Throughput> {
    let forward_per_s = rate(time, || model.classify(input).map(|_| ()))?;
    let gradient = model.gradient(&Objective::CrossEntropy)?;
    let target = gradient.one_hot(0)?;
    let gradient_per_s = rate(time, || gradient.evaluate(input, &target).map(|_| ()))?;
    Ok(Throughput { forward_per_s, gradient_per_s })
}

/// Forward + cross-entropy-gradient rate of `model` at `input` on the WebGPU backend (compiled
/// and uploaded once, before timing); an error naming the op when the backend has none for it.
#[cfg(not(target_arch = "wasm32"))]
pub fn measure_gpu(gpu: &crate::gpu::Gpu, model: &Classifier, input: &[f32], time: Duration) -> Result<f64> {
    let gradient = model.gradient(&Objective::CrossEntropy)?;
    let target = gradient.one_hot(0)?;
    let compiled = crate::gpu::GpuModel::for_gradient(gpu, &gradient)?;
    rate(time, || compiled.evaluate_blocking(input, &target).map(|_| ()))
}
