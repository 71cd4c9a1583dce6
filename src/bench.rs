//! Throughput measurement: evaluations per second of forward and forward + gradient passes, on
//! the CPU (tract) and, natively, on the WebGPU backend.

use std::time::Duration;

use crate::attack::Instant;

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
    let mut clock = Clock::start(time);
    while clock.more() {
        run()?;
    }
    Ok(clock.per_second())
}

/// The timing of a rate, for a loop that calls `more` before each timed call (the lab's WebGPU
/// rate awaits each call, so it cannot hand [`rate`] a closure): at least `time`, at least 3 calls.
pub struct Clock {
    time: Duration,
    start: Instant,
    calls: u64,
}

impl Clock {
    /// Starts timing; the warm-up call is made before.
    pub fn start(time: Duration) -> Clock {
        Clock { time, start: Instant::now(), calls: 0 }
    }

    /// Whether another call is to be made (and counted).
    pub fn more(&mut self) -> bool {
        let more = self.start.elapsed() < self.time || self.calls < 3;
        self.calls += u64::from(more);
        more
    }

    /// Calls per second so far.
    pub fn per_second(&self) -> f64 {
        self.calls as f64 / self.start.elapsed().as_secs_f64()
    }
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

/// Independent multiply-add chains in [`simd_peak`]: enough to hide the latency of a SIMD multiply
/// and add (about 4 cycles each) on two ports, few enough to stay in 16 registers.
pub const PEAK_CHAINS: usize = 12;

/// The floating-point operations one call of [`simd_peak`] performs: per iteration, each chain does
/// a 4-lane multiply and a 4-lane add.
pub fn simd_peak_flops(iterations: u32) -> f64 {
    iterations as f64 * PEAK_CHAINS as f64 * 4.0 * 2.0
}

/// A peak-throughput kernel for the roofline: [`PEAK_CHAINS`] independent chains of
/// `a = a * m + k` on 4-lane f32 vectors (wasm SIMD's `f32x4.mul` and `f32x4.add`, as wasm has no
/// fused multiply-add outside relaxed SIMD). Returns a checksum so nothing is optimised away.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub fn simd_peak(iterations: u32) -> f32 {
    use core::arch::wasm32::*;
    let m = f32x4_splat(0.999_999);
    let k = f32x4_splat(1e-6);
    let mut acc: [v128; PEAK_CHAINS] = core::array::from_fn(|i| f32x4_splat(i as f32 * 0.01));
    for _ in 0..iterations {
        for a in acc.iter_mut() {
            *a = f32x4_add(f32x4_mul(*a, m), k);
        }
    }
    acc.iter().map(|a| f32x4_extract_lane::<0>(*a) + f32x4_extract_lane::<3>(*a)).sum()
}

/// The same chains in plain f32 arrays (natively the compiler picks the vector width).
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
pub fn simd_peak(iterations: u32) -> f32 {
    let mut acc = [[0f32; 4]; PEAK_CHAINS];
    for (i, a) in acc.iter_mut().enumerate() {
        *a = [i as f32 * 0.01; 4];
    }
    for _ in 0..iterations {
        for a in acc.iter_mut() {
            for v in a.iter_mut() {
                *v = *v * 0.999_999 + 1e-6;
            }
        }
    }
    acc.iter().map(|a| a[0] + a[3]).sum()
}
