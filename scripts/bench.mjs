// The benchmark command (./scripts/bench.sh runs it after the build): www/bench.html in headless
// Chromium (blindspot against TensorFlow.js), the scipy attack natively, the page weight of a
// first visit and its time to the first classification; prints the tables (Markdown).
//   node scripts/bench.mjs [--quick] [--digits N] [--window S] [--steps N] [--visits N] [--json FILE]
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { serve } from './serve.mjs';

const ROOT = resolve(fileURLToPath(import.meta.url), '../..');
const VENDOR = join(ROOT, 'www/vendor');
const TFJS = join(ROOT, 'node_modules/@tensorflow');

/** Bundles TensorFlow.js for the page into www/vendor/ (tfjs.js and the tfjs wasm binaries). */
export async function bundlePeer() {
  const out = join(VENDOR, 'tfjs.js');
  const lock = join(ROOT, 'package-lock.json');
  const entry = join(ROOT, 'www/bench/tfjs-entry.js');
  if (existsSync(out) && statSync(out).mtimeMs > Math.max(statSync(lock).mtimeMs, statSync(entry).mtimeMs)) return;
  mkdirSync(VENDOR, { recursive: true });
  const { build } = await import('esbuild');
  await build({ entryPoints: [entry], bundle: true, format: 'esm', platform: 'browser', minify: true, outfile: out, logLevel: 'warning' });
  for (const f of ['tfjs-backend-wasm.wasm', 'tfjs-backend-wasm-simd.wasm', 'tfjs-backend-wasm-threaded-simd.wasm']) {
    copyFileSync(join(TFJS, 'tfjs-backend-wasm/dist', f), join(VENDOR, f));
  }
}

/** Headless Debian Chromium with WebGPU (SwiftShader here) and WebGL (SwiftShader via ANGLE) on. */
export async function benchBrowser() {
  const { chromium } = await import('playwright-core');
  const profile = mkdtempSync(join(tmpdir(), 'blindspot-bench-'));
  return chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    serviceWorkers: 'block',
    args: ['--no-sandbox', '--enable-unsafe-webgpu', '--use-angle=swiftshader', '--enable-unsafe-swiftshader',
      '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1100, height: 900 },
  });
}

/** Runs www/bench.html with `query` and returns its window.benchResults. */
export async function runBenchPage(context, base, query, { timeout = 30 * 60_000, progress = () => {} } = {}) {
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(e.message));
  await page.goto(`${base}www/bench.html?${query}`);
  let last = '';
  const ticker = setInterval(async () => {
    const s = await page.textContent('#status').catch(() => '');
    if (s && s !== last) progress((last = s));
  }, 1000);
  try {
    await page.waitForSelector('body[data-done]', { timeout });
  } finally {
    clearInterval(ticker);
  }
  const results = await page.evaluate(() => window.benchResults);
  results.pageErrors = problems;
  results.page = page;
  return results;
}

/**
 * A first visit to the lab in a fresh profile: every file the server sends (raw and gzip -6
 * sizes, as a static host serving gzip would send them) until the first classification is on
 * show, and the time from navigation to it.
 */
export async function firstVisit(makeContext, root = ROOT) {
  const server = await serve(root, 0);
  const base = `http://127.0.0.1:${server.address().port}/`;
  const files = [];
  server.on('request', (req) => files.push(decodeURIComponent(new URL(req.url, base).pathname)));
  const context = await makeContext();
  try {
    const page = await context.newPage();
    await page.addInitScript(() => {
      new MutationObserver(() => {
        const p = document.getElementById('prediction');
        if (p?.dataset.label !== undefined && window.firstClassification === undefined) window.firstClassification = performance.now();
      }).observe(document, { subtree: true, attributes: true, childList: true });
    });
    await page.goto(base);
    await page.waitForFunction(() => window.firstClassification !== undefined, null, { timeout: 120_000 });
    const ms = await page.evaluate(() => window.firstClassification);
    const sent = files.filter((f) => existsSync(join(root, f)) && statSync(join(root, f)).isFile() || f === '/');
    const sizes = sent.map((f) => {
      const body = readFileSync(join(root, f === '/' ? 'index.html' : f));
      return { file: f === '/' ? '/index.html' : f, raw: body.length, gzip: gzipSync(body, { level: 6 }).length };
    });
    return { ms, files: sizes, raw: sizes.reduce((s, f) => s + f.raw, 0), gzip: sizes.reduce((s, f) => s + f.gzip, 0) };
  } finally {
    await context.close();
    server.closeAllConnections();
    await new Promise((ok) => server.close(ok));
  }
}

/**
 * What the peer's page would ship for the same job: TensorFlow.js core and its wasm backend
 * (with gradients), bundled and minified by esbuild, plus the SIMD wasm binary; raw and gzip -6.
 */
