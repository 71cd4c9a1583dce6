// A photo, scan or screenshot of a digit: uploaded, pasted or dropped, made MNIST-like, classified.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ROOT, SHOTS, launch, openPage, readPack, screenshot, waitForMessage, pageReady as ready } from './harness.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

/**
 * A "photo" of test digit `index`: dark ink on light grey paper, 7x bigger, off-centre, in a
 * 300x240 PNG, drawn by the browser's canvas (as a phone picture would arrive).
 */
async function photoOf(page, pixels) {
  const bytes = await page.evaluate(async (pixels) => {
    const small = new OffscreenCanvas(28, 28);
    const img = small.getContext('2d').createImageData(28, 28);
    pixels.forEach((v, i) => {
      const ink = Math.round(215 - 190 * v); // paper 215, ink 25
      img.data.set([ink, ink, ink + 5, 255], i * 4);
    });
    small.getContext('2d').putImageData(img, 0, 0);
    const photo = new OffscreenCanvas(300, 240);
    const ctx = photo.getContext('2d');
    ctx.fillStyle = 'rgb(215,215,220)';
    ctx.fillRect(0, 0, 300, 240);
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(small, 120, 20, 196, 196);
    const blob = await photo.convertToBlob({ type: 'image/png' });
    return Array.from(new Uint8Array(await blob.arrayBuffer()));
  }, Array.from(pixels));
  return Buffer.from(bytes);
}

test('an uploaded photo of a digit is made MNIST-like and classified like the digit itself', async () => {
  const page = await openPage(browser.context, `${browser.base}?model=cnn&digit=0`);
  await ready(page);
  const pack = readPack('mnist-test-1k.bin');
  for (const index of [1, 2, 3, 8]) {
    const png = await photoOf(page, pack.input(index));
    const before = await page.getAttribute('#prediction', 'data-probabilities');
    await page.setInputFiles('#image-file', { name: `digit-${index}.png`, mimeType: 'image/png', buffer: png });
    await page.waitForFunction(() => document.querySelector('#prediction').dataset.digit === '-1'
      && document.querySelector('#digit-caption').textContent.startsWith('your image'));
    // the previous image's prediction stays on show until this one's arrives
    await page.waitForFunction((before) => document.querySelector('#prediction').dataset.probabilities !== before, before);
    const label = Number(await page.getAttribute('#prediction', 'data-label'));
    assert.equal(label, pack.labels[index], `photo of test digit ${index} (a ${pack.labels[index]}) read as ${label}`);
    // the digit on show is the photo brought back to MNIST's layout: close to the original
    const shown = await page.$eval('#digit', (c) => Array.from(c.getContext('2d').getImageData(0, 0, 28, 28).data.filter((_, i) => i % 4 === 0), (v) => v / 255));
    const original = pack.input(index);
    const diff = shown.reduce((s, v, i) => s + Math.abs(v - original[i]), 0) / shown.length;
    assert.ok(diff < 0.08, `digit ${index}: mean |photo made MNIST-like - original| = ${diff.toFixed(3)}`);
    console.log(`photo of digit ${index}: read as ${label}, mean abs difference to the test digit ${diff.toFixed(3)}`);
    await page.setInputFiles('#image-file', []);
  }
  // the uploaded digit can be attacked like any other
  await page.selectOption('#method', 'fgsm');
  await page.click('#run-attack');
  await page.waitForSelector('#attack-result[data-label]:not([hidden])', { timeout: 60_000 });
  assert.ok(!new URL(page.url()).searchParams.has('digit'), 'an upload is not in the link');
  await screenshot(page, 'upload.png');
  assert.deepEqual(page.problems, []);
});

