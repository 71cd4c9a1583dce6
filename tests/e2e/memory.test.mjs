// Memory: 100 attacks in a row in one page. After a warm-up, neither the worker's wasm memory nor
// the page's JS heap (after a garbage collection) grows by more than 10%.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launch, openPage, pageReady } from './harness.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test('100 attacks in a row: wasm memory and JS heap stay flat after warm-up', async () => {
  const page = await openPage(browser.context, `${browser.base}?model=fc100-100-10&digit=0`);
  await pageReady(page);
  const cdp = await browser.context.newCDPSession(page);
  const worker = page.workers().find((w) => w.url().endsWith('/www/worker.js'));
  assert.ok(worker, 'the lab worker');
  const measure = async () => {
    await cdp.send('HeapProfiler.collectGarbage');
    const { usedSize } = await cdp.send('Runtime.getHeapUsage');
    const wasm = await worker.evaluate(() => self.wasmMemory.buffer.byteLength);
    return { heap: usedSize, wasm };
  };
  /** Attack digit `i` (a different digit and target each time) through the page's controls. */
  const attack = async (i) => {
    await page.click(`.thumb[data-index="${i % 40}"]`);
    await page.waitForFunction((i) => document.querySelector('#prediction').dataset.digit === String(i % 40), i);
    await page.click(`#targets button[data-target="${(i * 3 + 1) % 10}"]`);
    // the previous attack's result is on show: hide it, so only this attack's result shows it again
    await page.evaluate(() => { document.querySelector('#attack-result').hidden = true; });
    await page.click('#run-attack');
    await page.waitForFunction(() => !document.querySelector('#attack-result').hidden
      && document.querySelector('#run-attack').disabled === false, null, { timeout: 60_000 });
  };
  for (let i = 0; i < 20; i++) await attack(i); // warm-up: caches, the gradient graph, JIT
  const before = await measure();
  const started = Date.now();
  for (let i = 20; i < 120; i++) await attack(i);
  const afterwards = await measure();
  const growth = (k) => (afterwards[k] - before[k]) / before[k];
  console.log(`100 attacks in ${((Date.now() - started) / 1000).toFixed(1)} s; wasm memory ${before.wasm} -> ${afterwards.wasm} bytes `
    + `(${(100 * growth('wasm')).toFixed(1)}%), page JS heap ${before.heap} -> ${afterwards.heap} bytes (${(100 * growth('heap')).toFixed(1)}%)`);
  assert.ok(growth('wasm') <= 0.10, `wasm memory grew ${(100 * growth('wasm')).toFixed(1)}%`);
  assert.ok(growth('heap') <= 0.10, `JS heap grew ${(100 * growth('heap')).toFixed(1)}%`);
  assert.deepEqual(page.problems, []);
});
