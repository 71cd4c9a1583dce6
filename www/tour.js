// The paper tour: Tables 1-4 of Szegedy et al. (2013) rerun live on the page's worker pool, with
// the paper's figures beside ours. Same digits, targets, attack and noise as `blindspot table1`,
// `table2` and `table3`, so the page and the command-line tool agree.
import { embedded, manifest, fetchOnce } from './assets.js';
import { panelLab } from './client.js';
import { parseDigitPack } from './digits.js';

const SEED = 2013;
const DEFAULT_N = 100; // Table 1 makes 6 N attacks: about 15 s in headless Chromium on 2 cores
const TABLE1 = ['fc10-1e-4', 'fc10-1e-2', 'fc10-1', 'fc100-100-10', 'fc200-200-10', 'ae400-10'];
const TABLE3 = ['fc100-100-10-p1', 'fc123-456-10-p1', 'fc100-100-10-p2'];
const NOISE2 = [0.1, 0.3];

// The paper's quoted Tables 2-4, from models/models.json's paper_quoted (as `blindspot table2`
// and `table3` read them): "row col" -> Table 2's error rate; Tables 3-4's rows, a figure per model
let QUOTED2 = {};
let ROWS3 = [];

const root = document.getElementById('tour');
const el = (tag, props = {}, ...children) => {
  const e = Object.assign(document.createElement(tag), props);
  e.append(...children.filter((c) => c !== null && c !== undefined));
  return e;
};
const percent = (v, digits = 1) => (Number.isFinite(v) ? `${(v * 100).toFixed(digits)}%` : '–');


/** A heatmap colour for an error rate: near-white to dark red, with black or white text, whichever reads better. */
function heat(cell, rate) {
  const t = Math.min(1, Math.max(0, rate));
  const from = [251, 251, 253];
  const to = [158, 38, 28];
  const rgb = from.map((a, i) => Math.round(a + (to[i] - a) * t));
  const lum = rgb.map((v) => v / 255).map((c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4));
  const L = 0.2126 * lum[0] + 0.7152 * lum[1] + 0.0722 * lum[2];
  const light = (L + 0.05) / 0.05 >= 1.05 / (L + 0.05);
  cell.style.background = `rgb(${rgb.join(',')})`;
  cell.style.color = light ? '#000' : '#fff';
  cell.classList.toggle('dark', !light);
}

const tour = {
  lab: null, manifest: null, pack: null, busy: null,
  /** Completed attacks per model, for the N they were made with: id -> { n, attacks }. */
  attacks: new Map(),
};

const model = (id) => tour.manifest.find((m) => m.id === id) ?? { id, name: id, file: `${id}.onnx` };

async function pack() {
  tour.pack ??= parseDigitPack(await fetchOnce('models/data/mnist-test-1k.bin'), 'models/data/mnist-test-1k.bin');
  return tour.pack;
}

/** The tour's view of the page's worker pool, with model `id` loaded. */
async function ensure(id, token) {
  tour.lab ??= panelLab();
  await tour.lab.ensure(model(id));
  token.check();
}

/** The seeded attacks of Table 1 on the first `n` digits for model `id` (reused when already made). */
async function attacksFor(id, n, progress, token) {
  const done = tour.attacks.get(id);
  if (done && done.n === n) return done.attacks;
  const digits = await pack();
  await ensure(id, token);
  const indices = [...Array(n).keys()];
  const targets = await tour.lab.call('paperTargets', { labels: Array.from(digits.labels.subarray(0, n)), indices, seed: SEED });
  // the attacks spread over the pool's workers, as many at once as it has
  const attacks = new Array(n);
  let next = 0;
  const runner = async () => {
    while (next < n) {
      const i = next++;
      token.check();
      progress.attacksDone += 1;
      progress.step(`attack ${progress.attacksDone} of ${progress.attacks} · ${model(id).name} · digit ${i} → ${targets[i]}`);
      const r = await tour.lab.call('attack', { key: id, pixels: digits.input(i), target: targets[i] }, { spread: true });
      attacks[i] = { digit: i, label: digits.labels[i], target: targets[i], success: r.success, distortion: r.distortion, adversarial: Float32Array.from(r.adversarial), seconds: r.seconds };
      progress.advance();
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, tour.lab.parallel) }, runner));
  tour.attacks.set(id, { n, attacks });
  return attacks;
}

/** The fraction of `images` that model `id` does not give their true `labels` (the core's
 * `transfer`, in one slice per worker of the pool). */
