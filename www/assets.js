// Where the page's files come from: the site, relative to where blindspot is hosted, or the
// copies the single-file build inlines (globalThis.BLINDSPOT_INLINE.assets: path -> data: URL).

// Inlined assets named in BLINDSPOT_INLINE.gzip are stored gzipped, and inflated here.

const inline = globalThis.BLINDSPOT_INLINE?.assets ?? {};
const gzipped = new Set(globalThis.BLINDSPOT_INLINE?.gzip ?? []);
const root = new URL('../', import.meta.url);

/**
 * True in an embedded figure (?embed=1: a blog post's <blindspot-demo>): the digit lab alone. The
 * other panels are hidden there and do not start, so the frame fetches only what the figure shows.
 */
export const embedded = new URLSearchParams(location.search).get('embed') === '1';

/** True in the single-file build, where the site's files are inlined. */
export const inlined = Object.keys(inline).length > 0;

/** The URL of a file of the site, given by its path from the site's root ("models/cnn.onnx"). */
export function assetUrl(path) {
  return inline[path] ?? new URL(path, root).href;
}

/** The bytes of a file of the site; a clear error when it is missing. */
export async function fetchBytes(path) {
  let response;
  try {
    response = await fetch(assetUrl(path));
  } catch (e) {
    // offline with nothing cached, or the server gone: fetch only says "Failed to fetch"
    throw new Error(`${path} could not be fetched (${e.message}): check the connection, or that the site is still served, and reload`);
  }
  if (!response.ok) throw new Error(`${path}: ${response.status} ${response.statusText || 'not found'}; this site is missing the file: reload, or open the hosted site`);
  if (gzipped.has(path) && inline[path]) {
    return new Response(response.body.pipeThrough(new DecompressionStream('gzip'))).arrayBuffer();
  }
  return response.arrayBuffer();
}

/** A JSON file of the site, parsed. */
export async function fetchJson(path) {
  return JSON.parse(new TextDecoder().decode(await fetchBytes(path)));
}

const once = new Map(); // path -> Promise of its bytes

/** The bytes of a file of the site, fetched once per page (the digit packs); never transfer them. */
export function fetchOnce(path) {
  if (!once.has(path)) {
    const fetched = fetchBytes(path);
    once.set(path, fetched);
    fetched.catch(() => once.delete(path)); // a failed fetch is tried again next time
  }
  return once.get(path);
}

/** models/models.json, fetched once per page; each caller gets its own copy to change. */
export async function manifest() {
  return structuredClone(JSON.parse(new TextDecoder().decode(await fetchOnce('models/models.json'))));
}
