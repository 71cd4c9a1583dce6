// The benchmark page: blindspot against TensorFlow.js in the same browser, on the same weights.
// Runs on the main thread (both engines alike), fills the tables, and leaves the numbers in
// window.benchResults for scripts/bench.mjs.
import init, { Lab, simdPeak, simdPeakFlops } from '../pkg/blindspot.js';
import { parseDigitPack } from './digits.js';
import { readOnnx } from './bench/onnx.js';
import { adamStep, buildPeer, crossEntropyGradient } from './bench/peer.js';

const params = new URLSearchParams(location.search);
const quick = params.has('quick');
/** Seconds per timing window; each rate is the median of three windows. */
const WINDOW = Number(params.get('window') ?? (quick ? 0.2 : 1));
const ATTACK_DIGITS = Number(params.get('digits') ?? (quick ? 3 : 20));
const MODELS = [
  { id: 'cnn', name: 'MNIST CNN', file: '../models/cnn.onnx' },
  { id: 'fc200-200-10', name: 'FC200-200-10', file: '../models/fc200-200-10.onnx' },
  { id: 'mobilenet', name: 'MobileNet-class (64x64x3)', file: '../tests/fixtures/zoo/mobilenet.onnx' },
].filter((m) => !params.get('models') || params.get('models').split(',').includes(m.id));
const BACKENDS = (params.get('tfjs') ?? 'wasm,webgl,cpu').split(',').filter(Boolean);
/** The largest gradient difference accepted, relative to the gradient's largest entry (float32). */
const TOLERANCE = 1e-4;
/** The attack's settings: blindspot's defaults (attack::lbfgs::Options), also tools/bench_attack.py's. */
const ATTACK = { maxIterations: 150, cSteps: 5, seed: 2013 };

const $ = (id) => document.getElementById(id);
const log = (text) => { $('status').textContent = text; };
/** Training steps timed per engine (issue 17): batches of TRAIN_BATCH, Adam at TRAIN_LR. */
const TRAIN_STEPS = Number(params.get('steps') ?? (quick ? 20 : 100));
const TRAIN_BATCH = 32;
const TRAIN_LR = 0.001;
const TRAINED = [
  { id: 'fc100-100-10', name: 'MLP (FC100-100-10)', file: '../models/fc100-100-10.onnx' },
  { id: 'cnn', name: 'MNIST CNN', file: '../models/cnn.onnx' },
];
const results = { quick, window: WINDOW, machine: {}, gradients: [], training: [], attack: null, roofline: null, errors: [] };
window.benchResults = results;

const fetchBytes = async (url) => {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
};
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length ? (s[(s.length - 1) >> 1] + s[s.length >> 1]) / 2 : NaN; };
const nextFrame = () => new Promise((ok) => setTimeout(ok, 0));

// blindspot through the lab's protocol, as the page's worker calls it (src/lab/protocol.rs)
let lab;
let nextId = 1;
const ask = (op, payload) => lab.request(nextId++, { [op]: payload }, () => {}, () => Promise.resolve());

/**
 * blindspot's forward and forward + gradient rates (and on WebGPU with `detected`): the lab times
 * them itself (a `bench` request: no protocol in the loop), the median of three windows.
 */
async function labRates(key, pixels, detected = undefined) {
  const runs = [];
  for (let w = 0; w < 3; w++) {
    runs.push(await ask('bench', { key, pixels, ms: WINDOW * 1000, detected }));
    await nextFrame();
  }
  return { forward: median(runs.map((r) => r.forward)), gradient: median(runs.map((r) => r.gradient)), gpuGradient: median(runs.map((r) => r.gpuGradient ?? NaN)), last: runs[2] };
}

/** Calls per second of `run` (sync or async): warm-up, then the median of three windows. */
async function rate(run) {
  for (let i = 0; i < 3; i++) await run();
  const rates = [];
  for (let w = 0; w < 3; w++) {
    let n = 0;
    const start = performance.now();
    while (performance.now() - start < WINDOW * 1000 || n < 2) { await run(); n++; }
    rates.push(n / ((performance.now() - start) / 1000));
    await nextFrame();
  }
  return median(rates);
}

