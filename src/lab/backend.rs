//! Where a lab's model runs: the automatic choice, WebGPU set up and checked against the CPU, the fallback.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use super::protocol::{Backend, Detected, Preference};
use super::Entry;
use crate::attack::lbfgs::{Options, Progress};
use crate::attack::{Goal, Outcome};
use crate::gpu::{Gpu, GpuModel};
use crate::grad::{Evaluation, Objective};
use crate::{Error, Result};

/// What the preference asks for, given the browser's adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub backend: Backend,
    /// Why not WebGPU (None when WebGPU).
    pub reason: Option<String>,
}

/// Where a model runs for `preference` given what the browser has (`detected`, asked by the
/// page's worker). `auto` takes WebGPU whenever the browser has a hardware adapter, else the
/// CPU; a software ("fallback") adapter such as SwiftShader is the CPU emulating a GPU, tens of
/// times slower than the wasm path, so `auto` leaves it alone (choosing `webgpu` still uses it).
pub fn choose(preference: Preference, detected: Option<&Detected>) -> Choice {
    let cpu = |reason: String| Choice { backend: Backend::Cpu, reason: Some(reason) };
    if preference == Preference::Cpu {
        return cpu("CPU chosen".into());
    }
    let gpu = match detected {
        Some(d) if d.available => d,
        Some(d) => return cpu(format!("WebGPU unavailable: {}", d.reason.as_deref().unwrap_or("not detected"))),
        None => return cpu("WebGPU unavailable: not detected".into()),
    };
    if preference == Preference::Auto && gpu.fallback_adapter == Some(true) {
        let name = gpu.adapter.as_deref().unwrap_or("the adapter");
        return cpu(format!(
            "automatic: {name} is a software WebGPU adapter (the GPU emulated on the CPU), slower than the CPU path; pick WebGPU to use it anyway"
        ));
    }
    Choice { backend: Backend::Webgpu, reason: None }
}

/// A model's backend and its WebGPU state: the device once set up, the compiled gradient graphs
/// by objective (weights uploaded once each), and whether WebGPU failed for it.
#[derive(Clone, Default)]
pub struct Placement {
    pub backend: Backend,
    pub reason: Option<String>,
    pub failed: bool,
    pub gpu: Option<Gpu>,
    models: HashMap<Objective, Rc<GpuModel>>,
}

impl Placement {
    pub fn cpu(reason: &str) -> Placement {
        Placement { reason: Some(reason.into()), ..Placement::default() }
    }

    /// WebGPU failed for this model: it runs on the CPU from now on, and says why.
    pub fn fall_back(&mut self, e: &Error) {
        self.backend = Backend::Cpu;
        self.reason = Some(format!("WebGPU failed for this model, so it runs on the CPU: {}", e.detail()));
        self.failed = true;
    }
}

/// The lab's WebGPU device, requested on first use and shared by every model.
#[derive(Default)]
pub struct Gpus {
    device: std::cell::RefCell<Option<Gpu>>,
}

impl Gpus {
    async fn device(&self) -> Result<Gpu> {
        if let Some(gpu) = self.device.borrow().clone() {
            return Ok(gpu);
        }
        let gpu = Gpu::request().await?;
        *self.device.borrow_mut() = Some(gpu.clone());
        Ok(gpu)
    }

    /// The GPU compilation of `entry`'s gradient graph of `objective`, built on first use; an
    /// error naming the op when the backend has no kernel for it.
    fn model(&self, entry: &Entry, objective: &Objective) -> Result<Rc<GpuModel>> {
        if let Some(m) = entry.placement.borrow().models.get(objective) {
            return Ok(Rc::clone(m));
        }
        let gpu = entry.placement.borrow().gpu.clone().ok_or_else(|| Error::Run("WebGPU is not set up for this model".into()))?;
        let compiled = Rc::new(GpuModel::for_gradient(&gpu, &*entry.graph(objective)?)?);
        entry.placement.borrow_mut().models.insert(objective.clone(), Rc::clone(&compiled));
        Ok(compiled)
    }

