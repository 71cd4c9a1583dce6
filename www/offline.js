// Offline after the first visit: registers the service worker (sw.js, at the site's root, so its
// scope is the whole site wherever it is hosted). Does nothing where there is none to register:
// file://, the single-file build, an embedded figure (?embed=1), browsers without service
// workers, insecure origins.
// <html data-offline> says how far it got: "ready" once the worker controls this page (its
// install has then cached everything a visit needs), "unavailable" or "failed: ..." otherwise.

const root = document.documentElement;

async function register() {
  const http = location.protocol === 'http:' || location.protocol === 'https:';
  // an embedded figure (?embed=1) does not install the whole site in a blog reader's browser
  const embedded = new URLSearchParams(location.search).get('embed') === '1';
  if (!http || embedded || globalThis.BLINDSPOT_INLINE || !('serviceWorker' in navigator) || !isSecureContext) {
    root.dataset.offline = 'unavailable';
    return;
  }
  try {
    await navigator.serviceWorker.register(new URL('../sw.js', import.meta.url));
    await navigator.serviceWorker.ready;
    if (!navigator.serviceWorker.controller) {
      // The first visit: the worker claims the page when it activates.
      await new Promise((resolve) => navigator.serviceWorker.addEventListener('controllerchange', resolve, { once: true }));
    }
    root.dataset.offline = 'ready';
  } catch (e) {
    root.dataset.offline = `failed: ${e?.message ?? e}`;
  }
}

register();
