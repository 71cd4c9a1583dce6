// The page's side of the lab: one pool of workers for every panel, each request a Promise.
import { fetchBytes } from './assets.js';

// The wasm is compiled once per page and the module handed to every worker the pool starts (the
// worker is named 'blindspot-module' and waits for it). The single-file build (scripts/build-single.mjs)
// inlines the worker, bundled with the wasm glue, as source text: a page opened from file:// can
// neither start a worker from a file nor let the worker fetch one, so it starts from a Blob URL.
const inlineWorker = globalThis.BLINDSPOT_INLINE?.worker;
let compiled;
const compiledWasm = () => {
  compiled ??= fetchBytes('pkg/blindspot_bg.wasm').then((bytes) => WebAssembly.compile(bytes));
  return compiled;
};

/** At most this many workers: each holds its own wasm instance and its own copy of the models. */
const MAX_WORKERS = 4;

/** One worker: its pending requests, the models loaded in it. */
class WorkerSlot {
  constructor(pool) {
    this.pool = pool;
    this.pending = new Map(); // id -> { resolve, reject, onProgress }
    this.loaded = new Set();
    this.loading = new Map(); // key -> Promise of the load in flight
    this.start();
  }

  start() {
    const url = inlineWorker
      ? (this.pool.inlineUrl ??= URL.createObjectURL(new Blob([inlineWorker], { type: 'text/javascript' })))
      : new URL('./worker.js', import.meta.url);
    // a classic worker when inlined (the bundle has no imports: a file:// page cannot start a
    // module worker from a Blob URL)
    const worker = new Worker(url, { name: 'blindspot-module', ...(inlineWorker ? {} : { type: 'module' }) });
    compiledWasm().then((module) => worker.postMessage({ op: 'wasm', module }),
      (e) => worker.postMessage({ op: 'wasm', error: `the wasm could not be compiled: ${e?.message ?? e}` }));
    this.worker = worker;
    this.answered = false;
    worker.onmessage = ({ data }) => {
      this.answered = true;
      const request = this.pending.get(data.id);
      if (!request) return;
      if (data.progress) return request.onProgress?.(data.progress);
      if (data.fatal) return this.crashed(data.error);
      this.pending.delete(data.id);
      if (data.error !== undefined) request.reject(new Error(data.error));
      else request.resolve(data.result);
    };
    worker.onerror = (event) => {
      event.preventDefault();
      this.crashed(`the worker failed: ${event.message || 'could not start (is pkg/ built?)'}`);
    };
  }

  /**
   * The worker died (a Rust panic trapped the wasm, or it could not start): its pending requests
   * reject with `message` and a fresh worker starts, its models loaded again on their next use.
   * A worker that dies before it ever answered cannot start at all (no wasm, no wasm SIMD): after
   * 3 of those in a row the pool gives up, and every later request says why.
   */
  crashed(message) {
    for (const r of this.pending.values()) r.reject(new Error(message));
    this.pending.clear();
    this.failedStarts = this.answered ? 0 : (this.failedStarts ?? 0) + 1;
    this.worker.terminate();
    this.loaded.clear();
    this.loading.clear();
    if (this.failedStarts >= 3) this.pool.broken = `blindspot's worker keeps failing (${message}); reload the page to try again`;
    else this.start();
    this.pool.crashed(message, !this.pool.broken);
  }

