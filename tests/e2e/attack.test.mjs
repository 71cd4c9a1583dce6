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
      const { LabWorker } = await import('./www/client.js');
      const lab = new LabWorker();
      await lab.load('m', await (await fetch(`models/${model}.onnx`)).arrayBuffer());
      const progress = [];
      const result = await lab.attack('m', Float32Array.from(pixels), target, {}, (p) => progress.push(p));
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

test('cancelling an attack rejects it and leaves a working worker', async () => {
  const page = await openPage(browser.context, browser.base);
  await page.waitForSelector('body[data-model-state="ready"]', { timeout: 60_000 });
  const pack = readPack('mnist-test-1k.bin');
  const outcome = await page.evaluate(async (pixels) => {
    const { LabWorker } = await import('./www/client.js');
    const lab = new LabWorker();
    const bytes = await (await fetch('models/cnn.onnx')).arrayBuffer();
    await lab.load('m', bytes.slice(0));
    let events = 0;
    const running = lab.attack('m', Float32Array.from(pixels), 3, { maxIterations: 1000, cSteps: 20 }, () => {
      events += 1;
      if (events === 1) lab.cancel();
    });
    const error = await running.then(() => 'finished', (e) => e.message);
    await lab.load('m', bytes.slice(0));
    const after = await lab.classify('m', Float32Array.from(pixels));
    return { error, events, label: after.label };
  }, Array.from(pack.input(0)));
  assert.equal(outcome.error, 'cancelled');
  assert.equal(outcome.events, 1);
  assert.equal(outcome.label, 7, 'the restarted worker classifies again');
});
