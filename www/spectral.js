// The spectral-bounds panel: the paper's Table 5 (section 4.3) for a shipped model, computed in a
// worker of its own by the same core as `blindspot lipschitz MODEL`, beside the paper's AlexNet.
import { embedded, manifest } from './assets.js';
import { panelLab } from './client.js';

// Szegedy et al. (2013), Table 5: upper Lipschitz bounds of AlexNet's rectified layers
const ALEXNET = [['Conv. 1', 2.75], ['Conv. 2', 10], ['Conv. 3', 7], ['Conv. 4', 7.5], ['Conv. 5', 11],
  ['FC1', 3.12], ['FC2', 4], ['FC3', 4]];

const root = document.getElementById('spectral');
const panel = { lab: null, manifest: [], local: [], busy: false, chosen: false };
const el = (tag, props = {}, ...children) => {
  const e = Object.assign(document.createElement(tag), props);
  e.append(...children.filter((c) => c !== null && c !== undefined));
  return e;
};
const $ = (id) => root.querySelector(`#${id}`);
/** Seven significant digits, as the CLI's Markdown prints them. */
const num = (v) => (Number.isFinite(v) ? String(Number(v.toPrecision(7))) : '–');

/** The lab's model, when it is one of ours: the panel follows it until a model is picked here. */
function followLab() {
  const lab = document.getElementById('model');
  if (panel.chosen || !lab || panel.busy) return;
  if (panel.manifest.some((m) => m.id === lab.value)) $('spectral-model').value = lab.value;
}

/**
 * A model dropped or picked into the lab (app.js's 'blindspot:usermodel'): offered here too, and
 * followed like the shipped ones until a model is picked here.
 */
function addUserModel({ id, name, bytes }) {
  const model = { id, name, localBytes: bytes };
  panel.local = [...panel.local.filter((m) => m.id !== id), model];
  // the pool is shared: the lab's load has already put these bytes under `id` (other bytes of
  // the same name replaced), so nothing is forgotten here; a delete would unload the lab's model
  if (root.dataset.ready === undefined) return; // init() adds it
  panel.manifest = [...panel.manifest.filter((m) => m.id !== id), model];
  const select = $('spectral-model');
  const chosen = select.value;
  select.replaceChildren(...panel.manifest.map((m) => el('option', { value: m.id, textContent: m.name })));
  select.value = chosen;
  followLab();
}

async function init() {
  if (embedded) return;
  const select = $('spectral-model');
  try {
    panel.manifest = (await manifest()).models;
  } catch (e) {
    $('spectral-status').textContent = `the model list could not be read: ${e.message}`;
    root.dataset.state = 'error';
    return;
  }
  panel.manifest = [...panel.manifest, ...panel.local];
  select.replaceChildren(...panel.manifest.map((m) => el('option', { value: m.id, textContent: m.name })));
  select.value = (panel.manifest.find((m) => m.default) ?? panel.manifest[0]).id;
  select.addEventListener('change', () => { panel.chosen = true; });
  document.getElementById('model')?.addEventListener('change', followLab);
  followLab();
  $('spectral-run').addEventListener('click', compute);
  renderPaper();
  root.dataset.state = 'idle';
  root.dataset.ready = '';
}

async function compute() {
  if (panel.busy) return;
  followLab(); // the lab may have switched models without a change event (a permalink)
  const select = $('spectral-model');
  const m = panel.manifest.find((x) => x.id === select.value);
  const [button, status, bar] = [$('spectral-run'), $('spectral-status'), $('spectral-progress')];
  if (!m) {
    // the model was taken off the list (a dropped model that failed): nothing to compute
    status.textContent = 'pick a model from the list first';
    return;
  }
  panel.busy = true;
  button.disabled = true;
  root.dataset.state = 'running';
  bar.value = 0;
  status.textContent = `loading ${m.name}…`;
  const start = performance.now();
  try {
    panel.lab ??= panelLab();
    if (!m.localBytes) await panel.lab.ensure(m);
    else if (!panel.lab.loaded.has(m.id)) await panel.lab.load(m.id, m.localBytes.slice(0)); // a copy: the worker takes it
    const table = await panel.lab.call('lipschitz', { key: m.id }, { onProgress: ({ done, total, node }) => {
      bar.max = Math.max(1, total);
      bar.value = done;
      status.textContent = node ? `layer ${done + 1} of ${total}: power iteration on ${node}…` : 'done';
    } });
    bar.value = bar.max;
    render(table, m);
    status.textContent = `done in ${((performance.now() - start) / 1000).toFixed(1)} s · ${m.name}`;
    root.dataset.model = m.id;
    root.dataset.state = 'done';
  } catch (e) {
    status.textContent = `${m.name}: Table 5 could not be computed: ${e.message}; pick another model`;
    root.dataset.state = 'error';
  } finally {
    panel.busy = false;
    button.disabled = false;
  }
}

