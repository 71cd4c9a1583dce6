// The bad-input catalogue: hostile or broken models, images, settings and timing, each answered
// with a clear message, and the page still working afterwards (a shipped model classifies).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { deflateSync } from 'node:zlib';
import { ROOT, launch, openPage, pageReady, screenshot, waitForMessage } from './harness.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const fixture = (name) => readFileSync(join(ROOT, 'tests/fixtures', name));
const shipped = (name) => readFileSync(join(ROOT, 'models', name));

/** A valid greyscale PNG of `width` x `height`, all white but a black bar (zlib makes it small). */
function png(width, height) {
  const crc = (buf) => {
    let c = ~0;
    for (const byte of buf) { c ^= byte; for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1)); }
    return ~c >>> 0;
  };
  const chunk = (type, data) => {
    const head = Buffer.alloc(8);
    head.writeUInt32BE(data.length, 0);
    head.write(type, 4, 'latin1');
    const tail = Buffer.alloc(4);
    tail.writeUInt32BE(crc(Buffer.concat([head.subarray(4), data])), 0);
    return Buffer.concat([head, data, tail]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // 8-bit greyscale
  const raw = Buffer.alloc((width + 1) * height, 255);
  for (let y = 0; y < height; y++) raw[y * (width + 1)] = 0; // filter byte
  for (let y = Math.floor(height / 4); y < Math.floor((3 * height) / 4); y++) {
    raw.fill(0, y * (width + 1) + 1 + Math.floor(width * 0.45), y * (width + 1) + 1 + Math.floor(width * 0.55));
  }
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

/** The page still works: a shipped model loads (unless one is) and classifies test digit `digit`. */
async function stillWorks(page, digit) {
  if (!(await page.inputValue('#model')).startsWith('fc100-100-10')) {
    await page.selectOption('#model', 'fc100-100-10');
  }
  await page.waitForSelector('body[data-model-state="ready"]', { timeout: 60_000 });
  await page.click(`.thumb[data-index="${digit}"]`);
  await page.waitForFunction((d) => document.querySelector('#prediction').dataset.digit === String(d)
    && document.querySelector('#prediction').dataset.label !== undefined, digit);
}

const errorText = (page) => page.textContent('#error');

test('the bad-input catalogue: every case gets a clear message and the page keeps working', async () => {
  const page = await openPage(browser.context, `${browser.base}?model=fc100-100-10&digit=0`);
  await pageReady(page);
  const half = (b) => b.subarray(0, Math.floor(b.length / 2));
  const models = [
    ['an empty .onnx', { name: 'empty.onnx', buffer: Buffer.alloc(0) }, /the file is empty; .*export or download it again/],
    ['a truncated .onnx', { name: 'cut.onnx', buffer: half(shipped('fc10-1.onnx')) }, /(not a readable ONNX model|could not be loaded).*(again|re-export)/],
    ['garbage bytes', { name: 'noise.onnx', buffer: Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 7919) % 251)) }, /not a readable ONNX model: .*blindspot reads \.onnx files/],
    ['a photo named .onnx', { name: 'photo.onnx', buffer: png(40, 40) }, /not a readable ONNX model: .*export or download it again/],
    ['a text file', { name: 'notes.txt', buffer: Buffer.from('these are not weights') }, /not a readable ONNX model: .*export or download it again/],
    ['an unsupported op', { name: 'warp.onnx', buffer: fixture('unsupported-op.onnx') }, /FancyWarp \(node "warp_layer"\); re-export the model with these written as standard ONNX ops/],
    ['two inputs', { name: 'two.onnx', buffer: fixture('two-inputs.onnx') }, /it has 2 inputs; an image classifier has one: re-export it with the image as its only input/],
    ['a rank-0 input', { name: 'scalar.onnx', buffer: fixture('scalar-input.onnx') }, /its input is a single number \(rank 0\).*re-export it with a batch axis/],
    ['a symbolic image size', { name: 'dynamic.onnx', buffer: fixture('dynamic-shape.onnx') }, /input dimension 2 \(H\) is not fixed in the file: re-export it with a fixed input size/],
    ['32x32 inputs', { name: 'size32.onnx', buffer: fixture('size-32.onnx') }, /takes inputs of shape \[1, 1, 32, 32\]; the digit lab takes grey 28x28 classifiers .*re-export it for that input/],
    ['NaN weights', { name: 'nan.onnx', buffer: fixture('nan-weights.onnx') }, /the weights of node "[^"]+" hold NaN .*export it again from a checkpoint/],
    ['infinite weights', { name: 'inf.onnx', buffer: fixture('inf-weights.onnx') }, /the weights of node "[^"]+" hold inf/],
  ];
  let cases = 0;
  for (const [what, file, message] of models) {
    // this case's message names its file ('"name" (yours) could not be loaded: ...'): a wait
    // for any message on show could read the previous case's
    const previous = await errorText(page);
    await page.setInputFiles('#model-file', { mimeType: 'application/octet-stream', ...file });
    const text = await waitForMessage(page, '#error', message, { includes: `"${file.name}" (yours) could not be loaded`, previous });
    assert.match(text, message, `${what}: "${text}"`);
    console.log(`${what}: ${text}`);
    await page.setInputFiles('#model-file', []);
    await stillWorks(page, cases % 20);
    cases++;
  }

  // a grey digit classifier laid out as exporters do (a flat [N, 784] vector, channels-last
  // [N, 28, 28, 1]: the shipped fc100-100-10 behind a Reshape) opens in the digit lab and gives
  // the shipped model's own probabilities for the digit on show
  await page.click('.thumb[data-index="7"]');
  await page.waitForFunction(() => document.querySelector('#prediction').dataset.digit === '7');
  const reference = JSON.parse(await page.getAttribute('#prediction', 'data-probabilities'));
  for (const [name, shape] of [['digits-flat.onnx', '[1, 784]'], ['digits-nhwc.onnx', '[1, 28, 28, 1]']]) {
    await page.setInputFiles('#model-file', { name, mimeType: 'application/octet-stream', buffer: fixture(name) });
    // this model's own answer: the prediction says which model made it
    await page.waitForFunction((n) => document.querySelector('#prediction').dataset.model === `local:${n}`, name, { timeout: 60_000 });
    assert.match(await page.textContent('#model-status'), new RegExp(`input ${shape.replace(/[[\]]/g, '\\$&')}`));
    const probabilities = JSON.parse(await page.getAttribute('#prediction', 'data-probabilities'));
    assert.equal(probabilities.length, 10);
    probabilities.forEach((p, k) => assert.ok(Math.abs(p - reference[k]) < 1e-6, `${name}, class ${k}: ${p} vs ${reference[k]}`));
    console.log(`${name} ${shape}: classifies digit 7 as the shipped model does`);
    await page.setInputFiles('#model-file', []);
  }
  await stillWorks(page, cases % 20);
  cases++;

  // a colour 64x64 net is no digit model: it opens in the natural-images section, with its
  // input panel (tests/e2e/imagemodel.test.mjs), and the digit lab keeps its model
  await page.setInputFiles('#model-file', { name: 'mobile.onnx', mimeType: 'application/octet-stream', buffer: readFileSync(join(ROOT, 'tests/fixtures/zoo/mobilenet.onnx')) });
  await page.waitForFunction(() => document.getElementById('photos-section').dataset.userModel === 'mobile.onnx', null, { timeout: 60_000 });
  assert.match(await page.textContent('#photos-status'), /mobile\.onnx ready · input \[1, 3, 64, 64\]/);
  await page.setInputFiles('#model-file', []);
  await stillWorks(page, cases % 20);
  cases++;

  // a model that makes tract panic (found by fuzzing: a Flatten axis past the input's rank): the
  // wasm traps, the page says so, the worker is replaced, and the page goes on working
  const beforePanic = await errorText(page);
  await page.setInputFiles('#model-file', { name: 'panic.onnx', mimeType: 'application/octet-stream', buffer: readFileSync(join(ROOT, 'fuzz/regressions/flatten-axis-out-of-range.onnx')) });
  const panicText = await waitForMessage(page, '#error', /could not be loaded: internal error/, { includes: '"panic.onnx" (yours)', previous: beforePanic });
  assert.match(panicText, /could not be loaded: internal error: range end index 37 out of range for slice of length 4 \(at tract-hir-0\.23\.9\/src\/ops\/array\/flatten\.rs:15:18\)/);
  assert.match(panicText, /blindspot's worker was restarted: pick another model/);
  console.log(`a panic in tract: ${panicText.replace(/\s+/g, ' ')}`);
  await stillWorks(page, 2);
  cases++;

  // a model over the size limit is refused before it is read (dropped: a 601 MB file, one 1 MB
  // buffer repeated, so nothing that large is ever allocated)
  await page.evaluate(() => {
    const mb = new Uint8Array(1 << 20);
    const file = new File(Array.from({ length: 601 }, () => mb), 'huge.onnx');
    const data = new DataTransfer();
    data.items.add(file);
    document.dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true }));
  });
  await page.waitForFunction(() => document.querySelector('#error').textContent.includes('huge.onnx'));
  assert.match(await errorText(page), /"huge\.onnx" is 630 MB; blindspot loads models of up to (600|\d{3}) MB in the page.*5\.3 times its size/);
  await stillWorks(page, 3);
  cases++;

  // a model that loads and classifies but has an op with no gradient rule: the attack says which
  await page.setInputFiles('#model-file', { name: 'wavy.onnx', mimeType: 'application/octet-stream', buffer: fixture('no-gradient.onnx') });
  // FC100-100-10 is ready until the file is read: wait for this model's own "ready"
  await page.waitForFunction(() => document.querySelector('#model').value === 'local:wavy.onnx'
    && document.body.dataset.modelState === 'ready');
  await page.click('#run-attack');
  await page.waitForFunction(() => /attack failed/.test(document.querySelector('#attack-status').textContent));
  assert.match(await page.textContent('#attack-status'), /ReduceProd \(tract.s Reduce<Prod>\) \(node "wobble"\); the model classifies, but cannot be attacked/);
  console.log(`no gradient rule: ${await page.textContent('#attack-status')}`);
  await stillWorks(page, 4);
  cases++;

  const images = [
    ['a non-image upload', { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('hello') }, /"notes\.txt" is not an image \(text\/plain\)/],
    ['a broken PNG', { name: 'broken.png', mimeType: 'image/png', buffer: png(50, 50).subarray(0, 60) }, /"broken\.png" could not be read as an image/],
    ['a 10000 x 10000 image', { name: 'huge.png', mimeType: 'image/png', buffer: png(10000, 10000) }, /"huge\.png" is 10000 x 10000 pixels, more than blindspot decodes \(64 megapixels\)/],
    ['a blank page', { name: 'blank.png', mimeType: 'image/png', buffer: png(60, 1).subarray(0) }, /no digit in it|could not be used/],
    ['an image with a wrong type', { name: 'fake.png', mimeType: 'image/png', buffer: Buffer.from('plain text, sent as a PNG') }, /could not be read as an image/],
  ];
  for (const [what, file, message] of images) {
    // the previous case's message stays on show until this one's arrives (nothing clears it)
    const previous = await errorText(page);
    await page.setInputFiles('#image-file', file);
    const text = await waitForMessage(page, '#error', message, { previous });
    assert.match(text, message, `${what}: "${text}"`);
    console.log(`${what}: ${text}`);
    await page.setInputFiles('#image-file', []);
    await stillWorks(page, cases % 20);
    cases++;
  }
  // a large but sane photo (3000 x 2000) is read, shrunk and classified
  await page.setInputFiles('#image-file', { name: 'big.png', mimeType: 'image/png', buffer: png(3000, 2000) });
  await page.waitForFunction(() => document.querySelector('#digit-caption').textContent.startsWith('your image')
    && document.querySelector('#prediction').dataset.digit === '-1');
  cases++;
  console.log(`${cases} cases`);
  assert.ok(cases >= 20);
  await screenshot(page, 'hostile.png');
  assert.deepEqual(page.problems.filter((p) => !/Failed to load resource|panicked at/.test(p)), []);
});

