// The WebGPU backend in the page (issue #7): Chromium with WebGPU on (SwiftShader's software
// adapter) runs gradients and the L-BFGS attack on the GPU, equal to the CPU path and the native
// CLI; the switch works; a browser without an adapter falls back to the CPU and says so.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ROOT, cli, launch, openPage, pageReady, readNpy, readPack, screenshot, tempDir, writeNpy } from './harness.mjs';

let browser;
before(async () => { browser = await launch({ webgpu: true }); });
after(async () => { await browser?.close(); });

/** Relative difference as the native GPU tests measure it: |a - b| / max(1, |b|). */
const rel = (a, b) => Math.abs(a - b) / Math.max(1, Math.abs(b));

/** The worst difference of two gradient answers: objective and logits relative, gradient relative to its largest entry. */
function difference(ours, theirs) {
  assert.equal(ours.gradient.length, theirs.gradient.length);
  let worst = rel(ours.objective, theirs.objective);
  theirs.logits.forEach((l, k) => { worst = Math.max(worst, rel(ours.logits[k], l)); });
  const scale = Math.max(1e-3, ...Array.from(theirs.gradient, Math.abs));
  theirs.gradient.forEach((g, i) => { worst = Math.max(worst, Math.abs(ours.gradient[i] - g) / scale); });
  return worst;
}

test('Chromium with --enable-unsafe-webgpu has an adapter, and the lab runs on WebGPU', async () => {
  const page = await openPage(browser.context, browser.base);
  const adapter = await page.evaluate(async () => {
    const a = await navigator.gpu?.requestAdapter();
    return a ? { ...a.info, isFallbackAdapter: a.info?.isFallbackAdapter } : null;
  });
  assert.ok(adapter, 'navigator.gpu.requestAdapter() gave an adapter (TOOLCHAIN.md: it does with this flag)');
  await pageReady(page);
  // automatic: a software adapter (SwiftShader) is never picked over the CPU, and the page says why
  await page.waitForSelector('body[data-backend="cpu"]', { timeout: 30_000 });
  assert.match(await page.textContent('#backend-status'), /software WebGPU adapter/);
  assert.equal(await page.$eval('#backend option[value="webgpu"]', (o) => o.disabled), false, 'WebGPU can still be chosen');
  assert.equal(new URL(page.url()).searchParams.get('backend'), null, 'an automatic choice stays out of the URL');
  await page.selectOption('#backend', 'webgpu');
  await page.waitForSelector('body[data-backend="webgpu"]', { timeout: 30_000 });
  const status = await page.textContent('#backend-status');
  assert.match(status, /^WebGPU · \S/);
  assert.equal(await page.inputValue('#backend'), 'webgpu');
  console.log(`adapter ${JSON.stringify(adapter)}; the page says "${status}"`);
  await (await page.$('.controls')).screenshot({ path: join(ROOT, 'test-results/webgpu-backend.png') });
  assert.deepEqual(page.problems, []);
});

