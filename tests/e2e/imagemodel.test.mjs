// Any image classifier in the page (issue 15 items 5, 6, 10): a colour model dropped on the page
// opens in the natural-images section with an input panel (layout, channels, values, class names)
// whose settings are wired into the graph; its answers on a photo equal onnxruntime's on the same
// pixels preprocessed as declared, and the attack reaches its target inside the box.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ROOT, launch, openPage, pageReady, screenshot, tempDir } from './harness.mjs';

const OSTRICH = 9;
const DALMATIAN = 251;

let browser;
let dir;
before(async () => {
  browser = await launch();
  dir = tempDir();
});
after(async () => { await browser?.close(); });

/**
 * onnxruntime (the oracle) on `model` fed the RGB bytes `rgb` (h x w x 3, as the page drew its
 * input) laid out as `layout` and scaled by `scale`: { probabilities, top5 }.
 */
function onnxruntime(model, rgb, h, w, layout, scale) {
  const input = join(dir, 'rgb.bin');
  writeFileSync(input, Buffer.from(rgb));
  const code = `
import sys, json, numpy as np, onnxruntime as ort
model, path, h, w, layout, scale = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], float(sys.argv[6])
x = np.fromfile(path, dtype=np.uint8).astype(np.float32).reshape(1, h, w, 3) / 255.0 * scale
if layout == 'nchw':
    x = x.transpose(0, 3, 1, 2)
s = ort.InferenceSession(model, providers=['CPUExecutionProvider'])
out = s.run(None, {s.get_inputs()[0].name: np.ascontiguousarray(x)})[0].reshape(-1).astype(np.float64)
p = out if abs(out.sum() - 1) < 1e-3 and out.min() >= 0 else np.exp(out - out.max()) / np.exp(out - out.max()).sum()
print(json.dumps({'probabilities': p.tolist(), 'top5': [int(i) for i in np.argsort(-p)[:5]]}))
`;
  return JSON.parse(execFileSync('python3', ['-c', code, model, input, String(h), String(w), layout, String(scale)], { encoding: 'utf8' }));
}

/** The RGB bytes of the section's original-photo canvas: exactly the pixels the model was fed. */
async function drawnPixels(page) {
  return page.evaluate(() => {
    const canvas = document.getElementById('photo-original');
    const rgba = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    const rgb = [];
    for (let i = 0; i < rgba.length; i += 4) rgb.push(rgba[i], rgba[i + 1], rgba[i + 2]);
    return { rgb, w: canvas.width, h: canvas.height };
  });
}

/** Drops `file` on the page and waits for the natural-images section to have loaded it. */
async function dropModel(page, name, file) {
  await page.evaluate(() => {
    const s = document.getElementById('photos-section');
    delete s.dataset.userModel;
    delete s.dataset.label;
  });
  await page.setInputFiles('#model-file', { name, mimeType: 'application/octet-stream', buffer: readFileSync(file) });
  await page.waitForFunction((n) => document.getElementById('photos-section').dataset.userModel === n
    || document.getElementById('pre-error').textContent !== '', name, { timeout: 60_000 });
  assert.equal(await page.textContent('#pre-error'), '', `${name} was not loaded`);
}

/** Applies the panel's settings and waits for the photo's answer from the model with `setting`. */
async function apply(page, name, setting) {
  await page.evaluate(() => {
    const s = document.getElementById('photos-section');
    delete s.dataset.userModel;
    delete s.dataset.label;
  });
  await page.click('#pre-apply');
  await page.waitForFunction(([n, want]) => {
    const s = document.getElementById('photos-section');
    return s.dataset.userModel === n && s.dataset.label !== undefined && (s.dataset.labelFrom ?? '').includes(want);
  }, [name, setting], { timeout: 60_000 });
}

