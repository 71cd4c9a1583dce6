// The page: model picker, test-digit gallery, classification with probability bars.
import { fetchBytes, inlined, manifest, fetchOnce } from './assets.js';
import { decodeImage } from './imagesize.js';
import { panelLab } from './client.js';
import { parseDigitPack } from './digits.js';
import { drawCurve, drawDifference, drawGrey, drawHeatmap, drawUnit } from './draw.js';
import './saveoffline.js'; // the footer's "Save for offline use" button

const $ = (id) => document.getElementById(id);
const PAGE = 60;
const lab = panelLab();
/**
 * The largest model file the page reads. Loading a model and building its gradient takes about
 * 5.3 times the file's size at its peak (measured natively: VGG-19's 575 MB file 3.05 GB,
 * AlexNet's 244 MB 1.13 GB; docs/hardening.md), all inside the worker's wasm memory, which cannot
 * pass 4 GiB. So: 600 MB (VGG-19's size), or less where the device says it has less memory
 * (navigator.deviceMemory, Chrome's; half of it is taken as what a tab may use).
 */
const PEAK_PER_BYTE = 5.3;
const MODEL_LIMIT = Math.min(600e6, navigator.deviceMemory ? navigator.deviceMemory * 1e9 / 2 / PEAK_PER_BYTE : Infinity);
// A panic in the wasm kills a worker; the pool starts a fresh one (see client.js). A
// model that was working is loaded into it again; one whose loading crashed is not retried.
lab.onCrash = (message, restarted) => {
  const working = document.body.dataset.modelState === 'ready';
  // a crash while a model loads is reported by selectModel, as that model's failure
  if (!restarted) showError(`blindspot's worker keeps failing (${message}); reload the page to try again`);
  else if (working) {
    showError(`blindspot hit an internal error: ${message.replace(/^internal error: /, '')}. Its worker was restarted and the model is loaded again.`);
  }
  if (restarted && working && state.model) {
    document.body.dataset.modelState = 'loading';
    state.ready = loadModel(state.model);
    state.ready.then(() => { document.body.dataset.modelState = 'ready'; }, () => { document.body.dataset.modelState = 'error'; });
  }
};
const state = {
  models: [], model: null, ready: null, pack: null, digit: 0, shown: 0, generation: 0,
  target: 1, attacking: false,
  drawing: null, // a drawn or uploaded digit (28x28 in [0,1]) shown instead of a test digit (digit -1)
  drawingKind: 'drawing', // or 'image'
  autorun: false, // the URL asked for the attack to run (a permalink to a result)
  predicted: null, // the model's answer for the shown image
  backendChoice: null, // 'cpu' | 'webgpu' once the person picks one (then kept in the URL); else automatic
};

const currentPixels = () => state.drawing ?? state.pack.input(state.digit);
const currentTruth = () => (state.drawing ? null : state.pack.labels[state.digit]);
/** The attack result on show belongs to the image on show (the digit may change mid-attack). */
const resultShown = () => !$('attack-result').hidden && state.lastAttack?.index === state.digit
  && (state.digit >= 0 || state.lastAttack.pixels === state.drawing);

/**
 * A drawn or uploaded digit in the URL (image=): its 28x28 pixels as bytes, base64url (1,046
 * characters). Such a digit is kept as bytes / 255 from the start, so the link gives it back exactly.
 */
const asBytes = (pixels) => Float32Array.from(pixels, (v) => Math.min(255, Math.max(0, Math.round(v * 255))) / 255);
function imageParam(pixels) {
  let text = '';
  for (const v of pixels) text += String.fromCharCode(Math.round(v * 255));
  return btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}
function pixelsFromParam(value, size) {
  try {
    const text = atob(value.replace(/-/g, '+').replace(/_/g, '/'));
    return text.length === size ? Float32Array.from(text, (c) => c.charCodeAt(0) / 255) : null;
  } catch {
    return null;
  }
}

function showError(message) {
  $('error').textContent = message;
  $('error').hidden = !message;
}

function setStatus(text) {
  $('model-status').textContent = text;
}

/** The backend the current model runs on, and the switch (WebGPU disabled, saying why, without an adapter). */
function showBackend(info) {
  const select = $('backend');
  const gpu = select.querySelector('option[value="webgpu"]');
  gpu.disabled = !info.available;
  gpu.title = info.available ? `WebGPU on ${info.adapter}` : `WebGPU unavailable: ${info.reason}`;
  select.title = info.available ? 'where gradients and the L-BFGS attack are computed' : gpu.title;
  select.value = info.backend;
  select.disabled = false;
  let text = info.backend === 'webgpu' ? `WebGPU · ${info.adapter}` : 'CPU (wasm SIMD)';
  if (info.backend === 'cpu' && info.preference !== 'cpu') text += ` · ${info.reason}`;
  $('backend-status').textContent = text;
  $('backend-status').title = info.wgpuAdapter ? `wgpu adapter: ${info.wgpuAdapter}` : '';
  document.body.dataset.backend = info.backend;
}

