// The module worker that owns the wasm: loads models and classifies, one message at a time.
import init, {
  Model, amplified, lastPanic, suggestPreprocessing, mnistFromRgba, mnistLike, paperNoise, paperTarget, planesFromRgba, randomDirection,
  unitDirection,
} from '../pkg/blindspot.js';
import { chooseBackend } from './backend.js';

// Served, the glue fetches pkg/blindspot_bg.wasm itself. Started by the single-file build's page
// (named 'blindspot-inline', from a Blob URL), it waits for the page's compiled module instead.
let wasmArrived;
const ready = self.name === 'blindspot-inline'
  ? new Promise((resolve, reject) => { wasmArrived = { resolve, reject }; })
  : init();
ready.catch(() => {}); // a failure is reported to each request, not as an unhandled rejection
// The wasm's linear memory, on the worker's global for diagnostics (tests/e2e/memory.test.mjs).
ready.then((exports) => { self.wasmMemory = exports.memory; }, () => {});
const models = new Map(); // key -> Model
const activationSets = new Map(); // `${key}|${tensor}|${set}` -> Activations (Property 1)

// The backend: 'cpu', 'webgpu', or 'auto' (WebGPU when the browser has a hardware adapter, see
// www/backend.js), set by the page. Each model records the backend it runs on and, when it fell
// back to the CPU, why.
let preference = 'cpu';
const backends = new Map(); // key -> { backend: 'cpu' | 'webgpu', reason }
let detected; // Promise of { available, adapter, reason }

/** Whether this browser exposes a WebGPU adapter, and its name (asked once). */
function detectGpu() {
  detected ??= (async () => {
    if (!self.navigator?.gpu) return { available: false, reason: 'this browser has no WebGPU' };
    try {
      const adapter = await navigator.gpu.requestAdapter();
      if (!adapter) return { available: false, reason: 'no adapter (no usable GPU, or WebGPU is off)' };
      const info = adapter.info ?? {};
      const software = Boolean(info.isFallbackAdapter ?? adapter.isFallbackAdapter);
      const name = info.description || [info.vendor, info.architecture, info.device].filter(Boolean).join(' ') || 'unnamed adapter';
      // a software adapter (SwiftShader) emulates the GPU on the CPU: say so beside its timings
      return { available: true, adapter: software ? `${name} (software)` : name, fallbackAdapter: software };
    } catch (e) {
      return { available: false, reason: `requesting a WebGPU adapter failed: ${e?.message ?? e}` };
    }
  })();
  return detected;
}

// One GPU evaluation at a time (a GpuModel refuses a second concurrent one).
let gpuQueue = Promise.resolve();
function onGpu(work) {
  const result = gpuQueue.then(work);
  gpuQueue = result.catch(() => {});
  return result;
}

/** Puts model `key` on the backend the preference asks for (www/backend.js); a GPU failure falls back to the CPU. */
async function applyBackend(key) {
  const model = loaded(key);
  const choice = chooseBackend(preference, preference === 'cpu' ? null : await detectGpu());
  if (choice.backend === 'cpu') {
    model.useCpu();
    backends.set(key, choice);
    return;
  }
  try {
    await onGpu(() => model.useGpu());
  } catch (e) {
    fallBack(key, e);
    return;
  }
  backends.set(key, choice);
}

/** Records a GPU failure for model `key` and moves it to the CPU. */
function fallBack(key, e) {
  models.get(key)?.useCpu();
  backends.set(key, { backend: 'cpu', reason: `WebGPU failed for this model, so it runs on the CPU: ${e?.message ?? e}`, failed: true });
}

/** `onGpu(work)` when model `key` is on WebGPU; else, or when that fails (fallback recorded), `cpu()`. */
async function gpuOrCpu(key, work, cpu) {
  if (backends.get(key)?.backend === 'webgpu') {
    try {
      return { value: await onGpu(work), backend: 'webgpu' };
    } catch (e) {
      if (e instanceof WebAssembly.RuntimeError) throw e;
      fallBack(key, e);
    }
  }
  return { value: cpu(), backend: 'cpu' };
}

/** What the page shows: the preference, the browser's adapter, and model `key`'s backend. */
async function backendStatus(key) {
  const gpu = await detectGpu();
  const mine = key ? backends.get(key) : undefined;
  return { preference, ...gpu, backend: mine?.backend ?? 'cpu', reason: mine?.reason ?? null, wgpuAdapter: key && models.get(key)?.adapter };
}