export async function peerWeight() {
  const { build } = await import('esbuild');
  const js = await build({
    stdin: {
      contents: "export * from '@tensorflow/tfjs-core'; import '@tensorflow/tfjs-core/dist/register_all_gradients'; export { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';",
      resolveDir: ROOT,
    },
    bundle: true, format: 'esm', platform: 'browser', minify: true, write: false, logLevel: 'warning',
  });
  const files = [
    { file: 'tfjs-core + tfjs-backend-wasm (bundled, minified)', body: Buffer.from(js.outputFiles[0].contents) },
    { file: 'tfjs-backend-wasm-simd.wasm', body: readFileSync(join(TFJS, 'tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm')) },
  ].map(({ file, body }) => ({ file, raw: body.length, gzip: gzipSync(body, { level: 6 }).length }));
  return { files, raw: files.reduce((s, f) => s + f.raw, 0), gzip: files.reduce((s, f) => s + f.gzip, 0) };
}

/** The scipy attack on the page's digits and targets (tools/bench_attack.py), single-threaded. */
function scipyAttack(attack) {
  const job = JSON.stringify({ model: attack.model, firstObjective: attack.firstObjective, rows: attack.rows.map(({ digit, target }) => ({ digit, target })) });
  const threads = { OPENBLAS_NUM_THREADS: '1', OMP_NUM_THREADS: '1', MKL_NUM_THREADS: '1' };
  const run = spawnSync('python3', ['tools/bench_attack.py'], { cwd: ROOT, input: job, env: { ...process.env, ...threads }, maxBuffer: 1 << 24 });
  if (run.status !== 0) throw new Error(`tools/bench_attack.py failed: ${run.stderr}`);
  return JSON.parse(run.stdout);
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length ? (s[(s.length - 1) >> 1] + s[s.length >> 1]) / 2 : NaN; };
const num = (v, d = 0) => (v == null || !Number.isFinite(v) ? '–' : v.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }));
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** The Markdown report. */
export function report({ bench, scipy, visits, cpu, peer = null }) {
  const out = [];
  const line = (s = '') => out.push(s);
  line(`Machine: ${cpu} · ${bench.machine.cores} logical cores · ${bench.machine.userAgent.match(/Chrome\/[\d.]+/)?.[0] ?? 'Chromium'} headless · `
    + `TensorFlow.js ${bench.machine.tfjs} (wasm SIMD ${bench.machine.tfjsWasmSimd ? 'on' : 'off'}, threads ${bench.machine.tfjsWasmThreads ? 'on' : 'off'}) · WebGPU: ${bench.machine.webgpu}`);
  line();
  const engines = [...new Set(bench.gradients.flatMap((g) => g.rates.map((r) => r.engine)))];
  const cell = (g, engine, key) => {
    const r = g.rates.find((x) => x.engine === engine);
    if (!r) return '–';
    const missing = r.error?.match(/Kernel '(\w+)' not registered/);
    if (missing) return `no ${missing[1]} kernel`;
    if (r.error) return `fails: ${r.error.slice(0, 60)}`;
    return num(r[key]);
  };
  for (const [title, key] of [['Forward + input gradient per second', 'gradient'], ['Forward passes per second', 'forward']]) {
    line(`### ${title}`);
    line();
    line(`| model | ${engines.join(' | ')} | blindspot / best tfjs |`);
    line(`|---|${engines.map(() => '---:').join('|')}|---:|`);
    for (const g of bench.gradients) {
      const ours = g.rates.find((r) => r.engine === 'blindspot wasm')?.[key];
      const best = Math.max(...g.rates.filter((r) => r.engine.startsWith('tfjs') && r[key]).map((r) => r[key]));
      line(`| ${g.name} | ${engines.map((e) => cell(g, e, key)).join(' | ')} | ${num(ours / best, 2)}x |`);
    }
    line();
  }
  if (bench.training?.length) {
    const trainEngines = [...new Set(bench.training.flatMap((t) => t.rates.map((r) => r.engine)))];
    const t0 = bench.training[0];
    line(`### Training steps per second (${t0.steps} steps of ${t0.batch} test digits, Adam 0.001, mean cross-entropy, same batches)`);
    line();
    line(`| model | ${trainEngines.join(' | ')} | blindspot / tfjs wasm |`);
    line(`|---|${trainEngines.map(() => '---:').join('|')}|---:|`);
    for (const t of bench.training) {
      const at = (e) => t.rates.find((r) => r.engine === e);
      const cellOf = (e) => (at(e)?.error ? `fails: ${at(e).error.slice(0, 60)}` : num(at(e)?.stepsPerSecond, 1));
      line(`| ${t.name} | ${trainEngines.map(cellOf).join(' | ')} | ${num(at('blindspot wasm')?.stepsPerSecond / at('tfjs wasm')?.stepsPerSecond, 2)}x |`);
    }
    line();
  }
  line('### Same gradient before timing (max |difference| / max |blindspot gradient|, tolerance 1e-4)');
  line();
  line('| model | engine | difference | |');
  line('|---|---|---:|---|');
  for (const g of bench.gradients) for (const c of g.checks) line(`| ${g.name} | ${c.engine} | ${c.difference.toExponential(2)} | ${c.difference <= c.tolerance ? 'same' : '**differs**'} |`);
  line();
  if (bench.attack) {
    const ours = bench.attack.rows;
    line(`### The paper's attack on FC200-200-10: ${ours.length} test digits, paper targets (seed ${bench.attack.seed})`);
    line();
    line('| | median per digit | mean | reached | mean distortion |');
    line('|---|---:|---:|---:|---:|');
    line(`| blindspot in Chromium (wasm) | ${num(median(ours.map((r) => r.ms)), 1)} ms | ${num(mean(ours.map((r) => r.ms)), 1)} ms | ${ours.filter((r) => r.success).length}/${ours.length} | ${mean(ours.filter((r) => r.success).map((r) => r.distortion)).toFixed(4)} |`);
    if (scipy) {
      const t = scipy.rows;
      line(`| scipy fmin_l_bfgs_b + numpy, native (one thread) | ${num(median(t.map((r) => r.ms)), 1)} ms | ${num(mean(t.map((r) => r.ms)), 1)} ms | ${t.filter((r) => r.success).length}/${t.length} | ${mean(t.filter((r) => r.success).map((r) => r.distortion)).toFixed(4)} |`);
      line();
      line(`The numpy model's cross-entropy at the first digit differs from blindspot's by ${scipy.objectiveDifference?.toExponential(1)} (relative).`);
    }
    line();
  }
  if (visits?.length) {
    const v = visits[0];
    line('### First visit to the lab (fresh profile, until the first classification is on show)');
    line();
    line(`| files | bytes | gzip -6 (over the wire from a static host that compresses) | time to first classification (median of ${visits.length}) |`);
    line('|---:|---:|---:|---:|');
    line(`| ${v.files.length} | ${num(v.raw)} | ${num(v.gzip)} | ${num(median(visits.map((x) => x.ms)))} ms |`);
    line();
    if (peer) {
      const wasm = v.files.find((f) => f.file.endsWith('.wasm'));
      const js = v.files.filter((f) => f.file.endsWith('.js')).reduce((s, f) => s + f.gzip, 0);
      line(`The engine alone: blindspot's wasm ${num(wasm.gzip / 1024)} KiB + its JavaScript ${num(js / 1024)} KiB gzip; `
        + `TensorFlow.js for the same job (${peer.files.map((f) => f.file).join(' + ')}) ${num(peer.gzip / 1024)} KiB gzip, before any page code.`);
      line();
    }
    line('Largest: ' + [...v.files].sort((a, b) => b.gzip - a.gzip).slice(0, 5).map((f) => `${f.file} ${num(f.gzip / 1024)} KiB`).join(', ') + ' (gzip).');
    line();
  }
  if (bench.roofline) {
    const r = bench.roofline;
    line(`### Roofline: wasm SIMD multiply-add peak on one core ${r.peakGflops.toFixed(2)} GFLOP/s`);
    line();
    line('| model | engine | MFLOP per forward + gradient | forward GFLOP/s | forward + gradient GFLOP/s | of peak |');
    line('|---|---|---:|---:|---:|---:|');
    for (const x of r.rows) line(`| ${x.name} | ${x.engine} | ${num(x.gradientFlops / 1e6, 2)} | ${num(x.forwardGflops, 2)} | ${num(x.gradientGflops, 2)} | ${(100 * x.gradientGflops / r.peakGflops).toFixed(1)}% |`);
    line();
  }
  return out.join('\n');
}

