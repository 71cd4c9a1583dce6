// The module worker that owns the wasm: loads models and classifies, one message at a time.
import init, { Model, amplified, lastPanic, mnistFromRgba, mnistLike, paperNoise, paperTarget } from '../pkg/blindspot.js';

// Served, the glue fetches pkg/blindspot_bg.wasm itself. Started by the single-file build's page
// (named 'blindspot-inline', from a Blob URL), it waits for the page's compiled module instead.
let wasmArrived;
const ready = self.name === 'blindspot-inline'
  ? new Promise((resolve, reject) => { wasmArrived = { resolve, reject }; })
  : init();
ready.catch(() => {}); // a failure is reported to each request, not as an unhandled rejection
const models = new Map(); // key -> Model

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
  load({ key, bytes, shape }) {
    const model = new Model(new Uint8Array(bytes), shape ? Uint32Array.from(shape) : undefined);
    models.get(key)?.free();
    models.set(key, model);
    return { inputShape: Array.from(model.inputShape), classes: model.classes };
  },
  classify({ key, pixels }) {
    const p = loaded(key).classify(pixels);
    const result = { label: p.label, probabilities: Array.from(p.probabilities), logits: Array.from(p.logits) };
    p.free();
    return result;
  },
  gradient({ key, objective, pixels, target }) {
    const g = loaded(key).gradient(objective, pixels, target);
    const result = { objective: g.objective, logits: Array.from(g.logits), gradient: Array.from(g.gradient) };
    g.free();
    return result;
  },
  /** The paper's L-BFGS attack; progress goes to the page at most every 50 ms. */
  attack({ id, key, pixels, target, maxIterations = 150, cSteps = 5 }) {
    let last = 0;
    const a = loaded(key).attack(pixels, target ?? -1, maxIterations, cSteps, (c, iteration, loss, distortion) => {
      const now = performance.now();
      if (now - last > 50) {
        last = now;
        self.postMessage({ id, progress: { c, iteration, loss, distortion } });
      }
      return true;
    });
    return outcome(a);
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
  /** Gaussian noise of the given distortion (seeded), classified. */
  noise({ key, pixels, target, distortion, seed = 1 }) {
    return outcome(loaded(key).noise(pixels, target ?? -1, distortion, BigInt(seed)));
  },
  /** Forward-only and forward+gradient evaluations per second on `pixels`. */
  bench({ key, pixels, ms = 1000 }) {
    const model = loaded(key);
    const forward = rate(() => model.classify(pixels).free(), ms);
    const gradient = rate(() => model.gradient('ce', pixels, 0).free(), ms);
    return { forward, gradient };
  },
};

self.onmessage = async ({ data }) => {
  const { id, op } = data;
  if (op === 'wasm' && wasmArrived) {
    if (data.error) wasmArrived.reject(new Error(data.error));
    else wasmArrived.resolve(init({ module_or_path: data.module }));
    return;
  }
  try {
    await ready;
    if (!ops[op]) throw new Error(`unknown request "${op}"`);
    self.postMessage({ id, result: ops[op](data) });
  } catch (e) {
    // A Rust panic traps the module: say so, and let the page start a fresh worker.
    const panic = e instanceof WebAssembly.RuntimeError ? lastPanic() : undefined;
    const message = panic ? `internal error: ${panic}` : (e?.message ?? String(e));
    self.postMessage({ id, error: message, fatal: e instanceof WebAssembly.RuntimeError });
  }
};
