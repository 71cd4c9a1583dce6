#!/usr/bin/env python3
"""Write the MNIST digits as blindspot digit packs (the static files the page loads).

    python3 tools/pack_digits.py            # after tools/fetch_mnist.sh

Writes models/data/mnist-test-10k.bin (all 10,000 test digits, original order),
models/data/mnist-test-1k.bin (the first 1,000 of them) and models/data/mnist-train-60k.bin.gz
(all 60,000 training digits, original order, the same format gzipped: mtime 0, level 9, so
the bytes are the same on every run).

Format (all integers little-endian):
    bytes 0-3   ASCII magic "BSDG"
    u32         version = 1
    u32         count
    u32         rows (28)
    u32         cols (28)
    count bytes             labels (0-9)
    count*rows*cols bytes   pixels, uint8, row-major per image, images in order
"""
import gzip
import io
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mnist_io import load_raw  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "models", "data")
MAGIC = b"BSDG"
VERSION = 1


def pack(images, labels):
    n, rows, cols = images.shape
    head = MAGIC + struct.pack("<IIII", VERSION, n, rows, cols)
    return head + labels.astype(np.uint8).tobytes() + images.astype(np.uint8).tobytes()


def unpack(data):
    if data[:4] != MAGIC:
        raise ValueError("bad magic")
    version, n, rows, cols = struct.unpack("<IIII", data[4:20])
    if version != VERSION or len(data) != 20 + n + n * rows * cols:
        raise ValueError("bad version or size")
    labels = np.frombuffer(data, np.uint8, n, 20)
    images = np.frombuffer(data, np.uint8, n * rows * cols, 20 + n).reshape(n, rows, cols)
    return images, labels


def main():
    images, labels = load_raw("test")
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    os.makedirs(OUT, exist_ok=True)
    for name, k in (("mnist-test-10k.bin", 10000), ("mnist-test-1k.bin", 1000)):
        data = pack(images[:k], labels[:k])
        path = os.path.join(OUT, name)
        with open(path, "wb") as fh:
            fh.write(data)
        im2, lb2 = unpack(open(path, "rb").read())
        assert np.array_equal(im2, images[:k]) and np.array_equal(lb2, labels[:k])
        print(f"wrote {os.path.relpath(path, ROOT)}: {k} digits, {len(data)} bytes, "
              f"label counts {np.bincount(lb2, minlength=10).tolist()}")
    images, labels = load_raw("train")
    assert images.shape == (60000, 28, 28) and labels.shape == (60000,)
    data = pack(images, labels)
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9, mtime=0) as gz:
        gz.write(data)
    path = os.path.join(OUT, "mnist-train-60k.bin.gz")
    with open(path, "wb") as fh:
        fh.write(buffer.getvalue())
    im2, lb2 = unpack(gzip.decompress(open(path, "rb").read()))
    assert np.array_equal(im2, images) and np.array_equal(lb2, labels)
    print(f"wrote {os.path.relpath(path, ROOT)}: 60000 digits, {len(buffer.getvalue())} bytes "
          f"({len(data)} unpacked), label counts {np.bincount(lb2, minlength=10).tolist()}")


if __name__ == "__main__":
    main()
