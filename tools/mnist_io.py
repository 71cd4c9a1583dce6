"""Read the MNIST IDX files fetched by tools/fetch_mnist.sh."""
import os
import struct

import numpy as np

CACHE = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".cache", "mnist")


def _read_idx(path):
    with open(path, "rb") as fh:
        data = fh.read()
    magic, n = struct.unpack(">II", data[:8])
    if magic == 2051:
        r, c = struct.unpack(">II", data[8:16])
        return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, r, c)
    if magic == 2049:
        return np.frombuffer(data, dtype=np.uint8, offset=8).copy()
    raise ValueError(f"{path}: unknown IDX magic {magic}")


def load_raw(split):
    """split = 'train' or 'test'. Returns (images uint8 [n,28,28], labels uint8 [n])."""
    prefix = "train" if split == "train" else "t10k"
    imgs = _read_idx(os.path.join(CACHE, f"{prefix}-images-idx3-ubyte"))
    labels = _read_idx(os.path.join(CACHE, f"{prefix}-labels-idx1-ubyte"))
    assert len(imgs) == len(labels)
    return imgs, labels


def load(split):
    """Pixels as float32 in [0,1], shape [n,784]; labels int64 [n]."""
    imgs, labels = load_raw(split)
    x = imgs.reshape(len(imgs), -1).astype(np.float32) / np.float32(255.0)
    return x, labels.astype(np.int64)
