// The paper's Figure 5 on natural images: an ImageNet classifier fetched only when picked (with
// a download bar, kept in the Cache API for the next visit), sample photos and the user's own
// (upload, paste, drop, camera; resized and centre-cropped to the model's input, all local), a
// searchable picker over the 1,000 classes, and the attack: original | difference x10 |
// adversarial with top-5 bars for both. It runs on the page's worker pool, beside the digit lab.
// A colour classifier the person drops on the page (any input size) opens here too, with an input
// panel: layout, channel order, value range, mean/std and class names, declared, not guessed.
import { assetUrl, embedded, fetchBytes, fetchJson, inlined } from './assets.js';
import { panelLab } from './client.js';
import { drawCurve, drawDifference, drawPlanes } from './draw.js';
import { decodeImage } from './imagesize.js';

const $ = (id) => document.getElementById(id);
const CACHE = 'blindspot/models'; // not 'blindspot-…': sw.js deletes those when it updates
const OSTRICH = 9; // the paper's target in Figure 5

const photos = {
  model: null, shipped: null, labels: [], imagenet: [], list: [], lab: null, loading: null,
  pixels: null, original: null, result: null, running: false, name: '',
};

// the model's input planes [1, 3, height, width]
const height = () => photos.model.input.shape[2];
const width = () => photos.model.input.shape[3];
const key = () => photos.model.id;
const percent = (p) => (p < 0.001 ? '<0.1%' : `${(p * 100).toFixed(1)}%`);

function status(text) {
  $('photos-status').textContent = text;
}

/** The model file's URL, versioned by its hash so the cache never serves a stale model. */
function modelUrl(model) {
  return `${assetUrl(`models/${model.file}`)}?v=${model.sha256.slice(0, 16)}`;
}

async function openCache() {
  if (inlined || !globalThis.caches) return null;
  return caches.open(CACHE).catch(() => null); // e.g. storage blocked: download every visit
}

/**
 * The model's bytes: from the cache when an earlier visit kept them, else downloaded with
 * `onProgress(fraction)` and kept (older versions of the same file are dropped).
 */