test('an ImageNet classifier dropped on the page (NHWC, [0, 255]) classifies a photo as onnxruntime does and attacks it to ostrich', async () => {
  // EfficientNet-Lite0 as a Keras-style export would give it: NHWC input in [0, 255]
  const wrapped = join(dir, 'efficientnet-nhwc-255.onnx');
  execFileSync('python3', ['-c', `
import sys, onnx
from onnx import helper, TensorProto
m = onnx.load(sys.argv[1])
g = m.graph
old = g.input[0].name
g.input[0].name = 'image'
dims = g.input[0].type.tensor_type.shape.dim
n, c, h, w = [onnx.TensorShapeProto.Dimension() for _ in range(4)]
for copy, d in zip((n, c, h, w), dims):
    copy.CopyFrom(d)
for d, v in zip(dims, (n, h, w, c)):
    d.CopyFrom(v)
g.initializer.append(helper.make_tensor('inv255', TensorProto.FLOAT, [], [1 / 255]))
g.node.insert(0, helper.make_node('Mul', ['nchw', 'inv255'], [old], name='from_255'))
g.node.insert(0, helper.make_node('Transpose', ['image'], ['nchw'], perm=[0, 3, 1, 2], name='to_nchw'))
onnx.checker.check_model(m)
onnx.save(m, sys.argv[2])
`, join(ROOT, 'models/efficientnet-lite0.onnx'), wrapped]);
  const page = await openPage(browser.context, `${browser.base}?model=cnn&digit=0&photo=imagenet_16_251.jpg`);
  await pageReady(page);
  await dropModel(page, 'efficientnet-nhwc-255.onnx', wrapped);
  // the panel's defaults come from the shape: channels last; the values must be declared
  assert.equal(await page.inputValue('#pre-layout'), 'nhwc');
  assert.equal(await page.inputValue('#pre-range'), '0-1');
  assert.match(await page.textContent('#photo-input-what'), /\[\?, 224, 224, 3\]/);
  await page.selectOption('#pre-range', '0-255');
  await apply(page, 'efficientnet-nhwc-255.onnx', 'range=0-255');
  assert.match(await page.textContent('#photos-status'), /input \[1, 3, 224, 224\] RGB pixels · layout=nhwc, channels=rgb, range=0-255/);
  assert.match(page.url(), /layout=nhwc/);
  assert.match(page.url(), /range=0-255/);
  assert.equal(await page.locator('#photo-classes option').count(), 1000, "ImageNet's names for 1,000 classes");
  const label = Number(await page.getAttribute('#photos-section', 'data-label'));
  assert.equal(label, DALMATIAN, 'the Dalmatian, as the shipped model says');
  const top5 = (await page.getAttribute('#photos-section', 'data-top5')).split(',').map(Number);
  const { rgb, w, h } = await drawnPixels(page);
  assert.deepEqual([w, h], [224, 224]);
  const oracle = onnxruntime(wrapped, rgb, h, w, 'nhwc', 255);
  assert.deepEqual(top5, oracle.top5, `top-5 ${top5} vs onnxruntime's ${oracle.top5}`);
  // the attack, in pixel space: the box is [0, 1] whatever the model takes
  await page.fill('#photo-target', 'ostrich');
  await page.click('#photo-attack');
  await page.waitForFunction(() => document.getElementById('photos-section').dataset.distortion !== undefined, null, { timeout: 240_000 });
  const result = await page.$eval('#photos-section', (s) => ({ ...s.dataset }));
  assert.equal(result.success, 'true');
  assert.equal(Number(result.advLabel), OSTRICH);
  assert.ok(Number(result.distortion) < 0.02, `distortion ${result.distortion}`);
  console.log(`dropped ImageNet model: top-5 ${top5.join(',')} (onnxruntime ${oracle.top5.join(',')}), ostrich at distortion ${Number(result.distortion).toFixed(5)} in ${result.seconds} s`);
  await screenshot(page, 'imagemodel.png');
  await page.locator('#photos-section').screenshot({ path: join(ROOT, 'test-results/imagemodel-section.png') });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.locator('#photo-input').scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(ROOT, 'test-results/imagemodel-phone.png') });
  assert.deepEqual(page.problems, []);
  await page.close();
});

test('a small NHWC Keras classifier with its class names: the panel, the names file, onnxruntime\'s probabilities, refusals', async () => {
  const model = join(ROOT, 'tests/fixtures/exporters/tf2onnx_keras_cnn_op13.onnx');
  const page = await openPage(browser.context, `${browser.base}?model=cnn&digit=0&photo=imagenet_16_251.jpg`);
  await pageReady(page);
  await dropModel(page, 'keras.onnx', model);
  assert.equal(await page.inputValue('#pre-layout'), 'nhwc');
  await page.waitForFunction(() => document.getElementById('photos-section').dataset.label !== undefined, null, { timeout: 60_000 });
  // ten classes: digits until names are given; a names file of the wrong length is refused
  assert.equal(await page.locator('#photo-classes option').count(), 10);
  await page.setInputFiles('#pre-labels', { name: 'three.txt', mimeType: 'text/plain', buffer: Buffer.from('a\nb\nc\n') });
  await page.click('#pre-apply');
  await page.waitForFunction(() => /three\.txt names 3 classes; the model has 10/.test(document.getElementById('pre-error').textContent));
  const names = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];
  await page.setInputFiles('#pre-labels', { name: 'cifar.txt', mimeType: 'text/plain', buffer: Buffer.from(names.join('\n')) });
  await apply(page, 'keras.onnx', 'layout=nhwc');
  assert.equal(await page.$eval('#photo-classes option', (o) => o.value), '0: airplane');
  const top5 = (await page.getAttribute('#photos-section', 'data-top5')).split(',').map(Number);
  const { rgb, w, h } = await drawnPixels(page);
  assert.deepEqual([w, h], [32, 32], 'the photo is resized to the model\'s 32x32');
  const oracle = onnxruntime(model, rgb, h, w, 'nhwc', 1);
  assert.deepEqual(top5, oracle.top5);
  const bars = await page.$$eval('#photo-orig-bars li', (items) => items.map((li) => li.querySelector('.name').textContent));
  assert.deepEqual(bars, oracle.top5.map((k) => names[k]));
  // a setting the graph cannot take is refused, naming the input, and the section keeps working
  await page.selectOption('#pre-layout', 'nchw');
  await page.click('#pre-apply');
  await page.waitForFunction(() => /could not be used with these settings: .*channels/.test(document.getElementById('pre-error').textContent));
  await page.selectOption('#pre-layout', 'nhwc');
  await apply(page, 'keras.onnx', 'layout=nhwc');
  assert.equal(await page.textContent('#pre-error'), '');
  await screenshot(page, 'imagemodel-keras.png');
  await page.locator('#photos-section').screenshot({ path: join(ROOT, 'test-results/imagemodel-keras-section.png') });
  assert.deepEqual(page.problems, []);
  await page.close();
});
