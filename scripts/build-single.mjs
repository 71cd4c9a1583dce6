// Builds dist/blindspot.html: the whole site in one self-contained file that opens from file://
// with no server (a classroom without network, a USB stick, an e-mail attachment).
//
// Inlined: the CSS and the favicon; the page's modules (every <script type="module"> of index.html
// but the service worker's registration, bundled by esbuild into one module); the worker, bundled
// with the wasm glue into a classic script, as source text that www/client.js starts from a Blob
// URL; and as data: URLs in globalThis.BLINDSPOT_INLINE.assets the wasm (which the page compiles
// once and hands to each worker), models/models.json, every model it lists and the 1,000 test
// digits. Assets that gzip
// well (the wasm, the digits) are stored gzipped and listed in BLINDSPOT_INLINE.gzip; www/assets.js
// inflates them with DecompressionStream.
//
//   node scripts/build-single.mjs [--out dist/blindspot.html]     (npm run build:single)
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

export const ROOT = resolve(fileURLToPath(import.meta.url), '../..');

const TYPES = {
  '.wasm': 'application/wasm', '.json': 'application/json', '.onnx': 'application/octet-stream',
  '.bin': 'application/octet-stream', '.svg': 'image/svg+xml', '.css': 'text/css',
};
const typeOf = (path) => TYPES[path.slice(path.lastIndexOf('.'))] ?? 'application/octet-stream';

// Modules of the page that have no place in the single file.
const SKIP = new Set(['www/offline.js']);

/**
 * Bundles `entries` (paths from the root) into one script's source text: an ES module, or with
 * `classic` a plain script (a module worker cannot start from a Blob URL of a file:// page, whose
 * origin is opaque; a classic one can), where import.meta.url becomes the script's own URL.
 */
async function bundle(entries, name, { classic = false, root = ROOT } = {}) {
  const result = await build({
    stdin: { contents: entries.map((e) => `import ${JSON.stringify(`./${e}`)};`).join('\n'), resolveDir: root, sourcefile: name },
    bundle: true, format: classic ? 'iife' : 'esm', target: 'es2022', minify: true, legalComments: 'none',
    define: classic ? { 'import.meta.url': 'self.location.href' } : {},
    write: false, logLevel: 'silent', absWorkingDir: root,
  });
  return result.outputFiles[0].text;
}

/** Code safe to put between <script> and </script>. */
function scriptSafe(code, what) {
  const safe = code.replace(/<\/(script)/gi, '<\\/$1');
  if (/<!--/.test(safe)) throw new Error(`${what}: "<!--" cannot be inlined in a <script>`);
  return safe;
}

/** A JS expression for `value`, safe inside a <script> whatever its strings hold. */
function jsonScript(value) {
  return JSON.stringify(value).replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

/** The files a page still loads (scripts, stylesheets, icons, images) that are not inline. */
export function leftovers(html) {
  const tags = /<(?:script|link|img|source|iframe)\b[^>]*?\s(?:src|href)\s*=\s*["']?([^"'\s>]+)/gi;
  const markup = html.replace(/(<script\b[^>]*>)[\s\S]*?<\/script>/gi, '$1</script>');
  return [...markup.matchAll(tags)].map((m) => m[1]).filter((url) => !/^(?:data|blob):/.test(url));
}

/** Builds the single file; resolves to { out, bytes, ms, assets: [[path, bytes inlined]] }. */
export async function buildSingle({ root = ROOT, out = join(root, 'dist/blindspot.html') } = {}) {
  const start = performance.now();
  const read = (path) => readFileSync(join(root, path));
  for (const need of ['pkg/blindspot.js', 'pkg/blindspot_bg.wasm']) {
    if (!existsSync(join(root, need))) throw new Error(`${need} is missing: build the wasm first (./scripts/serve.sh or ./scripts/test.sh)`);
  }
  let html = read('index.html').toString();

  // The page's modules, in the order index.html lists them, as one bundle.
  const moduleTag = /[ \t]*<script\s+type="module"\s+src="([^"]+)"\s*><\/script>\n?/g;
  const modules = [...html.matchAll(moduleTag)].map((m) => m[1]).filter((src) => !SKIP.has(src));
  if (!modules.length) throw new Error('index.html lists no <script type="module" src="...">');
  const [page, worker] = await Promise.all([bundle(modules, 'page.js', { root }), bundle(['www/worker.js'], 'worker.js', { classic: true, root })]);

  // The assets the page fetches, by their path from the site's root.
  const manifest = JSON.parse(read('models/models.json'));
  const paths = ['pkg/blindspot_bg.wasm', 'models/models.json', ...manifest.models.map((m) => `models/${m.file}`),
    'models/data/mnist-test-1k.bin'];
  const assets = {};
  const gzip = [];
  const sizes = [];
  for (const path of paths) {
    const bytes = read(path);
    const packed = gzipSync(bytes, { level: 9 });
    const zipped = packed.length < 0.8 * bytes.length;
    if (zipped) gzip.push(path);
    const body = zipped ? packed : bytes;
    assets[path] = `data:${zipped ? 'application/gzip' : typeOf(path)};base64,${body.toString('base64')}`;
    sizes.push([path, body.length]);
  }

  const favicon = `data:image/svg+xml;base64,${read('www/favicon.svg').toString('base64')}`;
  const css = read('www/style.css').toString();
  if (/url\(\s*["']?(?!data:|#)/.test(css)) throw new Error('www/style.css refers to a file: inline it in the build');

  const inline = `<script>globalThis.BLINDSPOT_INLINE = ${jsonScript({ single: true, worker, gzip, assets })};</script>\n`;
  // The single file's policy: its scripts and styles are inline and its assets data: URLs, its
  // worker starts from a Blob URL; still no eval, and no request to any server.
  const policy = "default-src 'none'; script-src 'unsafe-inline' 'wasm-unsafe-eval' blob:; worker-src blob:; "
    + "connect-src data: blob:; img-src data: blob:; style-src 'unsafe-inline'; object-src 'none'; base-uri 'none'; form-action 'none'";
  const csp = /(<meta http-equiv="Content-Security-Policy" content=")[^"]*(">)/;
  if (!csp.test(html)) throw new Error('index.html has no Content-Security-Policy meta');
  html = html
    .replace(csp, (_, open, close) => `${open}${policy}${close}`)
    .replace(/<link rel="icon" href="www\/favicon.svg"[^>]*>/, `<link rel="icon" href="${favicon}" type="image/svg+xml">`)
    .replace(/[ \t]*<link rel="stylesheet" href="www\/style.css">\n?/, () => `<style>\n${css.replace(/<\/(style)/gi, '<\\/$1')}</style>\n`)
    .replace(moduleTag, '');
  const scripts = `${inline}<script type="module">\n${scriptSafe(page, 'the page bundle')}</script>\n`;
  if (!html.includes('</head>')) throw new Error('index.html has no </head>');
  html = html.replace('</head>', () => `${scripts}</head>`);
  const left = leftovers(html);
  if (left.length) throw new Error(`index.html loads files the build does not inline: ${left.join(', ')}`);

  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, html);
  return { out, bytes: statSync(out).size, ms: performance.now() - start, assets: sizes };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf('--out');
  const result = await buildSingle(i > 0 ? { out: resolve(process.argv[i + 1]) } : {});
  const mb = (n) => `${(n / 1e6).toFixed(2)} MB`;
  for (const [path, n] of result.assets) console.log(`  ${path.padEnd(36)} ${mb(n)}`);
  console.log(`blindspot: wrote ${result.out} (${mb(result.bytes)}) in ${(result.ms / 1000).toFixed(1)} s`);
}
