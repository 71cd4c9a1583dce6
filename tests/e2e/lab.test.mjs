// The page's attack panel: pick a target, attack with live progress, see the result, cancel.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { cli, launch, openPage, readPack, screenshot, tempDir, writeNpy } from './harness.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

async function ready(page) {
  await page.waitForSelector('body[data-model-state="ready"]', { timeout: 60_000 });
  await page.waitForSelector('#prediction[data-label]');
}

test('the attack panel turns a 7 into a 3 with the distortion of the CLI, and shows it', async () => {
  const page = await openPage(browser.context, `${browser.base}?model=fc100-100-10&digit=0`);
  await ready(page);
  assert.equal(await page.getAttribute('#targets button[data-target="8"]', 'aria-pressed'), 'true', 'default target: the label after 7');
  await page.click('#targets button[data-target="3"]');
  assert.equal(await page.getAttribute('#targets button[data-target="3"]', 'aria-pressed'), 'true');
  await page.click('#run-attack');
  const box = await page.waitForSelector('#attack-result[data-label]:not([hidden])', { timeout: 60_000 });
  assert.equal(await box.getAttribute('data-success'), 'true');
  assert.equal(await box.getAttribute('data-label'), '3');
  assert.equal(await page.textContent('#adv-label'), '3');
  const distortion = Number(await box.getAttribute('data-distortion'));
  const dir = tempDir();
  const input = join(dir, 'digit0.npy');
  writeNpy(input, readPack('mnist-test-1k.bin').input(0), [1, 1, 28, 28]);
  const native = JSON.parse(cli('attack', 'models/fc100-100-10.onnx', input, '--target', '3', '--out', join(dir, 'adv.npy')));
  assert.ok(Math.abs(distortion - native.distortion) <= 1e-4, `page ${distortion}, CLI ${native.distortion}`);
  assert.match(await page.textContent('#adv-numbers'), /distortion0\.0\d{3}/);
  assert.match(await page.textContent('#attack-status'), /^done in [\d.]+ s$/);
  await screenshot(page, 'attack-desktop.png');
  await page.setViewportSize({ width: 390, height: 844 });
  await screenshot(page, 'attack-phone.png');
  assert.deepEqual(page.problems, []);
});

test('FGSM from the panel, untargeted, stays inside its epsilon', async () => {
  const page = await openPage(browser.context, `${browser.base}?model=fc10-1e-4&digit=0`);
  await ready(page);
  await page.selectOption('#method', 'fgsm');
  await page.click('summary');
  await page.fill('#epsilon', '0.25');
  await page.click('#targets button[data-target="any"]');
  await page.click('#run-attack');
  const box = await page.waitForSelector('#attack-result[data-method="fgsm"]:not([hidden])', { timeout: 30_000 });
  assert.equal(await box.getAttribute('data-success'), 'true', 'FGSM at 0.25 fools softmax regression');
  assert.notEqual(await box.getAttribute('data-label'), '7');
  const linf = Number((await page.textContent('#adv-numbers')).match(/L-infinity([\d.]+)/)[1]);
  assert.ok(linf <= 0.25 + 1e-3, `L-infinity ${linf}`);
});

test('Cancel stops a long attack and the page goes on working', async () => {
  const page = await openPage(browser.context, `${browser.base}?model=cnn&digit=0`);
  await ready(page);
  await page.click('summary');
  await page.fill('#max-iterations', '2000');
  await page.fill('#c-steps', '20');
  await page.click('#run-attack');
  await page.waitForFunction(() => /iteration \d+/.test(document.querySelector('#attack-status').textContent), null, { timeout: 30_000 });
  assert.equal(await page.isVisible('#cancel-attack'), true);
  await page.click('#cancel-attack');
  await page.waitForFunction(() => document.querySelector('#attack-status').textContent === 'cancelled');
  assert.equal(await page.isHidden('#cancel-attack'), true);
  assert.equal(await page.isDisabled('#run-attack'), false);
  await page.click('.thumb[data-index="1"]');
  await page.waitForSelector('#prediction[data-digit="1"][data-label="2"]', { timeout: 30_000 });
});