test('timing: cancel mid-attack, switch model mid-attack, two attacks at once, nonsense in the URL', async () => {
  // count the attack requests the page sends its worker
  await browser.context.addInitScript(() => {
    const send = Worker.prototype.postMessage;
    window.attackRequests = 0;
    Worker.prototype.postMessage = function (message, ...rest) {
      if (message?.op === 'attack') window.attackRequests++;
      return send.call(this, message, ...rest);
    };
  });
  const page = await openPage(browser.context, `${browser.base}?model=cnn&digit=1&iterations=1000&c-steps=12`);
  await pageReady(page);

  // cancel mid-attack
  await page.click('#run-attack');
  await page.waitForFunction(() => /iteration/.test(document.querySelector('#attack-status').textContent));
  await page.click('#cancel-attack');
  await page.waitForFunction(() => document.querySelector('#attack-status').textContent === 'cancelled');
  await page.waitForSelector('body[data-model-state="ready"]');
  await page.click('.thumb[data-index="5"]');
  await page.waitForFunction(() => document.querySelector('#prediction').dataset.digit === '5');

  // switch model mid-attack: the attack stops, the new model loads and answers, no stale result
  await page.click('#run-attack');
  await page.waitForFunction(() => /iteration/.test(document.querySelector('#attack-status').textContent));
  await page.selectOption('#model', 'fc100-100-10');
  await page.waitForFunction(() => document.querySelector('#attack-status').textContent === 'cancelled');
  await page.waitForSelector('body[data-model-state="ready"]');
  await page.waitForFunction(() => document.querySelector('#model-status').textContent.startsWith('ready'));
  assert.equal(await page.isHidden('#attack-result'), true, 'a result of the old model is on show');
  await page.click('.thumb[data-index="6"]');
  await page.waitForFunction(() => document.querySelector('#prediction').dataset.digit === '6');

  // two attacks started at once: one runs
  const before = await page.evaluate(() => window.attackRequests);
  await page.evaluate(() => { const b = document.querySelector('#run-attack'); b.click(); b.click(); });
  await page.waitForSelector('#attack-result[data-label]:not([hidden])', { timeout: 60_000 });
  await page.waitForFunction(() => !document.querySelector('#run-attack').disabled);
  assert.equal(await page.evaluate(() => window.attackRequests) - before, 1, 'two attacks ran');

  // settings out of their fields' bounds: refused before anything is sent, naming the field
  const sent = await page.evaluate(() => window.attackRequests);
  await page.click('.attack details.advanced summary');
  for (const [id, value, message] of [
    ['#max-iterations', '2.5', /attack not started: "L-BFGS iterations per c" must be a whole number from 1 to 2000, not "2\.5"/],
    ['#c-steps', '99', /attack not started: "bisection steps over c" must be a whole number from 0 to 20, not "99"/],
  ]) {
    const old = await page.inputValue(id);
    await page.fill(id, value);
    await page.click('#run-attack');
    await page.waitForFunction((m) => new RegExp(m).test(document.querySelector('#attack-status').textContent), message.source);
    await page.fill(id, old);
  }
  assert.equal(await page.evaluate(() => window.attackRequests), sent, 'a refused setting sent an attack');
  assert.equal(await page.isDisabled('#run-attack'), false);

  // nonsense in the URL falls back to defaults
  const odd = await openPage(browser.context, `${browser.base}?model=nope&digit=99999&target=42&attack=rm&iterations=-3&epsilon=NaN`);
  await pageReady(odd);
  assert.equal(await odd.getAttribute('#prediction', 'data-digit'), '0');
  assert.equal(await odd.inputValue('#method'), 'lbfgs');
  assert.equal(await odd.inputValue('#epsilon'), '0.1');
  // and a sensible value in the URL is kept (an epsilon of 0.05 once failed its field's step)
  const kept = await openPage(browser.context, `${browser.base}?model=fc10-1&digit=3&epsilon=0.05&iterations=40`);
  await pageReady(kept);
  assert.equal(await kept.inputValue('#epsilon'), '0.05');
  assert.equal(await kept.inputValue('#max-iterations'), '40');
  assert.deepEqual(kept.problems, []);
  assert.deepEqual(page.problems, []);
  assert.deepEqual(odd.problems, []);
});

test('a worker that cannot start is tried three times, then the page says so instead of looping', async () => {
  const page = await browser.context.newPage();
  page.problems = [];
  let starts = 0;
  await page.route('**/www/worker.js', (route) => { starts++; return route.fulfill({ status: 404, body: 'gone' }); });
  await page.goto(`${browser.base}?model=fc100-100-10&digit=0`);
  await page.waitForFunction(() => document.querySelector('#error').textContent.length > 0);
  await page.waitForTimeout(1500); // a restart loop would keep fetching the worker meanwhile
  const text = await page.textContent('#error');
  console.log(`worker fetched ${starts} times; the page says: ${text}`);
  assert.match(text, /could not be loaded: the worker failed|keeps failing/);
  assert.ok(starts >= 1 && starts <= 3, `the worker was started ${starts} times`);
  // a later request answers at once with the reason
  await page.selectOption('#model', 'cnn');
  assert.match(await waitForMessage(page, '#error', /keeps failing/, { includes: '(cnn.onnx)' }), /keeps failing/);
  assert.equal(starts <= 3, true);
  await page.close();
});
