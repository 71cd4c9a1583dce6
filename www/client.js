// The page's side of the worker: each request a Promise; a crashed worker is replaced.

export class LabWorker {
  constructor(url = new URL('./worker.js', import.meta.url)) {
    this.url = url;
    this.pending = new Map();
    this.nextId = 1;
    this.loaded = new Set();
    this.start();
  }

  start() {
    this.worker = new Worker(this.url, { type: 'module' });
    this.worker.onmessage = ({ data }) => {
      const request = this.pending.get(data.id);
      if (!request) return;
      if (data.progress) {
        request.onProgress?.(data.progress);
        return;
      }
      this.pending.delete(data.id);
      if (data.fatal) this.restart();
      if (data.error !== undefined) request.reject(new Error(data.error));
      else request.resolve(data.result);
    };
    this.worker.onerror = (event) => {
      event.preventDefault();
      const message = `the worker failed: ${event.message || 'could not start (is pkg/ built?)'}`;
      for (const r of this.pending.values()) r.reject(new Error(message));
      this.pending.clear();
      this.restart();
    };
  }

  restart() {
    this.worker.terminate();
    this.loaded.clear();
    this.start();
  }

  call(op, payload = {}, transfer = [], onProgress = undefined) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onProgress });
      this.worker.postMessage({ id, op, ...payload }, transfer);
    });
  }

  /** Loads ONNX bytes under `key`; resolves to { inputShape, classes }. */
  async load(key, bytes, shape) {
    const info = await this.call('load', { key, bytes, shape }, [bytes]);
    this.loaded.add(key);
    return info;
  }

  /** The objective ('ce' | 'margin' against `target`) and its input gradient at `pixels`. */
  gradient(key, objective, pixels, target) {
    return this.call('gradient', { key, objective, pixels, target });
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

  /** Forward and forward+gradient evaluations per second, each timed for about `ms`. */
  bench(key, pixels, ms) {
    return this.call('bench', { key, pixels, ms });
  }

  /** Classifies pixels in [0,1]; resolves to { label, probabilities, logits }. */
  classify(key, pixels) {
    return this.call('classify', { key, pixels });
  }
}