async function switchBackend() {
  state.backendChoice = $('backend').value;
  remember({ run: !$('attack-result').hidden });
  $('backend').disabled = true;
  try {
    await state.ready;
    showBackend(await lab.setBackend(state.backendChoice, state.model?.id));
  } catch (e) {
    showError(`switching the backend failed: ${e.message}`);
    $('backend').disabled = false;
  }
}

function kilobytes(n) {
  return n > 1e6 ? `${(n / 1e6).toFixed(1)} MB` : `${Math.round(n / 1e3)} kB`;
}

/** The attack settings kept in the URL: parameter name and input id. */
const SETTINGS = [['iterations', 'max-iterations'], ['c-steps', 'c-steps'], ['epsilon', 'epsilon'], ['steps', 'pgd-steps']];

/**
 * Reflects the choice in the URL so a reload or a shared link shows the same thing; `run` marks
 * that the attack's result is on show, so opening the link runs it again.
 */
function remember({ run = false } = {}) {
  const params = new URLSearchParams(location.search);
  if (!state.model || state.model.local) params.delete('model'); else params.set('model', state.model.id);
  if (state.digit >= 0) params.set('digit', state.digit); else params.delete('digit');
  if (state.digit < 0 && state.drawing) params.set('image', imageParam(state.drawing)); else params.delete('image');
  params.set('target', state.target ?? 'any');
  params.set('attack', $('method').value);
  for (const [name, id] of SETTINGS) {
    const input = $(id);
    if (input.value !== input.defaultValue && input.checkValidity()) params.set(name, input.value); else params.delete(name);
  }
  if ($('heatmap').checked) params.set('heatmap', '1'); else params.delete('heatmap');
  if (state.backendChoice) params.set('backend', state.backendChoice); else params.delete('backend');
  if (run && resultShown()) params.set('run', '1'); else params.delete('run');
  history.replaceState(null, '', `?${params}`);
  params.delete('embed');
  $('open-full').href = `?${params}`;
}

/** Reads the attack settings of a permalink into the form (values out of range are ignored). */
function recallSettings(params) {
  for (const [name, id] of SETTINGS) {
    const input = $(id);
    const value = params.get(name);
    if (value === null) continue;
    input.value = value;
    if (!input.checkValidity() || input.value === '') input.value = input.defaultValue;
  }
  $('heatmap').checked = params.get('heatmap') === '1';
}

/** Fetches and loads `model` into the worker; resolves to its info, load size and time. */
async function loadModel(model) {
  const started = performance.now();
  // a dropped model's bytes stay in the page (a copy goes to the worker); nothing is uploaded
  const bytes = model.localBytes ? model.localBytes.slice(0) : await fetchBytes(`models/${model.file}`);
  const size = bytes.byteLength;
  const info = await lab.load(model.id, bytes, model.input?.shape);
  return { ...info, size, ms: performance.now() - started };
}

async function selectModel(id) {
  // an attack on the previous model is stopped: its answer would be shown against the new one
  if (state.attacking) lab.cancel();
  else if (/^attack failed/.test($('attack-status').textContent)) $('attack-status').textContent = '';
  const model = state.models.find((m) => m.id === id) ?? state.models[0];
  state.model = model;
  const generation = ++state.generation;
  $('model').value = model.id;
  $('model-card').hidden = !model.card || inlined; // the single file carries no model cards
  if (model.card) $('model-card').href = `models/${model.card}`;
  showError('');
  for (const thumb of document.querySelectorAll('.thumb.wrong')) thumb.classList.remove('wrong');
  setStatus(`loading ${model.file}…`);
  document.body.dataset.modelState = 'loading';
  remember();
  // main() starts the first model's load early, before the gallery is drawn
  state.ready = state.preload?.id === model.id ? state.preload.ready : loadModel(model);
  state.preload = null;
  try {
    const info = await state.ready;
    if (generation !== state.generation) return;
    if (!model.labels) model.labels = [...Array(info.classes).keys()].map(String);
    // one grey 28x28 plane however the file lays it out ([1,1,28,28], [1,28,28,1], [1,28,28],
    // [1,784]): the same values in the same order
    const { rows, cols } = state.pack;
    const perImage = info.inputShape.slice(1).reduce((a, b) => a * b, 1);
    if (perImage !== rows * cols) {
      throw new Error(`it takes inputs of shape [${info.inputShape.join(', ')}]; the digit lab takes grey ${rows}x${cols} `
        + `classifiers (MNIST's [1, 1, ${rows}, ${cols}], [1, ${rows}, ${cols}, 1] or [1, ${rows * cols}]): re-export it `
        + `for that input (a colour classifier, 3 channels of any size, opens in the natural-images section instead)`);
    }
    // the training section can fine-tune the lab's model (train.js)
    window.dispatchEvent(new CustomEvent('blindspot:labmodel', { detail: { id: model.id, name: model.name, file: model.file, bytes: model.localBytes } }));
    setStatus(`ready · ${kilobytes(info.size)} · input [${info.inputShape.join(', ')}] · output: ${info.output} · loaded in ${Math.round(info.ms)} ms`);
    if (!info.pending) showBackend(info);
    document.body.dataset.modelState = 'ready';
    await classifyDigit(state.digit);
    markGallery(generation);
    // the automatic backend choice waits until the first answer is on show (worker.js 'load')
    if (info.pending && generation === state.generation) {
      showBackend(await lab.setBackend('auto', model.id).catch((e) => (
        { preference: 'auto', backend: 'cpu', available: false, reason: `the backend could not be chosen: ${e.message}` })));
    }
    if (state.autorun) {
      state.autorun = false;
      await runAttack();
    }
  } catch (e) {
    if (generation !== state.generation) return;
    setStatus('failed to load');
    document.body.dataset.modelState = 'error';
    const crashed = /^internal error/.test(e.message) ? '. blindspot\'s worker was restarted: pick another model' : '';
    // a dropped model's name is its file's ("x.onnx (yours)"); a shipped one's file is named beside it
    showError(`${model.local ? `"${model.file}" (yours)` : `${model.name} (${model.file})`} could not be loaded: ${e.message}${crashed}`);
    clearPrediction();
  }
}

