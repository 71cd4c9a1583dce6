// The paper's attack runs in the page's worker with progress and cancel, and matches the CLI.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { cli, launch, openPage, readPack, tempDir, writeNpy } from './harness.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test('an L-BFGS attack in the worker reaches its target with the distortion of the native CLI', async () => {
  const page = await openPage(browser.context, browser.base);
  await page.waitForSelector('body[data-model-state="ready"]', { timeout: 60_000 });
  const pack = readPack('mnist-test-1k.bin');
  const dir = tempDir();
  const cases = [{ model: 'fc100-100-10', digit: 0, target: 3 }, { model: 'fc10-1e-2', digit: 1, target: 8 }];
  for (const { model, digit, target } of cases) {
    const pixels = pack.input(digit);
    const ours = await page.evaluate(async ({ model, pixels, target }) => {
      const { panelLab } = await import('./www/client.js');
      const lab = panelLab();
      await lab.load('m', await (await fetch(`models/${model}.onnx`)).arrayBuffer());
      const progress = [];
      const result = await lab.call('attack', { key: 'm', pixels: Float32Array.from(pixels), target }, { onProgress: (p) => progress.push(p) });
      return { result, progress };
    }, { model, pixels: Array.from(pixels), target });
    const input = join(dir, `digit-${digit}.npy`);
    writeNpy(input, pixels, [1, 1, 28, 28]);
    const native = JSON.parse(cli('attack', `models/${model}.onnx`, input, '--target', String(target), '--out', join(dir, 'adv.npy')));
    const r = ours.result;
    assert.ok(r.success && r.label === target, `${model}: page ended at ${r.label}`);
    assert.ok(r.adversarial.every((v) => v >= 0 && v <= 1), 'box respected');
    assert.ok(Math.abs(r.distortion - native.distortion) <= 1e-4,
      `${model}: distortion ${r.distortion} in the page, ${native.distortion} natively`);
    assert.ok(ours.progress.length > 0, 'progress events arrived');
    const p = ours.progress.at(-1);
    assert.ok(p.c > 0 && p.iteration > 0 && Number.isFinite(p.loss) && p.distortion >= 0);
    console.log(`${model} digit ${digit} -> ${target}: distortion ${r.distortion.toFixed(5)} (CLI ${native.distortion.toFixed(5)}), ${r.iterations} iterations, ${r.seconds.toFixed(2)} s in the page, ${ours.progress.length} progress events`);
  }
  assert.deepEqual(page.problems, []);
});

test('a cancel mid-attack keeps the worker and its model: the next classification needs no new fetch', async () => {
  const page = await openPage(browser.context, browser.base);
  await page.waitForSelector('body[data-model-state="ready"]', { timeout: 60_000 });
  const pack = readPack('mnist-test-1k.bin');
  const fetched = [];
  page.on('request', (r) => { if (r.url().endsWith('/models/cnn.onnx')) fetched.push(r.url()); });
  const outcome = await page.evaluate(async (pixels) => {
    const { panelLab } = await import('./www/client.js');
    const lab = panelLab();
    await lab.load('m', await (await fetch('models/cnn.onnx')).arrayBuffer());
    let events = 0;
    let cancelledAt;
    const x = Float32Array.from(pixels);
    const workers = lab.pool.workers.map((w) => w.worker); // the Worker objects: a replaced one is a new object
    const running = lab.call('attack', { key: 'm', pixels: x, target: 3, maxIterations: 1000, cSteps: 20 }, {
      onProgress: () => {
        events += 1;
        if (events === 1) { cancelledAt = performance.now(); lab.cancel(); }
      },
    });
    const error = await running.then(() => 'finished', (e) => e.message);
    const rejectedMs = performance.now() - cancelledAt;
    // queued behind the attack in the same worker: answered once the worker has stopped it
    const after = await lab.call('classify', { key: 'm', pixels: x });
    const answeredMs = performance.now() - cancelledAt;
    const again = await lab.call('attack', { key: 'm', pixels: x, target: 3, maxIterations: 20, cSteps: 0 });
    const kept = lab.pool.workers.every((w, i) => i >= workers.length || w.worker === workers[i]);
    return { error, events, label: after.label, rejectedMs, answeredMs, again: again.iterations, kept };
  }, Array.from(pack.input(0)));
  assert.equal(outcome.error, 'cancelled');
  assert.equal(outcome.events, 1, 'no progress after the cancel');
  assert.equal(outcome.label, 7, 'the same worker classifies at once');
  assert.ok(outcome.again > 0, 'and attacks again');
  assert.equal(fetched.length, 1, 'the model file was fetched once: the cancel kept it loaded');
  assert.ok(outcome.kept, 'no worker was replaced');
  console.log(`cancel: rejected after ${outcome.rejectedMs.toFixed(1)} ms, the next classification answered after ${outcome.answeredMs.toFixed(1)} ms`);
  assert.deepEqual(page.problems, []);
});