test('GPU gradients equal the CPU path and the native CLI: every shipped model, the MobileNet- and ResNet-class graphs', async () => {
  const page = await openPage(browser.context, browser.base);
  await pageReady(page);
  const pack = readPack('mnist-test-1k.bin');
  const shipped = JSON.parse(readFileSync(join(ROOT, 'models/models.json'), 'utf8')).models.map((m) => m.id);
  const jobs = [];
  for (const model of shipped) {
    // two digits and both objectives on two models; one case each on the rest
    const thorough = ['cnn', 'fc200-200-10'].includes(model);
    for (const digit of thorough ? [0, 1] : [0]) {
      for (const objective of thorough ? ['ce', 'margin'] : [digit % 2 ? 'margin' : 'ce']) {
        jobs.push({ model: `models/${model}.onnx`, input: pack.input(digit), shape: [1, 1, 28, 28], target: (pack.labels[digit] + 3) % 10, objective });
      }
    }
  }
  for (const graph of ['mobilenet', 'resnet']) {
    const zoo = readNpy(join(ROOT, `tests/fixtures/zoo/${graph}-input.npy`));
    for (const objective of ['ce', 'margin']) jobs.push({ model: `tests/fixtures/zoo/${graph}.onnx`, input: zoo.data, shape: zoo.shape, target: 4, objective });
  }
  const dir = tempDir();
  const worst = { cpu: 0, cli: 0 };
  for (const model of [...new Set(jobs.map((j) => j.model))]) {
    const mine = jobs.filter((j) => j.model === model);
    const answers = await page.evaluate(async ({ model, cases }) => {
      const { panelLab } = await import('./www/client.js');
      const lab = panelLab();
      const status = await lab.setBackend('webgpu');
      const info = await lab.load('m', await (await fetch(model)).arrayBuffer());
      const out = [];
      for (const c of cases) {
        const pixels = Float32Array.from(c.pixels);
        out.push({ gpu: await lab.call('gradient', { key: 'm', objective: c.objective, pixels, target: c.target }), cpu: await lab.call('gradient', { key: 'm', objective: c.objective, pixels, target: c.target, backend: 'cpu' }) });
      }
      return { status, info, out };
    }, { model, cases: mine.map((j) => ({ objective: j.objective, pixels: Array.from(j.input), target: j.target })) });
    assert.equal(answers.info.backend, 'webgpu', `${model} runs on WebGPU (${answers.info.reason})`);
    mine.forEach((job, i) => {
      const { gpu, cpu } = answers.out[i];
      assert.equal(gpu.backend, 'webgpu');
      assert.equal(cpu.backend, 'cpu');
      const input = join(dir, `in-${i}.npy`);
      const out = join(dir, `grad-${i}.npy`);
      writeNpy(input, job.input, job.shape);
      const native = JSON.parse(cli('grad', job.model, input, '--target', String(job.target), '--objective', job.objective, '--out', out));
      const name = `${model} ${job.objective} #${i}`;
      const versusCpu = difference(gpu, cpu);
      const versusCli = difference(gpu, { objective: native.value, logits: native.logits, gradient: readNpy(out).data });
      assert.ok(versusCpu <= 1e-4, `${name}: GPU vs CPU differ by ${versusCpu}`);
      assert.ok(versusCli <= 1e-4, `${name}: GPU vs native CLI differ by ${versusCli}`);
      worst.cpu = Math.max(worst.cpu, versusCpu);
      worst.cli = Math.max(worst.cli, versusCli);
    });
  }
  console.log(`worst relative difference over ${jobs.length} cases: GPU vs CPU (wasm) ${worst.cpu.toExponential(2)}, GPU vs native CLI ${worst.cli.toExponential(2)}`);
  assert.deepEqual(page.problems, []);
});

test('an L-BFGS attack on the GPU reaches its target with the distortion of the CPU attack (within 5%)', async () => {
  const page = await openPage(browser.context, browser.base);
  await pageReady(page);
  const pack = readPack('mnist-test-1k.bin');
  for (const { model, digit, target } of [{ model: 'fc100-100-10', digit: 0, target: 3 }, { model: 'cnn', digit: 1, target: 8 }]) {
    const runs = await page.evaluate(async ({ model, pixels, target }) => {
      const { panelLab } = await import('./www/client.js');
      const lab = panelLab();
      const bytes = await (await fetch(`models/${model}.onnx`)).arrayBuffer();
      const out = {};
      for (const backend of ['webgpu', 'cpu']) {
        await lab.setBackend(backend);
        await lab.load('m', bytes.slice(0));
        let events = 0;
        const started = performance.now();
        const result = await lab.call('attack', { key: 'm', pixels: Float32Array.from(pixels), target, maxIterations: 60, cSteps: 3 }, { onProgress: () => { events += 1; } });
        out[backend] = { ...result, events, ms: performance.now() - started, adversarial: undefined, ok: result.adversarial.every((v) => v >= 0 && v <= 1) };
      }
      return out;
    }, { model, pixels: Array.from(pack.input(digit)), target });
    const { webgpu: gpu, cpu } = runs;
    assert.equal(gpu.backend, 'webgpu');
    assert.equal(cpu.backend, 'cpu');
    assert.ok(gpu.success && gpu.label === target, `${model}: the GPU attack ended at ${gpu.label}`);
    assert.ok(cpu.success && cpu.label === target);
    assert.ok(gpu.ok, 'box respected');
    assert.ok(gpu.events > 0, 'progress arrived');
    const relative = Math.abs(gpu.distortion - cpu.distortion) / cpu.distortion;
    assert.ok(relative <= 0.05, `${model}: distortion ${gpu.distortion} on the GPU, ${cpu.distortion} on the CPU`);
    console.log(`${model} digit ${digit} -> ${target}: distortion GPU ${gpu.distortion.toFixed(5)} (${gpu.gradientEvaluations} gradients, ${(gpu.ms / 1000).toFixed(2)} s) vs CPU ${cpu.distortion.toFixed(5)} (${cpu.gradientEvaluations}, ${(cpu.ms / 1000).toFixed(2)} s)`);
  }
  assert.deepEqual(page.problems, []);
});