test('a pasted image is classified; non-images and broken images are refused clearly', async () => {
  const page = await openPage(browser.context, `${browser.base}?model=cnn&digit=0`);
  await ready(page);
  const pack = readPack('mnist-test-1k.bin');
  const png = await photoOf(page, pack.input(7));
  const paste = (bytes, type, name) => page.evaluate(({ bytes, type, name }) => {
    const data = new DataTransfer();
    data.items.add(new File([new Uint8Array(bytes)], name, { type }));
    document.body.dispatchEvent(new ClipboardEvent('paste', { clipboardData: data, bubbles: true }));
  }, { bytes: Array.from(bytes), type, name });
  await paste(png, 'image/png', 'image.png');
  await page.waitForFunction(() => document.querySelector('#prediction').dataset.digit === '-1');
  await page.waitForFunction(() => document.querySelector('#digit-caption').textContent.startsWith('your image'));
  await page.waitForFunction((want) => document.querySelector('#prediction').dataset.label === want, String(pack.labels[7]));

  const cases = [
    [{ name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('hello') }, /"notes\.txt" is not an image \(text\/plain\)/],
    [{ name: 'broken.png', mimeType: 'image/png', buffer: png.subarray(0, 60) }, /"broken\.png" could not be read as an image/],
    [{ name: 'blank.png', mimeType: 'image/png', buffer: await page.evaluate(async () => {
      const c = new OffscreenCanvas(50, 50);
      c.getContext('2d').fillStyle = '#fff';
      c.getContext('2d').fillRect(0, 0, 50, 50);
      return Array.from(new Uint8Array(await (await c.convertToBlob()).arrayBuffer()));
    }).then((b) => Buffer.from(b)) }, /no digit in it/],
  ];
  for (const [file, message] of cases) {
    // the previous case's message stays on show until this one's arrives (nothing clears it)
    const previous = await page.textContent('#error');
    await page.setInputFiles('#image-file', file);
    assert.match(await waitForMessage(page, '#error', message, { previous }), message);
    await page.setInputFiles('#image-file', []);
  }
  // the page goes on working: a test digit is classified and the error clears on the next image
  await page.click('.thumb[data-index="2"]');
  await page.waitForFunction(() => document.querySelector('#prediction').dataset.digit === '2');
  await paste(png, 'image/png', 'again.png');
  await page.waitForSelector('#error[hidden]', { state: 'attached' });
  assert.deepEqual(page.problems, []);
});

/** Drops `bytes` as a file on the gallery (a real DragEvent with a DataTransfer; it bubbles to the page's handler). */
function drop(page, bytes, name, type) {
  return page.evaluate(({ bytes, name, type }) => {
    const data = new DataTransfer();
    data.items.add(new File([new Uint8Array(bytes)], name, { type }));
    const target = document.querySelector('#gallery');
    target.dispatchEvent(new DragEvent('dragover', { dataTransfer: data, bubbles: true, cancelable: true }));
    const highlighted = document.body.classList.contains('dropping');
    const event = new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true });
    target.dispatchEvent(event);
    return { highlighted, prevented: event.defaultPrevented, after: document.body.classList.contains('dropping') };
  }, { bytes: Array.from(bytes), name, type });
}

test('drag and drop: a dropped .onnx model loads and classifies, a dropped PNG of a digit is read', async () => {
  const page = await openPage(browser.context, `${browser.base}?model=cnn&digit=0`);
  await ready(page);
  const requests = [];
  page.on('request', (r) => requests.push(r.url()));
  // the CNN's answer stays on show until the dropped model's arrives (the state says "ready"
  // before the digit is classified): take it away, so what is read below is the new model's
  await page.evaluate(() => { delete document.querySelector('#prediction').dataset.label; });
  // a shipped model's bytes under another name: the page cannot know it from its name
  const dropped = await drop(page, readFileSync(join(ROOT, 'models/fc10-1.onnx')), 'my-linear.onnx', '');
  assert.deepEqual(dropped, { highlighted: true, prevented: true, after: false }, 'the page shows the drop target and takes the drop');
  await page.waitForFunction(() => document.querySelector('#model').value === 'local:my-linear.onnx'
    && document.body.dataset.modelState === 'ready' && document.querySelector('#prediction').dataset.label !== undefined, null, { timeout: 30_000 });
  assert.match(await page.textContent('#model-status'), /^ready · 32 kB · input \[1, 1, 28, 28\]/);
  assert.equal(await page.$eval('#model option:checked', (o) => o.textContent), 'my-linear.onnx (yours)');
  const mine = JSON.parse(await page.getAttribute('#prediction', 'data-probabilities'));
  assert.equal(Number(await page.getAttribute('#prediction', 'data-label')), 7);
  assert.deepEqual(requests.filter((u) => u.includes('.onnx')), [], 'the dropped model was not fetched or sent');
  // the same weights as the shipped FC10(1): the same probabilities, to the last bit (so the
  // dropped model's answer, still on show, would pass for FC10(1)'s: take it away first)
  await page.evaluate(() => { delete document.querySelector('#prediction').dataset.label; });
  await page.selectOption('#model', 'fc10-1');
  await page.waitForFunction(() => document.body.dataset.modelState === 'ready' && document.querySelector('#model').value === 'fc10-1'
    && document.querySelector('#prediction').dataset.label !== undefined);
  await page.waitForFunction((mine) => document.querySelector('#prediction').dataset.probabilities === mine, JSON.stringify(mine));

  // a PNG "photo" of test digit 3, dropped
  const pack = readPack('mnist-test-1k.bin');
  await page.selectOption('#model', 'cnn');
  await page.waitForFunction(() => document.body.dataset.modelState === 'ready' && document.querySelector('#model').value === 'cnn');
  assert.deepEqual(await drop(page, await photoOf(page, pack.input(3)), 'scan.png', 'image/png'), { highlighted: true, prevented: true, after: false });
  await page.waitForFunction(() => document.querySelector('#prediction').dataset.digit === '-1'
    && document.querySelector('#digit-caption').textContent.startsWith('your image'), null, { timeout: 30_000 });
  await page.waitForFunction((want) => document.querySelector('#prediction').dataset.label === want, String(pack.labels[3]));
  assert.equal(await page.isHidden('#error'), true, await page.textContent('#error'));
  assert.deepEqual(page.problems, []);
});