    /// Gets `entry` ready for WebGPU: the device, the cross-entropy graph compiled and its
    /// weights uploaded, then one evaluation checked against the CPU's. A shader the browser
    /// refuses fails silently (its dispatches are skipped, the results read back as zeros).
    pub(super) async fn set_up(&self, entry: &Entry) -> Result<()> {
        let gpu = self.device().await?;
        entry.placement.borrow_mut().gpu = Some(gpu);
        let model = self.model(entry, &Objective::CrossEntropy)?;
        let x = vec![0.5; entry.classifier.image_len()];
        let cpu = entry.graph(&Objective::CrossEntropy)?;
        let parameter = cpu.one_hot(0)?;
        let ours = model.evaluate(&x, &parameter).await?;
        let theirs = cpu.evaluate(&x, &parameter)?;
        let rel = |a: &f32, b: &f32| (a - b).abs() / b.abs().max(1.0);
        let worst = std::iter::once((&ours.objective, &theirs.objective))
            .chain(ours.logits.iter().zip(&theirs.logits))
            .chain(ours.gradient.iter().zip(&theirs.gradient))
            .map(|(a, b)| rel(a, b))
            .fold(0f32, f32::max);
        if worst.is_nan() || worst > 1e-3 {
            entry.placement.borrow_mut().models.clear();
            return Err(Error::Run(format!(
                "its results differ from the CPU's by {worst:.1e} relative (a kernel this browser's WebGPU refused?)"
            )));
        }
        Ok(())
    }

    pub(super) async fn gradient(&self, entry: &Entry, objective: &Objective, pixels: &[f32], target: usize) -> Result<Evaluation> {
        let model = self.model(entry, objective)?;
        let parameter = entry.graph(objective)?.one_hot(target)?;
        model.evaluate(pixels, &parameter).await
    }

    /// The L-BFGS attack with every gradient on the GPU (see [`crate::gpu::attack`]).
    pub(super) async fn attack(
        &self,
        entry: &Entry,
        pixels: &[f32],
        goal: Goal,
        options: &Options,
        progress: impl FnMut(&Progress) -> bool,
    ) -> Result<Outcome> {
        let (objective, class) = goal.objective();
        let model = self.model(entry, &objective)?;
        let parameter = entry.graph(&objective)?.one_hot(class)?;
        crate::gpu::attack::attack(&entry.classifier, &model, &parameter, pixels, goal, options, progress).await
    }

    /// Forward + gradient evaluations per second on the GPU (set up first when it is not yet),
    /// after one warm-up, over at least `time`.
    pub(super) async fn rate(&self, entry: &Entry, pixels: &[f32], time: Duration) -> Result<f64> {
        if entry.placement.borrow().models.is_empty() {
            self.set_up(entry).await?;
        }
        let model = self.model(entry, &Objective::CrossEntropy)?;
        let parameter = entry.graph(&Objective::CrossEntropy)?.one_hot(0)?;
        model.evaluate(pixels, &parameter).await?;
        let mut clock = crate::bench::Clock::start(time);
        while clock.more() {
            model.evaluate(pixels, &parameter).await?;
        }
        Ok(clock.per_second())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detected(available: bool, fallback: bool) -> Detected {
        Detected {
            available,
            adapter: available.then(|| if fallback { "SwiftShader" } else { "a GPU" }.to_string()),
            reason: (!available).then(|| "this browser has no WebGPU".to_string()),
            fallback_adapter: available.then_some(fallback),
        }
    }

    /// The choices www/backend.js made (and tests/e2e/backend.test.mjs asserted) before the lab
    /// took them over.
    #[test]
    fn auto_takes_a_hardware_adapter_and_leaves_a_software_one() {
        let (hardware, software, none) = (detected(true, false), detected(true, true), detected(false, false));
        assert_eq!(choose(Preference::Auto, Some(&hardware)), Choice { backend: Backend::Webgpu, reason: None });
        let soft = choose(Preference::Auto, Some(&software));
        assert_eq!(soft.backend, Backend::Cpu);
        let why = soft.reason.as_deref().unwrap();
        assert!(why.contains("SwiftShader is a software WebGPU adapter") && why.ends_with("pick WebGPU to use it anyway"), "{why}");
        assert_eq!(
            choose(Preference::Auto, Some(&none)),
            Choice { backend: Backend::Cpu, reason: Some("WebGPU unavailable: this browser has no WebGPU".into()) }
        );
        assert_eq!(choose(Preference::Webgpu, Some(&software)).backend, Backend::Webgpu);
        assert_eq!(choose(Preference::Webgpu, Some(&hardware)).backend, Backend::Webgpu);
        assert_eq!(choose(Preference::Webgpu, Some(&none)).backend, Backend::Cpu);
        assert_eq!(choose(Preference::Cpu, Some(&hardware)), Choice { backend: Backend::Cpu, reason: Some("CPU chosen".into()) });
    }
}
