// The spectral-bounds panel: the page's Table 5 equals `blindspot lipschitz MODEL`, and it fits.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ROOT, SHOTS, cli, launch, openPage, screenshot } from './harness.mjs';

let browser;
let page;
before(async () => {
  browser = await launch();
  page = await openPage(browser.context, browser.base);
  await page.waitForSelector('#spectral[data-ready]', { timeout: 60_000 });
});
after(async () => { await browser?.close(); });

/** The rows of the CLI's Markdown table, product row apart: arrays of trimmed cells. */
function markdownRows(text) {
  const lines = text.split('\n').filter((l) => l.startsWith('|')).slice(2);
  return lines.map((l) => l.split('|').slice(1, -1).map((c) => c.trim().replace(/^\*\*|\*\*$/g, '')));
}

/** "4.474237 (stride-1 bound)" -> 4.474237; "–" -> null */
const leading = (cell) => (/^-?[\d.]/.test(cell) ? Number(cell.match(/^-?[\d.e+-]+/)[0]) : null);
const close = (a, b) => Math.abs(a - b) <= 1e-4 * Math.abs(b);

async function compute(id) {
  await page.selectOption('#spectral-model', id);
  await page.click('#spectral-run');
  await page.waitForSelector(`#spectral:is([data-state="done"][data-model="${id}"], [data-state="error"])`, { timeout: 120_000 });
  assert.equal(await page.getAttribute('#spectral', 'data-state'), 'done', await page.textContent('#spectral-status'));
  return page.$$eval('#spectral-table tbody tr', (rows) => rows.map((r) => ({
    node: r.dataset.node,
    power: r.querySelector('[data-power]')?.dataset.power ?? null,
    fourier: r.querySelector('[data-fourier]')?.dataset.fourier ?? null,
    factor: r.querySelector('[data-factor]').dataset.factor,
    bound: r.querySelector('[data-bound]').dataset.bound,
  })));
}

for (const id of ['cnn', 'fc200-200-10']) {
  test(`${id}: the page's table is the CLI's`, async () => {
    const rows = await compute(id);
    const md = markdownRows(cli('lipschitz', `models/${id}.onnx`));
    const product = md.pop();
    assert.equal(product[0], 'product');
    assert.deepEqual(rows.map((r) => r.node), md.map((r) => r[0]));
    for (const [k, row] of rows.entries()) {
      const cells = md[k];
      for (const [field, column] of [['power', 3], ['fourier', 5], ['factor', 7], ['bound', 8]]) {
        const native = leading(cells[column]);
        const ours = row[field] === null ? null : Number(row[field]);
        if (native === null) assert.equal(ours, null, `${id} ${row.node} ${field}`);
        else assert.ok(close(ours, native), `${id} ${row.node} ${field}: page ${ours}, CLI ${native}`);
      }
    }
    const pageProduct = Number(await page.getAttribute('#spectral-table', 'data-product'));
    assert.ok(close(pageProduct, Number(product[8])), `${id} product: page ${pageProduct}, CLI ${product[8]}`);
    assert.match(await page.textContent('#spectral-status'), /^done in [\d.]+ s · /);
    assert.deepEqual(page.problems, []);
  });
}

test('the panel at 1280 and 375 px: keyboard operable, the table scrolls inside its wrapper', async () => {
  await compute('cnn');
  await page.setViewportSize({ width: 1280, height: 900 });
  await screenshot(page, 'spectral-1280.png');
  await page.locator('#spectral').screenshot({ path: join(SHOTS, 'spectral-panel-1280.png') });
  await page.setViewportSize({ width: 375, height: 800 });
  const layout = await page.evaluate(() => ({
    section: document.getElementById('spectral').getBoundingClientRect().right,
    wrap: document.getElementById('spectral-wrap').getBoundingClientRect().right,
    scrolls: document.getElementById('spectral-wrap').scrollWidth > document.getElementById('spectral-wrap').clientWidth,
    page: document.documentElement.scrollWidth,
  }));
  assert.ok(layout.section <= 375 && layout.wrap <= 375, `the panel reaches ${layout.section} px at 375`);
  assert.ok(layout.scrolls, 'the wide table scrolls inside its wrapper');
  await page.locator('#spectral').screenshot({ path: join(SHOTS, 'spectral-panel-375.png') });
  await screenshot(page, 'spectral-375.png');
  // from the keyboard: focus the picker, choose a model, press the button
  await page.focus('#spectral-model');
  await page.keyboard.press('ArrowDown');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'spectral-run');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#spectral[data-state="done"]:not([data-model="cnn"])', { timeout: 60_000 });
  assert.equal(await page.getAttribute('#spectral-model', 'aria-label') ?? 'labelled', 'labelled');
  assert.equal(await page.evaluate(() => document.querySelector('label[for="spectral-model"]')?.textContent), 'Model');
  await page.setViewportSize({ width: 1280, height: 900 });
  assert.deepEqual(page.problems, []);
});

