// The "Fix the blind spot" section (the paper's section 4.2): trains a network in a worker of the
// page's pool through the core's Train request (blindspot train's loop), with live curves and the
// pool's new examples; the trained model joins the lab's model list, to attack and download.
import { assetUrl, embedded, fetchOnce, inlined, manifest } from './assets.js';
import { panelLab } from './client.js';
import { drawChart, drawUnit } from './draw.js';
import { parseDigitPack } from './digits.js';
import { canSave, saveFiles } from './saveoffline.js';

const TRAIN_PACK = 'models/data/mnist-train-60k.bin.gz';
const TRAIN_PACK_BYTES = 9_659_520;
const TEST_PACK = 'models/data/mnist-test-10k.bin';
const SEED = 2013;
/** Test digits attacked to compare the distortion before and after training. */
const COMPARED = 10;
const POOL_SHOWN = 16;

const root = document.getElementById('train');
const $ = (id) => document.getElementById(id);
const state = {
  lab: null,
  digits: null, // Promise of the unpacked training pack
  labModel: null, // the lab's model now: { id, name, file, bytes? }
  running: false,
  runs: 0,
  losses: [],
  rows: [],
  lastGood: null, // the model file after the last finished epoch of the run under way
  trained: null, // { id, name, bytes, start }
};

const percent = (v) => `${(100 * v).toFixed(2)}%`;

function status(text, kind = '') {
  $('train-status').textContent = text;
  root.dataset.state = kind;
}

/** The 60,000 training digits, fetched (with a progress report) and unpacked once per page. */
function trainingDigits(onProgress) {
  state.digits ??= (async () => {
    let response;
    try {
      response = await fetch(assetUrl(TRAIN_PACK));
    } catch (e) {
      throw new Error(`${TRAIN_PACK} could not be fetched (${e.message}): check the connection (or keep the digits for offline use while online) and try again`);
    }
    if (!response.ok) throw new Error(`${TRAIN_PACK}: ${response.status} ${response.statusText || 'not found'}; this site is missing the training digits`);
    const total = Number(response.headers.get('content-length')) || TRAIN_PACK_BYTES;
    let got = 0;
    const counted = response.body.pipeThrough(new TransformStream({
      transform(chunk, controller) {
        got += chunk.byteLength;
        onProgress(got, total);
        controller.enqueue(chunk);
      },
    }));
    const bytes = await new Response(counted.pipeThrough(new DecompressionStream('gzip'))).arrayBuffer();
    parseDigitPack(bytes, TRAIN_PACK); // a damaged file is named here, not deep in the worker
    return bytes;
  })();
  state.digits.catch(() => { state.digits = null; }); // tried again next time
  return state.digits;
}

/** The form's settings, checked; a refusal names the field. */
function settings() {
  const number = (id, name, { min = -Infinity, max = Infinity, integer = false } = {}) => {
    const v = Number($(id).value);
    if ($(id).value.trim() === '' || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
      throw new Error(`${name} must be ${integer ? 'a whole number' : 'a number'} from ${min} to ${max}, not "${$(id).value}"`);
    }
    return v;
  };
  const adversarial = $('train-adversarial').value;
  const pooled = adversarial === 'lbfgs' || adversarial === 'layers';
  return {
    start: $('train-start').value,
    epochs: number('train-epochs', 'Epochs', { min: 1, max: 100, integer: true }),
    n: Number($('train-n').value),
    optimizer: $('train-optimizer').value,
    lr: number('train-lr', 'The learning rate', { min: 1e-7, max: 10 }),
    schedule: $('train-schedule').value,
    batch: number('train-batch', 'The batch', { min: 1, max: 256, integer: true }),
    weightDecay: number('train-decay', 'The weight decay', { min: 0, max: 1 }),
    adversarial,
    pool: pooled ? number('train-pool', 'The pool size', { min: 1, max: 10000, integer: true }) : 1000,
    refresh: pooled ? number('train-refresh', 'The part replaced', { min: 0, max: 1 }) : 0.1,
    poolWeight: pooled ? number('train-weight', 'The pools\' share of the loss', { min: 0.05, max: 0.95 }) : 0.5,
    epsilon: adversarial === 'fgsm' ? number('train-epsilon', 'FGSM epsilon', { min: 0.001, max: 1 }) : 0.1,
  };
}

