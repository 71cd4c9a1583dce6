// The module worker that owns the wasm: loads models and classifies, one message at a time.
import init, { Model, lastPanic } from '../pkg/blindspot.js';

const ready = init();
const models = new Map(); // key -> Model

const ops = {
  load({ key, bytes, shape }) {
    const model = new Model(new Uint8Array(bytes), shape ? Uint32Array.from(shape) : undefined);
    models.get(key)?.free();
    models.set(key, model);
    return { inputShape: Array.from(model.inputShape), classes: model.classes };
  },
  classify({ key, pixels }) {
    const model = models.get(key);
    if (!model) throw new Error(`model "${key}" is not loaded`);
    const p = model.classify(pixels);
    const result = { label: p.label, probabilities: Array.from(p.probabilities), logits: Array.from(p.logits) };
    p.free();
    return result;
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
