// Embedding: the <blindspot-demo> element in a blog post, and the ?embed=1 iframe mode.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ROOT, SHOTS, launch, openPage, readPack, screenshot } from './harness.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const labFrame = (page, id) => page.frames().find((f) => f.parentFrame() === page.mainFrame() && f.url().includes(`model=${id}`));

test('the example blog post embeds two live demos with one script tag', async () => {
  const page = await openPage(browser.context, `${browser.base}www/blog.html`);
  const scripts = await page.$$eval('script', (s) => s.map((e) => e.getAttribute('src')));
  assert.deepEqual(scripts, ['embed.js'], 'the post loads one script');

  // the first demo runs the paper's attack by itself: a 7 made a 3
  const first = page.frameLocator('#demo-lbfgs iframe');
  const result = first.locator('#attack-result[data-label]:not([hidden])');
  await result.waitFor({ timeout: 90_000 });
  assert.equal(await result.getAttribute('data-success'), 'true');
  assert.equal(await result.getAttribute('data-label'), '3');
  assert.equal(await result.getAttribute('data-method'), 'lbfgs');
  const distortion = Number(await result.getAttribute('data-distortion'));
  assert.ok(distortion > 0.01 && distortion < 0.1, `distortion ${distortion}`);
  assert.equal(await first.locator('#prediction').getAttribute('data-label'), '7');
  // no page chrome in the frame, and the frame grew to fit the lab
  assert.equal(await first.locator('.masthead').isVisible(), false);
  assert.equal(await first.locator('.gallery-section').isVisible(), false);
  assert.equal(await first.locator('#embed-bar').isVisible(), true);
  const frameHeight = await page.$eval('#demo-lbfgs', (e) => e.shadowRoot.querySelector('iframe').getBoundingClientRect().height);
  const contentHeight = await labFrame(page, 'cnn').evaluate(() => document.documentElement.getBoundingClientRect().height);
  assert.ok(Math.abs(frameHeight - contentHeight) <= 6, `frame ${frameHeight}px for ${contentHeight}px of content`);

  // the second waits for a click; its settings come from the attributes
  await page.locator('#demo-fgsm').scrollIntoViewIfNeeded();
  const second = page.frameLocator('#demo-fgsm iframe');
  await second.locator('body[data-model-state="ready"]').waitFor({ timeout: 60_000 });
  assert.equal(await second.locator('#model').inputValue(), 'fc10-1e-4');
  assert.equal(await second.locator('#method').inputValue(), 'fgsm');
  assert.equal(await second.locator('#targets button[data-target="any"]').getAttribute('aria-pressed'), 'true');
  assert.equal(await second.locator('#attack-result').isVisible(), false, 'no autorun');
  await second.locator('#run-attack').click();
  const fgsm = second.locator('#attack-result[data-label]:not([hidden])');
  await fgsm.waitFor({ timeout: 60_000 });
  assert.equal(await fgsm.getAttribute('data-method'), 'fgsm');
  assert.equal(await second.locator('#prediction').getAttribute('data-label'), '4');
  assert.notEqual(await fgsm.getAttribute('data-label'), '4', 'FGSM at epsilon 0.1 fools the linear model');
  assert.ok(Number(await fgsm.getAttribute('data-distortion')) <= 0.1 + 1e-6);
  await screenshot(page, 'blog.png');
  await page.setViewportSize({ width: 375, height: 800 });
  await page.waitForTimeout(500);
  await screenshot(page, 'blog-phone.png');
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - innerWidth);
  assert.ok(overflow <= 0, `the post scrolls sideways by ${overflow}px at phone width`);
  assert.deepEqual(page.problems, []);
});