function clearPrediction() {
  $('predicted').textContent = '–';
  $('confidence').textContent = '';
  const note = document.createElement('li');
  note.className = 'empty';
  note.textContent = 'No model is loaded. Pick another model above.';
  $('bars').replaceChildren(note);
  delete $('prediction').dataset.label;
}

async function classifyDigit(index) {
  if (index >= 0 && (state.digit !== index || state.target === undefined)) state.target = (state.pack.labels[index] + 1) % 10;
  if (index >= 0) state.drawing = null;
  state.digit = index;
  renderTargets();
  const { pack } = state;
  if (index >= 0) {
    drawGrey($('digit'), pack.bytes(index), pack.cols, pack.rows);
    $('digit-caption').textContent = `MNIST test digit #${index}, labelled ${pack.labels[index]}`;
  } else {
    drawUnit($('digit'), state.drawing, pack.cols, pack.rows);
    $('digit-caption').textContent = state.drawingKind === 'link' ? 'a drawn or uploaded digit, from the link'
      : `your ${state.drawingKind}, centred and scaled as MNIST digits are`;
  }
  for (const b of document.querySelectorAll('.thumb[aria-pressed="true"]')) b.setAttribute('aria-pressed', 'false');
  document.querySelector(`.thumb[data-index="${index}"]`)?.setAttribute('aria-pressed', 'true');
  remember();
  if (!state.model || !state.ready) return;
  const key = state.model.id;
  try {
    await state.ready;
    const pixels = currentPixels();
    const result = await lab.call('classify', { key, pixels });
    if (state.digit !== index || state.model.id !== key || currentPixels() !== pixels && index < 0) return;
    renderPrediction(result, currentTruth());
  } catch (e) {
    // a Cancel rejected this classification too (it was this panel's): ask again
    if (e.message === 'cancelled') {
      await new Promise((resolve) => setTimeout(resolve));
      if (state.digit === index && state.model.id === key) await classifyDigit(index);
      return;
    }
    showError(`classification failed: ${e.message}`);
  }
}

function renderPrediction({ label, probabilities }, truth) {
  const labels = state.model.labels ?? probabilities.map((_, i) => String(i));
  const el = $('prediction');
  el.dataset.label = label;
  el.dataset.probabilities = JSON.stringify(probabilities);
  el.dataset.digit = state.digit;
  el.dataset.model = state.model.id;
  document.body.dataset.answered = ''; // the first answer is on show (units.js waits for it)
  state.predicted = label;
  el.classList.toggle('wrong', truth !== null && label !== truth);
  $('predicted').textContent = labels[label];
  $('confidence').textContent = `${(probabilities[label] * 100).toFixed(1)}% sure${truth === null || label === truth ? '' : ' · wrong'}`;
  renderBars($('bars'), probabilities, label, truth);
}