test('the switch moves the lab to the CPU and back; the attack panel and the benchmark follow it', async () => {
  const page = await openPage(browser.context, `${browser.base}?model=fc100-100-10&digit=0&target=3&iterations=60&c-steps=3&backend=webgpu`);
  await pageReady(page);
  await page.waitForSelector('body[data-backend="webgpu"]', { timeout: 30_000 });
  await page.click('#run-attack');
  await page.waitForSelector('#attack-result:not([hidden])', { timeout: 120_000 });
  assert.equal(await page.getAttribute('#attack-result', 'data-label'), '3');
  assert.match(await page.textContent('#adv-numbers'), /backendWebGPU/);

  await page.selectOption('#backend', 'cpu');
  await page.waitForSelector('body[data-backend="cpu"]');
  assert.equal(await page.textContent('#backend-status'), 'CPU (wasm SIMD)');
  assert.equal(new URL(page.url()).searchParams.get('backend'), 'cpu', 'a chosen backend is kept in the URL');
  await page.click('#run-attack');
  await page.waitForFunction(() => !document.querySelector('#run-attack').disabled && /backendCPU/.test(document.querySelector('#adv-numbers').textContent), null, { timeout: 60_000 });
  await (await page.$('.controls')).screenshot({ path: join(ROOT, 'test-results/webgpu-switched-to-cpu.png') });

  // with the CPU chosen, the benchmark still times WebGPU beside it
  await page.click('#bench');
  const out = await page.waitForSelector('#bench-result[data-gradient]', { timeout: 60_000 });
  const rates = Object.fromEntries(await Promise.all(['forward', 'gradient', 'gpu-gradient'].map(async (k) => [k, Number(await out.getAttribute(`data-${k}`))])));
  assert.ok(rates.forward > 0 && rates.gradient > 0 && rates['gpu-gradient'] > 0, JSON.stringify(rates));
  assert.match(await out.textContent(), /forward \+ gradient\/s · .* · WebGPU \(.+\): [\d,]+ forward \+ gradient\/s, [\d.]+× the CPU/);
  console.log(`bench: ${await out.textContent()}`);

  await page.selectOption('#backend', 'webgpu');
  await page.waitForSelector('body[data-backend="webgpu"]');
  assert.equal(new URL(page.url()).searchParams.get('backend'), 'webgpu');
  await screenshot(page, 'webgpu-page.png');

  // the choice survives a reload through the URL
  await page.goto(page.url().replace('backend=webgpu', 'backend=cpu'));
  await pageReady(page);
  await page.waitForSelector('body[data-backend="cpu"]');
  assert.equal(await page.inputValue('#backend'), 'cpu');
  assert.deepEqual(page.problems, []);
});

test('without WebGPU (the default launch) the lab falls back to the CPU and says why', async () => {
  const plain = await launch();
  try {
    const page = await openPage(plain.context, plain.base);
    await pageReady(page);
    await page.waitForSelector('body[data-backend="cpu"]');
    const status = await page.textContent('#backend-status');
    assert.match(status, /^CPU \(wasm SIMD\) · WebGPU unavailable: /);
    assert.equal(await page.$eval('#backend option[value="webgpu"]', (o) => o.disabled), true);
    assert.match(await page.$eval('#backend option[value="webgpu"]', (o) => o.title), /^WebGPU unavailable: /);
    assert.match(await page.getAttribute('#backend', 'title'), /^WebGPU unavailable: /);
    console.log(`without the flag: "${status}"`);
    await (await page.$('.controls')).screenshot({ path: join(ROOT, 'test-results/webgpu-fallback.png') });
    await page.click('#bench');
    const out = await page.waitForSelector('#bench-result[data-gradient]', { timeout: 30_000 });
    assert.equal(await out.getAttribute('data-gpu-gradient'), null);
    assert.match(await out.textContent(), /no WebGPU here/);
    assert.deepEqual(page.problems, []);
  } finally {
    await plain.close();
  }
});
