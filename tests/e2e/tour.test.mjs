// The paper tour: Tables 1-4 run live in the page with progress and Cancel, and agree with the CLI.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { SHOTS, cli, launch, openPage, screenshot, tempDir } from './harness.mjs';

const N = 4;
const TABLE1 = ['fc10-1e-4', 'fc10-1e-2', 'fc10-1', 'fc100-100-10', 'fc200-200-10', 'ae400-10'];
const TABLE3 = ['fc100-100-10-p1', 'fc123-456-10-p1', 'fc100-100-10-p2'];

let browser;
let page;
before(async () => {
  browser = await launch();
  page = await openPage(browser.context, browser.base);
  await page.waitForSelector('#tour[data-ready]', { timeout: 60_000 });
});
after(async () => { await browser?.close(); });

/** The body rows of a Markdown table in `text`: arrays of trimmed cells. */
function markdownRows(text) {
  const lines = text.split('\n').filter((l) => l.startsWith('|'));
  return lines.slice(2).map((l) => l.split('|').slice(1, -1).map((c) => c.trim()));
}

/** "17.0% (26.2%)" -> 17.0 */
const leadingNumber = (cell) => Number(cell.match(/^[\d.]+/)[0]);

/** Clicks a part's Run button with `n` digits and waits until it is done; resolves to its status. */
async function run(part, n, timeout = 120_000) {
  await page.fill('#tour-n', String(n));
  // an earlier run of this part left its end state ("done", "cancelled"): wait for this run's own
  await page.evaluate((id) => { delete document.getElementById(id).dataset.state; }, part);
  await page.click(`#${part}-run`);
  await page.waitForSelector(`#${part}:is([data-state="done"], [data-state="error"], [data-state="cancelled"])`, { timeout });
  const status = await page.textContent(`#${part}-status`);
  assert.equal(await page.getAttribute(`#${part}`, 'data-state'), 'done', status);
  const bar = await page.$eval(`#${part}-progress`, (p) => ({ value: p.value, max: p.max }));
  assert.ok(bar.max > 1 && bar.value === bar.max, `${part}: the progress bar ended at ${bar.value} of ${bar.max}`);
  return status;
}

test(`Table 1 on ${N} digits per model: the CLI's targets, successes and distortions`, async () => {
  const status = await run('tour-table1', N);
  assert.match(status, new RegExp(`^done in [\\d.]+ s · 6 × ${N} attacks, [\\d.]+ s each$`));
  const rows = await page.$$eval('#tour-table1 tbody tr', (rs) => rs.map((r) => ({ ...r.dataset, cells: [...r.cells].map((c) => c.textContent) })));
  assert.deepEqual(rows.map((r) => r.model), TABLE1);

  const csvPath = join(tempDir(), 'table1.csv');
  const markdown = cli('table1', '--n', String(N), '--csv', csvPath);
  const csv = readFileSync(csvPath, 'utf8').trim().split('\n').slice(1).map((l) => l.split(','));
  const cliRows = markdownRows(markdown);
  let worst = 0;
  let worstDigit = 0;
  for (const [k, row] of rows.entries()) {
    const native = csv.filter((c) => c[0] === row.model);
    assert.equal(native.length, N);
    assert.deepEqual(row.targets.split(',').map(Number), native.map((c) => Number(c[3])), `${row.model}: targets`);
    assert.equal(row.success, native.map((c) => (c[4] === 'true' ? 1 : 0)).join(''), `${row.model}: successes`);
    const good = native.filter((c) => c[4] === 'true');
    assert.equal(Number(row.successes), good.length);
    const mean = good.reduce((s, c) => s + Number(c[5]), 0) / good.length;
    const ours = Number(row.distortion);
    const rel = Math.abs(ours - mean) / mean;
    worst = Math.max(worst, rel);
    assert.ok(rel <= 1e-3, `${row.model}: mean distortion ${ours} in the page, ${mean} natively`);
    row.distortions.split(',').map(Number).forEach((d, i) => {
      worstDigit = Math.max(worstDigit, Math.abs(d - Number(native[i][5])) / Number(native[i][5]));
    });
    // the CLI's Markdown row: same mean to its 4 decimals, same successes, the paper's figures
    const md = cliRows[k];
    assert.equal(row.cells[0], md[0]);
    assert.ok(Math.abs(ours - Number(md[3])) <= 0.00005 + 1e-9, `${row.model}: ${ours} against the CLI's ${md[3]}`);
    assert.equal(row.cells[7], md[4]);
    assert.deepEqual([row.cells[2], row.cells[4], row.cells[6]], [md[5], md[6], md[7]], `${row.model}: the paper's figures`);
  }
  console.log(`Table 1, ${N} digits: worst relative difference page vs CLI ${worst.toExponential(2)} (mean distortion), ${worstDigit.toExponential(2)} (single attack)`);
  assert.deepEqual(page.problems, []);
});