async function download(model, onProgress) {
  const url = modelUrl(model);
  const cache = await openCache();
  const hit = await cache?.match(url);
  if (hit) return { bytes: await hit.arrayBuffer(), cached: true };
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${model.file}: ${response.status} ${response.statusText || ''}: this site is missing the file; reload, or open the hosted site`);
  // the manifest's size, not Content-Length: a server that compresses sends fewer bytes
  const reader = response.body.getReader();
  const bytes = new Uint8Array(model.bytes);
  let received = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (received + value.length > bytes.length) throw new Error(`${model.file} is larger than the ${model.bytes} bytes expected`);
    bytes.set(value, received);
    received += value.length;
    onProgress(received / model.bytes);
  }
  if (received !== model.bytes) throw new Error(`${model.file}: the download stopped at ${received} of ${model.bytes} bytes`);
  if (globalThis.crypto?.subtle) {
    const hash = [...new Uint8Array(await crypto.subtle.digest('SHA-256', bytes))].map((b) => b.toString(16).padStart(2, '0')).join('');
    if (hash !== model.sha256) throw new Error(`${model.file} arrived damaged (its SHA-256 differs); try again`);
  }
  if (cache) {
    for (const old of await cache.keys()) if (old.url.split('?')[0] === url.split('?')[0] && old.url !== url) await cache.delete(old);
    await cache.put(url, new Response(bytes, { headers: { 'content-type': 'application/octet-stream' } })).catch(() => {});
  }
  return { bytes: bytes.buffer, cached: false };
}

/** Fetches (or takes from the cache) and loads the shipped model, then shows the photos. */
function loadModel() {
  photos.loading ??= (async () => {
    const model = photos.shipped;
    const bar = $('photos-download');
    $('photos-load').disabled = true;
    bar.hidden = false;
    bar.value = 0;
    status(`downloading ${model.name} (${(model.bytes / 1e6).toFixed(1)} MB)…`);
    const started = performance.now();
    const { bytes, cached } = await download(model, (f) => {
      bar.value = f;
      status(`downloading ${model.name}: ${(f * model.bytes / 1e6).toFixed(1)} of ${(model.bytes / 1e6).toFixed(1)} MB`);
    });
    bar.value = 1;
    status(cached ? 'loading the model from this browser\'s cache…' : 'loading the model…');
    await loadPhotoList();
    photos.lab ??= panelLab();
    photos.lab.files.set(model.id, Promise.resolve(bytes)); // ensure() loads these, not a second fetch
    if (photos.model !== photos.shipped) return; // a dropped model took the section meanwhile
    photos.labels = photos.imagenet;
    await reload();
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    status(`${model.name} ready (${cached ? 'from the cache' : 'downloaded'}, ${seconds} s)`);
    $('photos-section').dataset.cached = String(cached);
    $('photos-load').hidden = true;
    bar.hidden = true;
    $('photos-body').hidden = false;
    fillClasses();
    showGallery();
  })().catch((e) => {
    photos.loading = null;
    $('photos-load').disabled = false;
    $('photos-download').hidden = true;
    status(`${photos.shipped.name} could not be loaded: ${e.message}`);
    $('photos-section').dataset.error = e.message;
    throw e;
  });
  return photos.loading;
}

/** The sample photos and ImageNet's class names (the photos' labels are ImageNet classes). */
async function loadPhotoList() {
  if (photos.list.length) return;
  const shipped = photos.shipped;
  const [labels, list] = await Promise.all([fetchJson(`models/${shipped.labels}`), fetchJson(`models/${shipped.photos}`)]);
  photos.imagenet = labels.names;
  photos.list = list.photos;
}

/** Loads the model into the pool (once: a cancel keeps it loaded). */
function reload() {
  return photos.lab.ensure(photos.model);
}

/** The searchable class picker: a datalist of "index: name" over the 1,000 classes. */
function fillClasses() {
  const n = photos.labels.length;
  $('photo-classes').replaceChildren(...photos.labels.map((name, i) => new Option(`${i}: ${name}`)));
  // called when a model is put in place: the paper's ostrich for ImageNet's 1,000 classes, else class 1
  const k = n === 1000 ? OSTRICH : Math.min(1, n - 1);
  $('photo-target').value = `${k}: ${photos.labels[k]}`;
  $('photo-target-hint').textContent = `any of the model's ${n.toLocaleString('en')} classes: type part of its name`;
  $('photo-size').textContent = `${width()}×${height()}`;
}

/** The class the picker names ("9: ostrich", "9" or "ostrich"), or null with a message. */
function chosenTarget() {
  const text = $('photo-target').value.trim();
  const number = /^(\d+)\s*(:|$)/.exec(text);
  const index = number ? Number(number[1]) : photos.labels.findIndex((n) => n.toLowerCase() === text.toLowerCase());
  return index >= 0 && index < photos.labels.length ? index : null;
}

function showGallery() {
  const buttons = photos.list.map((p, i) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'photo-thumb';
    const label = p.label === null ? 'no ImageNet label' : photos.imagenet[p.label];
    b.setAttribute('aria-label', `photo ${i + 1}: ${label}`);
    b.title = `${label} (${p.source})`;
    b.dataset.file = p.file;
    const img = document.createElement('img');
    img.src = assetUrl(`models/data/photos/${p.file}`);
    img.alt = '';
    img.loading = 'lazy';
    img.width = img.height = 64;
    b.append(img);
    b.addEventListener('click', () => pickPhoto(p));
    return b;
  });
  $('photo-gallery').replaceChildren(...buttons);
  const wanted = new URLSearchParams(location.search).get('photo');
  pickPhoto(photos.list.find((p) => p.file === wanted) ?? photos.list.find((p) => p.file === 'imagenet_16_251.jpg') ?? photos.list[0]);
}