/** Calls per second of the async `run`, timed over at least `ms` milliseconds after one warm-up. */
async function rateAsync(run, ms) {
  await run();
  let n = 0;
  const start = performance.now();
  while (performance.now() - start < ms) { await run(); n++; }
  return n / ((performance.now() - start) / 1000);
}

function loaded(key) {
  const model = models.get(key);
  if (!model) throw new Error(`model "${key}" is not loaded`);
  return model;
}

/** A plain object of an attack's result (and the wasm object freed). */
function outcome(a) {
  const result = {
    success: a.success, label: a.label, probabilities: Array.from(a.probabilities),
    adversarial: Array.from(a.adversarial), distortion: a.distortion, l2: a.l2, linf: a.linf,
    iterations: a.iterations, gradientEvaluations: a.gradientEvaluations, seconds: a.seconds, c: a.c,
  };
  a.free();
  return result;
}

/** Evaluations per second of `run`, timed over at least `ms` milliseconds after one warm-up. */
function rate(run, ms) {
  run();
  let n = 0;
  const start = performance.now();
  while (performance.now() - start < ms) { run(); n++; }
  return n / ((performance.now() - start) / 1000);
}

const ops = {
  async load({ key, bytes, shape, backend, preprocessing }) {
    const model = new Model(new Uint8Array(bytes), shape ? Uint32Array.from(shape) : undefined, preprocessing ?? undefined);
    models.get(key)?.free();
    models.set(key, model);
    if (backend) preference = backend;
    const about = { inputShape: Array.from(model.inputShape), classes: model.classes, output: model.output };
    if (preference === 'auto') {
      // The automatic choice (asking for an adapter, racing CPU and GPU: 0.2-0.5 s) is not worth
      // delaying the first classification for: the model starts on the CPU, and the page asks
      // for the choice (the 'backend' op) once its first answer is on show.
      model.useCpu();
      backends.set(key, { backend: 'cpu', reason: 'choosing the backend…' });
      return { ...about, preference, backend: 'cpu', pending: true };
    }
    await applyBackend(key);
    return { ...about, ...(await backendStatus(key)) };
  },
  /** Frees model `key` (a dropped model loaded again with other settings replaces it). */
  unload({ key }) {
    models.get(key)?.free();
    models.delete(key);
    backends.delete(key);
    return true;
  },
  /** Sets the backend preference ('cpu' | 'webgpu' | 'auto') and applies it to model `key`. */
  async backend({ preference: wanted, key }) {
    preference = wanted;
    if (key && models.has(key)) await applyBackend(key);
    return backendStatus(key);
  },
  classify({ key, pixels }) {
    const p = loaded(key).classify(pixels);
    const result = { label: p.label, probabilities: Array.from(p.probabilities), logits: Array.from(p.logits) };
    p.free();
    return result;
  },
  /** On the model's backend, or on `backend` when given ('cpu' | 'webgpu'); says which ran it. */
  async gradient({ key, objective, pixels, target, backend }) {
    const model = loaded(key);
    const run = backend === 'cpu' ? { value: model.gradient(objective, pixels, target), backend: 'cpu' }
      : backend === 'webgpu' ? { value: await onGpu(() => model.gradientGpu(objective, pixels, target)), backend: 'webgpu' }
        : await gpuOrCpu(key, () => model.gradientGpu(objective, pixels, target), () => model.gradient(objective, pixels, target));
    const g = run.value;
    const result = { objective: g.objective, logits: Array.from(g.logits), gradient: Array.from(g.gradient), backend: run.backend };
    g.free();
    return result;
  },
  /** The paper's L-BFGS attack on the model's backend; progress goes to the page at most every 50 ms. */
  async attack({ id, key, pixels, target, maxIterations = 150, cSteps = 5 }) {
    let last = 0;
    const report = (c, iteration, loss, distortion) => {
      const now = performance.now();
      if (now - last > 50) {
        last = now;
        self.postMessage({ id, progress: { c, iteration, loss, distortion } });
      }
      return true;
    };
    const model = loaded(key);
    const run = await gpuOrCpu(key,
      () => model.attackGpu(pixels, target ?? -1, maxIterations, cSteps, report),
      () => model.attack(pixels, target ?? -1, maxIterations, cSteps, report));
    return { ...outcome(run.value), backend: run.backend };
  },
  /** FGSM (steps 0) or PGD (L-infinity, or L2 when `l2`) of radius `epsilon`. */
  baseline({ key, pixels, target, epsilon = 0.1, steps = 0, l2 = false }) {
    return outcome(loaded(key).baseline(pixels, target ?? -1, epsilon, steps, l2));
  },
  /** A drawing made to look like an MNIST digit (28x28, centred by mass). */
  mnistLike({ pixels, width, height }) {
    return Array.from(mnistLike(pixels, width, height));
  },
  /** An RGBA image of a digit (photo, scan, screenshot) as an MNIST-style digit. */
  mnistFromRgba({ rgba, width, height }) {
    return Array.from(mnistFromRgba(rgba, width, height));
  },
  /** What a dropped file suggests for its input: { query, shape, channels } (src/preprocess.rs). */
  suggest({ bytes }) {
    return JSON.parse(suggestPreprocessing(new Uint8Array(bytes)));
  },
  /** An RGBA image (a photo drawn at the model's size) as the model's input planes. */
  planes({ rgba, width, height, channels }) {
    return planesFromRgba(rgba, width, height, channels);
  },
  /** The tables' seeded targets for digits `indices` with `labels` (as `blindspot table1`). */
  paperTargets({ labels, indices, seed = 2013, classes = 10 }) {
    return indices.map((index, k) => paperTarget(labels[k], index, BigInt(seed), classes));
  },
  /** Adversarial examples moved along their perturbation to distortion `to` (the paper's Table 3). */
  amplified({ originals, adversarials, to }) {
    return originals.map((x, k) => Array.from(amplified(Float32Array.from(x), Float32Array.from(adversarials[k]), to)));
  },
  /** Clipped Gaussian noise rows, one per stddev, from one seeded stream (as `blindspot table2`). */
  paperNoise({ images, stddevs, seed = 2013 }) {
    const size = images[0]?.length ?? 0;
    const flat = new Float32Array(images.length * size);
    images.forEach((x, k) => flat.set(x, k * size));
    const out = paperNoise(flat, size, Float64Array.from(stddevs), BigInt(seed));
    return stddevs.map((_, s) => images.map((_, k) => Array.from(out.subarray((s * images.length + k) * size, (s * images.length + k + 1) * size))));
  },
  /** The paper's Table 5 (spectral bounds) for the model; progress per linear layer. */
  lipschitz({ id, key }) {
    return loaded(key).lipschitz((done, total, node) => {
      self.postMessage({ id, progress: { done, total, node } });
    });
  },
  /** Gaussian noise of the given distortion (seeded), classified. */
  noise({ key, pixels, target, distortion, seed = 1 }) {
    return outcome(loaded(key).noise(pixels, target ?? -1, distortion, BigInt(seed)));
  },
  /** The model's named tensors (input left out) with their shapes for one image. */
  tensors({ key }) {
    const model = loaded(key);
    return model.tensorNames().map((name) => ({ name, shape: Array.from(model.tensorShape(name)) }));
  },
  /**
   * Adds `images` (laid end to end) to the activations of `tensor` kept under `set`, starting the
   * set when `fresh`; resolves to how many images it holds. The activations stay in the worker.
   */
  activations({ key, tensor, set, images, fresh = false }) {
    const id = `${key}|${tensor}|${set}`;
    if (fresh || !activationSets.has(id)) {
      activationSets.get(id)?.free();
      activationSets.set(id, loaded(key).activations(tensor));
    }
    const acts = activationSets.get(id);
    if (images?.length) acts.add(images);
    return { count: acts.count, len: acts.len };
  },
  /** The `k` images of a set maximising unit `unit` and the random direction of `seed`. */
  rank({ key, tensor, set, unit, seed, k = 8 }) {
    const acts = activationSets.get(`${key}|${tensor}|${set}`);
    if (!acts) throw new Error(`no activations of "${tensor}" yet`);
    const pairs = (flat) => Array.from({ length: flat.length / 2 }, (_, i) => ({ index: flat[2 * i], value: flat[2 * i + 1] }));
    return {
      unit: pairs(acts.top(unitDirection(acts.len, unit), k)),
      direction: pairs(acts.top(randomDirection(acts.len, BigInt(seed)), k)),
    };
  },
  /** Gradient ascent on <phi(x), e_unit> (or the direction of `seed` when unit is null) in the box. */
  maximise({ id, key, tensor, unit, seed, start, iterations = 50 }) {
    const model = loaded(key);
    const len = Array.from(model.tensorShape(tensor)).reduce((a, b) => a * b, 1);
    const direction = unit === null || unit === undefined ? randomDirection(len, BigInt(seed)) : unitDirection(len, unit);
    let last = 0;
    const found = model.maximise(tensor, direction, Float32Array.from(start), iterations, (iteration, value) => {
      const now = performance.now();
      if (now - last > 50) {
        last = now;
        self.postMessage({ id, progress: { iteration, value } });
      }
      return true;
    });
    const result = { image: Array.from(found.image), value: found.value, startValue: found.startValue, iterations: found.iterations };
    found.free();
    return result;
  },
  /**
   * Forward-only and forward+gradient evaluations per second on `pixels` on the CPU, and
   * forward+gradient on WebGPU when this model runs there (`gpuGradient`, else null).
   */
  async bench({ key, pixels, ms = 1000 }) {
    const model = loaded(key);
    const forward = rate(() => model.classify(pixels).free(), ms);
    const gradient = rate(() => model.gradient('ce', pixels, 0).free(), ms);
    // WebGPU is timed whenever the browser has it, even with the CPU chosen (then set up, timed
    // and left unused), unless it already failed for this model
    let gpuGradient = null;
    const mine = backends.get(key);
    if ((await detectGpu()).available && !mine?.failed) {
      try {
        gpuGradient = await onGpu(async () => {
          if (mine?.backend !== 'webgpu') {
            await model.useGpu();
            model.useCpu();
          }
          return rateAsync(async () => (await model.gradientGpu('ce', pixels, 0)).free(), ms);
        });
      } catch (e) {
        fallBack(key, e);
      }
    }
    return { forward, gradient, gpuGradient, ...(await backendStatus(key)) };
  },
};

