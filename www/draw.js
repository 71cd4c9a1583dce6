// Canvas drawing: grey bytes to RGBA pixels, drawn at the canvas's own resolution.

/** Draws `bytes` (0..255, row-major, w x h) on `canvas`; CSS scales it up pixelated. */
export function drawGrey(canvas, bytes, w, h) {
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext('2d');
  const image = ctx.createImageData(w, h);
  for (let i = 0; i < w * h; i++) {
    const v = bytes[i];
    image.data.set([v, v, v, 255], i * 4);
  }
  ctx.putImageData(image, 0, 0);
}

/** Draws pixels in [0,1] (row-major, w x h). */
export function drawUnit(canvas, pixels, w, h) {
  drawGrey(canvas, Uint8ClampedArray.from(pixels, (v) => Math.round(v * 255)), w, h);
}

/** Draws a model input in [0,1]: one grey plane, or R, G and B planes (channels first). */
export function drawPlanes(canvas, planes, w, h) {
  const n = w * h;
  if (planes.length === n) return drawUnit(canvas, planes, w, h);
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext('2d');
  const image = ctx.createImageData(w, h);
  for (let i = 0; i < n; i++) {
    image.data[i * 4] = Math.round(planes[i] * 255);
    image.data[i * 4 + 1] = Math.round(planes[n + i] * 255);
    image.data[i * 4 + 2] = Math.round(planes[2 * n + i] * 255);
    image.data[i * 4 + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
}

/** Draws (adversarial - original) magnified `gain` times around mid-grey, as the paper's Figure 5
 * (grey or colour, as the input is). */
export function drawDifference(canvas, original, adversarial, w, h, gain = 10) {
  const difference = Float32Array.from(original, (v, i) => 128 / 255 + gain * (adversarial[i] - v));
  drawPlanes(canvas, difference.map((v) => Math.min(1, Math.max(0, v))), w, h);
}

/** A small line plot of `values` (e.g. distortion per iteration), scaled to the canvas. */
export function drawCurve(canvas, values, color = '#2f5bd3') {
  const ctx = canvas.getContext('2d');
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  if (values.length < 2) return;
  const max = Math.max(...values) || 1;
  ctx.strokeStyle = color;
  ctx.lineWidth = 2;
  ctx.beginPath();
  values.forEach((v, i) => {
    const x = (i / (values.length - 1)) * (width - 4) + 2;
    const y = height - 2 - (v / max) * (height - 4);
    if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
  });
  ctx.stroke();
}

/** The difference as a signed heatmap: red where the attack added ink, blue where it removed it. */
export function drawHeatmap(canvas, original, adversarial, w, h) {
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext('2d');
  const image = ctx.createImageData(w, h);
  const scale = Math.max(1e-6, ...original.map((v, i) => Math.abs(adversarial[i] - v)));
  for (let i = 0; i < w * h; i++) {
    const t = (adversarial[i] - original[i]) / scale;
    const fade = Math.round(255 * (1 - Math.abs(t)));
    image.data.set(t >= 0 ? [255, fade, fade, 255] : [fade, fade, 255, 255], i * 4);
  }
  ctx.putImageData(image, 0, 0);
}
