// The wasm build's gradients, computed in the page's worker, equal the native CLI's.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ROOT, cli, launch, openPage, readNpy, readPack, screenshot, tempDir, writeNpy } from './harness.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

/** Loads `modelUrl` in a fresh worker inside the page and evaluates each case there. */
async function gradientsInPage(page, modelUrl, cases) {
  return page.evaluate(async ({ modelUrl, cases }) => {
    const { panelLab } = await import('./www/client.js');
    const lab = panelLab();
    const bytes = await (await fetch(modelUrl)).arrayBuffer();
    await lab.load('m', bytes);
    const out = [];
    for (const c of cases) out.push(await lab.call('gradient', { key: 'm', objective: c.objective, pixels: Float32Array.from(c.pixels), target: c.target }));
    return out;
  }, { modelUrl, cases });
}

function compare(name, ours, native, gradient) {
  assert.ok(Math.abs(ours.objective - native.value) <= 1e-4 * Math.max(1, Math.abs(native.value)),
    `${name}: objective ${ours.objective} vs ${native.value}`);
  native.logits.forEach((l, k) => assert.ok(Math.abs(ours.logits[k] - l) <= 1e-4 * Math.max(1, Math.abs(l)),
    `${name}: logit ${k} ${ours.logits[k]} vs ${l}`));
  const scale = Math.max(1e-3, ...gradient.map(Math.abs));
  let worst = 0;
  gradient.forEach((g, i) => { worst = Math.max(worst, Math.abs(ours.gradient[i] - g)); });
  assert.equal(ours.gradient.length, gradient.length);
  assert.ok(worst <= 1e-4 * scale, `${name}: gradient differs by ${worst} (largest entry ${scale})`);
  return worst / scale;
}

test('wasm gradients equal native ones: shipped models and the MobileNet-class graph', async () => {
  const page = await openPage(browser.context, browser.base);
  await page.waitForSelector('body[data-model-state="ready"]', { timeout: 60_000 });
  const pack = readPack('mnist-test-1k.bin');
  const dir = tempDir();
  const jobs = [];
  for (const model of ['cnn', 'fc200-200-10', 'ae400-10']) {
    for (const digit of [0, 1, 2]) {
      for (const objective of ['ce', 'margin']) {
        jobs.push({ model: `models/${model}.onnx`, input: pack.input(digit), shape: [1, 1, 28, 28], target: (pack.labels[digit] + 3) % 10, objective });
      }
    }
  }
  const zooInput = readNpy(join(ROOT, 'tests/fixtures/zoo/mobilenet-input.npy'));
  for (const objective of ['ce', 'margin']) {
    jobs.push({ model: 'tests/fixtures/zoo/mobilenet.onnx', input: zooInput.data, shape: zooInput.shape, target: 4, objective });
  }
  let worst = 0;
  for (const model of [...new Set(jobs.map((j) => j.model))]) {
    const mine = jobs.filter((j) => j.model === model);
    const ours = await gradientsInPage(page, model, mine.map((j) => ({ objective: j.objective, pixels: Array.from(j.input), target: j.target })));
    mine.forEach((job, i) => {
      const input = join(dir, `in-${i}.npy`);
      const out = join(dir, `grad-${i}.npy`);
      writeNpy(input, job.input, job.shape);
      const native = JSON.parse(cli('grad', job.model, input, '--target', String(job.target), '--objective', job.objective, '--out', out));
      worst = Math.max(worst, compare(`${model} ${job.objective} #${i}`, ours[i], native, Array.from(readNpy(out).data)));
    });
  }
  console.log(`worst relative gradient difference wasm vs native: ${worst.toExponential(2)} over ${jobs.length} cases`);
  assert.deepEqual(page.problems, []);
});

test('the benchmark button reports forward and gradient rates for the current model', async () => {
  const page = await openPage(browser.context, `${browser.base}?model=fc100-100-10&digit=4`);
  await page.waitForSelector('body[data-model-state="ready"]', { timeout: 60_000 });
  await page.click('#bench');
  const out = await page.waitForSelector('#bench-result[data-gradient]', { timeout: 30_000 });
  const forward = Number(await out.getAttribute('data-forward'));
  const gradient = Number(await out.getAttribute('data-gradient'));
  assert.ok(forward > 0 && gradient > 0, `rates ${forward} ${gradient}`);
  assert.match(await out.textContent(), /FC100-100-10: [\d,]+ forward passes\/s · [\d,]+ forward \+ gradient\/s · a gradient costs [\d.]+ forward passes/);
  console.log(await out.textContent());
  await screenshot(page, 'bench.png');
});