/** `size` seeded uniform values in [0,1). */
function pattern(size, seed = 7) {
  let s = seed;
  return Float32Array.from({ length: size }, () => { s = (s * 1103515245 + 12345) >>> 0; return (s >>> 8) / (1 << 24); });
}

/**
 * The gradient check's input: `pixels` squeezed into [0.01, 0.99] plus +-0.5% seeded noise, so
 * that no two values in a max-pool window tie. At a tie the subgradient is a convention: blindspot
 * and tfjs's cpu backend route it to the same element, tfjs's wasm backend to another (a digit's
 * flat black background is all ties, and then the gradients differ by 100%).
 */
function untied(pixels) {
  const noise = pattern(pixels.length, 11);
  return pixels.map((v, i) => 0.01 + 0.98 * v + 0.01 * (noise[i] - 0.5));
}

function worstDifference(a, b) {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

/** tfjs on `backend`, or the reason it cannot run here. */
async function useBackend(tf, backend) {
  try {
    if (!(await tf.setBackend(backend))) return `${backend} did not initialise`;
    await tf.ready();
    return null;
  } catch (e) {
    return e?.message ?? String(e);
  }
}

async function gpuAdapter() {
  if (!navigator.gpu) return { reason: 'this browser has no WebGPU' };
  const adapter = await navigator.gpu.requestAdapter().catch(() => null);
  if (!adapter) return { reason: 'no WebGPU adapter' };
  const info = adapter.info ?? {};
  const name = info.description || [info.vendor, info.architecture].filter(Boolean).join(' ') || 'adapter';
  return { name: info.isFallbackAdapter ? `${name} (software)` : name };
}

/** Forward and forward + gradient rates of one model on every engine, after the gradient check. */
async function benchModel(tf, spec, digits, gpu) {
  const bytes = await fetchBytes(spec.file);
  const graph = readOnnx(bytes);
  const info = await ask('load', { key: spec.id, bytes: bytes.slice(0) });
  const shape = info.inputShape;
  const size = shape.reduce((a, b) => a * b, 1);
  const x = untied(spec.id === 'mobilenet' ? pattern(size) : digits.input(0));
  const target = 3;
  const reference = await ask('gradient', { key: spec.id, objective: 'ce', pixels: x, target });
  const refGradient = reference.gradient;
  const refValue = reference.objective;
  const row = { model: spec.id, name: spec.name, inputShape: shape, objective: refValue, checks: [], rates: [] };
  results.gradients.push(row);
  render();

  log(`${spec.name}: blindspot on the CPU (wasm SIMD)`);
  const cpu = await labRates(spec.id, x);
  row.rates.push({ engine: 'blindspot wasm', forward: cpu.forward, gradient: cpu.gradient });
  render();

  if (gpu.name) {
    log(`${spec.name}: blindspot on WebGPU (${gpu.name})`);
    const detected = { available: true, adapter: gpu.name };
    try {
      const placed = await ask('backend', { preference: 'webgpu', key: spec.id, detected });
      if (placed.backend !== 'webgpu') throw new Error(placed.reason);
      const g = await ask('gradient', { key: spec.id, objective: 'ce', pixels: x, target, backend: 'webgpu' });
      row.checks.push({ engine: `blindspot WebGPU`, difference: worstDifference(g.gradient, refGradient), tolerance: TOLERANCE });
      const rates = await labRates(spec.id, x, detected);
      if (!Number.isFinite(rates.gpuGradient)) throw new Error(rates.last.reason ?? 'not timed');
      row.rates.push({ engine: 'blindspot WebGPU', adapter: gpu.name, forward: null, gradient: rates.gpuGradient });
    } catch (e) {
      row.rates.push({ engine: 'blindspot WebGPU', error: e?.message ?? String(e) });
    }
    await ask('backend', { preference: 'cpu', key: spec.id });
    render();
  }

  for (const backend of BACKENDS) {
    const engine = `tfjs ${backend}`;
    log(`${spec.name}: TensorFlow.js ${backend}`);
    const problem = await useBackend(tf, backend);
    if (problem) { row.rates.push({ engine, error: problem }); render(); continue; }
    const peer = buildPeer(tf, graph);
    const input = tf.tensor(x, shape);
    const ce = crossEntropyGradient(tf, peer, target, info.classes);
    try {
      const { value, grad } = ce.run(input);
      const g = await grad.data();
      const v = (await value.data())[0];
      value.dispose(); grad.dispose();
      const difference = worstDifference(g, refGradient);
      row.checks.push({ engine, difference, tolerance: TOLERANCE, objective: v, objectiveDifference: Math.abs(v - refValue) / Math.abs(refValue) });
      row.flops ??= peer.flops;
      if (!(difference <= TOLERANCE)) {
        row.rates.push({ engine, error: `gradient differs from blindspot's by ${difference.toExponential(2)} (over ${TOLERANCE})` });
      } else {
        row.rates.push({
          engine,
          forward: await rate(async () => { const y = tf.tidy(() => peer.forward(input)); await y.data(); y.dispose(); }),
          gradient: await rate(async () => {
            const r = tf.tidy(() => ce.run(input));
            await r.grad.data();
            await r.value.data();
            r.value.dispose(); r.grad.dispose();
          }),
        });
      }
    } catch (e) {
      row.rates.push({ engine, error: e?.message ?? String(e) });
    } finally {
      ce.dispose(); input.dispose(); peer.dispose();
    }
    render();
  }
  await ask('unload', { key: spec.id });
}

/**
 * Training steps per second on the same digits in the same batches (Adam, mean cross-entropy):
 * blindspot's Train request (the page's "Fix the blind spot" loop; its epoch's own time, the
 * errors measured after it left out) against a TensorFlow.js port of the same graph and weights.
 */
async function benchTraining(tf, pack) {
  const digits = parseDigitPack(pack.slice(0).buffer, 'models/data/mnist-test-10k.bin');
  const n = TRAIN_STEPS * TRAIN_BATCH;
  for (const spec of TRAINED) {
    const bytes = await fetchBytes(spec.file);
    const row = { model: spec.id, name: spec.name, batch: TRAIN_BATCH, steps: TRAIN_STEPS, rates: [] };
    results.training.push(row);
    log(`${spec.name}: training in blindspot`);
    const trained = await ask('train', {
      key: 'bench-trained', bytes: bytes.slice(0), pack: pack.slice(0), testPack: pack.slice(0), n, epochs: 1,
      batch: TRAIN_BATCH, lr: TRAIN_LR, optimizer: 'adam',
    });
    await ask('unload', { key: 'bench-trained' });
    row.rates.push({ engine: 'blindspot wasm', stepsPerSecond: trained.steps / trained.epochs[0].seconds });
    render();
    const graph = readOnnx(bytes);
    const images = Array.from({ length: TRAIN_STEPS }, (_, k) => {
      const x = new Float32Array(TRAIN_BATCH * 784);
      for (let i = 0; i < TRAIN_BATCH; i++) x.set(digits.input(k * TRAIN_BATCH + i), i * 784);
      return x;
    });
    for (const backend of BACKENDS) {
      const engine = `tfjs ${backend}`;
      log(`${spec.name}: training in TensorFlow.js ${backend}`);
      const problem = await useBackend(tf, backend);
      if (problem) { row.rates.push({ engine, error: problem }); render(); continue; }
      const peer = buildPeer(tf, graph, { trainable: true });
      const adam = adamStep(tf, peer, TRAIN_LR);
      const batches = images.map((x, k) => ({
        x: tf.tensor(x, [TRAIN_BATCH, 1, 28, 28]),
        y: tf.oneHot(tf.tensor1d(Array.from(digits.labels.subarray(k * TRAIN_BATCH, (k + 1) * TRAIN_BATCH)), 'int32'), 10),
      }));
      try {
        for (let k = 0; k < 3; k++) await adam.step(batches[k].x, batches[k].y); // warm-up: kernels compiled, memory placed
        const started = performance.now();
        for (const b of batches) await adam.step(b.x, b.y);
        row.rates.push({ engine, stepsPerSecond: TRAIN_STEPS / ((performance.now() - started) / 1000) });
      } catch (e) {
        row.rates.push({ engine, error: e?.message ?? String(e) });
      } finally {
        for (const b of batches) { b.x.dispose(); b.y.dispose(); }
        adam.dispose();
        peer.dispose();
      }
      render();
    }
  }
}

/** The paper's attack on FC200-200-10: per-digit times (the command compares them with scipy's). */
async function benchAttack(digits) {
  const bytes = await fetchBytes('../models/fc200-200-10.onnx');
  const info = await ask('load', { key: 'attack', bytes });
  const rows = [];
  results.attack = { model: 'fc200-200-10', ...ATTACK, rows };
  for (let i = 0; i < ATTACK_DIGITS; i++) {
    log(`attack: digit ${i + 1} of ${ATTACK_DIGITS}`);
    const x = digits.input(i);
    const label = digits.labels[i];
    const [target] = await ask('paperTargets', { labels: [label], indices: [i], seed: ATTACK.seed, classes: info.classes });
    if (i === 0) results.attack.firstObjective = (await ask('gradient', { key: 'attack', objective: 'ce', pixels: x, target })).objective;
    const start = performance.now();
    const out = await ask('attack', { key: 'attack', pixels: x, target, maxIterations: ATTACK.maxIterations, cSteps: ATTACK.cSteps });
    const ms = performance.now() - start;
    rows.push({ digit: i, label, target, success: out.success, distortion: out.distortion, ms });
    render();
    await nextFrame();
  }
  results.attack.medianMs = median(rows.map((r) => r.ms));
  await ask('unload', { key: 'attack' });
}

/** Measured wasm-SIMD multiply-add peak on one core, and each model's achieved GFLOP/s. */
async function benchRoofline() {
  let iterations = 1 << 16;
  let seconds = 0;
  while (seconds < 0.1) { // grow the call until it takes long enough to time
    iterations *= 2;
    const t = performance.now();
    simdPeak(iterations);
    seconds = (performance.now() - t) / 1000;
  }
  const runs = [];
  for (let k = 0; k < 5; k++) {
    const t = performance.now();
    simdPeak(iterations);
    runs.push(simdPeakFlops(iterations) / ((performance.now() - t) / 1000) / 1e9);
    await nextFrame();
  }
  results.roofline = { peakGflops: Math.max(...runs), peakRuns: runs, iterations, rows: [] };
  for (const row of results.gradients) {
    if (!row.flops) continue;
    for (const r of row.rates) {
      if (!r.gradient || r.engine.includes('WebGPU')) continue;
      results.roofline.rows.push({
        model: row.model, name: row.name, engine: r.engine, forwardFlops: row.flops, gradientFlops: 2 * row.flops,
        forwardGflops: r.forward ? (r.forward * row.flops) / 1e9 : null,
        gradientGflops: (r.gradient * 2 * row.flops) / 1e9,
      });
    }
  }
  render();
}

// ---- rendering -------------------------------------------------------------------------------

const fmt = (v, digits = 0) => (v == null || !Number.isFinite(v) ? '–' : v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }));