async function main() {
  const argv = process.argv.slice(2);
  const arg = (name, dflt) => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : dflt; };
  const quick = argv.includes('--quick');
  const query = new URLSearchParams({ webgpu: '' });
  if (quick) query.set('quick', '');
  if (arg('--digits')) query.set('digits', arg('--digits'));
  if (arg('--window')) query.set('window', arg('--window'));
  if (arg('--steps')) query.set('steps', arg('--steps'));
  const say = (s) => process.stderr.write(`[bench] ${s}\n`);

  await bundlePeer();
  const server = await serve(ROOT, 0);
  const base = `http://127.0.0.1:${server.address().port}/`;
  const context = await benchBrowser();
  let bench;
  try {
    say('www/bench.html in headless Chromium');
    bench = await runBenchPage(context, base, query.toString(), { progress: say });
    delete bench.page;
  } finally {
    await context.close();
    server.closeAllConnections();
    server.close();
  }
  if (bench.errors.length) throw new Error(`the benchmark page failed: ${bench.errors.join('; ')}`);
  let scipy = null;
  if (bench.attack) {
    say('the scipy attack natively (tools/bench_attack.py)');
    scipy = scipyAttack(bench.attack);
  }
  const visits = [];
  const count = Number(arg('--visits', quick ? 1 : 3));
  for (let i = 0; i < count; i++) {
    say(`first visit ${i + 1} of ${count}`);
    visits.push(await firstVisit(benchBrowser));
  }
  const peer = await peerWeight();
  const cpu = readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1] ?? cpus()[0]?.model ?? 'unknown CPU';
  const text = report({ bench, scipy, visits, cpu, peer });
  console.log(text);
  if (arg('--json')) writeFileSync(arg('--json'), JSON.stringify({ bench, scipy, visits, cpu, peer }, null, 1));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((e) => { console.error(`bench: ${e.message}`); process.exit(1); });
}