function render(table, m) {
  const head = ['layer', 'op', 'shape', '‖W‖ power iteration', 'iterations', '‖W‖ Fourier', 'then', 'factor', 'upper bound'];
  const rows = table.rows.map((r) => {
    const fourier = el('td', { textContent: r.fourier === null ? '–' : num(r.fourier) });
    if (r.fourier !== null) fourier.dataset.fourier = String(r.fourier);
    if (r.strided) fourier.append(el('small', { textContent: ' (stride-1 bound)' }));
    const power = el('td', { textContent: r.power === null ? '–' : num(r.power) });
    if (r.power !== null) power.dataset.power = String(r.power);
    const then = r.then.map((t) => `${t.what} (${num(t.factor)})`).join(', ') || '–';
    const tr = el('tr', {},
      el('th', { scope: 'row', textContent: r.node }),
      el('td', { className: 'text', textContent: r.op }),
      el('td', { className: 'text', textContent: r.shape }),
      power,
      el('td', { textContent: r.iterations ?? '–' }),
      fourier,
      el('td', { className: 'text', textContent: then }),
      el('td', { textContent: num(r.factor) }),
      el('td', { className: 'ours', textContent: num(r.bound) }));
    tr.dataset.node = r.node;
    tr.cells[7].dataset.factor = String(r.factor);
    tr.cells[8].dataset.bound = String(r.bound);
    return tr;
  });
  const product = el('tr', { className: 'product' },
    el('th', { scope: 'row', colSpan: 8, textContent: table.product === null ? 'product: not available' : 'product (input → logits)' }),
    el('td', { className: 'ours', textContent: table.product === null ? '–' : num(table.product) }));
  const t = el('table', { className: 'spectral-table', id: 'spectral-table' },
    el('thead', {}, el('tr', {}, ...head.map((h, k) => el('th', { scope: 'col', textContent: h, className: [1, 2, 6].includes(k) ? 'text' : '' })))),
    el('tbody', {}, ...rows),
    el('tfoot', {}, product));
  t.dataset.model = m.id;
  if (table.product !== null) t.dataset.product = String(table.product);
  t.setAttribute('aria-labelledby', 'spectral-table-title');
  const title = el('h3', { id: 'spectral-table-title', textContent: `${m.name}: upper Lipschitz bounds per layer (Euclidean norms)` });
  $('spectral-wrap').replaceChildren(title, t);
  const note = table.product !== null
    ? `The product ${num(table.product)} bounds ‖logits(x + r) − logits(x)‖ / ‖r‖ for every digit x and every change r.`
    : `No product bound: ${table.unavailable}.`;
  const excluded = table.excluded.length ? ` Left out: ${table.excluded.join(', ')}.` : '';
  const strided = table.rows.some((r) => r.strided)
    ? ' Fourier values of strided convolutions are those of the same kernel at stride 1: downsampling has norm 1, so they bound the strided layer from above.' : '';
  $('spectral-note').textContent = note + excluded + strided;
}

function renderPaper() {
  const t = el('table', { className: 'spectral-table spectral-paper' },
    el('thead', {}, el('tr', {}, ...ALEXNET.map(([name]) => el('th', { scope: 'col', textContent: name })))),
    el('tbody', {}, el('tr', {}, ...ALEXNET.map(([, v]) => el('td', { textContent: String(v) })))));
  t.setAttribute('aria-labelledby', 'spectral-paper-title');
  const title = el('h3', { id: 'spectral-paper-title', textContent: 'The paper\'s AlexNet (Table 5): upper bound per rectified layer' });
  $('spectral-paper-wrap').replaceChildren(title, t);
}

window.addEventListener('blindspot:usermodel', (e) => addUserModel(e.detail));
init();