async function pickPhoto(photo) {
  for (const b of $('photo-gallery').children) b.setAttribute('aria-pressed', String(b.dataset.file === photo.file));
  $('photo-error').textContent = '';
  try {
    const bitmap = await createImageBitmap(new Blob([await fetchBytes(`models/data/photos/${photo.file}`)]));
    photos.name = photo.file;
    await usePicture(bitmap, bitmap.width, bitmap.height, photo.label === null ? 'a sample photo' : `a sample photo of ${photos.imagenet[photo.label]}`);
    bitmap.close();
  } catch (e) {
    $('photo-error').textContent = `The sample photo ${photo.file} could not be used: ${e.message}`;
  }
}

/**
 * Resizes the picture to cover the model's input (smoothed) and crops its centre, then
 * classifies it. `source` is anything a canvas draws: a bitmap or a video frame.
 */
async function usePicture(source, sourceWidth, sourceHeight, what) {
  const model = photos.model;
  const [w, h] = [width(), height()];
  const canvas = document.createElement('canvas');
  Object.assign(canvas, { width: w, height: h });
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  const scale = Math.max(w / sourceWidth, h / sourceHeight);
  ctx.imageSmoothingEnabled = scale !== 1;
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(source, (w - sourceWidth * scale) / 2, (h - sourceHeight * scale) / 2, sourceWidth * scale, sourceHeight * scale);
  const rgba = new Uint8Array(ctx.getImageData(0, 0, w, h).data.buffer);
  const pixels = Float32Array.from(await photos.lab.call('planes', { rgba, width: w, height: h, channels: 3 }));
  // drawn at the size of a model replaced meanwhile (a dropped one): not this model's picture
  if (model?.id !== photos.model?.id) return;
  photos.pixels = pixels;
  photos.result = null;
  $('photo-result').hidden = true;
  drawPlanes($('photo-original'), photos.pixels, w, h);
  $('photo-what').textContent = what;
  await classifyOriginal();
}

async function classifyOriginal() {
  // an answer from a model (or settings) replaced meanwhile is dropped, never shown for the new one
  const [model, pixels] = [photos.model, photos.pixels];
  await reload();
  if (model !== photos.model || pixels.length !== 3 * width() * height()) return;
  const c = await photos.lab.call('classify', { key: model.id, pixels });
  if (model !== photos.model) return;
  photos.original = c;
  $('photo-orig-label').textContent = photos.labels[c.label];
  renderTop5($('photo-orig-bars'), c.probabilities);
  $('photos-section').dataset.label = String(c.label);
  $('photos-section').dataset.top5 = top5(c.probabilities).join(',');
  $('photos-section').dataset.labelFrom = model.preprocessing ? `${model.id}?${model.preprocessing}` : model.id;
}

function top5(probabilities) {
  return [...probabilities.keys()].sort((a, b) => probabilities[b] - probabilities[a]).slice(0, 5);
}

function renderTop5(list, probabilities, target = null) {
  list.replaceChildren(...top5(probabilities).map((i, rank) => {
    const li = document.createElement('li');
    li.className = (rank === 0 ? 'top ' : '') + (i === target ? 'target' : '');
    li.innerHTML = '<span class="name"></span><span class="track"><span class="fill"></span></span><span class="value"></span>';
    li.querySelector('.name').textContent = photos.labels[i];
    li.querySelector('.fill').style.width = `${(probabilities[i] * 100).toFixed(2)}%`;
    li.querySelector('.value').textContent = percent(probabilities[i]);
    li.title = `${i}: ${photos.labels[i]}, ${(probabilities[i] * 100).toFixed(4)}%`;
    return li;
  }));
}

/** Opens the user's photo (picked, pasted or dropped). */
async function openPhoto(blob) {
  if (!blob) return;
  try {
    if (!photos.model?.local) await loadModel();
    const bitmap = await decodeImage(blob);
    photos.name = blob.name || 'pasted';
    await usePicture(bitmap, bitmap.width, bitmap.height, blob.name ? `your photo "${blob.name}"` : 'your pasted image');
    bitmap.close();
    $('photo-error').textContent = '';
  } catch (e) {
    $('photo-error').textContent = `That image could not be used: ${e.message}`;
  }
}