test('a model dropped into the lab is offered too: its table is the shipped twin\'s', async () => {
  const fresh = await openPage(browser.context, `${browser.base}?model=cnn&digit=0`);
  await fresh.waitForSelector('#spectral[data-ready]', { timeout: 60_000 });
  await fresh.waitForSelector('body[data-model-state="ready"]', { timeout: 60_000 });
  // FC100-100-10's bytes under a name of the person's own
  await fresh.setInputFiles('#model-file', { name: 'my-mlp.onnx', mimeType: 'application/octet-stream', buffer: readFileSync(join(ROOT, 'models/fc100-100-10.onnx')) });
  await fresh.waitForFunction(() => document.querySelector('#model').value === 'local:my-mlp.onnx' && document.body.dataset.modelState === 'ready');
  // the panel lists it and, not told otherwise, follows the lab to it
  await fresh.waitForFunction(() => document.querySelector('#spectral-model').value === 'local:my-mlp.onnx', null, { timeout: 10_000 });
  assert.equal(await fresh.$eval('#spectral-model option:checked', (o) => o.textContent), 'my-mlp.onnx (yours)');
  // every shipped model and the dropped one
  const shipped = JSON.parse(readFileSync(join(ROOT, 'models/models.json'), 'utf8')).models.length;
  assert.equal(await fresh.$$eval('#spectral-model option', (os) => os.length), shipped + 1);
  await fresh.click('#spectral-run');
  await fresh.waitForSelector('#spectral:is([data-state="done"][data-model="local:my-mlp.onnx"], [data-state="error"])', { timeout: 120_000 });
  assert.equal(await fresh.getAttribute('#spectral', 'data-state'), 'done', await fresh.textContent('#spectral-status'));
  const read = () => fresh.$$eval('#spectral-table tbody tr', (rows) => rows.map((r) => [r.dataset.node,
    r.querySelector('[data-power]')?.dataset.power ?? null, r.querySelector('[data-factor]').dataset.factor, r.querySelector('[data-bound]').dataset.bound]));
  const mine = await read();
  const myProduct = await fresh.getAttribute('#spectral-table', 'data-product');
  assert.ok(mine.length >= 3, `${mine.length} rows`);
  assert.match(await fresh.textContent('#spectral-table-title'), /^my-mlp\.onnx \(yours\): upper Lipschitz bounds/);
  await fresh.locator('#spectral').screenshot({ path: join(SHOTS, 'spectral-user-model-1280.png') });
  await fresh.setViewportSize({ width: 375, height: 800 });
  await fresh.locator('#spectral').screenshot({ path: join(SHOTS, 'spectral-user-model-375.png') });
  await fresh.setViewportSize({ width: 1280, height: 900 });
  // the shipped FC100-100-10: the same rows and product, to the last digit
  await fresh.selectOption('#spectral-model', 'fc100-100-10');
  await fresh.click('#spectral-run');
  await fresh.waitForSelector('#spectral[data-state="done"][data-model="fc100-100-10"]', { timeout: 120_000 });
  assert.deepEqual(await read(), mine);
  assert.equal(await fresh.getAttribute('#spectral-table', 'data-product'), myProduct);
  assert.deepEqual(fresh.problems, []);
  await fresh.close();
});