/** Probability bars: `top` highlighted, `truth` ticked. */
function renderBars(list, probabilities, top, truth) {
  const labels = state.model.labels ?? probabilities.map((_, i) => String(i));
  const rows = probabilities.map((p, i) => {
    const li = document.createElement('li');
    li.className = (i === top ? 'top ' : '') + (i === truth ? 'truth' : '');
    li.innerHTML = `<span class="name"></span><span class="track"><span class="fill"></span></span><span class="value"></span>`;
    li.querySelector('.name').textContent = labels[i];
    li.querySelector('.fill').style.width = `${(p * 100).toFixed(2)}%`;
    li.querySelector('.value').textContent = p < 0.001 ? '<0.1%' : `${(p * 100).toFixed(1)}%`;
    li.title = `${labels[i]}: ${(p * 100).toFixed(4)}%`;
    return li;
  });
  list.replaceChildren(...rows);
}

/** Target buttons 0-9 and "anything else"; the default target is the label after the digit's. */
function renderTargets() {
  const classes = state.model?.labels ?? [...Array(10).keys()].map(String);
  const make = (text, value, name) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = text;
    b.dataset.target = value;
    b.setAttribute('aria-label', name);
    b.setAttribute('aria-pressed', String(state.target === (value === 'any' ? null : Number(value))));
    b.addEventListener('click', () => {
      state.target = value === 'any' ? null : Number(value);
      renderTargets();
      remember();
    });
    return b;
  };
  $('targets').replaceChildren(...classes.map((c, i) => make(c, String(i), `target ${c}`)), make('anything else', 'any', 'any other class'));
}

/** The attack's settings, each checked against its field's bounds: a refusal names the field. */
function attackSettings() {
  const n = (id, whole) => {
    const input = $(id);
    const value = input.value.trim() === '' ? NaN : Number(input.value);
    const [min, max] = [Number(input.min), Number(input.max)];
    if (!Number.isFinite(value) || value < min || value > max || (whole && !Number.isInteger(value))) {
      const name = input.closest('label')?.firstChild?.textContent.trim() ?? id;
      throw new Error(`"${name}" must be ${whole ? 'a whole number' : 'a number'} from ${min} to ${max}, not "${input.value}"`);
    }
    return value;
  };
  return { maxIterations: n('max-iterations', true), cSteps: n('c-steps', true), epsilon: n('epsilon', false), steps: n('pgd-steps', true) };
}

async function runAttack() {
  if (state.attacking) return;
  const { pack } = state;
  const index = state.digit;
  const pixels = currentPixels();
  const method = $('method').value;
  let settings;
  try {
    settings = attackSettings();
  } catch (e) {
    $('attack-status').textContent = `attack not started: ${e.message}`;
    return;
  }
  const curve = [];
  state.attacking = true;
  $('run-attack').disabled = true;
  $('cancel-attack').hidden = false;
  $('attack-result').hidden = true;
  drawCurve($('attack-curve'), []);
  $('attack-status').textContent = 'starting…';
  const started = performance.now();
  try {
    await state.ready;
    const onProgress = (p) => {
      curve.push(p.distortion);
      drawCurve($('attack-curve'), curve);
      $('attack-status').textContent = `c = ${p.c.toPrecision(3)} · iteration ${p.iteration} · loss ${p.loss.toFixed(3)} · distortion ${p.distortion.toFixed(4)}`;
    };
    const result = method === 'lbfgs'
      ? await lab.call('attack', { key: state.model.id, pixels, target: state.target, maxIterations: settings.maxIterations, cSteps: settings.cSteps }, { onProgress })
      : await lab.call('baseline', { key: state.model.id, pixels, target: state.target, epsilon: settings.epsilon, steps: method === 'pgd' ? settings.steps : 0 });
    showAttack(result, pixels, index, method);
    remember({ run: true });
    $('attack-status').textContent = `${result.success ? 'done' : 'no success'} in ${((performance.now() - started) / 1000).toFixed(2)} s`;
  } catch (e) {
    // a cancel keeps the model loaded: the next request runs at once
    $('attack-status').textContent = e.message === 'cancelled' ? 'cancelled' : `attack failed: ${e.message}`;
  } finally {
    state.attacking = false;
    $('run-attack').disabled = false;
    $('cancel-attack').hidden = true;
  }
}

function showAttack(result, pixels, index, method) {
  const { pack } = state;
  const truth = currentTruth();
  state.lastAttack = { result, pixels, index, truth, reference: truth ?? state.predicted, model: state.model };
  $('noise-result').textContent = '';
  $('transfer').hidden = true;
  const labels = state.model.labels ?? result.probabilities.map((_, i) => String(i));
  const box = $('attack-result');
  box.hidden = false;
  box.dataset.success = result.success;
  box.dataset.label = result.label;
  box.dataset.distortion = result.distortion;
  box.dataset.method = method;
  drawUnit($('adv-original'), pixels, pack.cols, pack.rows);
  drawDiff();
  drawUnit($('adv-image'), result.adversarial, pack.cols, pack.rows);
  $('orig-label').textContent = $('predicted').textContent;
  $('adv-label').textContent = labels[result.label];
  renderBars($('adv-bars'), result.probabilities, result.label, truth);
  const rows = [
    ['success', result.success ? 'yes' : 'no'],
    ['distortion', result.distortion.toFixed(4)],
    ['L2', result.l2.toFixed(3)],
    ['L-infinity', result.linf.toFixed(3)],
    ['iterations', result.iterations],
    ['gradients', result.gradientEvaluations],
    ['time', `${result.seconds.toFixed(2)} s`],
  ];
  if (result.backend) rows.push(['backend', result.backend === 'webgpu' ? 'WebGPU' : 'CPU']);
  if (result.c !== null && result.c !== undefined) rows.push(['c', result.c.toPrecision(3)]);
  $('adv-numbers').replaceChildren(...rows.flatMap(([k, v]) => {
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = v;
    return [dt, dd];
  }));
}