test('drawing with a finger (touch) and with a pen gives classified digits', async () => {
  const page = await openPage(browser.context, `${browser.base}?model=cnn&digit=0`);
  await ready(page);
  await page.click('.draw summary');
  await page.locator('#pad').scrollIntoViewIfNeeded();
  await page.evaluate(() => {
    window.pointers = [];
    document.querySelector('#pad').addEventListener('pointermove', (e) => window.pointers.push(e.pointerType));
  });
  const cdp = await page.context().newCDPSession(page);
  const box = await page.locator('#pad').boundingBox();
  const at = (x, y) => ({ x: box.x + box.width * x, y: box.y + box.height * y });
  /** The digit shown after "Classify my drawing": its label and how much ink it has. */
  const classify = async () => {
    await page.evaluate(() => { delete document.querySelector('#prediction').dataset.label; });
    await page.click('#pad-use');
    await page.waitForSelector('#prediction[data-digit="-1"][data-label]', { timeout: 30_000 });
    const ink = await page.$eval('#digit', (c) => c.getContext('2d').getImageData(0, 0, 28, 28).data.filter((v, i) => i % 4 === 0 && v > 128).length);
    return { label: await page.getAttribute('#prediction', 'data-label'), ink };
  };

  // a finger: Chromium's touch pipeline (CDP Input.dispatchTouchEvent), a vertical stroke
  await cdp.send('Emulation.setTouchEmulationEnabled', { enabled: true, maxTouchPoints: 1 });
  await cdp.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: [at(0.5, 0.15)] });
  for (let t = 0.2; t <= 0.85; t += 0.05) await cdp.send('Input.dispatchTouchEvent', { type: 'touchMove', touchPoints: [at(0.52, t)] });
  await cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
  const touched = await classify();
  assert.ok(touched.ink > 20, `${touched.ink} inked pixels`);
  assert.equal(touched.label, '1', 'a stroke drawn with a finger reads as a 1');
  assert.ok((await page.evaluate(() => window.pointers)).includes('touch'), 'the pad saw touch pointers');
  await page.screenshot({ path: join(SHOTS, 'draw-touch.png') });

  // a pen: pointer events of pointerType "pen" (CDP Input.dispatchMouseEvent), a 7
  await page.click('#pad-clear');
  await page.evaluate(() => { window.pointers = []; });
  const pen = (type, p, buttons = 1) => cdp.send('Input.dispatchMouseEvent', { type, ...p, button: 'left', buttons, clickCount: 1, pointerType: 'pen' });
  await pen('mousePressed', at(0.25, 0.2));
  for (const [x0, y0, x1, y1] of [[0.25, 0.2, 0.75, 0.2], [0.75, 0.2, 0.42, 0.85]]) {
    for (let t = 0.1; t <= 1.001; t += 0.1) await pen('mouseMoved', at(x0 + (x1 - x0) * t, y0 + (y1 - y0) * t));
  }
  await pen('mouseReleased', at(0.42, 0.85), 0);
  const penned = await classify();
  assert.ok(penned.ink > 20, `${penned.ink} inked pixels`);
  assert.equal(penned.label, '7', 'a 7 drawn with a pen reads as a 7');
  const types = await page.evaluate(() => window.pointers);
  assert.ok(types.length > 10 && types.every((t) => t === 'pen'), `pointer types: ${[...new Set(types)]}`);
  await page.locator('.gallery-section').screenshot({ path: join(SHOTS, 'draw-pen.png') });
  assert.deepEqual(page.problems, []);
});

