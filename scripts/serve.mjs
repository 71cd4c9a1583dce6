// Static file server for the site (repo root) on 127.0.0.1; used by scripts/serve.sh and the tests.
import { createServer } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
  '.json': 'application/json', '.wasm': 'application/wasm', '.onnx': 'application/octet-stream',
  '.bin': 'application/octet-stream', '.png': 'image/png', '.svg': 'image/svg+xml',
  '.md': 'text/markdown; charset=utf-8', '.ico': 'image/x-icon',
};

/**
 * Serves `root` on 127.0.0.1:`port` (0 = any free port); resolves to the http.Server. With
 * `prefix` ("/classroom/blindspot/") the site lives under that path, as on a static host's
 * sub-path: other paths answer 404, and the prefix without its slash redirects to it.
 */
export function serve(root, port = 0, { prefix = '/' } = {}) {
  const base = resolve(root);
  const mount = `/${prefix.split('/').filter(Boolean).join('/')}/`.replace('//', '/');
  const server = createServer(async (req, res) => {
    try {
      const url = new URL(req.url, 'http://x');
      if (mount !== '/' && url.pathname === mount.slice(0, -1)) {
        res.writeHead(301, { Location: mount + url.search });
        res.end();
        return;
      }
      if (!url.pathname.startsWith(mount)) throw Object.assign(new Error(), { code: 'ENOENT' });
      const path = decodeURIComponent(url.pathname.slice(mount.length - 1));
      let file = normalize(join(base, path));
      if (file !== base && !file.startsWith(base + sep)) throw Object.assign(new Error(), { code: 'ENOENT' });
      if ((await stat(file)).isDirectory()) file = join(file, 'index.html');
      const body = await readFile(file);
      res.writeHead(200, {
        'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream',
        'Cache-Control': 'no-cache',
        // A post on another site may load www/embed.js: module scripts are fetched with CORS.
        // Harmless for a static site (docs/embedding.md says which hosts send it).
        'Access-Control-Allow-Origin': '*',
      });
      res.end(req.method === 'HEAD' ? undefined : body);
    } catch (e) {
      res.writeHead(e.code === 'ENOENT' || e.code === 'EISDIR' ? 404 : 500, { 'Content-Type': 'text/plain' });
      res.end(e.code === 'ENOENT' ? 'not found' : 'server error');
    }
  });
  return new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(port, '127.0.0.1', () => ok(server));
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const arg = (name) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : undefined; };
  const port = Number(arg('--port') ?? 8080);
  const prefix = arg('--prefix') ?? '/';
  const root = resolve(fileURLToPath(import.meta.url), '../..');
  const server = await serve(root, port, { prefix });
  const mount = `/${prefix.split('/').filter(Boolean).join('/')}/`.replace('//', '/');
  console.log(`blindspot: serving ${root} at http://127.0.0.1:${server.address().port}${mount} (Ctrl-C stops)`);
}
