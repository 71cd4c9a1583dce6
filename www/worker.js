// The module worker that owns the wasm: loads models and classifies, one message at a time.
import init, { Model, lastPanic, mnistLike } from '../pkg/blindspot.js';

const ready = init();
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