async function errorRate(id, images, labels, token) {
  await ensure(id, token);
  token.check();
  const size = Math.ceil(images.length / tour.lab.parallel);
  const slices = [];
  for (let at = 0; at < images.length; at += size) slices.push([at, Math.min(images.length, at + size)]);
  const cells = await Promise.all(slices.map(([from, to]) => tour.lab.call('transfer',
    { key: id, images: images.slice(from, to), labels: Array.from(labels.slice(from, to)) }, { spread: true })));
  // the slices' rates weighted by their sizes: the rate over all images
  return cells.reduce((sum, cell, k) => sum + cell.errorRate * (slices[k][1] - slices[k][0]), 0) / Math.max(1, images.length);
}

// ---------------------------------------------------------------------------------------------
// The page: intro, N, and one part per claim.

function readN() {
  const input = root.querySelector('#tour-n');
  const n = Math.round(Number(input.value));
  const clamped = Number.isFinite(n) ? Math.min(1000, Math.max(1, n)) : DEFAULT_N;
  input.value = clamped;
  return clamped;
}

function makePart({ id, title, claim, run }) {
  const heading = el('h3', { id: `${id}-title`, textContent: title });
  const runButton = el('button', { type: 'button', className: 'primary', id: `${id}-run`, textContent: 'Run' });
  runButton.setAttribute('aria-describedby', `${id}-claim`);
  const cancel = el('button', { type: 'button', id: `${id}-cancel`, textContent: 'Cancel', hidden: true });
  const bar = el('progress', { id: `${id}-progress`, max: 1, value: 0 });
  bar.setAttribute('aria-label', `${title}: progress`);
  const status = el('span', { id: `${id}-status`, className: 'tour-status', textContent: 'not run yet' });
  status.setAttribute('role', 'status');
  const note = el('p', { className: 'tour-note', id: `${id}-note` });
  const wrap = el('div', { className: 'tour-table-wrap' });
  wrap.tabIndex = 0;
  wrap.setAttribute('role', 'region');
  wrap.setAttribute('aria-labelledby', `${id}-title`);
  const part = el('section', { className: 'tour-part', id },
    heading,
    el('p', { className: 'tour-claim', id: `${id}-claim` }, ...claim),
    el('div', { className: 'tour-run' }, runButton, cancel, bar, status),
    note, wrap);
  part.setAttribute('aria-labelledby', `${id}-title`);
  part.dataset.state = 'idle';
  const api = { id, part, runButton, cancel, bar, status, note, wrap };
  runButton.addEventListener('click', () => start(api, run));
  cancel.addEventListener('click', () => api.token?.cancel());
  return api;
}

const parts = [];

/** Puts a part's table in its scrolling box, described by the note above it. */
function table(api, props, note, head, body) {
  api.note.textContent = note;
  const t = el('table', props, head, body);
  t.setAttribute('aria-labelledby', `${api.id}-title`);
  t.setAttribute('aria-describedby', `${api.id}-note`);
  api.wrap.replaceChildren(t);
}

/** Runs one part's job with progress, Cancel, and the other Run buttons off meanwhile. */
async function start(api, job) {
  if (tour.busy) return;
  tour.busy = api;
  const n = readN();
  const token = {
    cancelled: false,
    cancel() {
      if (this.cancelled) return;
      this.cancelled = true;
      tour.lab?.cancel();
    },
    check() { if (this.cancelled) throw new Error('cancelled'); },
  };
  api.token = token;
  const progress = {
    value: 0, max: 1, attacks: 0, attacksDone: 0,
    setMax(m) { this.max = Math.max(1, m); api.bar.max = this.max; api.bar.value = this.value; },
    step(text) { api.status.textContent = text; },
    advance(k = 1) { this.value += k; api.bar.value = this.value; },
  };
  for (const p of parts) p.runButton.disabled = true;
  root.querySelector('#tour-n').disabled = true;
  api.cancel.hidden = false;
  api.cancel.focus();
  api.part.dataset.state = 'running';
  api.part.dataset.n = n;
  api.bar.value = 0;
  api.status.textContent = 'starting…';
  const started = performance.now();
  try {
    tour.manifest ??= (await manifest()).models;
    const summary = await job(n, progress, token);
    token.check();
    const seconds = (performance.now() - started) / 1000;
    api.bar.value = api.bar.max;
    api.part.dataset.seconds = seconds.toFixed(2);
    api.status.textContent = `done in ${seconds.toFixed(1)} s${summary ? ` · ${summary}` : ''}`;
    api.part.dataset.state = 'done';
  } catch (e) {
    const cancelled = token.cancelled || e.message === 'cancelled';
    api.status.textContent = cancelled ? 'cancelled' : `failed: ${e.message}; run it again (a smaller N is quicker)`;
    api.part.dataset.state = cancelled ? 'cancelled' : 'error';
  } finally {
    tour.busy = null;
    const hadFocus = document.activeElement === api.cancel;
    api.cancel.hidden = true;
    for (const p of parts) p.runButton.disabled = false;
    root.querySelector('#tour-n').disabled = false;
    if (hadFocus) api.runButton.focus();
  }
}