/** The model a run starts from: a shipped graph (its weights drawn afresh) or the lab's model. */
async function startModel(start) {
  if (start === 'lab') {
    const m = state.labModel;
    if (!m) throw new Error('the lab has no model loaded yet: pick one above, or start from FC100-100-10');
    const bytes = m.bytes ? m.bytes.slice(0) : await fetchOnce(`models/${m.file}`).then((b) => b.slice(0));
    return { bytes, fromScratch: false, name: m.name, before: { id: m.id, name: m.name, file: m.file, local: m.bytes ?? null }, file: m.file };
  }
  const shipped = (await manifest()).models.find((m) => m.id === start);
  return {
    bytes: (await fetchOnce(`models/${shipped.file}`)).slice(0), fromScratch: true, name: shipped.name, file: shipped.file,
    before: { id: shipped.id, name: shipped.name, file: shipped.file, input: shipped.input, local: null },
  };
}

function describe(s) {
  if (s.adversarial === 'lbfgs') return `L-BFGS pool of ${s.pool}`;
  if (s.adversarial === 'layers') return `L-BFGS pools of ${s.pool} at every layer`;
  if (s.adversarial === 'fgsm') return `FGSM ε ${s.epsilon}`;
  return 'no adversarial examples';
}

let drawing = 0;
/** Redraws both curves on the next frame (progress comes faster than frames). */
function redraw() {
  if (drawing) return;
  drawing = requestAnimationFrame(() => {
    drawing = 0;
    drawChart($('train-loss'), [{ points: state.losses, color: '#2f5bd3' }], { xLabel: 'step', format: (v) => v.toFixed(2) });
    drawChart($('train-errors'), [
      { points: state.rows.map((r) => ({ x: r.epoch, y: r.trainError })), color: '#8a8f98', dots: true },
      { points: state.rows.map((r) => ({ x: r.epoch, y: r.testError })), color: '#d3452f', dots: true },
    ], { xLabel: 'epoch', format: (v) => `${(100 * v).toFixed(1)}%`, integerX: true });
  });
}

function addRow(row) {
  const table = $('train-table');
  table.hidden = false;
  const tr = document.createElement('tr');
  for (const v of [row.epoch, row.loss.toFixed(4), percent(row.trainError), percent(row.testError), row.pool, row.seconds.toFixed(1)]) {
    const td = document.createElement('td');
    td.textContent = v;
    tr.append(td);
  }
  table.tBodies[0].append(tr);
}

function showPool({ entered, pool, examples }) {
  $('train-pool-box').hidden = false;
  $('train-pool-count').textContent = `${pool} examples; ${entered} new`;
  const strip = $('train-pool-strip');
  for (const e of examples) {
    const figure = document.createElement('figure');
    const canvas = document.createElement('canvas');
    drawUnit(canvas, e.image, 28, 28);
    canvas.setAttribute('role', 'img');
    canvas.setAttribute('aria-label', `a ${e.label} the model took for a ${e.target}`);
    const caption = document.createElement('figcaption');
    caption.textContent = `${e.label} → ${e.target}`;
    figure.append(canvas, caption);
    strip.prepend(figure);
  }
  while (strip.children.length > POOL_SHOWN) strip.lastElementChild.remove();
}

function onProgress(event, s) {
  if ('step' in event) {
    const done = (event.epoch - 1) * event.steps + event.step;
    state.losses.push({ x: done, y: event.loss });
    $('train-progress').max = s.epochs * event.steps;
    $('train-progress').value = done;
    const pool = s.adversarial === 'lbfgs' || s.adversarial === 'layers' ? ` · pool ${event.pool}` : '';
    status(`epoch ${event.epoch} of ${s.epochs} · step ${event.step} of ${event.steps} · loss ${event.loss.toFixed(3)}${pool}`, 'running');
  } else if ('examples' in event) {
    showPool(event);
  } else if ('row' in event) {
    state.rows.push(event.row);
    state.lastGood = { bytes: event.model, epochs: event.row.epoch, testError: event.row.testError };
    addRow(event.row);
  }
  redraw();
}

