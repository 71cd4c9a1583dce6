// The paper tour's benchmark: Table 1 run in the page at each N given, then every panel used once
// (lab attack, photos, spectral, units, tour) and the page's memory measured; prints a Markdown table.
//   node scripts/bench-tour.mjs [--n 100,1000] [--json FILE]
// (after ./scripts/serve.sh's build: pkg/ must hold the wasm; Debian's Chromium, playwright-core)
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serve } from './serve.mjs';

const ROOT = resolve(fileURLToPath(import.meta.url), '../..');
const argv = process.argv.slice(2);
const arg = (name, dflt) => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : dflt; };
const say = (s) => process.stderr.write(`[bench-tour] ${s}\n`);

/** Resident memory (KiB) of Chromium's renderer processes (run the benchmark with no other Chromium open). */
function rendererKiB() {
  const ps = execFileSync('ps', ['-eo', 'rss=,args='], { encoding: 'utf8', maxBuffer: 1 << 24 });
  return ps.split('\n').filter((l) => l.includes('chromium') && l.includes('--type=renderer'))
    .reduce((s, l) => s + Number(l.trim().split(/\s+/)[0]), 0);
}

async function main() {
  const { chromium } = await import('playwright-core');
  const ns = arg('--n', '100,1000').split(',').map(Number);
  const server = await serve(ROOT, 0);
  const base = `http://127.0.0.1:${server.address().port}/`;
  const profile = mkdtempSync(join(tmpdir(), 'blindspot-tour-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', headless: true, serviceWorkers: 'block',
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-sync'],
    viewport: { width: 1280, height: 900 },
  });
  const rows = [];
  let memory;
  try {
    for (const n of ns) {
      const page = await context.newPage();
      await page.goto(base);
      await page.waitForSelector('#tour[data-ready]', { timeout: 120_000 });
      await page.fill('#tour-n', String(n));
      say(`Table 1, N = ${n}`);
      const started = Date.now();
      await page.click('#tour-table1-run');
      await page.waitForSelector('#tour-table1:is([data-state="done"], [data-state="error"])', { timeout: 3_600_000 });
      const seconds = (Date.now() - started) / 1000;
      const status = await page.textContent('#tour-table1-status');
      if (await page.getAttribute('#tour-table1', 'data-state') !== 'done') throw new Error(`Table 1 failed: ${status}`);
      rows.push({ n, attacks: 6 * n, seconds, workers: page.workers().length, status });
      await page.close();
    }
    say('every panel once, then memory');
    const page = await context.newPage();
    await page.goto(`${base}?model=cnn&digit=0`);
    await page.waitForSelector('body[data-model-state="ready"]', { timeout: 120_000 });
    await page.click('#targets button[data-target="3"]');
    await page.click('#run-attack');
    await page.waitForFunction(() => !document.querySelector('#attack-result').hidden && !document.querySelector('#run-attack').disabled, null, { timeout: 120_000 });
    await page.click('#photos-load');
    await page.waitForSelector('#photos-section[data-label]', { timeout: 300_000 });
    await page.waitForSelector('#spectral[data-ready]', { timeout: 60_000 });
    await page.click('#spectral-run');
    await page.waitForSelector('#spectral:is([data-state="done"], [data-state="error"])', { timeout: 300_000 });
    await page.waitForSelector('#units-tensor:not([disabled]) option', { state: 'attached', timeout: 60_000 });
    await page.click('#units-run');
    await page.waitForSelector('#units:is([data-state="ranked"], [data-state="error"])', { timeout: 300_000 });
    await page.fill('#tour-n', '10');
    await page.click('#tour-table1-run');
    await page.waitForSelector('#tour-table1:is([data-state="done"], [data-state="error"])', { timeout: 300_000 });
    const cdp = await context.newCDPSession(page);
    await cdp.send('HeapProfiler.collectGarbage');
    const { usedSize } = await cdp.send('Runtime.getHeapUsage');
    const workers = page.workers().filter((w) => w.url().includes('/www/'));
    const wasm = [];
    for (const w of workers) wasm.push(await w.evaluate(() => self.wasmMemory?.buffer.byteLength ?? 0).catch(() => 0));
    memory = { workers: workers.length, wasmBytes: wasm.reduce((a, b) => a + b, 0), perWorker: wasm, heapBytes: usedSize, rendererKiB: rendererKiB() };
  } finally {
    await context.close();
    server.closeAllConnections();
    server.close();
  }
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  const out = [`Machine: ${cpu} · ${cpus().length} logical cores · Debian Chromium headless, CPU (wasm SIMD)`, '',
    '| Table 1 in the page | attacks | seconds | per attack | workers |', '|---|---:|---:|---:|---:|'];
  for (const r of rows) out.push(`| N = ${r.n} | ${r.attacks} | ${r.seconds.toFixed(1)} | ${(1000 * r.seconds / r.attacks).toFixed(1)} ms | ${r.workers} |`);
  const mib = (b) => (b / 1048576).toFixed(1);
  out.push('', '| memory with every panel used | |', '|---|---:|',
    `| workers (one wasm instance each) | ${memory.workers} |`,
    `| wasm linear memory, all workers | ${mib(memory.wasmBytes)} MiB (${memory.perWorker.map(mib).join(' + ')}) |`,
    `| page JS heap (after GC) | ${mib(memory.heapBytes)} MiB |`,
    `| renderer processes, resident | ${mib(memory.rendererKiB * 1024)} MiB |`);
  console.log(out.join('\n'));
  if (arg('--json')) writeFileSync(arg('--json'), JSON.stringify({ rows, memory, cpu }, null, 1));
}

main().catch((e) => { console.error(`bench-tour: ${e.message}`); process.exit(1); });
