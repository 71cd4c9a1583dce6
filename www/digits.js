// Reads the digit pack (models/data/README.md): "BSDG", version, count, rows, cols, labels, pixels.

/** The digit pack in `buffer`; a refusal names `path` (the file it came from) and what to do. */
export function parseDigitPack(buffer, path = 'the digit pack') {
  const fix = 'reload the page; if it persists, clear this site\'s offline copy (site data) and reload';
  const view = new DataView(buffer);
  const magic = String.fromCharCode(...new Uint8Array(buffer, 0, Math.min(4, buffer.byteLength)));
  if (buffer.byteLength < 20 || magic !== 'BSDG') throw new Error(`${path} is not a digit pack (no BSDG header): ${fix}`);
  const [version, count, rows, cols] = [4, 8, 12, 16].map((o) => view.getUint32(o, true));
  if (version !== 1) throw new Error(`${path}: digit pack version ${version} is not supported: ${fix}`);
  const size = rows * cols;
  if (buffer.byteLength !== 20 + count + count * size) throw new Error(`${path} is truncated: ${fix}`);
  const labels = new Uint8Array(buffer, 20, count);
  const pixels = new Uint8Array(buffer, 20 + count, count * size);
  return {
    count, rows, cols, labels,
    /** Raw bytes of digit i. */
    bytes: (i) => pixels.subarray(i * size, (i + 1) * size),
    /** Digit i as model input: value / 255 in [0,1], as float32 (what the models were trained on). */
    input: (i) => Float32Array.from(pixels.subarray(i * size, (i + 1) * size), (v) => v / 255),
  };
}