function table(head, rows) {
  const t = document.createElement('table');
  t.innerHTML = `<thead><tr>${head.map((h) => `<th>${h}</th>`).join('')}</tr></thead>`
    + `<tbody>${rows.map((r) => `<tr>${r.map((c) => (c?.span ? `<td colspan="${c.span}">${c.html}</td>` : `<td>${c}</td>`)).join('')}</tr>`).join('')}</tbody>`;
  return t;
}

function render() {
  const rates = results.gradients.flatMap((g) => g.rates.map((r) => [
    g.name, r.engine + (r.adapter ? ` (${r.adapter})` : ''),
    ...(r.error ? [{ span: 2, html: `<span class="fails">${r.error}</span>` }] : [fmt(r.forward), fmt(r.gradient)]),
  ]));
  $('rates').replaceChildren(table(['model', 'engine', 'forward / s', 'forward + gradient / s'], rates));
  const checks = results.gradients.flatMap((g) => g.checks.map((c) => [
    g.name, c.engine, c.difference.toExponential(2), c.tolerance.toExponential(0), c.difference <= c.tolerance ? 'same' : '<b>differs</b>',
  ]));
  $('checks').replaceChildren(table(['model', 'engine', 'max |Δ gradient| / max |gradient|', 'tolerance', ''], checks));
  const training = results.training.flatMap((t) => t.rates.map((r) => [
    t.name, r.engine, r.error ? { span: 2, html: `<span class="fails">${r.error}</span>` } : fmt(r.stepsPerSecond, 1),
    ...(r.error ? [] : [fmt(r.stepsPerSecond * t.batch)]),
  ]));
  $('training').replaceChildren(table(['model', 'engine', `steps / s (batch ${TRAIN_BATCH}, Adam)`, 'images / s'], training));
  if (results.attack) {
    const rows = results.attack.rows.map((r) => [r.digit, r.label, r.target, r.success ? 'yes' : 'no', r.distortion.toFixed(4), fmt(r.ms, 1)]);
    $('attack').replaceChildren(table(['digit', 'label', 'target', 'reached', 'distortion', 'ms'], rows));
    if (results.attack.medianMs) $('attack').prepend(Object.assign(document.createElement('p'), { textContent: `median ${fmt(results.attack.medianMs, 1)} ms per digit` }));
  }
  if (results.roofline) {
    const r = results.roofline;
    const rows = r.rows.map((x) => [x.name, x.engine, fmt(x.gradientFlops / 1e6, 2), fmt(x.forwardGflops, 2), fmt(x.gradientGflops, 2), `${((100 * x.gradientGflops) / r.peakGflops).toFixed(1)}%`]);
    $('roofline').replaceChildren(
      Object.assign(document.createElement('p'), { textContent: `wasm SIMD multiply-add peak, one core: ${r.peakGflops.toFixed(2)} GFLOP/s` }),
      table(['model', 'engine', 'MFLOP per forward + gradient', 'forward GFLOP/s', 'forward + gradient GFLOP/s', 'of peak'], rows),
    );
  }
}