test('changing an attribute reloads the demo; the full-lab link keeps the state', async () => {
  const page = await openPage(browser.context, `${browser.base}www/blog.html`);
  await page.evaluate(() => document.querySelector('#demo-fgsm').setAttribute('digit', '9'));
  await page.locator('#demo-fgsm').scrollIntoViewIfNeeded();
  const frame = page.frameLocator('#demo-fgsm iframe');
  await frame.locator('#prediction[data-digit="9"]').waitFor({ timeout: 60_000 });
  const href = await frame.locator('#open-full').getAttribute('href');
  const full = new URL(href, `${browser.base}index.html`);
  assert.equal(full.searchParams.get('digit'), '9');
  assert.equal(full.searchParams.get('model'), 'fc10-1e-4');
  assert.equal(full.searchParams.has('embed'), false);
  assert.equal(await frame.locator('#open-full').getAttribute('target'), '_blank');
  // a drawn digit, as the lab's link holds it (image=: 784 bytes, base64url): test digit 5's pixels
  const pack = readPack('mnist-test-1k.bin');
  const image = Buffer.from(Array.from(pack.input(5), (v) => Math.round(v * 255))).toString('base64url');
  await page.evaluate((image) => document.querySelector('#demo-fgsm').setAttribute('image', image), image);
  await frame.locator('#digit-caption', { hasText: 'from the link' }).waitFor({ timeout: 60_000 });
  await frame.locator(`#prediction[data-digit="-1"][data-label="${pack.labels[5]}"]`).waitFor({ timeout: 60_000 });
  assert.deepEqual(page.problems, []);
});

test('?embed=1 on its own: the lab without chrome, working, its height posted to the parent', async () => {
  const requested = [];
  const onRequest = (r) => requested.push(new URL(r.url()).pathname);
  browser.context.on('request', onRequest);
  const page = await openPage(browser.context, `${browser.base}?embed=1&model=fc100-100-10&digit=2&target=7&attack=lbfgs&run=1`);
  await page.waitForSelector('#attack-result[data-label]:not([hidden])', { timeout: 60_000 });
  // the figure fetches what it shows: no other panel starts, no service worker installs the site
  for (const other of ['imagenet.json', 'sw.js', 'photos/', 'efficientnet']) {
    assert.ok(!requested.some((p) => p.includes(other)), `the figure fetched ${other}: ${requested.filter((p) => p.includes(other))}`);
  }
  assert.equal(await page.getAttribute('#tour', 'data-ready'), null, 'the paper tour started inside the figure');
  assert.equal(await page.getAttribute('html', 'data-offline'), 'unavailable');
  browser.context.off('request', onRequest);
  console.log(`the figure fetched ${new Set(requested).size} files: ${[...new Set(requested)].join(' ')}`);
  assert.equal(await page.getAttribute('#attack-result', 'data-label'), '7');
  for (const hidden of ['.masthead', '.gallery-section', '.bench-section', 'footer', '#model-file', '.units', '.spectral', '.photos', '.tour',
    '#model', '#model-status', '#backend-status', '.attack details.advanced']) {
    assert.equal(await page.locator(hidden).isVisible(), false, `${hidden} hidden in embed mode`);
  }
  assert.equal(new URL(page.url()).searchParams.get('embed'), '1', 'embed mode stays in the URL');
  // a colour classifier dropped on the figure has no natural-images section to open in here: the
  // figure says where it opens, and keeps its model
  const mobile = readFileSync(join(ROOT, 'tests/fixtures/zoo/mobilenet.onnx')).toString('base64');
  await page.evaluate((b64) => {
    const file = new File([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], 'mobile.onnx');
    const data = new DataTransfer();
    data.items.add(file);
    document.dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true }));
  }, mobile);
  await page.waitForFunction(() => document.querySelector('#error').textContent.includes('mobile.onnx'));
  assert.match(await page.textContent('#error'), /"mobile\.onnx" is a colour image classifier: open the full lab \(the link above\)/);
  assert.equal(await page.locator('#error').isVisible(), true, 'the message is on show in the figure');
  assert.equal(await page.inputValue('#model'), 'fc100-100-10');
  // a plain iframe in some other page gets the height messages
  const host = await browser.context.newPage();
  await host.setContent('<!doctype html><title>someone else\'s page</title><body></body>');
  const heights = await host.evaluate(async (src) => {
    const seen = [];
    addEventListener('message', (e) => { if (e.data?.blindspot === 'resize') seen.push(e.data.height); });
    const frame = document.createElement('iframe');
    frame.src = src;
    document.body.append(frame);
    for (let i = 0; i < 100 && !seen.length; i++) await new Promise((r) => setTimeout(r, 100));
    return seen;
  }, `${browser.base}?embed=1&model=fc10-1&digit=1`);
  assert.ok(heights.length > 0 && heights[0] > 300, `heights posted: ${heights}`);
  assert.deepEqual(page.problems, []);
});

