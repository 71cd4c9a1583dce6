// The automatic backend choice, apart from the worker so that it can be tested without a GPU.

/**
 * Where a model runs for a `preference` ('cpu' | 'webgpu' | 'auto') given what the browser has
 * (`gpu`: { available, adapter, reason, fallbackAdapter } as the worker detects it).
 * 'auto' takes WebGPU whenever the browser has a hardware adapter, else the CPU; a software
 * ("fallback") adapter such as SwiftShader is the CPU emulating a GPU, tens of times slower than
 * the wasm path, so 'auto' leaves it alone (choosing 'webgpu' still uses it).
 * Returns { backend: 'cpu' | 'webgpu', reason } (reason: why not WebGPU, or null).
 */
export function chooseBackend(preference, gpu) {
  if (preference === 'cpu') return { backend: 'cpu', reason: 'CPU chosen' };
  if (!gpu?.available) return { backend: 'cpu', reason: `WebGPU unavailable: ${gpu?.reason ?? 'not detected'}` };
  if (preference === 'auto' && gpu.fallbackAdapter) {
    return { backend: 'cpu', reason: `automatic: ${gpu.adapter} is a software WebGPU adapter (the GPU emulated on the CPU), slower than the CPU path; pick WebGPU to use it anyway` };
  }
  return { backend: 'webgpu', reason: null };
}