/** The trained model joins the lab's list (app.js 'blindspot:addmodel'); `select` opens it there. */
function offer(select) {
  const t = state.trained;
  window.dispatchEvent(new CustomEvent('blindspot:addmodel', { detail: { id: t.id, name: t.name, file: t.file, bytes: t.bytes.slice(0), select } }));
}

function finished(bytes, s, start, key, epochs, testError, why) {
  const name = `${start.name.replace(/ \(.*\)$/, '')} trained here (${describe(s)}, ${epochs} epoch${epochs === 1 ? '' : 's'})`;
  const file = `${start.file.replace(/\.onnx$/, '')}-trained-${state.runs}.onnx`;
  state.trained = { id: key, name, file, bytes: bytes.buffer ? bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) : bytes, start };
  offer(false);
  $('train-result').hidden = false;
  $('train-compare-result').textContent = '';
  delete root.dataset.compared;
  $('train-result-text').textContent = `${why}“${name}” joined the lab's model list: test error ${percent(testError)} on the 10,000 test digits.`;
}

async function run(event) {
  event.preventDefault();
  if (state.running) return;
  let s;
  try {
    s = settings();
  } catch (e) {
    status(e.message, 'error');
    return;
  }
  state.running = true;
  $('train-run').disabled = true;
  $('train-cancel').disabled = false;
  $('train-result').hidden = true;
  Object.assign(state, { losses: [], rows: [], lastGood: null });
  $('train-table').tBodies[0].replaceChildren();
  $('train-table').hidden = true;
  $('train-pool-strip').replaceChildren();
  $('train-pool-box').hidden = true;
  redraw();
  const key = `trained:${++state.runs}`;
  state.lab ??= panelLab();
  let start = null;
  try {
    status('fetching the 60,000 training digits…', 'running');
    let pack;
    let test;
    [pack, test, start] = await Promise.all([
      trainingDigits((got, total) => {
        $('train-progress').max = total;
        $('train-progress').value = got;
        status(`fetching the 60,000 training digits: ${(got / 1e6).toFixed(1)} of ${(total / 1e6).toFixed(1)} MB`, 'running');
      }),
      fetchOnce(TEST_PACK),
      startModel(s.start),
    ]);
    if (!state.running) return; // cancelled while fetching
    status(`starting: ${start.name}${start.fromScratch ? ', fresh weights' : ''}…`, 'running');
    const payload = {
      key, bytes: start.bytes, fromScratch: start.fromScratch, pack: pack.slice(0), testPack: test.slice(0), n: s.n,
      epochs: s.epochs, batch: s.batch, lr: s.lr, optimizer: s.optimizer, weightDecay: s.weightDecay, schedule: s.schedule,
      adversarial: s.adversarial, epsilon: s.epsilon, pool: s.pool, refresh: s.refresh, poolWeight: s.poolWeight, seed: SEED,
    };
    const result = await state.lab.call('train', payload, {
      spread: true, transfer: [payload.bytes, payload.pack, payload.testPack], onProgress: (e) => onProgress(e, s),
    });
    const last = result.epochs.at(-1);
    finished(result.model, s, start, key, result.epochs.length, last.testError, '');
    status(`done: ${result.steps} steps in ${result.seconds.toFixed(0)} s · test error ${percent(last.testError)}`, 'done');
  } catch (e) {
    const cancelled = e.message === 'cancelled';
    const kept = state.lastGood;
    if (kept && start) {
      finished(kept.bytes, s, start, key, kept.epochs, kept.testError, `${cancelled ? 'Cancelled' : 'Stopped'} after epoch ${kept.epochs}: `);
    }
    status(cancelled ? `cancelled${kept ? `: the model after epoch ${kept.epochs} is kept` : ''}`
      : `training failed: ${e.message}${kept ? ` (the model after epoch ${kept.epochs} is kept)` : ''}`, cancelled ? '' : 'error');
  } finally {
    state.running = false;
    $('train-run').disabled = false;
    $('train-cancel').disabled = true;
  }
}

function cancel() {
  state.running = false;
  state.lab?.cancel();
}

/** The lab's L-BFGS attack on the same test digits, towards the same targets, for the model
 * the run started from and the trained one: the average minimal distortion of each. */
