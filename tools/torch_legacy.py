"""Reads a PyTorch checkpoint in torch's legacy (pre-1.6) serialisation without torch.

The legacy format is a sequence of pickles followed by raw storages:
magic number, protocol version, system info, the object (a state dict whose tensors refer to
storages by key through pickle persistent ids), the list of storage keys, then for each key an
int64 element count and the little-endian storage bytes. Only the classes a state dict needs are
allowed out of the pickle; anything else is refused, so a hostile file cannot run code.

    from torch_legacy import load_state_dict
    weights = load_state_dict("model.pth")   # OrderedDict of name -> numpy array
"""
import collections
import pickle
import struct

import numpy as np

MAGIC = 0x1950A86A20F9469CFC6C
PROTOCOL = 1001
DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _Storage:
    def __init__(self, kind, key):
        self.kind, self.key = kind, key


class _Tensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)


def _rebuild_tensor_v2(storage, offset, size, stride, *_rest):
    return _Tensor(storage, offset, size, stride)


class _Unpickler(pickle.Unpickler):
    def __init__(self, file):
        super().__init__(file)
        self.storages = {}

    def find_class(self, module, name):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch" and name in DTYPES:
            return name
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a state dict")

    def persistent_load(self, pid):
        tag, kind, key = pid[0], pid[1], pid[2]
        if tag != "storage" or kind not in DTYPES:
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        return self.storages.setdefault(key, _Storage(kind, key))


def load_state_dict(path):
    with open(path, "rb") as f:
        magic, protocol = pickle.load(f), pickle.load(f)
        if magic != MAGIC or protocol != PROTOCOL:
            raise ValueError(f"{path}: not a legacy torch file (magic {magic!r}, protocol {protocol!r})")
        sys_info = pickle.load(f)
        if not sys_info.get("little_endian", False):
            raise ValueError(f"{path}: big-endian checkpoints are not supported")
        unpickler = _Unpickler(f)
        obj = unpickler.load()
        keys = pickle.load(f)
        flat = {}
        for key in keys:
            (count,) = struct.unpack("<q", f.read(8))
            dtype = np.dtype(DTYPES[unpickler.storages[key].kind])
            flat[key] = np.frombuffer(f.read(count * dtype.itemsize), dtype=dtype)
        if f.read(1):
            raise ValueError(f"{path}: trailing bytes after the last storage")
    weights = collections.OrderedDict()
    for name, t in obj.items():
        data = flat[t.storage.key]
        strides = [s * data.itemsize for s in t.stride]
        weights[name] = np.lib.stride_tricks.as_strided(data[t.offset:], t.size, strides).copy()
    return weights
