// Bring your own model: a Softmax-ending copy of a shipped model, dropped in the lab, shows the
// shipped model's probabilities and attacks to the same distortion (tests/fixtures/outputs/).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ROOT, launch, openPage, pageReady, screenshot } from './harness.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

async function attackTo3(page) {
  await page.evaluate(() => { delete document.querySelector('#attack-result').dataset.distortion; });
  await page.click('#targets button[data-target="3"]');
  await page.click('#run-attack');
  await page.waitForFunction(() => document.querySelector('#attack-result').dataset.distortion !== undefined, null, { timeout: 120_000 });
  return page.$eval('#attack-result', (b) => ({ ...b.dataset }));
}

test('a Softmax-ending MNIST model dropped in the lab shows the shipped model\'s probabilities and attacks to the same distortion', async () => {
  const page = await openPage(browser.context, `${browser.base}?model=fc100-100-10&digit=0`);
  await pageReady(page);
  assert.match(await page.textContent('#model-status'), /output: logits "logits"/);
  const shipped = JSON.parse(await page.getAttribute('#prediction', 'data-probabilities'));
  const base = await attackTo3(page);
  assert.equal(base.success, 'true');
  for (const name of ['mlp-softmax.onnx', 'mlp-logsoftmax.onnx', 'mlp-softmax-4d.onnx']) {
    await page.evaluate(() => { delete document.querySelector('#prediction').dataset.label; });
    await page.setInputFiles('#model-file', { name, mimeType: 'application/octet-stream', buffer: readFileSync(join(ROOT, 'tests/fixtures/outputs', name)) });
    await page.waitForFunction((id) => document.querySelector('#model').value === id && document.body.dataset.modelState === 'ready'
      && document.querySelector('#prediction').dataset.label !== undefined, `local:${name}`, { timeout: 30_000 });
    assert.match(await page.textContent('#model-status'), name === 'mlp-logsoftmax.onnx'
      ? /output: log-probabilities "logp" \(Softmax "log_softmax[^"]*"\)/ : /output: probabilities "probs" \(Softmax "softmax"\)/);
    const mine = JSON.parse(await page.getAttribute('#prediction', 'data-probabilities'));
    assert.equal(mine.length, 10);
    mine.forEach((p, k) => assert.ok(Math.abs(p - shipped[k]) < 1e-5, `${name} class ${k}: ${p} vs the shipped model's ${shipped[k]}`));
    const ours = await attackTo3(page);
    assert.equal(ours.success, 'true', name);
    assert.equal(ours.label, '3', name);
    const rel = Math.abs(Number(ours.distortion) - Number(base.distortion)) / Number(base.distortion);
    assert.ok(rel < 0.02, `${name}: distortion ${ours.distortion} vs the shipped model's ${base.distortion}`);
    console.log(`${name}: p(7) ${mine[7].toFixed(4)} (shipped ${shipped[7].toFixed(4)}), distortion ${Number(ours.distortion).toFixed(5)} (shipped ${Number(base.distortion).toFixed(5)})`);
  }
  await screenshot(page, 'byom-softmax.png');
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: join(ROOT, 'test-results/byom-softmax-phone.png') });
  assert.deepEqual(page.problems, []);
});