/** The camera: a live preview, and a button that takes the frame. */
async function openCamera() {
  $('photo-error').textContent = '';
  if (!navigator.mediaDevices?.getUserMedia) {
    $('photo-error').textContent = 'This browser gives no camera to the page here (it needs https or localhost); use "Choose a photo" instead, which on a phone can take one.';
    return;
  }
  try {
    if (!photos.model?.local) await loadModel();
    const stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' }, audio: false });
    const video = $('camera-video');
    video.srcObject = stream;
    await video.play();
    $('camera-box').hidden = false;
    $('camera-snap').focus();
  } catch (e) {
    $('photo-error').textContent = `The camera could not be opened: ${e.message}`;
  }
}

function closeCamera() {
  const video = $('camera-video');
  for (const track of video.srcObject?.getTracks() ?? []) track.stop();
  video.srcObject = null;
  $('camera-box').hidden = true;
}

async function snap() {
  const video = $('camera-video');
  if (!video.videoWidth || !video.videoHeight) {
    $('photo-error').textContent = 'The camera has not sent a picture yet: wait a moment and snap again';
    return;
  }
  photos.name = 'camera';
  try {
    await usePicture(video, video.videoWidth, video.videoHeight, 'your camera\'s picture');
    $('photo-error').textContent = '';
  } catch (e) {
    $('photo-error').textContent = `The camera's picture could not be used: ${e.message}`;
  } finally {
    closeCamera();
  }
}

async function runAttack() {
  if (photos.running || !photos.pixels) return;
  const untargeted = $('photo-untargeted').checked;
  const target = untargeted ? null : chosenTarget();
  if (!untargeted && target === null) {
    $('photo-error').textContent = `"${$('photo-target').value}" is not one of the ${photos.labels.length.toLocaleString('en')} classes: type part of a name and pick from the list`;
    $('photo-target').focus();
    return;
  }
  $('photo-error').textContent = '';
  const method = $('photo-method').value;
  const [w, h] = [width(), height()];
  photos.running = true;
  $('photo-attack').disabled = true;
  $('photo-cancel').hidden = false;
  const section = $('photos-section');
  delete section.dataset.distortion;
  const started = performance.now();
  photos.firstProgress = null;
  const curve = [];
  let last = null;
  const line = () => {
    const t = ((performance.now() - started) / 1000).toFixed(1);
    $('photo-attack-status').textContent = last
      ? `${t} s · c = ${last.c.toPrecision(3)} · iteration ${last.iteration} · loss ${last.loss.toPrecision(4)} · distortion ${last.distortion.toFixed(5)}`
      : `${t} s · computing the first gradient (${w}×${h}×3 inputs${w * h >= 150e3 ? ': about a third of a second each' : ''})…`;
  };
  line();
  const ticker = setInterval(line, 100);
  try {
    await reload();
    const pixels = photos.pixels;
    const result = method === 'lbfgs'
      ? await photos.lab.call('attack', { key: key(), pixels, target, maxIterations: int('photo-iterations'), cSteps: int('photo-c-steps') }, { onProgress: (p) => {
        last = p;
        photos.firstProgress ??= (performance.now() - started) / 1000;
        curve.push(p.distortion);
        drawCurve($('photo-curve'), curve);
        line();
      } })
      : await photos.lab.call('baseline', { key: key(), pixels, target, epsilon: Number($('photo-epsilon').value), steps: method === 'pgd' ? int('photo-pgd-steps') : 0 });
    photos.result = result;
    drawPlanes($('photo-adv'), result.adversarial, w, h);
    drawDifference($('photo-diff'), photos.pixels, result.adversarial, w, h, 10);
    $('photo-adv-label').textContent = photos.labels[result.label];
    renderTop5($('photo-adv-bars'), result.probabilities, target);
    const seconds = (performance.now() - started) / 1000;
    const goal = target === null ? 'any other class' : `"${photos.labels[target]}"`;
    $('photo-numbers').innerHTML = '';
    const rows = [
      ['result', result.success ? `reached ${goal}` : `did not reach ${goal}`],
      ['distortion', result.distortion.toFixed(5)], ['L2', result.l2.toFixed(3)], ['L-infinity', result.linf.toFixed(4)],
      ['iterations', String(result.iterations)], ['gradients', String(result.gradientEvaluations)],
      ['time', `${seconds.toFixed(1)} s`], ...(result.c ? [['c', result.c.toPrecision(3)]] : []),
    ];
    for (const [k, v] of rows) $('photo-numbers').append(Object.assign(document.createElement('dt'), { textContent: k }), Object.assign(document.createElement('dd'), { textContent: v }));
    $('photo-result').hidden = false;
    Object.assign(section.dataset, {
      advLabel: String(result.label), success: String(result.success), distortion: String(result.distortion),
      linf: String(result.linf), seconds: seconds.toFixed(2), firstProgress: photos.firstProgress === null ? '' : photos.firstProgress.toFixed(2),
    });
    $('photo-attack-status').textContent = `done in ${seconds.toFixed(1)} s`;
  } catch (e) {
    $('photo-attack-status').textContent = e.message === 'cancelled' ? 'cancelled' : `the attack failed: ${e.message}`;
  } finally {
    clearInterval(ticker);
    photos.running = false;
    $('photo-attack').disabled = false;
    $('photo-cancel').hidden = true;
  }
}

