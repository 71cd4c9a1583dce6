// Property 1: the test digits that maximise a unit of a layer beside those that maximise a random
// direction (the paper's Figures 1-2), and activation maximisation in the [0,1] box. Its own
// worker; activations are computed once per model, layer and digit set, and kept there.
import { embedded, manifest, fetchOnce } from './assets.js';
import { panelLab } from './client.js';
import { parseDigitPack } from './digits.js';
import { drawGrey, drawUnit } from './draw.js';

const $ = (id) => document.getElementById(id);
const CHUNK = 50; // images per worker call: progress and cancel between chunks
const MAX_FLOATS = 40e6; // activations kept in the worker: 160 MB at most
const PACKS = { '1k': 'models/data/mnist-test-1k.bin', '10k': 'models/data/mnist-test-10k.bin' };

const units = {
  lab: null, manifest: [], packs: new Map(), tensors: [],
  /** Sets whose activations are complete in the current worker: `${model}|${tensor}|${set}`. */
  done: new Set(),
  busy: false, started: false,
};

const selected = () => ({ model: $('units-model').value, tensor: $('units-tensor').value, set: $('units-set').value });
const setKey = ({ model, tensor, set }) => `${model}|${tensor}|${set}`;
const int = (id) => Math.max(Number($(id).min || 0), Math.floor(Number($(id).value) || 0));

function status(text, fraction = null) {
  $('units-status').textContent = text;
  if (fraction !== null) $('units-progress').value = fraction;
}

async function pack(set) {
  if (!units.packs.has(set)) {
    const loading = fetchOnce(PACKS[set]).then((bytes) => parseDigitPack(bytes, PACKS[set]));
    loading.catch(() => units.packs.delete(set)); // a failed fetch is tried again next time
    units.packs.set(set, loading);
  }
  return units.packs.get(set);
}

/** The pool with model `id` loaded (again after a crashed worker lost it). */
async function ensureModel(id) {
  units.lab ??= panelLab();
  const model = units.manifest.find((x) => x.id === id);
  let fresh;
  if (model.localBytes) {
    // a model the person dropped into the lab: its bytes, copied (the worker takes what it is sent)
    fresh = !units.lab.loaded.has(id);
    if (fresh) await units.lab.load(id, model.localBytes.slice(0));
  } else {
    fresh = await units.lab.ensure(model);
  }
  if (!fresh) return;
  for (const key of [...units.done]) if (key.startsWith(`${id}|`)) units.done.delete(key);
}

/** Fills the layer picker for the chosen model; the default is the layer just before the logits. */
async function listTensors() {
  const { model } = selected();
  $('units-tensor').disabled = true;
  status(`loading ${model}…`);
  try {
    await ensureModel(model);
    units.tensors = await units.lab.call('tensors', { key: model });
    const options = units.tensors.map((t) => new Option(`${t.name} (${t.shape.join('×')})`, t.name));
    $('units-tensor').replaceChildren(...options);
    const hidden = units.tensors.filter((t) => !/_pre$/.test(t.name));
    $('units-tensor').value = (hidden.at(-2) ?? units.tensors.at(-1))?.name ?? '';
    $('units-tensor').disabled = false;
    onTensor();
    status('');
  } catch (e) {
    // the previous model's layers are not this model's: nothing to run until another is picked
    units.tensors = [];
    $('units-tensor').replaceChildren();
    for (const id of ['units-run', 'max-run', 'units-reroll']) $(id).disabled = true;
    status(`${model} could not be loaded: ${e.message}; pick another model`);
    return;
  }
  for (const id of ['units-run', 'max-run', 'units-reroll']) $(id).disabled = false;
}

function onTensor() {
  const tensor = units.tensors.find((t) => t.name === $('units-tensor').value);
  if (!tensor) return;
  const len = tensor.shape.reduce((a, b) => a * b, 1);
  $('units-unit').max = len - 1;
  if (int('units-unit') > len - 1) $('units-unit').value = 0;
}