test(`Table 2 on ${N} digits reuses Table 1's attacks and matches the CLI's transfer matrix`, async () => {
  const status = await run('tour-table2', N);
  assert.match(status, /Table 1's 6 × 4 attacks reused/);
  const cells = await page.$$eval('#tour-table2 td[data-rate]', (tds) => tds.map((td) => ({ ...td.dataset, text: td.textContent, bg: td.style.background })));
  assert.equal(cells.length, 8 * 6);
  const rowIds = [...TABLE1, 'noise 0.1', 'noise 0.3'];
  const native = markdownRows(cli('table2', '--n', String(N)));
  assert.equal(native.length, rowIds.length);
  for (const [r, rowId] of rowIds.entries()) {
    for (const [c, colId] of TABLE1.entries()) {
      const cell = cells.find((x) => x.row === rowId && x.col === colId);
      const expected = native[r][c + 1];
      assert.equal((Number(cell.rate) * 100).toFixed(1), String(leadingNumber(expected).toFixed(1)), `${rowId} on ${colId}: page ${cell.text}, CLI ${expected}`);
      assert.equal(cell.text, expected, 'the same text, the paper\'s figure in brackets included');
      assert.ok(cell.bg.startsWith('rgb'), 'shaded');
    }
    if (r < TABLE1.length) {
      const note = await page.textContent(`#tour-table2 tr[data-row="${rowId}"] .row-note`);
      assert.equal(`(${note.trim()})`, native[r][0].match(/\(distortion [\d.]+\)/)[0]);
    }
  }
  assert.deepEqual(page.problems, []);
});

test(`Tables 3-4 on ${N} digits match the CLI`, async () => {
  await run('tour-table3', N);
  const native = markdownRows(cli('table3', '--n', String(N)));
  assert.equal(native.length, 3);
  for (const [r, rowId] of ['adversarial', 'amplified', 'noise'].entries()) {
    const d = Number(await page.getAttribute(`#tour-table3 td.ours[data-row="${rowId}"]`, 'data-distortion'));
    assert.equal(d.toFixed(3), native[r][1], `${rowId}: distortion`);
    for (const [c, colId] of TABLE3.entries()) {
      const cell = await page.$(`#tour-table3 td[data-row="${rowId}"][data-col="${colId}"]`);
      const rate = Number(await cell.getAttribute('data-rate'));
      assert.equal((rate * 100).toFixed(1), leadingNumber(native[r][c + 2]).toFixed(1), `${rowId} on ${colId}`);
      assert.equal(await cell.textContent(), native[r][c + 2]);
    }
  }
  assert.deepEqual(page.problems, []);
});

test('a long run cancels from the keyboard, and the next run works', async () => {
  await page.fill('#tour-n', '1000');
  await page.focus('#tour-table1-run');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => /^attack [1-9]\d* of 6000 · /.test(document.getElementById('tour-table1-status').textContent));
  assert.equal(await page.evaluate(() => document.activeElement.id), 'tour-table1-cancel', 'focus moves to Cancel');
  assert.ok(await page.isDisabled('#tour-table2-run'), 'one run at a time');
  assert.ok(await page.isDisabled('#tour-n'));
  await page.keyboard.press('Enter');
  await page.waitForSelector('#tour-table1[data-state="cancelled"]');
  assert.equal(await page.textContent('#tour-table1-status'), 'cancelled');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'tour-table1-run', 'focus back on Run');
  assert.ok(await page.isHidden('#tour-table1-cancel'));
  const status = await run('tour-table1', 2);
  assert.match(status, /^done in/);
  assert.equal(await page.getAttribute('#tour-table1 tbody tr[data-model="ae400-10"]', 'data-successes'), '2');
  // Table 2 with another N than Table 1's last run makes the attacks it needs
  assert.match(await run('tour-table2', 3), /6 × 3 attacks made/);
  assert.deepEqual(page.problems, []);
});