test('a post on another site (another origin) loads embed.js from blindspot\'s: both demos render and classify', async () => {
  // the module script is fetched with CORS: the site must send Access-Control-Allow-Origin
  const head = await fetch(`${browser.base}www/embed.js`);
  assert.equal(head.headers.get('access-control-allow-origin'), '*');
  // the example post, served from a second origin (another port), its script from the first
  const blog = readFileSync(join(ROOT, 'www/blog.html'), 'utf8')
    .replace('<script type="module" src="embed.js">', `<script type="module" src="${browser.base}www/embed.js">`)
    .replace('href="favicon.svg"', `href="${browser.base}www/favicon.svg"`);
  assert.ok(blog.includes(`src="${browser.base}www/embed.js"`));
  const other = createServer((req, res) => {
    res.writeHead(req.url === '/post.html' ? 200 : 404, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(req.url === '/post.html' ? blog : 'not found');
  });
  await new Promise((ok) => other.listen(0, '127.0.0.1', ok));
  const postUrl = `http://127.0.0.1:${other.address().port}/post.html`;
  try {
    const page = await openPage(browser.context, postUrl);
    assert.notEqual(new URL(postUrl).origin, new URL(browser.base).origin, 'two origins');
    await page.waitForFunction(() => customElements.get('blindspot-demo') !== undefined, null, { timeout: 30_000 });
    // the frames are the lab on blindspot's origin, resolved from embed.js's own address
    const src = await page.$eval('#demo-lbfgs', (e) => e.shadowRoot.querySelector('iframe').src);
    assert.equal(new URL(src).origin, new URL(browser.base).origin, src);
    assert.equal(new URL(src).pathname, '/index.html');
    const first = page.frameLocator('#demo-lbfgs iframe');
    const result = first.locator('#attack-result[data-label]:not([hidden])');
    await result.waitFor({ timeout: 90_000 });
    assert.equal(await first.locator('#prediction').getAttribute('data-label'), '7');
    assert.equal(await result.getAttribute('data-success'), 'true');
    assert.equal(await result.getAttribute('data-label'), '3');
    // the height messages cross the origins too: the frame fits its content
    await page.waitForFunction(() => {
      const h = document.querySelector('#demo-lbfgs').shadowRoot.querySelector('iframe').getBoundingClientRect().height;
      return h > 700;
    }, null, { timeout: 10_000 });
    await page.locator('#demo-fgsm').scrollIntoViewIfNeeded();
    const second = page.frameLocator('#demo-fgsm iframe');
    await second.locator('#prediction[data-label]').waitFor({ timeout: 60_000 });
    assert.equal(await second.locator('#model').inputValue(), 'fc10-1e-4');
    assert.equal(await second.locator('#prediction').getAttribute('data-label'), '4');
    await second.locator('#run-attack').click();
    const fgsm = second.locator('#attack-result[data-label]:not([hidden])');
    await fgsm.waitFor({ timeout: 60_000 });
    assert.notEqual(await fgsm.getAttribute('data-label'), '4');
    // (a full-page screenshot leaves out-of-process frames outside the viewport blank: one each)
    await page.locator('#demo-fgsm').screenshot({ path: join(SHOTS, 'blog-cross-origin-fgsm.png') });
    await page.locator('#demo-lbfgs').scrollIntoViewIfNeeded();
    await page.locator('#demo-lbfgs').screenshot({ path: join(SHOTS, 'blog-cross-origin-lbfgs.png') });
    await page.setViewportSize({ width: 375, height: 800 });
    await page.waitForTimeout(500);
    await page.locator('#demo-lbfgs').screenshot({ path: join(SHOTS, 'blog-cross-origin-phone.png') });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - innerWidth);
    assert.ok(overflow <= 0, `the post scrolls sideways by ${overflow}px at phone width`);
    assert.deepEqual(page.problems, []);
  } finally {
    await new Promise((ok) => { other.close(ok); other.closeAllConnections(); });
  }
});
