// "Save for offline use": a button in the footer that asks the service worker (sw.js, saveAll)
// to put every model of models/models.json and the 1,000 test digits in its cache, so the lab's
// other models, the paper tour and the panels work offline too, not only the default model that a
// first visit caches. Shown only where there is a service worker (not in the single file, which
// holds everything already, nor on file://). The footer's <p class="offline-save"> says how far
// it got in data-state: idle, saving, saved, error. saveFiles keeps other files on request (the
// training digits, www/train.js).
import { manifest } from './assets.js';

const PACK_BYTES = 785_020; // models/data/mnist-test-1k.bin
const megabytes = (n) => `${(n / 1e6).toFixed(1)} MB`;

/** Whether this page can keep files for offline use (a service worker on http(s)). */
export function canSave() {
  return /^https?:$/.test(location.protocol) && !globalThis.BLINDSPOT_INLINE && 'serviceWorker' in navigator
    && globalThis.isSecureContext && 'caches' in globalThis;
}

/** The service worker that controls (or will control) this page; rejects after `ms` without one. */
function serviceWorker(ms = 15_000) {
  const offline = document.documentElement.dataset.offline ?? '';
  if (offline === 'unavailable' || offline.startsWith('failed')) {
    return Promise.reject(new Error(`the offline cache is not available here (${offline})`));
  }
  return Promise.race([
    navigator.serviceWorker.ready.then((r) => r.active),
    new Promise((_, reject) => setTimeout(() => reject(new Error('the service worker did not start: this browser keeps no offline copy here')), ms)),
  ]);
}

/**
 * Asks the service worker to keep `files` (paths from the site's root; null: every model and the
 * 1,000 test digits) in its cache; `onProgress` gets { done, total, bytes } per file. Resolves to
 * the last of those.
 */
async function save(files, onProgress) {
  const worker = await serviceWorker();
  const channel = new MessageChannel();
  return new Promise((resolve, reject) => {
    channel.port1.onmessage = ({ data }) => {
      if (data.error) return reject(new Error(data.error));
      if (data.finished) return resolve(data);
      onProgress(data);
    };
    worker.postMessage({ op: 'save-offline', files }, [channel.port2]);
  });
}

/** Keeps `files` (paths from the site's root) for offline use; see save(). */
export async function saveFiles(files, onProgress = () => {}) {
  const result = await save(files, onProgress);
  // ask the browser not to evict the copy under storage pressure (it may say no)
  await navigator.storage?.persist?.().catch(() => false);
  return result;
}

function setUp() {
  const footer = document.querySelector('footer');
  if (!footer || !canSave()) return;
  const box = document.createElement('p');
  box.className = 'offline-save';
  box.dataset.state = 'idle';
  box.innerHTML = '<button id="save-offline" type="button">Save for offline use</button> '
    + '<progress id="save-offline-progress" max="1" value="0" aria-label="files saved for offline use" hidden></progress> '
    + '<span id="save-offline-status" role="status" aria-live="polite"></span>';
  footer.prepend(box);
  const [button, bar, status] = ['save-offline', 'save-offline-progress', 'save-offline-status'].map((id) => document.getElementById(id));
  let files = null; // { urls, bytes } of what saving keeps

  const describe = async () => {
    const { models } = await manifest();
    const kept = models.filter((m) => !m.optional);
    const paths = [...kept.map((m) => `models/${m.file}`), 'models/data/mnist-test-1k.bin'];
    files = {
      count: kept.length,
      urls: paths.map((p) => new URL(`../${p}`, import.meta.url).href),
      bytes: kept.reduce((s, m) => s + (m.bytes ?? 0), PACK_BYTES),
    };
    status.textContent = `Keeps all ${files.count} models and the 1,000 test digits (${megabytes(files.bytes)}) in this browser, `
      + 'so every model, the paper tour and the panels work with no network';
    // saved on an earlier visit: say so
    const hits = await Promise.all(files.urls.map((u) => caches.match(u)));
    if (hits.every(Boolean) && box.dataset.state === 'idle') {
      box.dataset.state = 'saved';
      button.textContent = 'Update the offline copy';
      status.textContent = `✓ saved for offline use: all ${files.urls.length} files are in this browser`;
    }
  };
  describe().catch(() => {});

  button.addEventListener('click', async () => {
    if (box.dataset.state === 'saving') return;
    box.dataset.state = 'saving';
    button.disabled = true;
    bar.hidden = false;
    bar.value = 0;
    status.textContent = 'starting…';
    try {
      const result = await saveFiles(null, (data) => {
        bar.max = Math.max(1, data.total);
        bar.value = data.done;
        status.textContent = `${data.done} of ${data.total} files (${megabytes(data.bytes)})`;
      });
      box.dataset.state = 'saved';
      button.textContent = 'Update the offline copy';
      status.textContent = `✓ saved: ${result.done} of ${result.total} files (${megabytes(result.bytes)}) are kept in this browser; `
        + 'every model, the tour and the panels now work offline';
    } catch (e) {
      box.dataset.state = 'error';
      status.textContent = `could not save for offline use: ${e.message}`;
    } finally {
      button.disabled = false;
      bar.hidden = box.dataset.state !== 'saving';
    }
  });
}

setUp();
