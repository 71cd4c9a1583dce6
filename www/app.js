// The page: model picker, test-digit gallery, classification with probability bars.
import { LabWorker } from './client.js';
import { parseDigitPack } from './digits.js';
import { drawGrey } from './draw.js';

const $ = (id) => document.getElementById(id);
const PAGE = 60;
const lab = new LabWorker();
const state = { models: [], model: null, ready: null, pack: null, digit: 0, shown: 0, generation: 0 };

async function fetchBytes(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: ${response.status} ${response.statusText || 'not found'}`);
  return response.arrayBuffer();
}

function showError(message) {
  $('error').textContent = message;
  $('error').hidden = !message;
}

function setStatus(text) {
  $('model-status').textContent = text;
}

function kilobytes(n) {
  return n > 1e6 ? `${(n / 1e6).toFixed(1)} MB` : `${Math.round(n / 1e3)} kB`;
}

/** Reflects the choice in the URL so a reload or a shared link shows the same thing. */
function remember() {
  const params = new URLSearchParams(location.search);
  params.set('model', state.model.id);
  params.set('digit', state.digit);
  history.replaceState(null, '', `?${params}`);
}

async function selectModel(id) {
  const model = state.models.find((m) => m.id === id) ?? state.models[0];
  state.model = model;
  const generation = ++state.generation;
  $('model').value = model.id;
  $('model-card').href = `models/${model.card}`;
  showError('');
  for (const thumb of document.querySelectorAll('.thumb.wrong')) thumb.classList.remove('wrong');
  setStatus(`loading ${model.file}…`);
  document.body.dataset.modelState = 'loading';
  remember();
  const started = performance.now();
  state.ready = (async () => {
    const bytes = await fetchBytes(`models/${model.file}`);
    const size = bytes.byteLength;
    const info = await lab.load(model.id, bytes, model.input?.shape);
    return { ...info, size, ms: performance.now() - started };
  })();
  try {
    const info = await state.ready;
    if (generation !== state.generation) return;
    setStatus(`ready · ${kilobytes(info.size)} · input [${info.inputShape.join(', ')}] · loaded in ${Math.round(info.ms)} ms`);
    document.body.dataset.modelState = 'ready';
    await classifyDigit(state.digit);
    markGallery(generation);
  } catch (e) {
    if (generation !== state.generation) return;
    setStatus('failed to load');
    document.body.dataset.modelState = 'error';
    showError(`${model.name} (${model.file}) could not be loaded: ${e.message}`);
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
  state.digit = index;
  const { pack } = state;
  drawGrey($('digit'), pack.bytes(index), pack.cols, pack.rows);
  $('digit-index').textContent = `#${index}`;
  $('digit-label').textContent = pack.labels[index];
  for (const b of document.querySelectorAll('.thumb[aria-pressed="true"]')) b.setAttribute('aria-pressed', 'false');
  document.querySelector(`.thumb[data-index="${index}"]`)?.setAttribute('aria-pressed', 'true');
  remember();
  if (!state.model || !state.ready) return;
  const key = state.model.id;
  try {
    await state.ready;
    const result = await lab.classify(key, pack.input(index));
    if (state.digit !== index || state.model.id !== key) return;
    renderPrediction(result, pack.labels[index]);
  } catch (e) {
    showError(`classification failed: ${e.message}`);
  }
}

function renderPrediction({ label, probabilities }, truth) {
  const labels = state.model.labels ?? probabilities.map((_, i) => String(i));
  const el = $('prediction');
  el.dataset.label = label;
  el.dataset.probabilities = JSON.stringify(probabilities);
  el.dataset.digit = state.digit;
  el.classList.toggle('wrong', label !== truth);
  $('predicted').textContent = labels[label];
  $('confidence').textContent = `${(probabilities[label] * 100).toFixed(1)}% sure${label === truth ? '' : ' · wrong'}`;
  const rows = probabilities.map((p, i) => {
    const li = document.createElement('li');
    li.className = (i === label ? 'top ' : '') + (i === truth ? 'truth' : '');
    li.innerHTML = `<span class="name"></span><span class="track"><span class="fill"></span></span><span class="value"></span>`;
    li.querySelector('.name').textContent = labels[i];
    li.querySelector('.fill').style.width = `${(p * 100).toFixed(2)}%`;
    li.querySelector('.value').textContent = p < 0.001 ? '<0.1%' : `${(p * 100).toFixed(1)}%`;
    li.title = `${labels[i]}: ${(p * 100).toFixed(4)}%`;
    return li;
  });
  $('bars').replaceChildren(...rows);
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
      const { label } = await lab.classify(state.model.id, state.pack.input(i));
      document.querySelector(`.thumb[data-index="${i}"]`)?.classList.toggle('wrong', label !== state.pack.labels[i]);
    }
  } catch {
    // the model failed to load: its error is already on the page
  }
}

async function benchmark() {
  const button = $('bench');
  const out = $('bench-result');
  button.disabled = true;
  out.textContent = `timing ${state.model.name}…`;
  delete out.dataset.forward;
  try {
    await state.ready;
    const { forward, gradient } = await lab.bench(state.model.id, state.pack.input(state.digit), 1000);
    out.dataset.forward = forward;
    out.dataset.gradient = gradient;
    out.textContent = `${state.model.name}: ${Math.round(forward).toLocaleString('en')} forward passes/s · `
      + `${Math.round(gradient).toLocaleString('en')} forward + gradient/s · `
      + `a gradient costs ${(forward / gradient).toFixed(1)} forward passes`;
  } catch (e) {
    out.textContent = `benchmark failed: ${e.message}`;
  } finally {
    button.disabled = false;
  }
}

async function main() {
  try {
    const params = new URLSearchParams(location.search);
    const [manifest, packBytes] = await Promise.all([
      fetch('models/models.json').then((r) => {
        if (!r.ok) throw new Error(`models/models.json: ${r.status}`);
        return r.json();
      }),
      fetchBytes('models/data/mnist-test-1k.bin'),
    ]);
    state.models = manifest.models;
    state.pack = parseDigitPack(packBytes);
    const digit = Number(params.get('digit'));
    state.digit = Number.isInteger(digit) && digit >= 0 && digit < state.pack.count ? digit : 0;
    const select = $('model');
    select.replaceChildren(...state.models.map((m) => new Option(`${m.name}`, m.id)));
    select.disabled = false;
    select.addEventListener('change', () => selectModel(select.value));
    $('more').addEventListener('click', showMoreDigits);
    $('bench').addEventListener('click', benchmark);
    showMoreDigits();
    drawGrey($('digit'), state.pack.bytes(state.digit), state.pack.cols, state.pack.rows);
    const wanted = params.get('model') ?? state.models.find((m) => m.default)?.id;
    await selectModel(wanted);
  } catch (e) {
    setStatus('failed');
    showError(`blindspot could not start: ${e.message}`);
  }
}

main();
