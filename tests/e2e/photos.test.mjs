// Natural images (issue 10): the ImageNet model fetched only when picked and then kept in the
// Cache API, its predictions on the sample photos equal to onnxruntime's, the user's own photo
// (upload, paste, camera), and the paper's Figure 5: a photo attacked to a class picked by name.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ROOT, launch, openPage, pageReady, screenshot } from './harness.mjs';

const manifest = JSON.parse(readFileSync(join(ROOT, 'models/imagenet.json'), 'utf8')).models[0];
const measured = JSON.parse(readFileSync(join(ROOT, 'models/efficientnet-lite0.json'), 'utf8')).variants.float16;
const photoList = JSON.parse(readFileSync(join(ROOT, 'models/data/photos/photos.json'), 'utf8')).photos;
const OSTRICH = 9;
const DALMATIAN = 251;

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

/** Opens the lab, with a log of the model files it requests. */
async function open(query = '?model=cnn&digit=0') {
  const page = await openPage(browser.context, `${browser.base}${query}`);
  page.modelRequests = [];
  page.on('request', (r) => { if (r.url().includes('efficientnet')) page.modelRequests.push(r.url()); });
  return page;
}

async function loadModel(page) {
  await page.click('#photos-load');
  await page.waitForSelector('#photos-body:not([hidden])', { timeout: 120_000 });
  await page.waitForSelector('#photos-section[data-label]', { timeout: 60_000 });
}

async function labelAfter(page, action) {
  await page.evaluate(() => { delete document.getElementById('photos-section').dataset.label; });
  await action();
  await page.waitForSelector('#photos-section[data-label]', { timeout: 60_000 });
  return Number(await page.getAttribute('#photos-section', 'data-label'));
}

