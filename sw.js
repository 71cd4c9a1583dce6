// blindspot's service worker: the site keeps working with no network after a first visit.
// Network first, so an updated site is never served stale while online; the cache answers only
// when the network fails. Installing pre-caches everything a first visit needs (the page, its
// modules found by following their imports, the wasm, the model list, the default model and the
// digits); any other same-origin GET that succeeds (another model) is cached as it is fetched,
// and the page's "Save for offline use" button asks for every model at once (saveAll below); the
// training digits are cached only when the training section's button asks for them.
// Every URL is relative to this file, so the site works from any sub-path of a static host.

const CACHE = 'blindspot-v1';
const SCOPE = new URL('./', self.location.href);
const KEPT_ON_REQUEST = '/models/data/mnist-train-60k.bin.gz';

// What a first visit fetches, besides the default model (named in models.json) and the modules
// that the page and the modules import, which are found by following them, so a new module needs
// no entry here. Installing fails if one of these is missing; a followed reference that is
// missing is skipped.
const PRECACHE = [
  './', 'index.html', 'www/style.css', 'www/favicon.svg', 'www/app.js', 'www/worker.js',
  'pkg/blindspot.js', 'pkg/blindspot_bg.wasm', 'models/models.json', 'models/data/mnist-test-1k.bin',
];

/** Same-origin URLs a page or module names: src/href attributes, imports, new URL(.., import.meta.url). */
function references(text, base, html) {
  const patterns = html
    ? [/\b(?:src|href)\s*=\s*["']([^"'#?]+)["']/g]
    : [/\bfrom\s*["']([^"']+)["']/g, /\bimport\s*\(?\s*["']([^"']+)["']/g,
      /\bnew\s+URL\(\s*["']([^"']+)["']\s*,\s*import\.meta\.url/g];
  const found = [];
  for (const pattern of patterns) {
    for (const [, ref] of text.matchAll(pattern)) {
      const url = new URL(ref, base);
      url.hash = '';
      if (!url.href.startsWith(SCOPE.href)) continue;
      // A page's links to other documents (model cards) are not needed offline.
      if (html && !/\.(m?js|css|svg|png|ico|wasm)$/.test(url.pathname)) continue;
      found.push(url.href);
    }
  }
  return found;
}

/** Caches `urls` (each must succeed) and, following them, what pages and modules refer to. */
async function precache(cache, urls) {
  const seen = new Set();
  let queue = urls.map((u) => ({ url: new URL(u, SCOPE).href, required: true }));
  while (queue.length) {
    const batch = queue.filter(({ url }) => !seen.has(url) && seen.add(url));
    queue = [];
    await Promise.all(batch.map(async ({ url, required }) => {
      const response = await fetch(url, { cache: 'no-cache' }).catch((e) => ({ ok: false, status: e.message }));
      if (!response.ok) {
        if (required) throw new Error(`${url}: ${response.status}`);
        return;
      }
      await cache.put(url, response.clone());
      const path = new URL(url).pathname;
      const html = /(\.html|\/)$/.test(path);
      if (html || /\.m?js$/.test(path)) {
        for (const ref of references(await response.text(), url, html)) queue.push({ url: ref, required: false });
      } else if (path.endsWith('/models/models.json')) {
        const { models = [] } = await response.json();
        const model = models.find((m) => m.default) ?? models[0];
        if (model) queue.push({ url: new URL(model.file, url).href, required: true });
      }
    }));
  }
}

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => precache(cache, PRECACHE)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const key of await caches.keys()) if (key.startsWith('blindspot-') && key !== CACHE) await caches.delete(key);
    await self.clients.claim();
  })());
});

/**
 * "Save for offline use" (www/saveoffline.js): every model of models/models.json (not those marked
 * "optional", big downloads with a cache of their own) and the 1,000 test digits, fetched now and
 * put in this cache, so every panel works offline, not only the default model. Progress goes back
 * on the message's port: { done, total, bytes, file } per file, then { finished } or { error }.
 * A message's `files` (paths from the site's root) saves those instead: the training digits.
 */
async function saveAll(port, only) {
  const cache = await caches.open(CACHE);
  const say = (message) => port?.postMessage(message);
  try {
    const list = new URL('models/models.json', SCOPE).href;
    const manifest = await fetch(list, { cache: 'no-cache' });
    if (!manifest.ok) throw new Error(`models/models.json: ${manifest.status}`);
    await cache.put(list, manifest.clone());
    const { models = [] } = await manifest.json();
    const files = Array.isArray(only) ? only.filter((f) => typeof f === 'string' && new URL(f, SCOPE).href.startsWith(SCOPE.href))
      : [...models.filter((m) => !m.optional).map((m) => `models/${m.file}`), 'models/data/mnist-test-1k.bin'];
    let bytes = 0;
    let done = 0;
    say({ done, total: files.length, bytes });
    // two at a time: a steady "n of m" and no burst of requests
    const queue = [...files];
    const worker = async () => {
      for (let file = queue.shift(); file; file = queue.shift()) {
        const url = new URL(file, SCOPE).href;
        const response = await fetch(url, { cache: 'no-cache' });
        if (!response.ok) throw new Error(`${file}: ${response.status}`);
        const body = await response.arrayBuffer();
        await cache.put(url, new Response(body, { headers: response.headers }));
        bytes += body.byteLength;
        say({ done: ++done, total: files.length, bytes, file });
      }
    };
    await Promise.all([worker(), worker()]);
    say({ finished: true, done, total: files.length, bytes });
  } catch (e) {
    say({ error: e?.message ?? String(e) });
  }
}

self.addEventListener('message', (event) => {
  if (event.data?.op === 'save-offline') event.waitUntil(saveAll(event.ports[0], event.data.files));
});

async function fromCache(request) {
  const cache = await caches.open(CACHE);
  const hit = await cache.match(request);
  if (hit) return hit;
  // The page is the same page whatever its query (?model=..&digit=..).
  if (request.mode === 'navigate' || request.destination === 'document') {
    return (await cache.match(request, { ignoreSearch: true }))
      ?? (await cache.match(new URL('index.html', SCOPE).href))
      ?? (await cache.match(SCOPE.href));
  }
  return cache.match(request, { ignoreSearch: true });
}

self.addEventListener('fetch', (event) => {
  const { request } = event;
  const url = new URL(request.url);
  if (request.method !== 'GET' || url.origin !== SCOPE.origin || !url.href.startsWith(SCOPE.href)) return;
  if (request.headers.has('range')) return;
  // Big optional models are fetched by the page with their version in the query (?v=sha256) and
  // kept in its own cache ('blindspot/models', www/photos.js): not stored a second time here.
  if (url.pathname.endsWith('.onnx') && url.searchParams.has('v')) return;
  event.respondWith((async () => {
    try {
      const response = await fetch(request);
      // the 60,000 training digits (9.7 MB) are kept only when the person asks (www/train.js)
      if (response.ok && response.type === 'basic' && !url.pathname.endsWith(KEPT_ON_REQUEST)) {
        const copy = response.clone();
        event.waitUntil(caches.open(CACHE).then((cache) => cache.put(request, copy)).catch(() => {}));
      }
      return response;
    } catch (offline) {
      const cached = await fromCache(request);
      if (cached) return cached;
      throw offline;
    }
  })());
});