  send(op, payload, { transfer = [], onProgress } = {}) {
    const id = this.pool.nextId++;
    if (this.pool.broken) return { id, promise: Promise.reject(new Error(this.pool.broken)) };
    const promise = new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onProgress });
      this.worker.postMessage({ id, op, ...payload }, transfer);
    });
    return { id, promise };
  }

  /** Stops request `id`: it rejects at once; the worker stops it at its next iteration, models kept. */
  cancel(id) {
    const request = this.pending.get(id);
    if (!request) return;
    this.pending.delete(id);
    this.worker.postMessage({ op: 'cancel', target: id });
    request.reject(new Error('cancelled'));
  }

  /** Loads model `key` from the pool's copy of its file unless it is loaded here. */
  ensure(key) {
    if (this.loaded.has(key)) return Promise.resolve(null);
    if (!this.loading.has(key)) {
      const spec = this.pool.specs.get(key);
      if (!spec) return Promise.reject(new Error(`model "${key}" is not loaded (it failed to load, or was never picked): pick it again`));
      const bytes = spec.bytes.slice(0); // the worker takes its copy; the pool keeps the file
      const { promise } = this.send('load', { key, bytes, shape: spec.shape, preprocessing: spec.preprocessing, backend: spec.backend }, { transfer: [bytes] });
      const done = promise.then((info) => { this.loaded.add(key); return info; }, (e) => {
        // a model that fails to load (or crashes the worker) is not loaded again behind the page's back
        if (this.pool.specs.get(key) === spec) this.pool.specs.delete(key);
        throw e;
      }).finally(() => this.loading.delete(key));
      this.loading.set(key, done);
    }
    return this.loading.get(key);
  }
}

/** The page's workers: started as work needs them, up to the machine's cores (capped). */
class Pool {
  constructor() {
    this.workers = [];
    this.size = Math.max(1, Math.min(navigator.hardwareConcurrency || 2, MAX_WORKERS));
    this.specs = new Map(); // model key -> { bytes, shape, preprocessing, backend }: loads it in any worker
    this.home = new Map(); // model key -> the worker that loaded it first (its state: backend, activations)
    this.files = new Map(); // shipped model id -> Promise of its file's bytes, fetched once
    this.handles = new Set();
    this.nextId = 1;
  }

  /** An idle worker, else a new one while there is room, else the least busy. */
  idle() {
    const busy = (w) => w.pending.size + w.loading.size;
    const free = this.workers.find((w) => busy(w) === 0);
    if (free) return free;
    if (this.workers.length < this.size) {
      const w = new WorkerSlot(this);
      this.workers.push(w);
      return w;
    }
    return this.workers.reduce((a, b) => (busy(b) < busy(a) ? b : a));
  }

  /** Where a request runs: the model's home worker, or (`spread`) the least busy one. */
  route(key, spread) {
    if (this.workers.length === 0) return this.idle();
    if (key && !spread) {
      if (!this.home.has(key)) this.home.set(key, this.idle());
      return this.home.get(key);
    }
    return this.idle();
  }

  crashed(message, restarted) {
    for (const h of this.handles) h.onCrash?.(message, restarted);
  }
}

let shared;
const pool = () => (shared ??= new Pool());

/**
 * A panel's view of the pool: its own requests (its `cancel()` stops only those) and backend
 * preference; models, files and workers shared with every other panel.
 */
export class PanelLab {
  constructor() {
    this.pool = pool();
    this.pool.handles.add(this);
    this.mine = new Map(); // request id -> worker, until answered
    this.epoch = 0; // counts cancels: a request still waiting for its model's load is dropped too
    // 'cpu' (the default: the tour and other panels keep the CPU), 'webgpu' or 'auto'; sent with
    // the loads of this panel
    this.preference = 'cpu';
  }

  /** Shipped model files by id (a dropped model's bytes may be put here too). */
  get files() { return this.pool.files; }

  /** Which models the pool can serve: `has(key)`, and `delete(key)` to forget one (other bytes coming). */
  get loaded() {
    const { pool: p } = this;
    return {
      has: (key) => p.specs.has(key),
      delete: (key) => {
        p.specs.delete(key);
        p.home.delete(key);
        for (const w of p.workers) w.loaded.delete(key);
      },
    };
  }