test('the ImageNet model is fetched only when picked, with a progress bar, then kept in the Cache API', async () => {
  const page = await open();
  await pageReady(page);
  assert.deepEqual(page.modelRequests, [], 'a visit to the lab fetches no ImageNet model');
  // the bar moves while the bytes arrive
  await page.evaluate(() => {
    window.barValues = [];
    const bar = document.getElementById('photos-download');
    new MutationObserver(() => window.barValues.push(bar.value)).observe(bar, { attributes: true });
    const poll = setInterval(() => { window.barValues.push(bar.value); if (bar.value >= 1) clearInterval(poll); }, 5);
  });
  await loadModel(page);
  const values = await page.evaluate(() => window.barValues);
  assert.ok(values.some((v) => v > 0 && v < 1), `the download bar showed progress: ${values.slice(0, 20)}`);
  assert.equal(await page.getAttribute('#photos-section', 'data-cached'), 'false');
  assert.equal(page.modelRequests.length, 1, page.modelRequests.join('\n'));
  assert.match(await page.textContent('#photos-status'), /ready \(downloaded/);
  assert.equal(await page.locator('#photo-gallery button').count(), photoList.length);
  // the next visit takes it from the cache: no request
  const again = await open();
  await pageReady(again);
  await again.waitForFunction(() => /kept in this browser/.test(document.getElementById('photos-load').textContent));
  await loadModel(again);
  assert.equal(await again.getAttribute('#photos-section', 'data-cached'), 'true');
  assert.deepEqual(again.modelRequests, []);
  assert.deepEqual([...page.problems, ...again.problems], []);
  await page.close();
  await again.close();
});

test('every sample photo gets the class onnxruntime gives it, top-1 as the model card says', async () => {
  const page = await open('?model=cnn&digit=0&photo=imagenet_00_243.jpg');
  await page.waitForSelector('#photos-section[data-label]', { timeout: 120_000 });
  let correct = 0;
  for (const [i, photo] of photoList.entries()) {
    const label = await labelAfter(page, () => page.click(`#photo-gallery button >> nth=${i}`));
    assert.equal(label, measured.predictions[photo.file], `${photo.file}: the page says ${label}`);
    if (label === photo.label) correct += 1;
  }
  assert.equal(correct, measured.top1, 'top-1 on the labelled photos');
  assert.equal(`${correct}/${measured.labelled}`, manifest.top1);
  await page.close();
});

test('your own photo: uploaded at any size and centre-cropped, pasted, or from the camera; a text file is refused', async () => {
  const page = await open('?model=cnn&digit=0&photo=imagenet_00_243.jpg');
  await page.waitForSelector('#photos-section[data-label]', { timeout: 120_000 });
  // the Dalmatian photo inside a wider 400x280 picture with grey bands left and right
  const wide = Buffer.from(await page.evaluate(async () => {
    const image = await createImageBitmap(await (await fetch('models/data/photos/imagenet_16_251.jpg')).blob());
    const canvas = new OffscreenCanvas(400, 280);
    const ctx = canvas.getContext('2d');
    ctx.fillStyle = '#777';
    ctx.fillRect(0, 0, 400, 280);
    ctx.drawImage(image, 60, 0, 280, 280);
    return Array.from(new Uint8Array(await (await canvas.convertToBlob({ type: 'image/png' })).arrayBuffer()));
  }));
  const uploaded = await labelAfter(page, () => page.setInputFiles('#photo-file', { name: 'dog.png', mimeType: 'image/png', buffer: wide }));
  assert.equal(uploaded, DALMATIAN, 'the centre crop keeps the dog');
  assert.match(await page.textContent('#photo-what'), /your photo "dog.png"/);
  // pasted on the section: a photo for this section, not a digit for the lab
  const digitBefore = await page.getAttribute('#prediction', 'data-label');
  const pasted = await labelAfter(page, () => page.evaluate(async (bytes) => {
    const data = new DataTransfer();
    data.items.add(new File([new Uint8Array(bytes)], 'pasted.png', { type: 'image/png' }));
    document.getElementById('photo-gallery').dispatchEvent(new ClipboardEvent('paste', { clipboardData: data, bubbles: true }));
  }, Array.from(wide)));
  assert.equal(pasted, DALMATIAN);
  assert.equal(await page.getAttribute('#prediction', 'data-label'), digitBefore, 'the digit lab did not take the paste');
  // the camera (Chromium's synthetic one): a frame is taken and classified
  await page.click('#photo-camera');
  await page.waitForSelector('#camera-box:not([hidden])');
  await labelAfter(page, () => page.click('#camera-snap'));
  assert.match(await page.textContent('#photo-what'), /camera/);
  assert.equal(await page.isHidden('#camera-box'), true);
  // not an image
  await page.setInputFiles('#photo-file', { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('hello') });
  await page.waitForFunction(() => /not an image/.test(document.getElementById('photo-error').textContent));
  assert.deepEqual(page.problems, []);
  await page.close();
});

test('Figure 5: the Dalmatian becomes an ostrich with distortion below 0.02; cancel stops an attack', async () => {
  const page = await open('?model=cnn&digit=0&photo=imagenet_16_251.jpg');
  await page.waitForSelector('#photos-section[data-label]', { timeout: 120_000 });
  assert.equal(Number(await page.getAttribute('#photos-section', 'data-label')), DALMATIAN);
  // the class picker: a name typed, matched among the 1,000 (the datalist offers them)
  assert.equal(await page.locator('#photo-classes option').count(), 1000);
  await page.fill('#photo-target', 'Ostrich');
  await page.click('#photo-attack');
  await page.waitForFunction(() => /computing the first gradient|iteration/.test(document.getElementById('photo-attack-status').textContent));
  await page.waitForSelector('#photos-section[data-distortion]', { timeout: 540_000 });
  const d = await page.evaluate(() => ({ ...document.getElementById('photos-section').dataset }));
  console.log(`  Figure 5 attack: distortion ${Number(d.distortion).toFixed(5)}, L-inf ${Number(d.linf).toFixed(4)}, ${d.seconds} s, first progress after ${d.firstProgress} s`);
  assert.equal(Number(d.advLabel), OSTRICH);
  assert.equal(d.success, 'true');
  assert.ok(Number(d.distortion) > 0 && Number(d.distortion) < 0.02, d.distortion);
  assert.ok(Number(d.linf) <= 1);
  assert.equal(await page.textContent('#photo-adv-label'), 'ostrich');
  assert.equal(await page.textContent('#photo-adv-bars li.top .name'), 'ostrich');
  assert.equal(await page.locator('#photo-orig-bars li').count(), 5);
  // the difference x10: grey where nothing changed, and not flat grey everywhere
  const grey = await page.evaluate(() => {
    const data = document.getElementById('photo-diff').getContext('2d').getImageData(0, 0, 224, 224).data;
    let near = 0;
    let far = 0;
    for (let i = 0; i < data.length; i += 4) (Math.abs(data[i] - 128) <= 3 ? near++ : far++);
    return { near, far };
  });
  assert.ok(grey.near > 0 && grey.far > 0, JSON.stringify(grey));
  await screenshot(page, 'figure5.png');
  await page.setViewportSize({ width: 390, height: 844 });
  await page.locator('#photos-section').screenshot({ path: join(ROOT, 'test-results/figure5-phone.png') });
  await page.setViewportSize({ width: 1280, height: 900 });
  // untargeted FGSM, then a long L-BFGS run cancelled
  await page.check('#photo-untargeted');
  await page.selectOption('#photo-method', 'fgsm');
  await page.evaluate(() => { delete document.getElementById('photos-section').dataset.distortion; });
  await page.click('#photo-attack');
  await page.waitForSelector('#photos-section[data-distortion]', { timeout: 120_000 });
  const fgsm = await page.evaluate(() => ({ ...document.getElementById('photos-section').dataset }));
  assert.ok(Number(fgsm.linf) <= 0.01 + 1e-6, `FGSM stays in its epsilon: ${fgsm.linf}`);
  await page.selectOption('#photo-method', 'lbfgs');
  await page.click('#photos-section details.advanced summary');
  await page.fill('#photo-iterations', '500');
  await page.click('#photo-attack');
  await page.waitForFunction(() => /iteration/.test(document.getElementById('photo-attack-status').textContent), null, { timeout: 60_000 });
  await page.click('#photo-cancel');
  await page.waitForFunction(() => document.getElementById('photo-attack-status').textContent === 'cancelled');
  // the model is back after the cancel
  assert.equal(await labelAfter(page, () => page.click('#photo-gallery button >> nth=16')), DALMATIAN);
  assert.deepEqual(page.problems, []);
  await page.close();
});
