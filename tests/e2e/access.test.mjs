// For everyone: the lab by keyboard alone, every control named, focus visible, phone width.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launch, openPage, screenshot, pageReady as ready } from './harness.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

/** Presses `key` until the focused element matches `selector`; fails after `max` presses. */
async function focusBy(page, key, selector, max = 250) {
  for (let i = 0; i < max; i++) {
    if (await page.evaluate((s) => document.activeElement?.matches(s), selector)) return;
    await page.keyboard.press(key);
  }
  assert.fail(`${key} never reached ${selector}`);
}

test('keyboard only: pick a digit, a target and the attack, run it, read the result', async () => {
  const page = await openPage(browser.context, `${browser.base}?model=fc10-1e-2&digit=0`);
  await ready(page);
  await focusBy(page, 'Tab', '.thumb');
  await page.keyboard.press('ArrowRight');
  await page.keyboard.press('ArrowRight');
  assert.equal(await page.evaluate(() => document.activeElement.dataset.index), '2', 'arrow keys move along the gallery');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.querySelector('#prediction').dataset.digit === '2');
  await focusBy(page, 'Shift+Tab', '#targets button[data-target="5"]');
  await page.keyboard.press('Space');
  assert.equal(await page.getAttribute('#targets button[data-target="5"]', 'aria-pressed'), 'true');
  await focusBy(page, 'Tab', '#method');
  await page.keyboard.press('ArrowDown');
  assert.equal(await page.inputValue('#method'), 'fgsm', 'the attack is chosen with the arrow keys');
  await page.keyboard.press('ArrowUp');
  assert.equal(await page.inputValue('#method'), 'lbfgs');
  await focusBy(page, 'Tab', '#run-attack');
  await page.keyboard.press('Enter');
  const box = await page.waitForSelector('#attack-result[data-label]:not([hidden])', { timeout: 60_000 });
  assert.equal(await box.getAttribute('data-label'), '5');
  assert.equal(await box.getAttribute('data-success'), 'true');
  // the result's actions are reachable too: Compare with noise from the keyboard
  await focusBy(page, 'Tab', '#compare-noise');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#noise-result[data-fooled]', { timeout: 30_000 });
  // the advanced settings open from the keyboard
  await focusBy(page, 'Shift+Tab', '.advanced summary');
  await page.keyboard.press('Enter');
  assert.equal(await page.$eval('.advanced', (d) => d.open), true);
  assert.deepEqual(page.problems, []);
});

test('every control has a name, and keyboard focus is visible on each', async () => {
  const page = await openPage(browser.context, `${browser.base}?model=cnn&digit=0`);
  await ready(page);
  await page.click('#run-attack');
  await page.waitForSelector('#attack-result[data-label]:not([hidden])', { timeout: 60_000 });
  await page.click('.draw summary');
  await page.click('.advanced summary');
  const unnamed = await page.evaluate(() => {
    const name = (e) => {
      if (e.getAttribute('aria-label')) return e.getAttribute('aria-label');
      const by = e.getAttribute('aria-labelledby');
      if (by) return by.split(' ').map((id) => document.getElementById(id)?.textContent ?? '').join(' ');
      if (e.labels?.length) return [...e.labels].map((l) => l.textContent).join(' ');
      return e.textContent || e.title || e.getAttribute('alt') || '';
    };
    const controls = [...document.querySelectorAll('button, select, input, a[href], summary, canvas, progress, [tabindex]')]
      .filter((e) => e.getClientRects().length > 0 && !e.closest('[aria-hidden="true"]'));
    return { count: controls.length, unnamed: controls.filter((e) => !name(e).trim()).map((e) => e.outerHTML.slice(0, 80)) };
  });
  assert.ok(unnamed.count > 40, `${unnamed.count} controls checked`);
  assert.deepEqual(unnamed.unnamed, [], 'controls without an accessible name');

  // Tab through the first 60 stops: each shows a focus ring of at least 2 px
  await page.evaluate(() => document.activeElement?.blur());
  const seen = new Set();
  for (let i = 0; i < 60; i++) {
    await page.keyboard.press('Tab');
    const ring = await page.evaluate(() => {
      const e = document.activeElement;
      const s = getComputedStyle(e);
      return { id: e.id || e.outerHTML.slice(0, 60), style: s.outlineStyle, width: parseFloat(s.outlineWidth), shadow: s.boxShadow };
    });
    seen.add(ring.id);
    assert.ok(ring.style !== 'none' && ring.width >= 2, `no visible focus on ${ring.id}: outline ${ring.style} ${ring.width}px`);
  }
  assert.ok(seen.size > 20, `${seen.size} different stops`);
  assert.deepEqual(page.problems, []);
});

test('phone width: nothing scrolls sideways, the lab works, screenshots at both sizes', async () => {
  const page = await openPage(browser.context, `${browser.base}?model=cnn&digit=0&target=3`);
  await ready(page);
  await page.click('#run-attack');
  await page.waitForSelector('#attack-result[data-label]:not([hidden])', { timeout: 60_000 });
  await screenshot(page, 'lab-desktop.png');
  await page.setViewportSize({ width: 375, height: 812 });
  await page.waitForTimeout(300);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - innerWidth);
  assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow}px at 375px`);
  // the targets and the main button are big enough to tap (at least 32 px)
  const sizes = await page.$$eval('#targets button, #run-attack, .thumb', (bs) => bs.map((b) => Math.min(b.offsetWidth, b.offsetHeight)));
  assert.ok(Math.min(...sizes) >= 32, `smallest tap target ${Math.min(...sizes)}px`);
  // a finger, not a mouse: touch events through Chromium's input pipeline
  const touch = await page.context().newCDPSession(page);
  await touch.send('Emulation.setTouchEmulationEnabled', { enabled: true, maxTouchPoints: 1 });
  const tap = async (selector) => {
    const box = await page.locator(selector).boundingBox();
    const point = { x: box.x + box.width / 2, y: box.y + box.height / 2 };
    await touch.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: [point] });
    await touch.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
  };
  await page.locator('#targets button[data-target="8"]').scrollIntoViewIfNeeded();
  await tap('#targets button[data-target="8"]');
  await page.waitForSelector('#targets button[data-target="8"][aria-pressed="true"]');
  await tap('#run-attack');
  await page.waitForSelector('#attack-result[data-label="8"]:not([hidden])', { timeout: 60_000 });
  await screenshot(page, 'lab-phone.png');
  assert.deepEqual(page.problems, []);
});
