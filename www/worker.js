// The module worker that owns the wasm: hands each request to the core's lab (src/lab/), one at a time.
import init, { Lab, lastPanic } from '../pkg/blindspot.js';

// Served, the glue fetches pkg/blindspot_bg.wasm itself. Started from a Blob URL (the single-file
// build) or by a pool that compiled the wasm once for all its workers, the worker is named
// 'blindspot-module' and waits for the page's compiled module instead.
let wasmArrived;
const ready = self.name === 'blindspot-module'
  ? new Promise((resolve, reject) => { wasmArrived = { resolve, reject }; })
  : init();
ready.catch(() => {}); // a failure is reported to each request, not as an unhandled rejection
// The wasm's linear memory, on the worker's global for diagnostics (tests/e2e/memory.test.mjs).
ready.then((exports) => { self.wasmMemory = exports.memory; }, () => {});
const lab = ready.then(() => new Lab());
lab.catch(() => {});

let detected; // Promise of the browser's WebGPU adapter: { available, adapter, fallbackAdapter } or { available: false, reason }

/** Whether this browser exposes a WebGPU adapter, and its name (asked once; the lab chooses). */
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

/** Whether the answer says what the browser has (the backend's status), so the lab needs the adapter. */
const needsAdapter = ({ op, backend }) => op === 'bench' || op === 'backend' || (op === 'load' && backend !== 'auto');

// A pause lets the worker's pending messages (a cancel) in: a message on a channel of its own
// queues behind them, without the 4 ms floor of nested timers.
const channel = new MessageChannel();
const waiting = [];
channel.port1.onmessage = () => waiting.shift()?.();
const pause = () => new Promise((resolve) => { waiting.push(resolve); channel.port2.postMessage(0); });

const inFlight = new Set(); // ids of the requests not answered yet
const dropped = new Set(); // ids the page cancelled: skipped if still queued

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

// A trap inside an asynchronous export surfaces here, outside any request's try: without this,
// its request would never be answered.
for (const type of ['error', 'unhandledrejection']) {
  self.addEventListener(type, (event) => {
    const e = event.error ?? event.reason;
    if (e instanceof WebAssembly.RuntimeError) {
      event.preventDefault();
      trapped(e);
    }
  });
}

/** Answers one request `{ id, op, ...payload }` through the lab; progress is posted as it comes. */
async function answer(data) {
  const { id, op, ...payload } = data;
  if (dropped.delete(id)) {
    inFlight.delete(id);
    return;
  }
  try {
    const core = await lab;
    if (needsAdapter(data)) payload.detected = await detectGpu();
    const result = await core.request(id, { [op]: payload }, (progress) => self.postMessage({ id, progress }), pause);
    if (inFlight.delete(id)) self.postMessage({ id, result });
  } catch (e) {
    if (e instanceof WebAssembly.RuntimeError) trapped(e);
    else if (inFlight.delete(id)) self.postMessage({ id, error: e?.message ?? String(e) });
  } finally {
    dropped.delete(id);
  }
}

// Requests run one at a time, in order (the lab's models and GPU are not shared between two
// running requests); a cancel is handled at once, and the running request stops at its next
// iteration, its models and caches kept.
let queue = Promise.resolve();
self.onmessage = async ({ data }) => {
  if (data.op === 'wasm' && wasmArrived) {
    if (data.error) wasmArrived.reject(new Error(data.error));
    else wasmArrived.resolve(init({ module_or_path: data.module }));
    return;
  }
  if (data.op === 'cancel') {
    if (inFlight.has(data.target)) dropped.add(data.target);
    lab.then((core) => core.cancel(data.target), () => {});
    return;
  }
  inFlight.add(data.id);
  queue = queue.then(() => answer(data));
};