function showMoreDigits() {
  const { pack } = state;
  const end = Math.min(pack.count, state.shown + PAGE);
  const fragment = document.createDocumentFragment();
  for (let i = state.shown; i < end; i++) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'thumb';
    button.dataset.index = i;
    button.setAttribute('aria-pressed', String(i === state.digit));
    button.setAttribute('aria-label', `digit ${i}, labelled ${pack.labels[i]}`);
    const canvas = document.createElement('canvas');
    canvas.setAttribute('aria-hidden', 'true'); // the button says which digit it is
    drawGrey(canvas, pack.bytes(i), pack.cols, pack.rows);
    button.append(canvas);
    button.addEventListener('click', () => classifyDigit(i));
    fragment.append(button);
  }
  $('gallery').append(fragment);
  const from = state.shown;
  state.shown = end;
  $('more').hidden = end >= pack.count;
  $('gallery-count').textContent = `(${end} of ${pack.count} shown)`;
  if (state.model) markGallery(state.generation, from);
}

/** Classifies the shown digits in the background and marks the ones the model gets wrong. */
async function markGallery(generation, from = 0) {
  try {
    await state.ready;
    for (let i = from; i < state.shown; i++) {
      if (generation !== state.generation) return;
      const { label } = await lab.call('classify', { key: state.model.id, pixels: state.pack.input(i) });
      document.querySelector(`.thumb[data-index="${i}"]`)?.classList.toggle('wrong', label !== state.pack.labels[i]);
    }
  } catch {
    // the model failed to load: its error is already on the page
  }
}

/** The difference panel: x10 around mid-grey (the paper's Figure 5), or a signed heatmap. */
function drawDiff() {
  if (!state.lastAttack) return;
  const { result, pixels } = state.lastAttack;
  const { rows, cols } = state.pack;
  const heat = $('heatmap').checked;
  if (heat) drawHeatmap($('adv-diff'), pixels, result.adversarial, cols, rows);
  else drawDifference($('adv-diff'), pixels, result.adversarial, cols, rows);
  $('diff-caption').textContent = heat ? 'red: ink added, blue: ink removed' : 'difference ×10';
}

/** Gaussian noise of the adversarial example's distortion: does a random change of that size fool the model? */
async function compareWithNoise() {
  if (!state.lastAttack) return;
  const attack = state.lastAttack;
  const { result, pixels, reference, model } = attack;
  const labels = model.labels;
  const button = $('compare-noise');
  const out = $('noise-result');
  button.disabled = true;
  delete out.dataset.fooled;
  out.textContent = 'classifying noisy digits…';
  try {
    await state.ready;
    let fooled = 0;
    const trials = 10;
    for (let seed = 1; seed <= trials; seed++) {
      const noisy = await lab.call('noise', { key: model.id, pixels, target: null, distortion: result.distortion, seed });
      if (noisy.label !== reference) fooled++;
    }
    if (state.lastAttack !== attack) return; // another attack's result is on show now
    out.dataset.fooled = fooled;
    out.textContent = `Gaussian noise of the same distortion (${result.distortion.toFixed(4)}) changed the answer from ${labels[reference]} in ${fooled} of ${trials} tries.`;
  } catch (e) {
    if (state.lastAttack === attack) out.textContent = `The noise comparison failed: ${e.message}`;
  } finally {
    button.disabled = false;
  }
}

/** The adversarial digit fed to every other model (the paper's transfer). */
async function tryOnOtherModels() {
  const { result, reference, model } = state.lastAttack;
  const body = $('transfer').querySelector('tbody');
  body.replaceChildren();
  $('transfer').hidden = false;
  for (const other of state.models.filter((m) => m.id !== model.id)) {
    const row = document.createElement('tr');
    row.dataset.model = other.id;
    row.innerHTML = '<td></td><td>…</td><td></td>';
    row.cells[0].textContent = other.name;
    body.append(row);
    try {
      if (!lab.loaded.has(other.id)) {
        await lab.load(other.id, other.localBytes ? other.localBytes.slice(0) : await fetchBytes(`models/${other.file}`), other.input?.shape);
      }
      const p = await lab.call('classify', { key: other.id, pixels: Float32Array.from(result.adversarial) });
      row.dataset.label = p.label;
      row.classList.toggle('fooled', p.label !== reference);
      row.cells[1].textContent = other.labels?.[p.label] ?? String(p.label);
      row.cells[2].textContent = `${(p.probabilities[p.label] * 100).toFixed(1)}%`;
    } catch (e) {
      row.cells[1].textContent = `failed: ${e.message}`;
    }
  }
}

