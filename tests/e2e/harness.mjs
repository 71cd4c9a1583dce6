// Shared set-up for the browser tests: the site on 127.0.0.1, Debian's Chromium, the native CLI.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { serve } from '../../scripts/serve.mjs';

export const ROOT = resolve(fileURLToPath(import.meta.url), '../../..');
export const SHOTS = join(ROOT, 'test-results');

/**
 * A fresh headless Chromium with a profile of its own (a persistent context); with `webgpu`,
 * WebGPU is on (SwiftShader's software adapter: `--enable-unsafe-webgpu`, no `--disable-gpu`).
 */
async function startChromium(options = {}, { webgpu = false } = {}) {
  const profile = mkdtempSync(join(tmpdir(), 'blindspot-chromium-'));
  const gpu = webgpu ? ['--enable-unsafe-webgpu'] : ['--disable-gpu'];
  const context = await chromium.launchPersistentContext(profile, {
    ...options,
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', ...gpu, '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      // a synthetic camera, granted without a prompt (the photo section's camera button)
      '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'],
    viewport: { width: 1280, height: 900 },
  });
  context.profile = profile;
  return context;
}

/** Closes the browser, then deletes its profile (about 55 MB): test runs must not fill the disk. */
async function closeChromium(context) {
  await context.close();
  try {
    rmSync(context.profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
  } catch {
    // a leftover profile in the temp dir is harmless
  }
}

/** A fresh headless Chromium as launch() starts it, but with service workers allowed and no server. */
export async function launchBrowser() {
  const context = await startChromium();
  return { context, close: () => closeChromium(context) };
}

/**
 * Serves the site (under `prefix`, default "/"); resolves to { server, base, stop }, where
 * `stop()` really takes the server down: it closes every open connection too.
 */
export async function serveSite({ prefix = '/' } = {}) {
  const server = await serve(ROOT, 0, { prefix });
  const base = new URL(prefix, `http://127.0.0.1:${server.address().port}/`).href;
  return {
    server, base,
    stop() {
      const closed = new Promise((ok) => server.close(ok));
      server.closeAllConnections();
      return closed;
    },
  };
}

/**
 * Starts the server and a fresh headless Chromium; returns { base, context, close }.
 * `launch({ webgpu: true })` starts it with WebGPU on (see startChromium).
 */
export async function launch({ webgpu = false } = {}) {
  const server = await serve(ROOT, 0);
  const base = `http://127.0.0.1:${server.address().port}/`;
  // No service worker (www/offline.js registers one): page.route() does not see the requests a
  // service worker answers, and these tests stub models with it. offline.test.mjs has its own.
  const context = await startChromium({ serviceWorkers: 'block' }, { webgpu });
  return {
    base, context,
    async close() {
      await closeChromium(context);
      await new Promise((ok) => server.close(ok));
    },
  };
}

/** A new page that records uncaught errors and console errors. */
export async function openPage(context, url) {
  const page = await context.newPage();
  page.problems = [];
  page.on('pageerror', (e) => page.problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => m.type() === 'error' && page.problems.push(`console: ${m.text()}`));
  await page.goto(url);
  return page;
}

export async function screenshot(page, name) {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, name), fullPage: true });
}

/** The digit pack as the Rust core reads it. */
export function readPack(name) {
  const b = readFileSync(join(ROOT, 'models/data', name));
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const [count, rows, cols] = [8, 12, 16].map((o) => v.getUint32(o, true));
  const size = rows * cols;
  return {
    count, labels: b.subarray(20, 20 + count),
    input: (i) => Float32Array.from(b.subarray(20 + count + i * size, 20 + count + (i + 1) * size), (x) => x / 255),
  };
}

/** Writes a float32 .npy of the given shape. */
export function writeNpy(path, data, shape) {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  const pad = 64 - ((10 + header.length + 1) % 64);
  header += ' '.repeat(pad % 64) + '\n';
  const head = Buffer.alloc(10);
  head.write('\x93NUMPY', 0, 'latin1');
  head[6] = 1; head[7] = 0;
  head.writeUInt16LE(header.length, 8);
  writeFileSync(path, Buffer.concat([head, Buffer.from(header, 'latin1'), Buffer.from(data.buffer, data.byteOffset, data.byteLength)]));
}

/** Runs the native CLI (built on demand) and returns its stdout. */
export function cli(...args) {
  execFileSync('cargo', ['build', '--quiet', '--bin', 'blindspot'], { cwd: ROOT, stdio: 'inherit' });
  return execFileSync(join(ROOT, 'target/debug/blindspot'), args, { cwd: ROOT, encoding: 'utf8' });
}

export function tempDir() {
  return mkdtempSync(join(tmpdir(), 'blindspot-test-'));
}

/** Reads a little-endian float32 .npy: { shape, data }. */
export function readNpy(path) {
  const b = readFileSync(path);
  const headerLength = b.readUInt16LE(8);
  const header = b.subarray(10, 10 + headerLength).toString('latin1');
  if (!header.includes("'<f4'")) throw new Error(`${path}: not float32`);
  const shape = header.match(/\(([^)]*)\)/)[1].split(',').filter((s) => s.trim()).map(Number);
  const body = b.subarray(10 + headerLength);
  return { shape, data: new Float32Array(body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength)) };
}

/** Waits until the lab has loaded its model and classified the digit on show. */
export async function pageReady(page) {
  await page.waitForSelector('body[data-model-state="ready"]', { timeout: 60_000 });
  await page.waitForSelector('#prediction[data-label]');
}

/**
 * Waits for a case's own message: the element at `selector` shown (not hidden), its text matching
 * `pattern`, containing `includes` when given (the case's file name, say) and differing from
 * `previous` when given (the text on show before the case's action). A wait for "the element is
 * shown" alone is satisfied by the previous case's message, still on show until this one's comes.
 * Resolves to the text. On a timeout it resolves to the text on show instead of throwing, so the
 * caller's assert.match prints what the page really says; a text that is still `previous`, or that
 * lacks `includes`, is not this case's answer and fails here.
 */
export async function waitForMessage(page, selector, pattern, { includes = '', previous, timeout } = {}) {
  const wanted = { selector, source: pattern.source, flags: pattern.flags, includes, previous: previous ?? null };
  try {
    await page.waitForFunction((w) => {
      const el = document.querySelector(w.selector);
      if (!el || el.hidden) return false;
      const text = el.textContent;
      return text !== w.previous && text.includes(w.includes) && new RegExp(w.source, w.flags).test(text);
    }, wanted, timeout === undefined ? {} : { timeout });
  } catch (e) {
    if (e?.name !== 'TimeoutError' && !/Timeout \d+ms exceeded/.test(e?.message ?? '')) throw e;
  }
  const text = await page.textContent(selector);
  if (previous !== undefined) assert.notEqual(text, previous, `${selector} still shows the previous case's message: "${text}"`);
  if (includes) assert.ok(text.includes(includes), `${selector} shows no message about ${includes}: "${text}"`);
  return text;
}
