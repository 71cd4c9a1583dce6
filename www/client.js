// The page's side of the worker: each request a Promise; a crashed worker is replaced.
import { fetchBytes } from './assets.js';

// The single-file build (scripts/build-single.mjs) inlines the worker, bundled with the wasm glue,
// as source text, and the wasm among its assets: a page opened from file:// can neither start a
// worker from a file nor let the worker fetch one. The worker then starts from a Blob URL, and the
// page compiles the wasm once and hands the module to every worker it starts (the first message).
const inlineWorker = globalThis.BLINDSPOT_INLINE?.worker;
let inlineUrl;
let inlineModule;

export class LabWorker {
  constructor(url = new URL('./worker.js', import.meta.url)) {
    this.url = url;
    this.pending = new Map();
    this.nextId = 1;
    this.loaded = new Set();
    this.files = new Map(); // model id -> Promise of its file's bytes (see ensure)
    // 'cpu' (the default: the tour and other panels keep the CPU), 'webgpu' or 'auto'; sent with
    // every load, so a restarted worker keeps it
    this.preference = 'cpu';
    this.start();
  }

  start() {
    if (inlineWorker) {
      inlineUrl ??= URL.createObjectURL(new Blob([inlineWorker], { type: 'text/javascript' }));
      inlineModule ??= fetchBytes('pkg/blindspot_bg.wasm').then((bytes) => WebAssembly.compile(bytes));
      // A classic worker (the bundle has no imports): a file:// page cannot start a module worker
      // from a Blob URL. The name tells worker.js to wait for the module, not fetch the wasm.
      const worker = new Worker(inlineUrl, { name: 'blindspot-inline' });
      inlineModule.then((module) => worker.postMessage({ op: 'wasm', module }),
        (e) => worker.postMessage({ op: 'wasm', error: `the wasm could not be compiled: ${e?.message ?? e}` }));
      this.worker = worker;
    } else {
      this.worker = new Worker(this.url, { type: 'module' });
    }
    this.answered = false;
    this.worker.onmessage = ({ data }) => {
      this.answered = true;
      const request = this.pending.get(data.id);
      if (!request) return;
      if (data.progress) {
        request.onProgress?.(data.progress);
        return;
      }
      if (data.fatal) {
        this.crashed(data.error);
        return;
      }
      this.pending.delete(data.id);
      if (data.error !== undefined) request.reject(new Error(data.error));
      else request.resolve(data.result);
    };
    this.worker.onerror = (event) => {
      event.preventDefault();
      this.crashed(`the worker failed: ${event.message || 'could not start (is pkg/ built?)'}`);
    };
  }

  /**
   * The worker died (a Rust panic trapped the wasm, or the worker could not start): every pending
   * request rejects with `message`, and a fresh worker starts. A worker that dies before it ever
   * answered cannot start at all (no wasm, a browser without wasm SIMD): after 3 of those in a row
   * the LabWorker gives up rather than restart forever, and every later request says why.
   * `onCrash(message, willRestart)` lets the page say so and load its model again.
   */
  crashed(message) {
    for (const r of this.pending.values()) r.reject(new Error(message));
    this.pending.clear();
    this.failedStarts = this.answered ? 0 : (this.failedStarts ?? 0) + 1;
    if (this.failedStarts >= 3) {
      this.broken = `blindspot's worker keeps failing (${message}); reload the page to try again`;
      this.worker.terminate();
      this.loaded.clear();
    } else {
      this.restart();
    }
    this.onCrash?.(message, !this.broken);
  }

  restart() {
    this.worker.terminate();
    this.loaded.clear();
    this.start();
  }

