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

/**
 * A line chart with axes: `series` of { points: [{ x, y }], color, dots }, y from 0 (or below)
 * to the largest value, tick labels by `format`; `integerX` puts x ticks on whole numbers.
 */
export function drawChart(canvas, series, { xLabel = '', format = (v) => v.toFixed(2), integerX = false } = {}) {
  const ctx = canvas.getContext('2d');
  const { width, height } = canvas;
  const pad = { left: 52, right: 12, top: 10, bottom: 30 };
  const ink = getComputedStyle(canvas).color || '#333';
  ctx.clearRect(0, 0, width, height);
  ctx.font = '12px system-ui, sans-serif';
  ctx.fillStyle = ink;
  const points = series.flatMap((s) => s.points);
  if (points.length === 0) {
    ctx.globalAlpha = 0.6;
    ctx.fillText('not trained yet', pad.left, height / 2);
    ctx.globalAlpha = 1;
    return;
  }
  const xs = points.map((p) => p.x);
  const [x0, x1] = [integerX ? Math.min(0, ...xs) : Math.min(...xs), Math.max(...xs, integerX ? 1 : Math.min(...xs) + 1)];
  const y1 = Math.max(...points.map((p) => p.y)) * 1.05 || 1;
  const y0 = Math.min(0, ...points.map((p) => p.y));
  const px = (x) => pad.left + ((x - x0) / (x1 - x0 || 1)) * (width - pad.left - pad.right);
  const py = (y) => height - pad.bottom - ((y - y0) / (y1 - y0 || 1)) * (height - pad.top - pad.bottom);
  // axes and ticks
  ctx.strokeStyle = ink;
  ctx.globalAlpha = 0.35;
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(pad.left, pad.top);
  ctx.lineTo(pad.left, height - pad.bottom);
  ctx.lineTo(width - pad.right, height - pad.bottom);
  ctx.stroke();
  ctx.globalAlpha = 1;
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  for (let k = 0; k <= 4; k++) {
    const y = y0 + ((y1 - y0) * k) / 4;
    ctx.fillText(format(y), pad.left - 6, py(y));
  }
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  const step = integerX ? Math.max(1, Math.ceil((x1 - x0) / 8)) : (x1 - x0) / 4;
  for (let x = x0; x <= x1 + 1e-9; x += step) ctx.fillText(String(Math.round(x)), px(x), height - pad.bottom + 4);
  ctx.textAlign = 'right';
  ctx.fillText(xLabel, width - pad.right, height - 14);
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.fillStyle = s.color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    s.points.forEach((p, i) => (i === 0 ? ctx.moveTo(px(p.x), py(p.y)) : ctx.lineTo(px(p.x), py(p.y))));
    ctx.stroke();
    if (s.dots) {
      for (const p of s.points) {
        ctx.beginPath();
        ctx.arc(px(p.x), py(p.y), 3.5, 0, 2 * Math.PI);
        ctx.fill();
      }
    }
  }
}
