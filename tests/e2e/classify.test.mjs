// The page classifies test digits through the worker exactly as the native CLI does.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ROOT, cli, launch, openPage, readPack, screenshot, tempDir, waitForMessage, writeNpy } from './harness.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

async function waitReady(page) {
  await page.waitForSelector('body[data-model-state="ready"]', { timeout: 60_000 });
}

async function predictionFor(page, index) {
  await page.click(`.thumb[data-index="${index}"]`);
  const el = await page.waitForSelector(`#prediction[data-digit="${index}"][data-label]`);
  return {
    label: Number(await el.getAttribute('data-label')),
    probabilities: JSON.parse(await el.getAttribute('data-probabilities')),
  };
}

test('20 digits classified in the page equal the native CLI (labels, probabilities to 1e-5)', async () => {
  const page = await openPage(browser.context, `${browser.base}?model=cnn&digit=0`);
  await waitReady(page);
  const pack = readPack('mnist-test-1k.bin');
  const dir = tempDir();
  const files = [];
  for (let i = 0; i < 20; i++) {
    files.push(join(dir, `digit-${i}.npy`));
    writeNpy(files.at(-1), pack.input(i), [1, 1, 28, 28]);
  }
  const native = cli('classify', 'models/cnn.onnx', ...files).trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(native.length, 20);
  let worst = 0;
  for (let i = 0; i < 20; i++) {
    const ours = await predictionFor(page, i);
    assert.equal(ours.label, native[i].label, `digit ${i}: page says ${ours.label}, CLI ${native[i].label}`);
    assert.equal(ours.probabilities.length, 10);
    for (let k = 0; k < 10; k++) {
      const d = Math.abs(ours.probabilities[k] - native[i].probabilities[k]);
      worst = Math.max(worst, d);
      assert.ok(d <= 1e-5, `digit ${i}, class ${k}: ${ours.probabilities[k]} vs ${native[i].probabilities[k]}`);
    }
  }
  // A sanity check on the engine itself: the CNN (0.87% test error) misreads at most one of these
  // (test digit 18, a 3 with an open top, it reads as a 5).
  const right = native.filter((n, i) => n.label === pack.labels[i]).length;
  assert.ok(right >= 19, `only ${right} of the first 20 test digits classified correctly`);
  console.log(`worst probability difference page vs CLI: ${worst.toExponential(2)}`);
  assert.equal(await page.textContent('#predicted'), String(native[19].label));
  await screenshot(page, 'classify-desktop.png');
  await page.setViewportSize({ width: 390, height: 844 });
  await screenshot(page, 'classify-phone.png');
  assert.deepEqual(page.problems, []);
});

test('every shipped model loads in the page and classifies a digit', async () => {
  const manifest = JSON.parse(readFileSync(join(ROOT, 'models/models.json'), 'utf8'));
  const page = await openPage(browser.context, `${browser.base}?digit=3`);
  await waitReady(page);
  for (const m of manifest.models) {
    // the previous model's answer stays on show until this one's arrives (the state says "ready"
    // before the digit is classified): take it away, so the label read below is this model's
    await page.evaluate(() => { delete document.querySelector('#prediction').dataset.label; });
    await page.selectOption('#model', m.id);
    await page.waitForFunction((id) => document.body.dataset.modelState === 'ready'
      && new URL(location.href).searchParams.get('model') === id
      && document.querySelector('#prediction[data-label]'), m.id, { timeout: 30_000 });
    const label = Number(await page.getAttribute('#prediction', 'data-label'));
    assert.ok(label >= 0 && label < 10, `${m.id}: label ${label}`);
    assert.equal(await page.isHidden('#error'), true, `${m.id}: ${await page.textContent('#error')}`);
  }
  assert.deepEqual(page.problems, []);
});

test('a model that fails to load shows its error, and the page keeps working', async () => {
  const page = await openPage(browser.context, `${browser.base}?model=cnn`);
  await waitReady(page);
  await page.route('**/models/fc10-1.onnx', (route) => route.fulfill({ body: 'this is not an onnx file at all' }));
  await page.route('**/models/fc10-1e-2.onnx', (route) =>
    route.fulfill({ body: readFileSync(join(ROOT, 'tests/fixtures/unsupported-op.onnx')) }));
  await page.route('**/models/fc10-1e-4.onnx', (route) => route.fulfill({ status: 404, body: 'gone' }));

  await page.selectOption('#model', 'fc10-1');
  await page.waitForSelector('body[data-model-state="error"]');
  assert.match(await page.textContent('#error'), /could not be loaded: not a readable ONNX model/);
  assert.equal(await page.locator('.thumb.wrong').count(), 0, 'no marks left from the previous model');
  assert.equal(await page.textContent('#predicted'), '–');
  await screenshot(page, 'load-error.png');

  // the previous model's error state and message: this model's own message names its file
  await page.selectOption('#model', 'fc10-1e-2');
  const unsupported = /the model uses operators blindspot cannot run: FancyWarp \(node "warp_layer"\)/;
  assert.match(await waitForMessage(page, '#error', unsupported, { includes: '(fc10-1e-2.onnx)' }), unsupported);
  await page.waitForSelector('body[data-model-state="error"]');

  await page.selectOption('#model', 'fc10-1e-4');
  assert.match(await waitForMessage(page, '#error', /404/, { includes: '(fc10-1e-4.onnx)' }), /404/);
  await page.waitForSelector('body[data-model-state="error"]');

  await page.selectOption('#model', 'cnn');
  await waitReady(page);
  assert.equal(await page.isHidden('#error'), true);
  const ok = await predictionFor(page, 1);
  assert.equal(ok.label, 2, 'test digit 1 is a 2');
});