function download(blob, name) {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

/** A float32 .npy of shape [1, 1, rows, cols]: the model's input tensor. */
function npyBlob(values, shape) {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}), }`;
  header += ' '.repeat(63 - ((10 + header.length) % 64)) + '\n';
  const head = new Uint8Array(10);
  head.set([0x93, ...'NUMPY'].map((c) => (typeof c === 'string' ? c.charCodeAt(0) : c)));
  head[6] = 1;
  new DataView(head.buffer).setUint16(8, header.length, true);
  return new Blob([head, header, Float32Array.from(values)], { type: 'application/octet-stream' });
}

function downloadName(ext) {
  const { result, index, model } = state.lastAttack;
  return `blindspot-${model.id}-${index >= 0 ? `digit${index}` : 'drawing'}-as-${result.label}.${ext}`;
}

async function benchmark() {
  const button = $('bench');
  const out = $('bench-result');
  button.disabled = true;
  out.textContent = `timing ${state.model.name}…`;
  delete out.dataset.forward;
  delete out.dataset.gradient;
  delete out.dataset.gpuGradient;
  try {
    await state.ready;
    const { forward, gradient, gpuGradient, adapter, available, reason, backend } = await lab.call('bench', { key: state.model.id, pixels: currentPixels(), ms: 1000 });
    const n = (v) => Math.round(v).toLocaleString('en');
    out.dataset.forward = forward;
    out.dataset.gradient = gradient;
    out.textContent = `${state.model.name}: ${n(forward)} forward passes/s · `
      + `${n(gradient)} forward + gradient/s · `
      + `a gradient costs ${(forward / gradient).toFixed(1)} forward passes`;
    if (gpuGradient !== null) {
      out.dataset.gpuGradient = gpuGradient;
      out.textContent += ` · WebGPU (${adapter}): ${n(gpuGradient)} forward + gradient/s, ${(gpuGradient / gradient).toFixed(2)}× the CPU`;
    } else {
      out.textContent += available ? ` · WebGPU not timed: ${reason}` : ' · no WebGPU here';
    }
    out.dataset.backend = backend;
  } catch (e) {
    out.textContent = `benchmark failed: ${e.message}`;
  } finally {
    button.disabled = false;
  }
}

/** A model the person picks or drops: read locally, loaded in the worker, never sent anywhere. */
async function openModelFile(file) {
  if (!file) return;
  if (file.size > MODEL_LIMIT) {
    const device = navigator.deviceMemory ? ` on this device (${navigator.deviceMemory} GB of memory)` : '';
    showError(`"${file.name}" is ${(file.size / 1e6).toFixed(0)} MB; blindspot loads models of up to `
      + `${Math.floor(MODEL_LIMIT / 1e6)} MB in the page${device}: a model and its gradient take about `
      + `${PEAK_PER_BYTE} times its size in memory. The command-line tool has no such limit.`);
    return;
  }
  let bytes;
  try {
    bytes = await file.arrayBuffer();
  } catch (e) {
    showError(`"${file.name}" could not be read (${e.message}); pick it again, or copy it somewhere local first`);
    return;
  }
  // a colour image classifier (3 channels, any size) opens in the natural-images section, with
  // its input panel (photos.js); a file that does not decode is left to the lab's load to explain
  const suggestion = await lab.call('suggest', { bytes: bytes.slice(0) }).catch(() => null);
  if (suggestion?.channels === 3) {
    if (document.body.classList.contains('embed')) {
      // the embedded figure has no natural-images section to open it in
      showError(`"${file.name}" is a colour image classifier: open the full lab (the link above) and drop it there, `
        + 'where it opens in the natural-images section');
      return;
    }
    showError('');
    window.dispatchEvent(new CustomEvent('blindspot:imagemodel', { detail: { name: file.name, bytes, suggestion } }));
    return;
  }
  await addLocalModel({ id: `local:${file.name}`, name: `${file.name} (yours)`, file: file.name, bytes, select: true });
}

/**
 * A model the page holds the bytes of (dropped, or trained in the "Fix the blind spot" section)
 * put in the model list, and opened when `select`.
 */
async function addLocalModel({ id, name, file, bytes, select }) {
  state.models = state.models.filter((m) => m.id !== id);
  state.models.push({ id, name, file, localBytes: bytes, local: true });
  const chosen = $('model').value;
  $('model').replaceChildren(...state.models.map((m) => new Option(m.name, m.id)));
  $('model').value = chosen;
  if (!select) return;
  await selectModel(id);
  // the Property 1 and spectral panels offer a model the core could load (units.js, spectral.js);
  // `bytes` is the page's copy: a listener copies it before handing it to a worker
  if (state.model?.id === id && await state.ready.then(() => true, () => false)) {
    window.dispatchEvent(new CustomEvent('blindspot:usermodel', { detail: { id, name, bytes } }));
  }
}

/** A photo, scan or screenshot of a digit (picked, pasted or dropped) made into an MNIST-style digit. */
async function openImage(blob) {
  if (!blob) return;
  try {
    const bitmap = await decodeImage(blob);
    // the core works on at most 280 px a side: plenty for a 20-pixel digit
    const scale = Math.min(1, 280 / Math.max(bitmap.width, bitmap.height));
    const width = Math.max(1, Math.round(bitmap.width * scale));
    const height = Math.max(1, Math.round(bitmap.height * scale));
    const canvas = document.createElement('canvas');
    Object.assign(canvas, { width, height });
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    ctx.drawImage(bitmap, 0, 0, width, height);
    bitmap.close();
    const rgba = new Uint8Array(ctx.getImageData(0, 0, width, height).data.buffer);
    state.drawing = asBytes(await lab.call('mnistFromRgba', { rgba, width, height }));
    state.drawingKind = 'image';
    showError('');
    await classifyDigit(-1);
  } catch (e) {
    showError(`That image could not be used: ${e.message}`);
  }
}

/** The drawing pad: pointer strokes (mouse, touch, pen) in white on black. */
function setUpPad() {
  const pad = $('pad');
  const ctx = pad.getContext('2d');
  const clear = () => {
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, pad.width, pad.height);
  };
  clear();
  let last = null;
  const at = (e) => {
    const r = pad.getBoundingClientRect();
    return [(e.clientX - r.left) * (pad.width / r.width), (e.clientY - r.top) * (pad.height / r.height)];
  };
  pad.addEventListener('pointerdown', (e) => {
    try { pad.setPointerCapture(e.pointerId); } catch { /* a synthetic pointer cannot be captured */ }
    last = at(e);
  });
  pad.addEventListener('pointermove', (e) => {
    if (!last) return;
    const next = at(e);
    ctx.strokeStyle = '#fff';
    ctx.lineWidth = pad.width / 14;
    ctx.lineCap = 'round';
    ctx.beginPath();
    ctx.moveTo(...last);
    ctx.lineTo(...next);
    ctx.stroke();
    last = next;
  });
  for (const end of ['pointerup', 'pointercancel']) pad.addEventListener(end, () => { last = null; });
  $('pad-clear').addEventListener('click', clear);
  $('pad-use').addEventListener('click', async () => {
    const data = ctx.getImageData(0, 0, pad.width, pad.height).data;
    const grey = new Float32Array(pad.width * pad.height);
    for (let i = 0; i < grey.length; i++) grey[i] = data[i * 4] / 255;
    try {
      state.drawing = asBytes(await lab.call('mnistLike', { pixels: grey, width: pad.width, height: pad.height }));
      state.drawingKind = 'drawing';
      for (const b of document.querySelectorAll('.thumb[aria-pressed="true"]')) b.setAttribute('aria-pressed', 'false');
      showError('');
      await classifyDigit(-1);
    } catch (e) {
      showError(`The drawing could not be used: ${e.message}`);
    }
  });
}

/**
 * The ?embed=1 mode for iframes (and <blindspot-demo>): no page chrome, a link to the full lab,
 * and the page's height posted to the embedding page so the frame can fit it.
 */
function setUpEmbed(params) {
  if (params.get('embed') !== '1') return;
  document.body.classList.add('embed');
  $('embed-bar').hidden = false;
  if (window.parent === window) return;
  let last = 0;
  new ResizeObserver(() => {
    const height = Math.ceil(document.documentElement.getBoundingClientRect().height);
    if (height === last) return;
    last = height;
    window.parent.postMessage({ blindspot: 'resize', height }, '*');
  }).observe(document.body);
}

/** Arrow keys move between the gallery's digits (each is also a Tab stop and a button). */
function setUpGalleryKeys() {
  $('gallery').addEventListener('keydown', (e) => {
    const thumb = e.target.closest('.thumb');
    if (!thumb) return;
    const thumbs = [...$('gallery').querySelectorAll('.thumb')];
    const perRow = Math.max(1, Math.round($('gallery').clientWidth / thumb.offsetWidth));
    const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: perRow, ArrowUp: -perRow, Home: -Infinity, End: Infinity }[e.key];
    if (step === undefined) return;
    e.preventDefault();
    const next = Math.min(thumbs.length - 1, Math.max(0, thumbs.indexOf(thumb) + step));
    thumbs[next].focus();
  });
}

async function main() {
  try {
    const params = new URLSearchParams(location.search);
    setUpEmbed(params);
    setUpGalleryKeys();
    const [shipped, packBytes] = await Promise.all([
      manifest(),
      fetchOnce('models/data/mnist-test-1k.bin'),
    ]);
    state.models = shipped.models;
    state.pack = parseDigitPack(packBytes, 'models/data/mnist-test-1k.bin');
    const digit = Number(params.get('digit'));
    state.digit = Number.isInteger(digit) && digit >= 0 && digit < state.pack.count ? digit : 0;
    const linked = params.has('image') ? pixelsFromParam(params.get('image'), state.pack.rows * state.pack.cols) : null;
    if (linked) Object.assign(state, { drawing: linked, drawingKind: 'link', digit: -1 });
    const select = $('model');
    select.replaceChildren(...state.models.map((m) => new Option(`${m.name}`, m.id)));
    select.disabled = false;
    select.addEventListener('change', () => selectModel(select.value));
    $('more').addEventListener('click', showMoreDigits);
    $('bench').addEventListener('click', benchmark);
    $('backend').addEventListener('change', switchBackend);
    if (['cpu', 'webgpu'].includes(params.get('backend'))) state.backendChoice = params.get('backend');
    lab.preference = state.backendChoice ?? 'auto'; // sent with each load
    const first = state.models.find((m) => m.id === params.get('model'))
      ?? state.models.find((m) => m.default) ?? state.models[0];
    state.preload = { id: first.id, ready: loadModel(first) };
    state.preload.ready.catch(() => {}); // selectModel reports a failure
    setUpPad();
    $('model-file').addEventListener('change', (e) => openModelFile(e.target.files[0]));
    window.addEventListener('blindspot:addmodel', async (e) => {
      await addLocalModel(e.detail);
      if (e.detail.select) document.querySelector('.controls').scrollIntoView({ behavior: 'smooth', block: 'start' });
    });
    document.addEventListener('dragover', (e) => { e.preventDefault(); document.body.classList.add('dropping'); });
    document.addEventListener('dragleave', () => document.body.classList.remove('dropping'));
    document.addEventListener('drop', (e) => {
      e.preventDefault();
      document.body.classList.remove('dropping');
      const file = e.dataTransfer.files[0];
      if (file?.type.startsWith('image/')) openImage(file); else openModelFile(file);
    });
    $('image-file').addEventListener('change', (e) => openImage(e.target.files[0]));
    document.addEventListener('paste', (e) => {
      if (e.target.closest?.('input, textarea')) return;
      const item = [...(e.clipboardData?.items ?? [])].find((i) => i.kind === 'file');
      if (!item) return;
      e.preventDefault();
      openImage(item.getAsFile());
    });
    $('run-attack').addEventListener('click', runAttack);
    $('cancel-attack').addEventListener('click', () => lab.cancel());
    $('compare-noise').addEventListener('click', compareWithNoise);
    $('try-others').addEventListener('click', tryOnOtherModels);
    $('download-png').addEventListener('click', () => $('adv-image').toBlob((b) => download(b, downloadName('png'))));
    $('download-npy').addEventListener('click', () => {
      const { pack } = state;
      download(npyBlob(state.lastAttack.result.adversarial, [1, 1, pack.rows, pack.cols]), downloadName('npy'));
    });
    showMoreDigits();
    if (state.digit >= 0) drawGrey($('digit'), state.pack.bytes(state.digit), state.pack.cols, state.pack.rows);
    const target = params.get('target');
    state.target = target === 'any' ? null
      : Number.isInteger(Number(target)) && target !== null && Number(target) >= 0 && Number(target) < 10 ? Number(target)
        : state.digit >= 0 ? (state.pack.labels[state.digit] + 1) % 10 : null;
    if (['lbfgs', 'fgsm', 'pgd'].includes(params.get('attack'))) $('method').value = params.get('attack');
    recallSettings(params);
    state.autorun = params.get('run') === '1' && (params.has('digit') || !!linked);
    $('method').addEventListener('change', () => remember());
    for (const [, id] of SETTINGS) $(id).addEventListener('change', () => remember());
    $('heatmap').addEventListener('change', () => {
      drawDiff();
      remember({ run: !$('attack-result').hidden });
    });
    renderTargets();
    const wanted = params.get('model') ?? state.models.find((m) => m.default)?.id;
    await selectModel(wanted);
    if (params.has('image') && !linked) showError('The image in this link could not be read (it should be 784 pixels, base64url); a test digit is shown instead.');
  } catch (e) {
    setStatus('failed');
    showError(`blindspot could not start: ${e.message}`);
  }
}

main();
