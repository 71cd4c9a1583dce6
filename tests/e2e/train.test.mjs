// "Fix the blind spot" (issue 17): a few hundred training steps in the page with the paper's
// adversarial pool, the trained .onnx downloaded and checked in onnxruntime (its test error on the
// 10,000 test digits is the page's), then attacked in the lab; a cancel keeps the page usable.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ROOT, launch, openPage, pageReady, screenshot, tempDir } from './harness.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

async function settings(page, values) {
  for (const [id, value] of Object.entries(values)) {
    const tag = await page.$eval(`#${id}`, (e) => e.tagName);
    if (tag === 'SELECT') await page.selectOption(`#${id}`, value); else await page.fill(`#${id}`, value);
  }
}

test('a model trained in the page with an adversarial pool is the .onnx onnxruntime reads alike, and the lab attacks it', async () => {
  const page = await openPage(browser.context, `${browser.base}?model=fc100-100-10&digit=0`);
  await pageReady(page);
  await page.locator('#train').scrollIntoViewIfNeeded();
  await screenshot(page, 'train-before.png');
  // 10,000 digits in batches of 32: 312 steps, the pool of 20 refreshed every 100 of them
  await settings(page, {
    'train-start': 'fc100-100-10', 'train-epochs': '1', 'train-n': '10000', 'train-optimizer': 'adam', 'train-lr': '0.003',
    'train-schedule': 'constant', 'train-batch': '32', 'train-adversarial': 'lbfgs', 'train-pool': '20', 'train-refresh': '0.5',
  });
  assert.equal(await page.isVisible('#train-epsilon'), false, 'FGSM\'s epsilon is hidden with the L-BFGS pool');
  await page.click('#train-run');
  await page.waitForFunction(() => /epoch 1 of 1 · step \d+ of 312/.test(document.querySelector('#train-status').textContent), null, { timeout: 60_000 });
  await page.waitForSelector('#train-result:not([hidden])', { timeout: 300_000 });
  const status = await page.textContent('#train-status');
  assert.match(status, /^done: 312 steps in \d+ s · test error (\d+\.\d\d)%$/, status);
  const pageError = Number(status.match(/test error (\d+\.\d\d)%/)[1]);
  assert.ok(pageError < 20, `from fresh weights, 312 steps: ${pageError}% test error`);
  // the table's row, the loss curve's points, and the examples that entered the pool
  const cells = await page.$$eval('#train-table tbody tr td', (tds) => tds.map((td) => td.textContent));
  assert.equal(cells.length, 6);
  assert.equal(cells[0], '1');
  assert.equal(cells[3], `${pageError.toFixed(2)}%`);
  assert.equal(cells[4], '20', 'the pool is full');
  const shown = await page.$$eval('#train-pool-strip figcaption', (cs) => cs.map((c) => c.textContent));
  assert.ok(shown.length >= 8, `${shown.length} pool examples on show`);
  for (const caption of shown) {
    const [label, target] = caption.split(' → ').map(Number);
    assert.ok(label !== target && label >= 0 && target <= 9, caption);
  }
  await screenshot(page, 'train-done.png');

  // downloaded, it is a standard .onnx: onnxruntime's test error on the 10,000 digits is the page's
  const dir = tempDir();
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#train-download')]);
  const file = join(dir, download.suggestedFilename());
  assert.match(download.suggestedFilename(), /^fc100-100-10-trained-1\.onnx$/);
  await download.saveAs(file);
  const oracle = JSON.parse(execFileSync('python3', [join(ROOT, 'tools/onnx_errors.py'), file], { encoding: 'utf8' }));
  assert.deepEqual(oracle.ops, ['Flatten', 'Gemm', 'Sigmoid', 'Gemm', 'Sigmoid', 'Gemm'], 'the original graph');
  assert.ok(Math.abs(100 * oracle.error - pageError) <= 0.05, `onnxruntime ${100 * oracle.error}% vs the page's ${pageError}%`);

  // it joined the model list: the lab opens and attacks it
  await page.click('#train-attack');
  await page.waitForFunction(() => document.querySelector('#model').value === 'trained:1'
    && document.body.dataset.modelState === 'ready', null, { timeout: 60_000 });
  assert.match(await page.$eval('#model', (s) => s.selectedOptions[0].textContent), /^FC100-100-10 trained here \(L-BFGS pool of 20, 1 epoch\)$/);
  await page.evaluate(() => { delete document.querySelector('#attack-result').dataset.distortion; });
  await page.click('#targets button[data-target="3"]');
  await page.click('#run-attack');
  await page.waitForFunction(() => document.querySelector('#attack-result').dataset.distortion !== undefined, null, { timeout: 120_000 });
  const attack = await page.$eval('#attack-result', (b) => ({ ...b.dataset }));
  assert.equal(attack.success, 'true');
  assert.equal(attack.label, '3');
  assert.ok(Number(attack.distortion) > 0.005 && Number(attack.distortion) < 0.5, attack.distortion);

  // before and after: the same attacks on the shipped model and on this one
  await page.click('#train-compare');
  await page.waitForFunction(() => document.querySelector('#train').dataset.compared !== undefined, null, { timeout: 240_000 })
    .catch(async (e) => { throw new Error(`${e.message}: the page says "${await page.textContent('#train-compare-result')}"`); });
  const compared = await page.textContent('#train-compare-result');
  assert.match(compared, /^Average minimal L-BFGS distortion on the first 10 test digits .*: 0\.\d{4} for the shipped FC100-100-10.*, 0\.\d{4} trained here \(\d+ of 10 fooled\): ×\d+\.\d\d\.$/, compared);
  await page.locator('#train').scrollIntoViewIfNeeded();
  await screenshot(page, 'train-compared.png');
  assert.deepEqual(page.problems, []);
  await page.close();
});

test('a training run can be cancelled, and bad settings are named before anything starts', async () => {
  const page = await openPage(browser.context, `${browser.base}?model=fc100-100-10&digit=0`);
  await pageReady(page);
  // a number field emptied (or holding what the browser cannot read as a number) is named
  await page.$eval('#train-lr', (input) => { input.value = ''; });
  await page.click('#train-run');
  assert.equal(await page.textContent('#train-status'), 'The learning rate must be a number from 1e-7 to 10, not ""');
  await settings(page, { 'train-lr': '0.003', 'train-adversarial': 'none', 'train-epochs': '3' });
  await page.click('#train-run');
  await page.waitForFunction(() => /epoch 1 of 3 · step \d+ of 1875/.test(document.querySelector('#train-status').textContent), null, { timeout: 120_000 });
  await page.click('#train-cancel');
  await page.waitForFunction(() => document.querySelector('#train-status').textContent === 'cancelled', null, { timeout: 30_000 });
  assert.equal(await page.isDisabled('#train-run'), false);
  assert.equal(await page.isHidden('#train-result'), true, 'no epoch finished: no model joins the list');
  // the lab still answers
  await page.click('#gallery button:nth-child(2)').catch(() => {});
  assert.match(await page.textContent('#model-status'), /^ready/);
  assert.deepEqual(page.problems, []);
  await page.close();
});