// ---------------------------------------------------------------------------------------------
// Table 1: average minimal distortion.

function table1Skeleton(api) {
  const head = el('thead', {},
    el('tr', {},
      el('th', { scope: 'col', rowSpan: 2, textContent: 'model' }),
      el('th', { scope: 'colgroup', colSpan: 2, textContent: 'train error' }),
      el('th', { scope: 'colgroup', colSpan: 2, textContent: 'test error' }),
      el('th', { scope: 'colgroup', colSpan: 2, textContent: 'av. min. distortion' }),
      el('th', { scope: 'col', rowSpan: 2, textContent: 'successes' })),
    el('tr', {}, ...['here', 'paper', 'here', 'paper', 'here', 'paper'].map((t) => el('th', { scope: 'col', className: t === 'paper' ? 'paper' : '', textContent: t }))));
  const body = el('tbody', {}, ...TABLE1.map((id) => {
    const m = model(id);
    const row = el('tr', {},
      el('th', { scope: 'row', textContent: m.name }),
      el('td', { textContent: percent(m.train_error, 2) }),
      el('td', { className: 'paper', textContent: percent(m.paper?.train_error, 2) }),
      el('td', { textContent: percent(m.test_error, 2) }),
      el('td', { className: 'paper', textContent: percent(m.paper?.test_error, 2) }),
      el('td', { className: 'ours', textContent: '–' }),
      el('td', { className: 'paper', textContent: m.paper?.distortion ?? '–' }),
      el('td', { className: 'ours', textContent: '–' }));
    row.dataset.model = id;
    return row;
  }));
  table(api, { className: 'tour-table' }, 'Errors (measured on the full MNIST test set when the models were trained) and the mean distortion of the successful attacks here, beside the paper\'s Table 1.', head, body);
}

async function runTable1(n, progress, token) {
  const api = parts[0];
  table1Skeleton(api);
  progress.setMax(TABLE1.length * n);
  progress.attacks = TABLE1.length * n;
  let total = 0;
  for (const id of TABLE1) {
    tour.attacks.delete(id); // run live, not from the cache
    const row = api.wrap.querySelector(`tr[data-model="${id}"]`);
    row.classList.add('running');
    const attacks = await attacksFor(id, n, progress, token);
    row.classList.remove('running');
    const good = attacks.filter((a) => a.success);
    const mean = good.reduce((s, a) => s + a.distortion, 0) / good.length;
    total += attacks.reduce((s, a) => s + a.seconds, 0);
    Object.assign(row.dataset, {
      distortion: mean, successes: good.length, digits: attacks.length,
      targets: attacks.map((a) => a.target).join(','),
      distortions: attacks.map((a) => a.distortion).join(','),
      success: attacks.map((a) => (a.success ? 1 : 0)).join(''),
    });
    const [dCell, sCell] = row.querySelectorAll('td.ours');
    dCell.textContent = good.length ? mean.toFixed(4) : '–';
    sCell.textContent = `${good.length}/${attacks.length}`;
  }
  api.part.dataset.perAttack = (total / (TABLE1.length * n)).toFixed(4);
  return `${TABLE1.length} × ${n} attacks, ${(total / (TABLE1.length * n)).toFixed(2)} s each`;
}

// ---------------------------------------------------------------------------------------------
// Table 2: transfer across models, as a heatmap.

const ROWS2 = () => [...TABLE1.map((id) => ({ id, name: model(id).name })), ...NOISE2.map((s) => ({ id: `noise ${s}`, name: `Gaussian noise, stddev ${s}` }))];

function rateCell(row, col, quote) {
  const td = el('td', { className: 'heat' }, el('span', { className: 'rate', textContent: '–' }));
  if (quote) td.append(' ', el('span', { className: 'quote', textContent: `(${quote})` }));
  td.dataset.row = row;
  td.dataset.col = col;
  td.title = quote ? `the paper: ${quote}` : 'not quoted from the paper';
  return td;
}