/** Activations of the chosen layer over the chosen digits, computed unless already there. */
async function computeActivations(choice) {
  if (units.done.has(setKey(choice))) return;
  const digits = await pack(choice.set);
  await ensureModel(choice.model);
  const tensor = units.tensors.find((t) => t.name === choice.tensor);
  const len = tensor.shape.reduce((a, b) => a * b, 1);
  if (len * digits.count > MAX_FLOATS) {
    throw new Error(`${choice.tensor} over ${digits.count.toLocaleString('en')} digits would need `
      + `${Math.round((len * digits.count * 4) / 1e6)} MB; pick fewer digits or a smaller layer`);
  }
  const started = performance.now();
  for (let from = 0; from < digits.count; from += CHUNK) {
    const to = Math.min(digits.count, from + CHUNK);
    const images = new Float32Array((to - from) * digits.rows * digits.cols);
    for (let i = from; i < to; i++) images.set(digits.input(i), (i - from) * digits.rows * digits.cols);
    await units.lab.call('activations', { key: choice.model, tensor: choice.tensor, set: choice.set, images, fresh: from === 0 });
    status(`φ(x) for digit ${to} of ${digits.count}`, to / digits.count);
  }
  units.done.add(setKey(choice));
  units.lastSeconds = (performance.now() - started) / 1000;
}

/** Draws a ranking: each digit with its label and projection. */
function renderRow(row, ranked, digits) {
  row.dataset.digits = ranked.map((r) => r.index).join(',');
  row.dataset.values = JSON.stringify(ranked.map((r) => r.value));
  row.replaceChildren(...ranked.map(({ index, value }) => {
    const figure = document.createElement('figure');
    const canvas = document.createElement('canvas');
    canvas.setAttribute('aria-label', `test digit ${index}, a ${digits.labels[index]}, projection ${value.toFixed(2)}`);
    drawGrey(canvas, digits.bytes(index), digits.cols, digits.rows);
    const caption = document.createElement('figcaption');
    caption.textContent = `#${index} · ${value.toFixed(2)}`;
    figure.append(canvas, caption);
    return figure;
  }));
}

async function rank() {
  const choice = selected();
  if (!units.done.has(setKey(choice))) return;
  const [unit, seed, k] = [int('units-unit'), Math.max(1, int('units-seed')), Math.max(1, Math.min(32, int('units-k')))];
  const digits = await pack(choice.set);
  const ranked = await units.lab.call('rank', { key: choice.model, tensor: choice.tensor, set: choice.set, unit, seed, k });
  renderRow($('units-unit-top'), ranked.unit, digits);
  renderRow($('units-direction-top'), ranked.direction, digits);
  $('units-unit-caption').textContent = `Digits that maximise unit ${unit} of ${choice.tensor}`;
  $('units-direction-caption').textContent = `Digits that maximise a random direction v (seed ${seed})`;
  $('units-results').hidden = false;
  $('units').dataset.state = 'ranked';
  $('units').dataset.choice = JSON.stringify({ ...choice, unit, seed, k });
}

/** A new ranking from the activations already kept in the worker (unit, seed or k changed). */
function rerank() {
  if (!units.done.has(setKey(selected()))) return;
  busy(async () => {
    await rank();
    status(`ranked from the kept activations of ${selected().tensor}`, 1);
  });
}

/** Runs `job` with the buttons locked and Cancel shown; a cancel restarts the worker. */
async function busy(job) {
  if (units.busy) return;
  units.busy = true;
  $('units').dataset.state = 'busy';
  for (const id of ['units-run', 'max-run', 'units-reroll']) $(id).disabled = true;
  $('units-cancel').hidden = false;
  try {
    await job();
  } catch (e) {
    $('units').dataset.state = 'error';
    status(e.message === 'cancelled' ? 'cancelled' : e.message, 0);
  } finally {
    units.busy = false;
    for (const id of ['units-run', 'max-run', 'units-reroll']) $(id).disabled = false;
    $('units-cancel').hidden = true;
  }
}

function findDigits() {
  return busy(async () => {
    const choice = selected();
    const fresh = !units.done.has(setKey(choice));
    status('starting…', 0);
    await computeActivations(choice);
    await rank();
    const digits = await pack(choice.set);
    status(fresh ? `φ(x) of ${choice.tensor} for ${digits.count.toLocaleString('en')} digits in ${units.lastSeconds.toFixed(1)} s; kept for the next ranking`
      : `ranked from the kept activations of ${choice.tensor}`, 1);
  });
}

