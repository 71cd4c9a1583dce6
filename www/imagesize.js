// An image's width and height read from its header (PNG, GIF, JPEG, WebP, BMP), without decoding
// it: a 10000 x 10000 picture is refused before it takes 400 MB to decode.

/** { width, height } of the image in `bytes` (the file's start), or null for a format it does not know. */
export function imageSize(bytes) {
  const b = bytes;
  const u16 = (o, little) => (little ? b[o] | (b[o + 1] << 8) : (b[o] << 8) | b[o + 1]);
  const u32 = (o) => ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
  const ascii = (o, n) => String.fromCharCode(...b.subarray(o, o + n));
  if (b.length >= 24 && b[0] === 0x89 && ascii(1, 3) === 'PNG') return { width: u32(16), height: u32(20) };
  if (b.length >= 10 && ascii(0, 3) === 'GIF') return { width: u16(6, true), height: u16(8, true) };
  if (b.length >= 26 && ascii(0, 2) === 'BM') {
    const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    return { width: Math.abs(v.getInt32(18, true)), height: Math.abs(v.getInt32(22, true)) };
  }
  if (b.length >= 30 && ascii(0, 4) === 'RIFF' && ascii(8, 4) === 'WEBP') {
    const chunk = ascii(12, 4);
    if (chunk === 'VP8X') return { width: 1 + (b[24] | (b[25] << 8) | (b[26] << 16)), height: 1 + (b[27] | (b[28] << 8) | (b[29] << 16)) };
    if (chunk === 'VP8L') {
      const bits = b[21] | (b[22] << 8) | (b[23] << 16) | (b[24] << 24);
      return { width: 1 + (bits & 0x3fff), height: 1 + ((bits >>> 14) & 0x3fff) };
    }
    if (chunk === 'VP8 ') return { width: u16(26, true) & 0x3fff, height: u16(28, true) & 0x3fff };
    return null;
  }
  if (b.length >= 4 && b[0] === 0xff && b[1] === 0xd8) {
    // JPEG: walk the segments to the first start-of-frame marker
    let o = 2;
    while (o + 9 < b.length) {
      if (b[o] !== 0xff) return null;
      const marker = b[o + 1];
      if (marker === 0xff) { o += 1; continue; }
      const length = u16(o + 2);
      if (marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker)) return { width: u16(o + 7), height: u16(o + 5) };
      o += 2 + length;
    }
  }
  return null;
}

/** Images larger than this many pixels are refused before decoding (a 12-megapixel phone photo is well inside). */
export const IMAGE_LIMIT = 64e6;

/**
 * Decodes an image file or pasted blob into an ImageBitmap, with a readable error for what is
 * not an image, what is too big to decode (read from its header first) and what is broken.
 */
export async function decodeImage(blob) {
  const name = blob.name ? `"${blob.name}"` : 'the pasted data';
  if (!blob.type.startsWith('image/')) throw new Error(`${name} is not an image (${blob.type || 'unknown type'}); pick a PNG, JPEG, GIF or WebP`);
  // the header says how big it is; the JPEG frame header may sit after large metadata
  const size = imageSize(new Uint8Array(await blob.slice(0, 256 * 1024).arrayBuffer()));
  if (size && size.width * size.height > IMAGE_LIMIT) {
    throw new Error(`${name} is ${size.width} x ${size.height} pixels, more than blindspot decodes `
      + `(${IMAGE_LIMIT / 1e6} megapixels); shrink or crop it first`);
  }
  return createImageBitmap(blob).catch(() => {
    throw new Error(`${name} could not be read as an image (is the file broken?)`);
  });
}