test('a drawn or uploaded digit is in the link (image=): opening it gives the same digit, label and attack', async () => {
  const page = await openPage(browser.context, `${browser.base}?model=cnn&digit=0`);
  await ready(page);
  await page.click('.draw summary');
  const box = await page.locator('#pad').boundingBox();
  // a 4: down, across, and a long stroke down the right
  const stroke = async (points) => {
    await page.mouse.move(box.x + box.width * points[0][0], box.y + box.height * points[0][1]);
    await page.mouse.down();
    for (const [x, y] of points.slice(1)) await page.mouse.move(box.x + box.width * x, box.y + box.height * y, { steps: 8 });
    await page.mouse.up();
  };
  await stroke([[0.3, 0.15], [0.25, 0.55], [0.75, 0.55]]);
  await stroke([[0.62, 0.15], [0.6, 0.9]]);
  await page.click('#pad-use');
  await page.waitForSelector('#prediction[data-digit="-1"][data-label]');
  const shownBytes = () => page.$eval('#digit', (c) => Array.from(c.getContext('2d').getImageData(0, 0, 28, 28).data.filter((_, i) => i % 4 === 0)));
  const drawn = await shownBytes();
  const param = new URL(page.url()).searchParams.get('image');
  assert.equal(param.length, 1046, '784 bytes, base64url without padding');
  assert.match(param, /^[A-Za-z0-9_-]+$/);
  assert.deepEqual(Array.from(Buffer.from(param, 'base64url')), drawn, 'the link holds the digit on show');
  assert.equal(new URL(page.url()).searchParams.has('digit'), false);
  const label = await page.getAttribute('#prediction', 'data-label');
  const probabilities = await page.getAttribute('#prediction', 'data-probabilities');
  const target = label === '9' ? '8' : '9';
  await page.click(`#targets button[data-target="${target}"]`);
  await page.click('#run-attack');
  const result = await page.waitForSelector('#attack-result[data-label]:not([hidden])', { timeout: 60_000 });
  const distortion = await result.getAttribute('data-distortion');
  assert.equal(await result.getAttribute('data-label'), target);
  console.log(`drawn digit read as ${label}, attacked towards ${target}: ${await page.textContent('#attack-status')}, distortion ${distortion}`);
  const link = new URL(page.url());
  assert.equal(link.searchParams.get('run'), '1');
  assert.equal(link.searchParams.get('image'), param);

  // the link in a new tab: the same digit, the same answer, the attack runs again to the same numbers
  const again = await openPage(browser.context, link.href);
  const box2 = await again.waitForSelector('#attack-result[data-label]:not([hidden])', { timeout: 60_000 });
  assert.deepEqual(await again.$eval('#digit', (c) => Array.from(c.getContext('2d').getImageData(0, 0, 28, 28).data.filter((_, i) => i % 4 === 0))), drawn);
  assert.equal(await again.textContent('#digit-caption'), 'a drawn or uploaded digit, from the link');
  assert.equal(await again.getAttribute('#prediction', 'data-label'), label);
  assert.equal(await again.getAttribute('#prediction', 'data-probabilities'), probabilities, 'the same probabilities, to the last digit');
  assert.equal(await box2.getAttribute('data-label'), target);
  assert.equal(await box2.getAttribute('data-distortion'), distortion, 'the same distortion, to the last digit');
  assert.equal(await again.$$eval('.thumb[aria-pressed="true"]', (t) => t.length), 0, 'no test digit selected');
  await screenshot(again, 'image-link.png');
  await again.setViewportSize({ width: 375, height: 812 });
  await again.waitForTimeout(300);
  await screenshot(again, 'image-link-phone.png');
  // picking a test digit takes the image out of the link
  await again.click('.thumb[data-index="2"]');
  assert.equal(new URL(again.url()).searchParams.has('image'), false);
  assert.equal(new URL(again.url()).searchParams.get('digit'), '2');

  // an uploaded photo goes into the link the same way
  const pack = readPack('mnist-test-1k.bin');
  // the caption and the link change before the photo is classified; its probabilities are compared
  // below: take the drawing's answer away, and wait for the photo's own
  await page.evaluate(() => { delete document.querySelector('#prediction').dataset.label; });
  await page.setInputFiles('#image-file', { name: 'digit.png', mimeType: 'image/png', buffer: await photoOf(page, pack.input(8)) });
  await page.waitForFunction(() => document.querySelector('#digit-caption').textContent.startsWith('your image'));
  await page.waitForFunction((before) => new URL(location.href).searchParams.get('image') !== before, param);
  await page.waitForSelector('#prediction[data-digit="-1"][data-label]');
  const uploaded = new URL(page.url());
  assert.equal(uploaded.searchParams.has('run'), false, 'a new image: no result on show');
  const third = await openPage(browser.context, uploaded.href);
  await ready(third);
  await third.waitForSelector('#prediction[data-digit="-1"][data-label]');
  assert.equal(await third.getAttribute('#prediction', 'data-label'), String(pack.labels[8]));
  assert.equal(await third.getAttribute('#prediction', 'data-probabilities'), await page.getAttribute('#prediction', 'data-probabilities'));
  // a damaged link: said so, and a test digit instead
  const bad = await openPage(browser.context, `${browser.base}?model=cnn&image=${param.slice(0, 500)}`);
  await ready(bad);
  await bad.waitForSelector('#error:not([hidden])');
  assert.match(await bad.textContent('#error'), /The image in this link could not be read/);
  assert.equal(await bad.getAttribute('#prediction', 'data-digit'), '0');
  assert.deepEqual([...page.problems, ...again.problems, ...third.problems, ...bad.problems], []);
});
