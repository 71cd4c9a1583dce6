// A photo, scan or screenshot of a digit: uploaded, pasted or dropped, made MNIST-like, classified.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launch, openPage, readPack, screenshot, pageReady as ready } from './harness.mjs';

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
    await page.setInputFiles('#image-file', file);
    await page.waitForSelector('#error:not([hidden])');
    assert.match(await page.textContent('#error'), message);
    await page.setInputFiles('#image-file', []);
  }
  // the page goes on working: a test digit is classified and the error clears on the next image
  await page.click('.thumb[data-index="2"]');
  await page.waitForFunction(() => document.querySelector('#prediction').dataset.digit === '2');
  await paste(png, 'image/png', 'again.png');
  await page.waitForSelector('#error[hidden]', { state: 'attached' });
  assert.deepEqual(page.problems, []);
});
