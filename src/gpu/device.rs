//! A Plan on a wgpu device: pipelines, buffers and constants set up once; each evaluation writes
//! the inputs, runs every step in one command buffer and reads the outputs back in one copy.

use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use super::kernels::{dispatch, Family, PARAM_WORDS};
use super::plan::{Plan, View};
use crate::error::{Error, Result};
use crate::grad::{Evaluation, GradientModel};

/// The adapter, device and queue the backend runs on.
#[derive(Debug, Clone)]
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    /// The adapter's name and backend, e.g. "llvmpipe (LLVM 19.1.7, 256 bits) (Vulkan)".
    pub adapter: String,
}

impl Gpu {
    /// The first adapter wgpu finds (the browser's WebGPU on wasm32; Vulkan, Metal, DX12 or GL
    /// natively), with the adapter's own storage limits so bigger models fit.
    pub async fn request() -> Result<Gpu> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: false,
                compatible_surface: None,
                apply_limit_buckets: false,
            })
            .await
            .map_err(|e| Error::Run(format!("no WebGPU adapter: {e}")))?;
        let info = adapter.get_info();
        let have = adapter.limits();
        let limits = wgpu::Limits {
            max_storage_buffer_binding_size: have.max_storage_buffer_binding_size,
            max_buffer_size: have.max_buffer_size,
            ..wgpu::Limits::downlevel_defaults()
        };
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("blindspot"),
                required_limits: limits,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Run(format!("no WebGPU device: {e}")))?;
        Ok(Gpu { device, queue, adapter: format!("{} ({:?})", info.name, info.backend) })
    }

    /// [`Gpu::request`], waiting natively.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn request_blocking() -> Result<Gpu> {
        pollster::block_on(Gpu::request())
    }
}

/// Bytes written to the GPU and read back from it by one model, counted where it writes buffers
/// and maps the read-back (so a test can check that the weights go up once and each evaluation
/// moves only its inputs and outputs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub uploaded: u64,
    pub downloaded: u64,
}

struct Launch {
    pipeline: usize,
    slot: u32,
    groups: (u32, u32),
}

/// A compiled gradient graph resident on the GPU. One evaluation at a time.
pub struct GpuModel {
    gpu: Gpu,
    plan_inputs: Vec<View>,
    plan_outputs: Vec<View>,
    pipelines: Vec<wgpu::ComputePipeline>,
    launches: Vec<Launch>,
    work: wgpu::Buffer,
    staging: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
    busy: Cell<bool>,
    traffic: Cell<Traffic>,
}

impl std::fmt::Debug for GpuModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuModel({} steps on {})", self.launches.len(), self.gpu.adapter)
    }
}

const SLOT_BYTES: u64 = (PARAM_WORDS * 4) as u64;

fn bytes(values: &[f32]) -> &[u8] {
    bytemuck::cast_slice(values)
}

impl GpuModel {
    /// The gradient graph of `gradient` compiled and set up on `gpu`; refuses, naming op and node,
    /// a graph with an op the backend has no kernel for.
    pub fn for_gradient(gpu: &Gpu, gradient: &GradientModel) -> Result<GpuModel> {
        GpuModel::new(gpu, &super::compile(gradient.graph())?)
    }

