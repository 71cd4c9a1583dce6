//! The WebGPU backend: a gradient graph compiled to WGSL dispatches over buffers kept on the GPU.

pub mod attack;
pub mod device;
pub mod kernels;
pub mod plan;
pub mod reference;

pub use device::{Gpu, GpuModel, Traffic};
pub use plan::{compile, Plan};