const inFlight = new Set(); // ids of the requests not answered yet

/** A trap's message: the Rust panic behind it when there was one. */
function trapMessage(e) {
  let panic;
  try { panic = lastPanic(); } catch { /* the module is gone too */ }
  if (!panic) return `internal error: ${e?.message ?? e}`;
  // "panicked at src/file.rs:15:18:\nwhat" -> "what (at src/file.rs:15:18)"
  const [, where, what] = panic.match(/^panicked at ([^\n]*?):?\n([\s\S]*)$/) ?? [];
  return where ? `internal error: ${what.trim()} (at ${where.replace(/^.*\/(tract-[\w-]+-[\d.]+\/)/, '$1')})` : `internal error: ${panic}`;
}

/**
 * A Rust panic traps the module, and a trapped module must not be used again: every request in
 * flight gets the panic's message, and `fatal` tells the page to start a fresh worker.
 */
function trapped(e) {
  const error = trapMessage(e);
  for (const id of inFlight) self.postMessage({ id, error, fatal: true });
  inFlight.clear();
}

// A trap inside an asynchronous export (the WebGPU paths) surfaces here, outside any request's
// try: without this, its request would never be answered.
self.addEventListener('error', (event) => {
  if (event.error instanceof WebAssembly.RuntimeError) {
    event.preventDefault();
    trapped(event.error);
  }
});
self.addEventListener('unhandledrejection', (event) => {
  if (event.reason instanceof WebAssembly.RuntimeError) {
    event.preventDefault();
    trapped(event.reason);
  }
});

self.onmessage = async ({ data }) => {
  const { id, op } = data;
  if (op === 'wasm' && wasmArrived) {
    if (data.error) wasmArrived.reject(new Error(data.error));
    else wasmArrived.resolve(init({ module_or_path: data.module }));
    return;
  }
  inFlight.add(id);
  try {
    await ready;
    if (!ops[op]) throw new Error(`unknown request "${op}"`);
    const result = await ops[op](data);
    if (inFlight.delete(id)) self.postMessage({ id, result });
  } catch (e) {
    if (e instanceof WebAssembly.RuntimeError) trapped(e);
    else if (inFlight.delete(id)) self.postMessage({ id, error: e?.message ?? String(e) });
  }
};