test('screenshots: desktop and phone width, tables scroll inside their box', async () => {
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.locator('#tour').scrollIntoViewIfNeeded();
  await screenshot(page, 'tour-desktop.png');
  await page.locator('#tour').screenshot({ path: join(SHOTS, 'tour-section-desktop.png') });
  await page.setViewportSize({ width: 375, height: 800 });
  const layout = await page.evaluate(() => {
    const tour = document.getElementById('tour').getBoundingClientRect();
    const wraps = [...document.querySelectorAll('#tour .tour-table-wrap')].map((w) => ({ scroll: w.scrollWidth, client: w.clientWidth, right: w.getBoundingClientRect().right }));
    return { right: tour.right, wraps };
  });
  assert.ok(layout.right <= 375, `the tour is ${layout.right} px wide at 375`);
  for (const w of layout.wraps) assert.ok(w.right <= 375, 'tables stay inside the screen');
  assert.ok(layout.wraps.some((w) => w.scroll > w.client), 'the wide tables scroll horizontally in their wrapper');
  await screenshot(page, 'tour-phone.png');
  await page.locator('#tour').screenshot({ path: join(SHOTS, 'tour-section-phone.png') });
  await page.setViewportSize({ width: 1280, height: 900 });
});

// How long the default N takes is printed here and measured by the benchmark; a test asserts what
// the run computed, never its speed (timings vary with the machine).
test('the default N runs Table 1 to the end: every model, every digit, a distortion for each success', async () => {
  const fresh = await openPage(browser.context, browser.base);
  await fresh.waitForSelector('#tour[data-ready]', { timeout: 60_000 });
  const n = Number(await fresh.inputValue('#tour-n'));
  assert.ok(n >= 100, `the default N is ${n}`);
  const started = Date.now();
  await fresh.click('#tour-table1-run');
  await fresh.waitForSelector('#tour-table1:is([data-state="done"], [data-state="error"])', { timeout: 300_000 });
  const seconds = (Date.now() - started) / 1000;
  assert.equal(await fresh.getAttribute('#tour-table1', 'data-state'), 'done', await fresh.textContent('#tour-table1-status'));
  assert.match(await fresh.textContent('#tour-table1-status'), new RegExp(`^done in [\\d.]+ s · 6 × ${n} attacks, [\\d.]+ s each$`));
  console.log(`Table 1 with the default N = ${n}: ${seconds.toFixed(1)} s (${await fresh.getAttribute('#tour-table1', 'data-per-attack')} s per attack in the worker)`);
  const rows = await fresh.$$eval('#tour-table1 tbody tr', (rs) => rs.map((r) => ({ ...r.dataset })));
  assert.deepEqual(rows.map((r) => r.model), TABLE1);
  for (const row of rows) {
    assert.equal(row.targets.split(',').length, n, `${row.model}: a target per digit`);
    assert.match(row.success, new RegExp(`^[01]{${n}}$`), `${row.model}: a verdict per digit`);
    const successes = [...row.success].filter((c) => c === '1').length;
    assert.equal(Number(row.successes), successes, row.model);
    assert.ok(successes >= 0.9 * n, `${row.model}: ${successes} of ${n} attacks reached their target`);
    const d = row.distortions.split(',').map(Number);
    assert.equal(d.length, n, row.model);
    const good = d.filter((_, i) => row.success[i] === '1');
    assert.ok(good.every((x) => x > 0 && x < 1), `${row.model}: distortions of the successes in (0, 1)`);
    const mean = good.reduce((s, x) => s + x, 0) / good.length;
    assert.ok(Math.abs(mean - Number(row.distortion)) <= 1e-4 * mean, `${row.model}: the mean shown is the mean of the digits`);
  }
  assert.deepEqual(fresh.problems, []);
  await fresh.close();
});