    /// Creates the pipelines, the buffers and the one bind group, and uploads the constants and
    /// every step's parameters (all of it once).
    pub fn new(gpu: &Gpu, plan: &Plan) -> Result<GpuModel> {
        let device = &gpu.device;
        let storage = |len: usize, label: &str, usage: wgpu::BufferUsages| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: (len.max(4) * 4) as u64,
                usage,
                mapped_at_creation: false,
            })
        };
        let weights = storage(plan.weights.len(), "weights", wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST);
        gpu.queue.write_buffer(&weights, 0, bytes(&plan.weights));
        let work = storage(
            plan.work_len,
            "work",
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
        );
        let out_len: usize = plan.outputs.iter().map(|v| v.len()).sum();
        let staging = storage(out_len, "staging", wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST);

        let dispatches: Vec<_> = plan.steps.iter().map(|s| dispatch(&s.kernel)).collect();
        let mut params = vec![0u32; dispatches.len().max(1) * PARAM_WORDS];
        for (i, d) in dispatches.iter().enumerate() {
            params[i * PARAM_WORDS..][..d.params.len()].copy_from_slice(&d.params);
        }
        let param_buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("step parameters"),
            size: (params.len() * 4) as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        gpu.queue.write_buffer(&param_buffer, 0, bytemuck::cast_slice(&params));
        let uploaded = (bytes(&plan.weights).len() + params.len() * 4) as u64;

        let entry = |binding: u32, ty: wgpu::BufferBindingType, dynamic: bool| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty,
                has_dynamic_offset: dynamic,
                min_binding_size: if dynamic { wgpu::BufferSize::new(SLOT_BYTES) } else { None },
            },
            count: None,
        };
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("blindspot"),
            entries: &[
                entry(0, wgpu::BufferBindingType::Storage { read_only: true }, false),
                entry(1, wgpu::BufferBindingType::Storage { read_only: false }, false),
                entry(2, wgpu::BufferBindingType::Uniform, true),
            ],
        });
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("blindspot"),
            layout: &layout,
            entries: &[
                wgpu::BindGroupEntry { binding: 0, resource: weights.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 1, resource: work.as_entire_binding() },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &param_buffer,
                        offset: 0,
                        size: wgpu::BufferSize::new(SLOT_BYTES),
                    }),
                },
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("blindspot"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });

        // one module per family used, one pipeline per entry point used
        let mut modules: HashMap<Family, wgpu::ShaderModule> = HashMap::new();
        let mut pipeline_of: HashMap<&'static str, usize> = HashMap::new();
        let mut pipelines = vec![];
        let mut launches = vec![];
        for (i, d) in dispatches.iter().enumerate() {
            let module = modules.entry(d.family).or_insert_with(|| {
                device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(d.entry),
                    source: wgpu::ShaderSource::Wgsl(d.family.source().into()),
                })
            });
            let pipeline = *pipeline_of.entry(d.entry).or_insert_with(|| {
                pipelines.push(device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(d.entry),
                    layout: Some(&pipeline_layout),
                    module,
                    entry_point: Some(d.entry),
                    compilation_options: Default::default(),
                    cache: None,
                }));
                pipelines.len() - 1
            });
            launches.push(Launch { pipeline, slot: (i as u64 * SLOT_BYTES) as u32, groups: d.groups });
        }
        Ok(GpuModel {
            gpu: gpu.clone(),
            plan_inputs: plan.inputs.clone(),
            plan_outputs: plan.outputs.clone(),
            pipelines,
            launches,
            work,
            staging,
            bind_group,
            busy: Cell::new(false),
            traffic: Cell::new(Traffic { uploaded, downloaded: 0 }),
        })
    }

    /// Bytes uploaded (weights and step parameters at setup, then each run's inputs) and
    /// downloaded (each run's outputs) so far.
    pub fn traffic(&self) -> Traffic {
        self.traffic.get()
    }

    fn count(&self, uploaded: usize, downloaded: usize) {
        let t = self.traffic.get();
        self.traffic.set(Traffic { uploaded: t.uploaded + uploaded as u64, downloaded: t.downloaded + downloaded as u64 });
    }

    /// The adapter this model runs on.
    pub fn adapter(&self) -> &str {
        &self.gpu.adapter
    }

    /// Runs the plan on `inputs` (one slice per plan input, in order) and returns its outputs.
    /// Only the inputs go up and only the outputs come down.
    pub async fn run(&self, inputs: &[&[f32]]) -> Result<Vec<Vec<f32>>> {
        if inputs.len() != self.plan_inputs.len() {
            return Err(Error::Input(format!("{} inputs for a plan of {}", inputs.len(), self.plan_inputs.len())));
        }
        for (v, data) in self.plan_inputs.iter().zip(inputs) {
            if v.len() != data.len() {
                return Err(Error::Input(format!("{} values for an input of shape {:?}", data.len(), v.shape)));
            }
        }
        if self.busy.replace(true) {
            return Err(Error::Run("the GPU model is already evaluating".into()));
        }
        let result = self.run_unguarded(inputs).await;
        self.busy.set(false);
        result
    }

    async fn run_unguarded(&self, inputs: &[&[f32]]) -> Result<Vec<Vec<f32>>> {
        let (device, queue) = (&self.gpu.device, &self.gpu.queue);
        for (v, data) in self.plan_inputs.iter().zip(inputs) {
            queue.write_buffer(&self.work, (v.offset * 4) as u64, bytes(data));
            self.count(bytes(data).len(), 0);
        }
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("evaluate") });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("steps"), timestamp_writes: None });
            for l in &self.launches {
                pass.set_pipeline(&self.pipelines[l.pipeline]);
                pass.set_bind_group(0, &self.bind_group, &[l.slot]);
                pass.dispatch_workgroups(l.groups.0, l.groups.1, 1);
            }
        }
        let mut at = 0u64;
        for v in &self.plan_outputs {
            let size = (v.len() * 4) as u64;
            encoder.copy_buffer_to_buffer(&self.work, (v.offset * 4) as u64, &self.staging, at, size);
            at += size;
        }
        queue.submit([encoder.finish()]);
        let slice = self.staging.slice(..at);
        let mapped = Mapped::default();
        let done = mapped.clone();
        slice.map_async(wgpu::MapMode::Read, move |r| done.finish(r.map_err(|e| e.to_string())));
        #[cfg(not(target_arch = "wasm32"))]
        device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Run(format!("waiting for the GPU: {e}")))?;
        mapped.await.map_err(|e| Error::Run(format!("reading the GPU's results: {e}")))?;
        let values: Vec<f32> = {
            let view = slice.get_mapped_range().map_err(|e| Error::Run(format!("reading the GPU's results: {e:?}")))?;
            bytemuck::cast_slice(&view).to_vec()
        };
        self.count(0, values.len() * 4);
        self.staging.unmap();
        let mut outputs = vec![];
        let mut start = 0;
        for v in &self.plan_outputs {
            outputs.push(values[start..start + v.len()].to_vec());
            start += v.len();
        }
        Ok(outputs)
    }

    /// The objective, logits and gradient at `input` with the objective's `parameter`, as
    /// [`GradientModel::evaluate`] gives them.
    pub async fn evaluate(&self, input: &[f32], parameter: &[f32]) -> Result<Evaluation> {
        if input.iter().chain(parameter).any(|v| !v.is_finite()) {
            return Err(Error::Input("the input or parameter holds a non-finite value".into()));
        }
        let mut out = self.run(&[input, parameter]).await?;
        if out.len() != 3 {
            return Err(Error::Model(format!("{} outputs; a gradient graph has 3", out.len())));
        }
        let gradient = out.pop().unwrap_or_default();
        let logits = out.pop().unwrap_or_default();
        Ok(Evaluation { objective: out[0][0], logits, gradient })
    }

    /// [`GpuModel::evaluate`], waiting natively.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn evaluate_blocking(&self, input: &[f32], parameter: &[f32]) -> Result<Evaluation> {
        pollster::block_on(self.evaluate(input, parameter))
    }
}

/// Resolves when wgpu's map callback has run (in the browser, from the event loop).
#[derive(Clone, Default)]
struct Mapped(Arc<Mutex<MapState>>);

/// The callback's outcome once it has run, and who to wake then.
type MapState = (Option<std::result::Result<(), String>>, Option<Waker>);

impl Mapped {
    fn finish(&self, r: std::result::Result<(), String>) {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        s.0 = Some(r);
        if let Some(w) = s.1.take() {
            w.wake();
        }
    }
}

impl Future for Mapped {
    type Output = std::result::Result<(), String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match s.0.take() {
            Some(r) => Poll::Ready(r),
            None => {
                s.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