const int = (id) => Math.max(Number($(id).min || 0), Math.floor(Number($(id).value) || 0));

// ---- a colour classifier the person dropped: its input panel ----

const PRE_KEYS = ['layout', 'channels', 'range', 'mean', 'std'];

/** Class names for `classes` outputs: ImageNet's for 1,000, digits for 10, else "class k". */
function defaultLabels(classes) {
  if (classes === 1000 && photos.imagenet.length === 1000) return photos.imagenet;
  if (classes === 10) return [...Array(10).keys()].map(String);
  return [...Array(classes).keys()].map((k) => `class ${k}`);
}

/** A labels file: one name per line (.txt), or a JSON list, {"names": [...]} or {"0": name, ...}. */
async function readLabels(file) {
  const text = await file.text();
  if (/\.json$/i.test(file.name) || /^\s*[[{]/.test(text)) {
    const json = JSON.parse(text);
    const names = Array.isArray(json) ? json : (json.names ?? json.labels ?? Object.values(json));
    if (!Array.isArray(names)) throw new Error(`${file.name} holds no list of names: give a JSON list, or one name per line`);
    return names.map(String);
  }
  return text.split(/\r?\n/).map((line) => line.trim()).filter(Boolean);
}

/** The settings as a map: the file's suggestion, then the permalink's (which win). */
function settingsFrom(query) {
  const settings = Object.fromEntries(query.split('&').filter(Boolean).map((kv) => kv.split('=')));
  const url = new URLSearchParams(location.search);
  for (const key of PRE_KEYS) if (url.has(key)) settings[key] = url.get(key);
  return settings;
}

function showSettings(settings) {
  $('pre-layout').value = settings.layout === 'nhwc' ? 'nhwc' : 'nchw';
  $('pre-channels').value = settings.channels === 'bgr' ? 'bgr' : 'rgb';
  $('pre-range').value = ['0-1', '0-255', '-1-1', 'imagenet'].includes(settings.range) ? settings.range : '0-1';
  $('pre-mean').value = settings.mean ?? '0';
  $('pre-std').value = settings.std ?? '1';
  syncRange();
}

function syncRange() {
  const imagenet = $('pre-range').value === 'imagenet';
  $('pre-mean').disabled = $('pre-std').disabled = imagenet;
  if (imagenet) {
    $('pre-mean').value = '0.485,0.456,0.406';
    $('pre-std').value = '0.229,0.224,0.225';
  }
}

/** The panel as src/preprocess.rs's query, and the same settings in the permalink. */
function settingsQuery() {
  const settings = { layout: $('pre-layout').value, channels: $('pre-channels').value, range: $('pre-range').value };
  if (settings.range !== 'imagenet') {
    settings.mean = $('pre-mean').value.replace(/\s+/g, '') || '0';
    settings.std = $('pre-std').value.replace(/\s+/g, '') || '1';
  }
  const url = new URL(location.href);
  for (const key of PRE_KEYS) {
    if (settings[key] === undefined) url.searchParams.delete(key); else url.searchParams.set(key, settings[key]);
  }
  history.replaceState(history.state, '', url);
  return Object.entries(settings).map(([k, v]) => `${k}=${v}`).join('&');
}

/** A colour classifier dropped on the page (app.js's 'blindspot:imagemodel'): shown here. */
async function openUserModel({ name, bytes, suggestion }) {
  if (photos.running) photos.lab.cancel();
  photos.user = { name, bytes, suggestion, labels: null };
  $('pre-labels').value = '';
  showSettings(settingsFrom(suggestion.query));
  $('photo-input').hidden = false;
  $('photo-input-what').textContent = `${name} declares an input of [${suggestion.shape.map((d) => d || '?').join(', ')}]: `
    + 'check how it wants its pixels, then Apply. The defaults come from that shape and the file\'s metadata.';
  $('photos-section').scrollIntoView({ block: 'start' });
  await applySettings();
}

async function applySettings() {
  const user = photos.user;
  if (!user) return;
  if (photos.running) photos.lab.cancel();
  // a new identity: an answer still coming from the current model is dropped (classifyOriginal)
  if (photos.model) photos.model = { ...photos.model };
  const query = settingsQuery();
  const section = $('photos-section');
  $('pre-error').textContent = '';
  delete section.dataset.userModel;
  status(`loading ${user.name}…`);
  // one worker key per file and settings: an answer still coming from the previous settings
  // can never be computed by, or shown for, these
  const id = `local:${user.name}?${query}`;
  const previous = photos.model?.local && photos.model.id !== id ? photos.model.id : null;
  photos.lab ??= panelLab();
  photos.lab.loaded.delete(id);
  photos.lab.files.set(id, Promise.resolve(user.bytes)); // ensure() loads these again after a cancel
  try {
    const started = performance.now();
    const info = await photos.lab.load(id, user.bytes.slice(0), undefined, query);
    if (info.inputShape.length !== 4 || info.inputShape[1] !== 3) {
      throw new Error(`its input is [${info.inputShape.join(', ')}] with these settings; this section takes colour images: `
        + 'set the layout so that the channel axis has 3, or drop a grey 28x28 classifier in the digit lab above');
    }
    const file = $('pre-labels').files[0];
    const named = file ? await readLabels(file) : null;
    if (named && named.length !== info.classes) {
      throw new Error(`${file.name} names ${named.length} classes; the model has ${info.classes}: give one name per class, or no labels file`);
    }
    if (!inlined && photos.shipped) await loadPhotoList().catch(() => {});
    photos.model = { id, name: user.name, local: true, preprocessing: query, input: { shape: info.inputShape } };
    if (previous) photos.lab.unload(previous).catch(() => {});
    photos.labels = named ?? defaultLabels(info.classes);
    photos.original = null;
    photos.result = null;
    $('photos-load').hidden = true;
    $('photos-download').hidden = true;
    $('photos-card').hidden = true;
    $('photos-body').hidden = false;
    fillClasses();
    const ms = Math.round(performance.now() - started);
    status(`${user.name} ready · input [${info.inputShape.join(', ')}] RGB pixels · ${query.replaceAll('&', ', ')} · `
      + `output: ${info.output} · ${info.classes} classes · loaded in ${ms} ms`);
    Object.assign(section.dataset, { userModel: user.name, preprocessing: query, classes: String(info.classes) });
    if (photos.list.length) showGallery();
    else $('photo-gallery').replaceChildren();
    if (photos.pixels && photos.pixels.length === 3 * width() * height()) await classifyOriginal();
  } catch (e) {
    $('pre-error').textContent = `${user.name} could not be used with these settings: ${e.message}`;
    status(`${user.name} could not be loaded`);
    section.dataset.error = e.message;
  }
}

/** Back to the shipped ImageNet model. */
async function useShipped() {
  if (photos.running) photos.lab.cancel();
  photos.user = null;
  photos.model = photos.shipped;
  $('photo-input').hidden = true;
  $('photos-card').hidden = false;
  const url = new URL(location.href);
  for (const key of PRE_KEYS) url.searchParams.delete(key);
  history.replaceState(history.state, '', url);
  delete $('photos-section').dataset.userModel;
  if (!photos.loading) {
    $('photos-body').hidden = true;
    $('photos-load').hidden = false;
    status('');
    return;
  }
  try {
    await photos.loading;
    photos.labels = photos.imagenet;
    await reload();
  } catch (e) {
    status(`${photos.shipped.name} could not be loaded: ${e.message}`);
    return;
  }
  $('photos-load').hidden = true;
  $('photos-body').hidden = false;
  fillClasses();
  status(`${photos.shipped.name} ready`);
  showGallery();
}

/** The photo inputs and the attack's controls (every build: a dropped model uses them too). */
function addPhotoInputs(section) {
  $('photo-file').addEventListener('change', (e) => openPhoto(e.target.files[0]));
  $('photo-camera').addEventListener('click', openCamera);
  $('camera-snap').addEventListener('click', snap);
  $('camera-close').addEventListener('click', closeCamera);
  $('photo-attack').addEventListener('click', runAttack);
  $('photo-cancel').addEventListener('click', () => photos.lab.cancel());
  $('photo-untargeted').addEventListener('change', (e) => { $('photo-target').disabled = e.target.checked; });
  $('photo-target').addEventListener('keydown', (e) => { if (e.key === 'Enter') runAttack(); });
  // a photo pasted or dropped on this section is a photo, not a digit for the lab above
  section.addEventListener('paste', (e) => {
    const item = [...(e.clipboardData?.items ?? [])].find((i) => i.kind === 'file');
    if (!item || e.target.closest?.('input[type=search], input[type=text]')) return;
    e.preventDefault();
    e.stopPropagation();
    openPhoto(item.getAsFile());
  });
  section.addEventListener('dragover', (e) => { e.preventDefault(); e.stopPropagation(); });
  section.addEventListener('drop', (e) => {
    const file = e.dataTransfer?.files?.[0];
    if (file && !file.type.startsWith('image/')) return; // a model: the page's drop handler opens it
    e.preventDefault();
    e.stopPropagation();
    openPhoto(file);
  });
}

async function main() {
  const section = $('photos-section');
  if (!section || embedded) return;
  // a dropped colour model works here in every build, the single file included
  window.addEventListener('blindspot:imagemodel', (e) => openUserModel(e.detail));
  $('photo-input').addEventListener('submit', (e) => { e.preventDefault(); applySettings(); });
  $('pre-range').addEventListener('change', syncRange);
  $('pre-shipped').addEventListener('click', () => useShipped());
  addPhotoInputs(section);
  if (inlined) {
    $('pre-shipped').hidden = true;
    status('The ImageNet model (9.3 MB) is not part of the single-file build: open the hosted site for it.');
    $('photos-load').disabled = true;
    return;
  }
  try {
    photos.shipped = (await fetchJson('models/imagenet.json')).models[0];
    photos.model = photos.shipped;
  } catch (e) {
    status(`The ImageNet models could not be listed: ${e.message}`);
    $('photos-load').disabled = true;
    return;
  }
  const { attack } = photos.model;
  $('photos-load').textContent = `Load ${photos.model.name} (${(photos.model.bytes / 1e6).toFixed(1)} MB)`;
  $('photos-card').href = assetUrl(`models/${photos.model.card}`);
  $('photo-iterations').value = attack.max_iterations;
  $('photo-c-steps').value = attack.c_steps;
  $('photo-epsilon').value = attack.epsilon;
  $('photo-pgd-steps').value = attack.pgd_steps;
  $('photos-load').addEventListener('click', () => loadModel().catch(() => {}));
  // asked for by the URL: load it now; kept from an earlier visit: say so on the button
  if (new URLSearchParams(location.search).has('photo')) loadModel().catch(() => {});
  else if (await (await openCache())?.match(modelUrl(photos.model))) {
    $('photos-load').textContent = `Load ${photos.model.name} (kept in this browser)`;
  }
}

main();
