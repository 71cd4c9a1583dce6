// The benchmark page (www/bench.html) in quick mode: TensorFlow.js on our weights computes the same
// gradient as blindspot on every backend, the attack and roofline sections fill, the report prints,
// and a first visit stays small. Rates are printed, never asserted (they are the benchmark's job).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { benchBrowser, bundlePeer, firstVisit, report, runBenchPage } from '../../scripts/bench.mjs';
import { screenshot, serveSite } from './harness.mjs';

let site;
let context;
before(async () => {
  await bundlePeer();
  site = await serveSite();
  context = await benchBrowser();
});
after(async () => {
  await context?.close();
  await site?.stop();
});

test('TensorFlow.js on our ONNX weights computes blindspot\'s gradient on every backend; the page times both', async () => {
  const results = await runBenchPage(context, site.base, 'quick&webgpu&window=0.05&digits=2', { timeout: 600_000 });
  const page = results.page;
  assert.deepEqual(results.errors, []);
  assert.deepEqual(results.pageErrors, []);
  assert.deepEqual(results.gradients.map((g) => g.model), ['cnn', 'fc200-200-10', 'mobilenet']);
  for (const g of results.gradients) {
    // the peer runs on wasm and cpu everywhere; WebGL where the browser has it (SwiftShader here)
    assert.ok(g.checks.find((c) => c.engine === 'tfjs cpu'), `${g.model}: no gradient check for tfjs cpu`);
    for (const engine of ['tfjs wasm', 'tfjs webgl']) {
      // where the peer cannot run, it says which kernel it lacks (tfjs-backend-wasm 4.22 has no
      // depthwise-convolution input gradient, so MobileNet's gradient does not run there)
      const failure = g.rates.find((r) => r.engine === engine)?.error;
      if (failure) console.log(`${g.model} ${engine}: ${failure}`);
      assert.ok(g.checks.find((c) => c.engine === engine) || /Kernel '\w+' not registered|WebGL/.test(failure), `${g.model} ${engine}: ${failure}`);
    }
    for (const c of g.checks) {
      console.log(`${g.model} ${c.engine}: gradient difference ${c.difference.toExponential(2)}`);
      assert.ok(c.difference <= 1e-4, `${g.model} ${c.engine}: gradient differs by ${c.difference}`);
      if (c.objectiveDifference !== undefined) assert.ok(c.objectiveDifference < 1e-5, `${g.model} ${c.engine}: objective differs`);
    }
    for (const r of g.rates.filter((x) => !x.error)) {
      assert.ok(r.gradient > 0, `${g.model} ${r.engine}: no gradient rate`);
      if (r.forward !== null) assert.ok(r.forward > 0, `${g.model} ${r.engine}: no forward rate`);
    }
    assert.ok(g.rates.find((r) => r.engine === 'blindspot wasm').gradient > 0);
    // issue 7: the page reports blindspot's WebGPU beside its CPU (SwiftShader's adapter here)
    const gpu = g.rates.find((r) => r.engine === 'blindspot WebGPU');
    assert.ok(gpu && !gpu.error && gpu.gradient > 0, `${g.model}: no WebGPU rate (${gpu?.error})`);
    assert.ok(g.checks.find((c) => c.engine === 'blindspot WebGPU'), `${g.model}: WebGPU gradient not checked`);
    assert.ok(g.flops > 0, `${g.model}: FLOPs not counted`);
  }
  // FLOPs of the CNN: conv1 5x5 1->32 on 28x28, conv2 5x5 32->64 on 14x14, fc 3136->1024 -> 10 (models/cnn.md)
  const cnn = results.gradients.find((g) => g.model === 'cnn');
  console.log(`CNN forward FLOPs ${cnn.flops}`);
  assert.ok(cnn.flops > 1e6);

  assert.equal(results.attack.rows.length, 2);
  for (const r of results.attack.rows) {
    assert.ok(r.success, `attack on digit ${r.digit} did not reach ${r.target}`);
    assert.notEqual(r.target, r.label);
    assert.ok(r.distortion > 0 && r.distortion < 0.2, `distortion ${r.distortion}`);
  }
  assert.ok(results.roofline.peakGflops > 0.1, `peak ${results.roofline.peakGflops}`);
  assert.ok(results.roofline.rows.some((r) => r.model === 'cnn' && r.engine === 'blindspot wasm' && r.gradientGflops > 0));

  const text = report({ bench: results, scipy: null, visits: [], cpu: 'test' });
  for (const heading of ['Forward + input gradient per second', 'Same gradient before timing', "The paper's attack", 'Roofline']) {
    assert.ok(text.includes(heading), `the report has no "${heading}"`);
  }
  console.log(text);
  await screenshot(page, 'bench.png');
});

test('a first visit fetches the lab, the wasm and the small models only, and classifies a digit', async () => {
  const visit = await firstVisit(benchBrowser);
  const files = visit.files.map((f) => f.file);
  console.log(`first visit: ${files.length} files, ${visit.raw} bytes, ${visit.gzip} gzip, first classification at ${visit.ms.toFixed(0)} ms`);
  assert.ok(files.includes('/pkg/blindspot_bg.wasm'));
  assert.ok(files.includes('/index.html'));
  for (const big of ['/models/data/mnist-test-10k.bin', '/tests/fixtures/zoo/mobilenet.onnx', '/www/vendor/tfjs.js']) {
    assert.ok(!files.includes(big), `a first visit fetched ${big}`);
  }
  assert.ok(visit.gzip < 4_000_000, `first visit ${visit.gzip} bytes gzip`);
  assert.ok(visit.ms > 0);
});
