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