  call(op, payload = {}, transfer = [], onProgress = undefined) {
    if (this.broken) return Promise.reject(new Error(this.broken));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onProgress });
      this.worker.postMessage({ id, op, ...payload }, transfer);
    });
  }

  /**
   * Loads a shipped model ({ id, file, input } of models/models.json) under its id unless it is
   * loaded; its file is fetched once and kept, to load again after a cancel restarts the worker.
   * Resolves to true when it (re)loaded the model.
   */
  async ensure(model) {
    if (this.loaded.has(model.id)) return false;
    if (!this.files.has(model.id)) {
      const fetched = fetchBytes(`models/${model.file}`);
      this.files.set(model.id, fetched);
      fetched.catch(() => this.files.delete(model.id)); // a failed fetch is tried again next time
    }
    await this.load(model.id, (await this.files.get(model.id)).slice(0), model.input?.shape, model.preprocessing);
    return true;
  }

  /**
   * Loads ONNX bytes under `key`; resolves to { inputShape, classes, output }. `preprocessing`
   * (a query such as "layout=nhwc&range=imagenet") is wired in front of the input when given.
   */
  async load(key, bytes, shape, preprocessing) {
    const info = await this.call('load', { key, bytes, shape, backend: this.preference, preprocessing }, [bytes]);
    this.loaded.add(key);
    return info;
  }

  /**
   * The backend: 'cpu', 'webgpu' or 'auto' (WebGPU when the browser has an adapter, else the
   * CPU), applied to loaded model `key` (a GPU failure falls back to the CPU). Resolves to
   * { preference, available, adapter, reason, backend, ... }: `backend` is what `key` runs on,
   * `reason` why it is not WebGPU; `adapter` (or `reason` when not `available`) is the browser's.
   */
  setBackend(preference, key = undefined) {
    this.preference = preference;
    return this.call('backend', { preference, key });
  }

  /**
   * The objective ('ce' | 'margin' against `target`) and its input gradient at `pixels`, on the
   * model's backend or on `backend` ('cpu' | 'webgpu') when given; `backend` in the answer says which.
   */
  gradient(key, objective, pixels, target, backend = undefined) {
    return this.call('gradient', { key, objective, pixels, target, backend });
  }

  /**
   * The paper's L-BFGS attack towards `target` (or any other class when null); `onProgress`
   * receives { c, iteration, loss, distortion }. Resolves to the outcome; `cancel()` rejects it.
   */
  attack(key, pixels, target, options = {}, onProgress = undefined) {
    return this.call('attack', { key, pixels, target, ...options }, [], onProgress);
  }

  /** FGSM ({ steps: 0 }) or PGD ({ steps, l2 }) of radius `epsilon` towards `target` (null: any). */
  baseline(key, pixels, target, options = {}) {
    return this.call('baseline', { key, pixels, target, ...options });
  }

  /** A grey drawing (width x height, ink high) as a 28x28 MNIST-style digit. */
  mnistLike(pixels, width, height) {
    return this.call('mnistLike', { pixels, width, height });
  }

  /** Frees loaded model `key` in the worker (its file stays known, to load again). */
  unload(key) {
    this.loaded.delete(key);
    return this.call('unload', { key });
  }

  /** What an ONNX file suggests for its input: { query, shape, channels } (a copy of `bytes` is sent). */
  suggest(bytes) {
    const copy = bytes.slice(0);
    return this.call('suggest', { bytes: copy }, [copy]);
  }

  /** RGBA bytes (ImageData, width x height) as a model input of `channels` planes (1 grey, 3 RGB). */
  planes(rgba, width, height, channels) {
    return this.call('planes', { rgba, width, height, channels });
  }

  /** An RGBA image (ImageData bytes) of a digit as a 28x28 MNIST-style digit; rejects blank images. */
  mnistFromRgba(rgba, width, height) {
    return this.call('mnistFromRgba', { rgba, width, height });
  }

  /** The paper tables' seeded target for each digit (indices into the test set, with labels). */
  paperTargets(labels, indices, seed = 2013, classes = 10) {
    return this.call('paperTargets', { labels: Array.from(labels), indices, seed, classes });
  }

  /** Each adversarial moved along its perturbation from its original to distortion `to`. */
  amplified(originals, adversarials, to) {
    return this.call('amplified', { originals, adversarials, to });
  }

  /** Clipped Gaussian noise of each stddev on `images`, one seeded stream: [stddev][image][pixel]. */
  paperNoise(images, stddevs, seed = 2013) {
    return this.call('paperNoise', { images, stddevs, seed });
  }

  /** The model's named tensors: [{ name, shape }] (shape for one image). */
  tensors(key) {
    return this.call('tensors', { key });
  }

  /** Adds images to the activations of `tensor` kept in the worker as `set`: { count, len }. */
  activations(key, tensor, set, images, fresh = false) {
    return this.call('activations', { key, tensor, set, images, fresh });
  }

  /** The top `k` images of a set for unit `unit` and for the random direction of `seed`. */
  rank(key, tensor, set, unit, seed, k) {
    return this.call('rank', { key, tensor, set, unit, seed, k });
  }

  /** Activation maximisation from `start` for unit `unit` (or the direction of `seed` when null). */
  maximise(key, tensor, { unit = null, seed = 1, start, iterations = 50 }, onProgress = undefined) {
    return this.call('maximise', { key, tensor, unit, seed, start, iterations }, [], onProgress);
  }

  /**
   * The paper's Table 5 for a loaded model: { rows, product, unavailable, excluded, markdown };
   * `onProgress` receives { done, total, node } before each linear layer is measured.
   */
  lipschitz(key, onProgress = undefined) {
    return this.call('lipschitz', { key }, [], onProgress);
  }

  /** Gaussian noise of `distortion` (seeded) on `pixels`, classified, as an attack outcome. */
  noise(key, pixels, target, distortion, seed = 1) {
    return this.call('noise', { key, pixels, target, distortion, seed });
  }

  /**
   * Stops whatever the worker is computing: a running wasm call cannot be interrupted, so the
   * worker is replaced (models are loaded again on their next use) and pending requests reject.
   */
  cancel() {
    for (const r of this.pending.values()) r.reject(new Error('cancelled'));
    this.pending.clear();
    this.restart();
  }

  /**
   * Forward and forward+gradient evaluations per second on the CPU, each timed for about `ms`,
   * and forward+gradient on WebGPU (`gpuGradient`, null without it) when the browser has it.
   */
  bench(key, pixels, ms) {
    return this.call('bench', { key, pixels, ms });
  }

  /** Classifies pixels in [0,1]; resolves to { label, probabilities, logits }. */
  classify(key, pixels) {
    return this.call('classify', { key, pixels });
  }
}