function setRate(td, rate) {
  td.dataset.rate = rate;
  td.querySelector('.rate').textContent = percent(rate);
  heat(td, rate);
}

function table2Skeleton(api) {
  const head = el('thead', {}, el('tr', {},
    el('th', { scope: 'col', textContent: 'made for ↓ · fed to →' }),
    ...TABLE1.map((id) => el('th', { scope: 'col', textContent: model(id).name }))));
  const body = el('tbody', {}, ...ROWS2().map(({ id, name }) => {
    const tr = el('tr', {}, el('th', { scope: 'row' }, el('span', { className: 'row-name', textContent: name }), el('small', { className: 'row-note' })),
      ...TABLE1.map((col) => rateCell(id, col, QUOTED2[`${id} ${col}`])));
    tr.dataset.row = id;
    return tr;
  }));
  table(api, { className: 'tour-table tour-heat' }, 'Error rate on examples made for the row\'s model (or noise), fed to the column\'s model, against the true labels; the paper\'s figure in brackets where quoted.', head, body);
}

async function runTable2(n, progress, token) {
  const api = parts[1];
  table2Skeleton(api);
  const missing = TABLE1.filter((id) => tour.attacks.get(id)?.n !== n);
  const rows = ROWS2();
  progress.setMax(missing.length * n + 1 + rows.length * TABLE1.length);
  progress.attacks = missing.length * n;
  const digits = await pack();
  const labels = Array.from(digits.labels.subarray(0, n));
  const images = new Map();
  for (const id of TABLE1) {
    const attacks = await attacksFor(id, n, progress, token);
    images.set(id, attacks.map((a) => a.adversarial));
    const d = attacks.filter((a) => a.success).reduce((s, a, _, all) => s + a.distortion / all.length, 0);
    api.wrap.querySelector(`tr[data-row="${id}"] .row-note`).textContent = ` distortion ${d.toFixed(3)}`;
  }
  progress.step('adding Gaussian noise…');
  tour.lab ??= panelLab();
  const originals = labels.map((_, i) => digits.input(i));
  const noisy = await tour.lab.call('paperNoise', { images: originals, stddevs: NOISE2, seed: SEED });
  NOISE2.forEach((s, k) => images.set(`noise ${s}`, noisy[k].map((x) => Float32Array.from(x))));
  progress.advance();
  for (const [r, row] of rows.entries()) {
    for (const col of TABLE1) {
      token.check();
      progress.step(`classifying · row ${r + 1} of ${rows.length} · ${row.name} on ${model(col).name}`);
      const rate = await errorRate(col, images.get(row.id), labels, token);
      setRate(api.wrap.querySelector(`td[data-row="${row.id}"][data-col="${col}"]`), rate);
      progress.advance();
    }
  }
  return missing.length ? `${missing.length} × ${n} attacks made` : `Table 1's ${TABLE1.length} × ${n} attacks reused`;
}

// ---------------------------------------------------------------------------------------------
// Tables 3-4: transfer across training sets.

function table3Skeleton(api) {
  const head = el('thead', {}, el('tr', {},
    el('th', { scope: 'col', textContent: 'examples' }),
    el('th', { scope: 'col', textContent: 'distortion' }),
    ...TABLE3.map((id) => el('th', { scope: 'col', textContent: model(id).name }))));
  const body = el('tbody', {}, ...ROWS3.map(({ id, name, quoted }) => {
    const d = el('td', { className: 'ours', textContent: '–' });
    d.dataset.row = id;
    const tr = el('tr', {}, el('th', { scope: 'row', textContent: name }), d,
      ...TABLE3.map((col, k) => rateCell(id, col, quoted[k])));
    tr.dataset.row = id;
    return tr;
  }));
  table(api, { className: 'tour-table tour-heat' }, 'Examples made for FC100-100-10 trained on P1 (the first 30,000 training digits): error rate induced in each model, the paper\'s figure in brackets; distortion: mean over all digits.', head, body);
}