async function main() {
  let tf;
  try {
    tf = await import('./vendor/tfjs.js');
    tf.setWasmPaths(new URL('./vendor/', import.meta.url).href);
  } catch (e) {
    throw new Error('TensorFlow.js is not bundled yet: run ./scripts/bench.sh (it writes www/vendor/)');
  }
  await init();
  lab = new Lab();
  const digits = parseDigitPack((await fetchBytes('../models/data/mnist-test-1k.bin')).buffer, 'models/data/mnist-test-1k.bin');
  const gpu = params.has('webgpu') ? await gpuAdapter() : { reason: 'not asked for (?webgpu)' };
  results.machine = {
    userAgent: navigator.userAgent, cores: navigator.hardwareConcurrency, webgpu: gpu.name ?? gpu.reason,
    tfjs: tf.version_core, crossOriginIsolated: self.crossOriginIsolated,
  };
  if (BACKENDS.includes('wasm') && !(await useBackend(tf, 'wasm'))) {
    results.machine.tfjsWasmSimd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
    results.machine.tfjsWasmThreads = await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT');
  }
  $('machine').textContent = JSON.stringify(results.machine);
  for (const spec of MODELS) await benchModel(tf, spec, digits, gpu);
  if (!params.has('no-training')) await benchTraining(tf, await fetchBytes('../models/data/mnist-test-10k.bin'));
  if (!params.has('no-attack')) await benchAttack(digits);
  await benchRoofline();
  log('done');
}

main().catch((e) => {
  results.errors.push(e?.message ?? String(e));
  log(`failed: ${e?.message ?? e}`);
}).finally(() => { document.body.dataset.done = '1'; });