/** Gradient ascent on the unit and on the direction, from grey or a test digit, side by side. */
function maximiseBoth() {
  return busy(async () => {
    const { model, tensor } = selected();
    await ensureModel(model);
    const digits = await pack('1k');
    const start = $('max-start').value === 'digit' ? Array.from(digits.input(Math.min(999, int('max-digit'))))
      : new Array(digits.rows * digits.cols).fill(0.5);
    const [unit, seed, iterations] = [int('units-unit'), Math.max(1, int('units-seed')), Math.max(1, int('max-steps'))];
    const jobs = [['max-unit', { unit }, `unit ${unit}`], ['max-direction', { seed }, `direction v (seed ${seed})`]];
    for (const [canvas, which, name] of jobs) {
      status(`maximising ${name}…`, 0);
      const found = await units.lab.call('maximise', { key: model, tensor, ...which, start, iterations }, { onProgress: (p) => {
        status(`maximising ${name}: iteration ${p.iteration}, ⟨φ(x), v⟩ = ${p.value.toFixed(3)}`, p.iteration / iterations);
      } });
      drawUnit($(canvas), found.image, digits.cols, digits.rows);
      $('units-max').hidden = false;
      Object.assign($(canvas).dataset, { value: found.value, start: found.startValue, iterations: found.iterations });
      $(`${canvas}-caption`).textContent = `${name} of ${tensor}: ${found.startValue.toFixed(2)} → ${found.value.toFixed(2)} in ${found.iterations} iterations`;
    }
    $('units-max').dataset.state = 'done';
    $('units-max').hidden = false;
    status('maximised both', 1);
  });
}

/** The model picker: the shipped models, then those dropped into the lab; keeps the choice. */
function fillModels() {
  const select = $('units-model');
  const chosen = select.value;
  select.replaceChildren(...units.manifest.map((m) => new Option(m.name, m.id)));
  select.value = units.manifest.some((m) => m.id === chosen) ? chosen : units.manifest.find((m) => m.default)?.id ?? units.manifest[0].id;
}

/** A model dropped or picked into the lab (app.js's 'blindspot:usermodel'): offered here too. */
function addUserModel({ id, name, bytes }) {
  units.manifest = [...units.manifest.filter((m) => m.id !== id), { id, name, localBytes: bytes }];
  // the pool is shared: the lab's load has already put these bytes under `id` (other bytes of
  // the same name replaced), so nothing is forgotten here; a delete would unload the lab's model
  for (const key of [...units.done]) if (key.startsWith(`${id}|`)) units.done.delete(key);
  if (!units.ready) return;
  fillModels();
  if ($('units-model').value === id && !units.busy) listTensors();
}

async function start() {
  if (units.started) return;
  units.started = true;
  try {
    const shipped = (await manifest()).models;
    units.manifest = [...shipped, ...units.manifest.filter((m) => m.localBytes)];
    fillModels();
    $('units-model').value = units.manifest.find((m) => m.default)?.id ?? units.manifest[0].id;
    $('units-model').disabled = false;
    units.ready = true;
    await listTensors();
  } catch (e) {
    status(`could not start: ${e.message}`);
  }
}

/** Resolves once the lab has shown its first classification (app.js sets body[data-answered]). */
function labAnswered() {
  return new Promise((resolve) => {
    const check = () => document.body.dataset.answered !== undefined;
    if (check()) return resolve();
    const watch = new MutationObserver(() => {
      if (check()) { watch.disconnect(); resolve(); }
    });
    watch.observe(document.body, { attributes: true, attributeFilter: ['data-answered'] });
    // a lab that never answers (no model loads) must not keep this panel off for good
    setTimeout(() => { watch.disconnect(); resolve(); }, 10_000);
  });
}

function main() {
  const section = $('units');
  if (!section || embedded) return;
  window.addEventListener('blindspot:usermodel', (e) => addUserModel(e.detail));
  // nothing is loaded until the section comes near the screen (or a control is used), and not
  // before the lab's first answer is on show: while the lab is still empty this section sits near
  // the top, and a second worker compiling the wasm would slow the first classification down
  const observer = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) {
      observer.disconnect();
      start();
    }
  }, { rootMargin: '200px' });
  labAnswered().then(() => observer.observe(section));
  section.addEventListener('focusin', start);
  $('units-model').addEventListener('change', listTensors);
  $('units-tensor').addEventListener('change', onTensor);
  $('units-run').addEventListener('click', findDigits);
  $('max-run').addEventListener('click', maximiseBoth);
  $('units-cancel').addEventListener('click', () => {
    units.done.clear(); // a set cut short by the cancel is incomplete: computed again from the start
    units.lab?.cancel();
  });
  $('units-reroll').addEventListener('click', () => {
    $('units-seed').value = Math.max(1, int('units-seed')) + 1;
    rerank();
  });
  for (const id of ['units-unit', 'units-seed', 'units-k']) $(id).addEventListener('change', rerank);
}

main();