async function runTable3(n, progress, token) {
  const api = parts[2];
  table3Skeleton(api);
  const source = TABLE3[0];
  tour.attacks.delete(source);
  progress.setMax(n + 2 + ROWS3.length * TABLE3.length);
  progress.attacks = n;
  const digits = await pack();
  const labels = Array.from(digits.labels.subarray(0, n));
  const originals = labels.map((_, i) => digits.input(i));
  const attacks = await attacksFor(source, n, progress, token);
  const plain = attacks.map((a) => a.adversarial);
  progress.step('amplifying to distortion 0.1…');
  const amplified = (await tour.lab.call('amplified', { originals, adversarials: plain, to: 0.1 })).map((x) => Float32Array.from(x));
  progress.advance();
  token.check();
  progress.step('adding Gaussian noise…');
  const [noise] = await tour.lab.call('paperNoise', { images: originals, stddevs: [0.1], seed: SEED });
  progress.advance();
  const images = { adversarial: plain, amplified, noise: noise.map((x) => Float32Array.from(x)) };
  for (const [r, row] of ROWS3.entries()) {
    const set = images[row.id];
    // the paper's distortion, computed by the core as `blindspot table3` computes it
    const each = await tour.lab.call('distortion', { originals, images: set });
    const d = each.reduce((s, x) => s + x, 0) / Math.max(1, each.length);
    const cell = api.wrap.querySelector(`td.ours[data-row="${row.id}"]`);
    cell.dataset.distortion = d;
    cell.textContent = d.toFixed(3);
    for (const col of TABLE3) {
      token.check();
      progress.step(`classifying · row ${r + 1} of ${ROWS3.length} · ${row.name} on ${model(col).name}`);
      setRate(api.wrap.querySelector(`td[data-row="${row.id}"][data-col="${col}"]`), await errorRate(col, set, labels, token));
      progress.advance();
    }
  }
  return `${n} attacks on ${model(source).name}`;
}

// ---------------------------------------------------------------------------------------------

async function main() {
  if (!root || embedded) return;
  const intro = el('p', { className: 'hint' },
    'The paper\'s MNIST experiments, rerun here on the first N test digits, the attacks spread over this machine\'s cores. ',
    'Each digit is pushed towards a seeded random other class with the paper\'s box-constrained L-BFGS (150 iterations, 5 steps of the search over c), ',
    'exactly as the command-line tool\'s ', el('code', { textContent: 'blindspot table1' }), ' does, so the numbers here match it.');
  const nInput = el('input', { type: 'number', id: 'tour-n', min: 1, max: 1000, step: 1, value: DEFAULT_N, inputMode: 'numeric' });
  const nHint = el('small', { id: 'tour-n-hint', textContent: `Table 1 makes 6 × N attacks; the default ${DEFAULT_N} took 15 s on a 2-core machine. The paper used the 10,000 test digits; the page has the first 1,000.` });
  nInput.setAttribute('aria-describedby', 'tour-n-hint');
  const setting = el('div', { className: 'tour-n' }, el('label', { htmlFor: 'tour-n', textContent: 'Digits per model' }), nInput, nHint);
  root.append(intro, setting);
  try {
    const shipped = await manifest();
    tour.manifest = shipped.models;
    QUOTED2 = Object.fromEntries((shipped.paper_quoted?.table2 ?? []).map((c) => [`${c.row} ${c.col}`, c.rate]));
    ROWS3 = (shipped.paper_quoted?.table3?.rows ?? []).map((r) => ({ id: r.id, name: r.name, quoted: r.figures }));
  } catch {
    tour.manifest = [];
  }
  parts.push(
    makePart({
      id: 'tour-table1', title: 'Table 1: every network has blind spots',
      claim: ['Each model, linear or deep, is fooled into any chosen class by a change of about 0.06 to 0.14 in root-mean-square distortion; stronger weight decay makes the linear models a little harder to fool.'],
      run: runTable1,
    }),
    makePart({
      id: 'tour-table2', title: 'Table 2: adversarial examples transfer between models',
      claim: ['Examples made for one model also fool models with other architectures and regularisation, far more often than Gaussian noise of larger distortion does. Reuses Table 1\'s attacks when it ran with the same N.'],
      run: runTable2,
    }),
    makePart({
      id: 'tour-table3', title: 'Tables 3-4: and between training sets',
      claim: ['Examples made for a network trained on one half of the training set fool a network trained on the other, disjoint half; moved further along the same direction (to distortion 0.1) they fool it much more often, while noise of similar size barely does.'],
      run: runTable3,
    }),
  );
  root.append(...parts.map((p) => p.part));
  table1Skeleton(parts[0]);
  table2Skeleton(parts[1]);
  table3Skeleton(parts[2]);
  root.dataset.ready = 'true';
}

main();