async function compare() {
  const t = state.trained;
  if (!t) return;
  const out = $('train-compare-result');
  const button = $('train-compare');
  button.disabled = true;
  try {
    const lab = state.lab;
    const before = t.start.before;
    // a dropped model is in the pool already (the lab loaded it); a shipped one is loaded once
    if (before.local) {
      if (!lab.loaded.has(before.id)) await lab.load(before.id, before.local.slice(0));
    } else {
      await lab.ensure(before);
    }
    await lab.load(t.id, t.bytes.slice(0));
    const digits = parseDigitPack(await fetchOnce(TEST_PACK), TEST_PACK);
    const indices = [...Array(COMPARED).keys()];
    const targets = await lab.call('paperTargets', { labels: Array.from(digits.labels.subarray(0, COMPARED)), indices, seed: SEED });
    const jobs = indices.flatMap((i) => [before.id, t.id].map((key) => ({ key, i })));
    const found = { [before.id]: [], [t.id]: [] };
    let done = 0;
    let next = 0;
    const runner = async () => {
      while (next < jobs.length) {
        const { key, i } = jobs[next++];
        const r = await lab.call('attack', { key, pixels: digits.input(i), target: targets[i] }, { spread: true });
        if (r.success) found[key].push(r.distortion);
        out.textContent = `attacking ${++done} of ${jobs.length}…`;
      }
    };
    await Promise.all(Array.from({ length: Math.min(jobs.length, lab.parallel) }, runner));
    const mean = (list) => list.reduce((a, b) => a + b, 0) / Math.max(1, list.length);
    const [a, b] = [mean(found[before.id]), mean(found[t.id])];
    const label = t.start.fromScratch ? `the shipped ${before.name}, trained without adversarial examples` : before.name;
    out.textContent = `Average minimal L-BFGS distortion on the first ${COMPARED} test digits (the tour's targets): `
      + `${a.toFixed(4)} for ${label} (${found[before.id].length} of ${COMPARED} fooled), `
      + `${b.toFixed(4)} trained here (${found[t.id].length} of ${COMPARED} fooled): ×${(b / a).toFixed(2)}.`;
    root.dataset.compared = (b / a).toFixed(3);
  } catch (e) {
    out.textContent = e.message === 'cancelled' ? 'cancelled' : `could not compare: ${e.message}`;
    root.dataset.compared = 'failed';
  } finally {
    button.disabled = false;
  }
}

function download() {
  const t = state.trained;
  if (!t) return;
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([t.bytes], { type: 'application/octet-stream' }));
  a.download = t.file;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

/** Shows only the fields of the adversarial method chosen. */
function showMethodFields() {
  const method = $('train-adversarial').value;
  for (const e of root.querySelectorAll('[data-for]')) e.hidden = !e.dataset.for.split(' ').includes(method);
}

async function keepOffline() {
  const out = $('train-keep-status');
  $('train-keep').disabled = true;
  try {
    await saveFiles([TRAIN_PACK, TEST_PACK], ({ done, total }) => { out.textContent = `saving: ${done} of ${total} files…`; });
    out.textContent = '✓ the training and test digits are kept in this browser: training works offline';
    root.dataset.kept = 'true';
  } catch (e) {
    out.textContent = `could not keep them: ${e.message}`;
  } finally {
    $('train-keep').disabled = false;
  }
}

function main() {
  if (!root || embedded) return;
  showMethodFields();
  redraw();
  $('train-adversarial').addEventListener('change', showMethodFields);
  $('train-form').addEventListener('submit', run);
  $('train-cancel').addEventListener('click', cancel);
  $('train-attack').addEventListener('click', () => offer(true));
  $('train-download').addEventListener('click', download);
  $('train-compare').addEventListener('click', compare);
  window.addEventListener('blindspot:labmodel', (e) => { state.labModel = e.detail; });
  if (inlined) {
    // the single file carries the 1,000 test digits only
    $('train-run').disabled = true;
    status('the single-file build does not carry the 60,000 training digits: open the hosted site to train', 'error');
  }
  if (canSave()) {
    $('train-keep').addEventListener('click', keepOffline);
    caches.match(new URL(`../${TRAIN_PACK}`, import.meta.url).href).then((hit) => {
      if (hit) $('train-keep-status').textContent = '✓ kept in this browser for offline use';
    }, () => {});
  } else {
    root.querySelector('.train-offline').hidden = true;
  }
}

main();