  /**
   * Request `op` of the lab's protocol (src/lab/protocol.rs) with `payload`; a payload's `key`
   * names a model, loaded first in the worker that answers when it is not there yet. `spread`
   * sends it to the least busy worker (independent requests in parallel); `onProgress` receives
   * the request's progress events.
   */
  async call(op, payload = {}, { transfer = [], onProgress, spread = false } = {}) {
    if (this.pool.broken) throw new Error(this.pool.broken);
    const epoch = this.epoch;
    const worker = this.pool.route(payload.key, spread);
    if (payload.key && op !== 'load' && this.pool.specs.has(payload.key)) await worker.ensure(payload.key);
    if (epoch !== this.epoch) throw new Error('cancelled');
    const { id, promise } = worker.send(op, payload, { transfer, onProgress });
    this.mine.set(id, worker);
    try {
      return await promise;
    } catch (e) {
      // a trap: the pool has put a new worker in its place (crashed() above), so the way out is
      // to ask again
      if (/^internal error/.test(e.message)) {
        throw new Error(`${e.message}; blindspot's worker was restarted: try again, or pick another model (and report it if it repeats)`);
      }
      throw e;
    } finally {
      this.mine.delete(id);
    }
  }

  /** How many requests the pool answers at once (its workers, started as needed). */
  get parallel() { return this.pool.size; }

  /**
   * Loads ONNX bytes under `key` (the pool keeps a copy, to load it in other workers); resolves
   * to { inputShape, classes, output, backend... }. `preprocessing` (a query such as
   * "layout=nhwc&range=imagenet") is wired in front of the input when given.
   */
  async load(key, bytes, shape, preprocessing) {
    const p = this.pool;
    this.loaded.delete(key);
    p.specs.set(key, { bytes: bytes.slice(0), shape, preprocessing, backend: this.preference });
    const worker = p.route(key, false);
    const info = await worker.ensure(key);
    return info;
  }

  /**
   * Loads a shipped model ({ id, file, input } of models/models.json) unless the pool has it;
   * its file is fetched once. Resolves to true when it loaded the model now.
   */
  async ensure(model) {
    const p = this.pool;
    const worker = p.specs.has(model.id) ? p.route(model.id, false) : null;
    if (worker?.loaded.has(model.id)) return false;
    if (!p.files.has(model.id)) {
      const fetched = fetchBytes(`models/${model.file}`);
      p.files.set(model.id, fetched);
      fetched.catch(() => p.files.delete(model.id)); // a failed fetch is tried again next time
    }
    if (!p.specs.has(model.id)) {
      p.specs.set(model.id, { bytes: await p.files.get(model.id), shape: model.input?.shape, preprocessing: model.preprocessing, backend: this.preference });
    }
    await p.route(model.id, false).ensure(model.id);
    return true;
  }

  /** Frees model `key` in every worker (a dropped model loaded again with other settings). */
  async unload(key) {
    const holders = this.pool.workers.filter((w) => w.loaded.has(key));
    this.loaded.delete(key);
    await Promise.all(holders.map((w) => w.send('unload', { key }).promise));
  }

  /**
   * The backend: 'cpu', 'webgpu' or 'auto' (WebGPU when the browser has an adapter, else the
   * CPU), applied to loaded model `key` (a GPU failure falls back to the CPU). Resolves to
   * { preference, available, adapter, reason, backend, ... }: `backend` is what `key` runs on,
   * `reason` why it is not WebGPU; `adapter` (or `reason` when not `available`) is the browser's.
   */
  setBackend(preference, key = undefined) {
    this.preference = preference;
    const spec = key && this.pool.specs.get(key);
    if (spec) spec.backend = preference;
    return this.call('backend', { preference, key });
  }

  /** Stops this panel's requests: each rejects at once, and everything loaded stays loaded. */
  cancel() {
    this.epoch++;
    for (const [id, worker] of this.mine) worker.cancel(id);
    this.mine.clear();
  }
}

/** The lab for a panel (see PanelLab). */
export const panelLab = () => new PanelLab();
