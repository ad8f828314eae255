"""Helpers for converting PyTorch checkpoints to ONNX without PyTorch: reading `torch.save` state
dicts (the legacy pickle format and the zip format) as numpy arrays, and a small graph builder on
the `onnx` helpers. Used by convert-efficientnet.py and convert-transnetv2.py.
"""
import collections
import pickle
import struct
import zipfile

import numpy as np
from onnx import helper, numpy_helper

DTYPES = {"FloatStorage": np.float32, "LongStorage": np.int64, "DoubleStorage": np.float64,
          "HalfStorage": np.float16, "IntStorage": np.int32}


class _Tensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)


def _rebuild(storage, offset, size, stride, *_):
    return _Tensor(storage, offset, size, stride)


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if name == "OrderedDict":
            return collections.OrderedDict
        if name.startswith("_rebuild_tensor"):
            return _rebuild
        if module == "torch" and name in DTYPES:
            return name
        raise pickle.UnpicklingError(f"unexpected {module}.{name} in the checkpoint")

    def persistent_load(self, pid):
        # ('storage', storage type, key, location, element count[, view metadata])
        return pid


def _materialise(state, storage_bytes):
    """Tensors of a state dict as numpy arrays, given each storage key's raw bytes."""
    out = {}
    for name, t in state.items():
        dtype = np.dtype(DTYPES[t.storage[1]])
        flat = np.frombuffer(storage_bytes(t.storage[2], dtype), dtype=dtype)
        strides = tuple(s * dtype.itemsize for s in t.stride)
        out[name] = np.lib.stride_tricks.as_strided(flat[t.offset:], shape=t.size, strides=strides).copy()
    return out


def load_checkpoint(path):
    """A state dict saved by torch.save (zip or legacy format), as numpy arrays."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            pkl = next(n for n in names if n.endswith("/data.pkl"))
            root = pkl[: -len("data.pkl")]
            with z.open(pkl) as f:
                state = _Unpickler(f).load()
            return _materialise(state, lambda key, _dtype: z.read(f"{root}data/{key}"))
    with open(path, "rb") as f:
        for _ in range(3):  # magic number, protocol version, system info
            _Unpickler(f).load()
        state = _Unpickler(f).load()
        keys = _Unpickler(f).load()
        types = {t.storage[2]: t.storage[1] for t in state.values()}
        storages = {}
        for key in keys:
            (count,) = struct.unpack("<q", f.read(8))
            storages[key] = f.read(count * np.dtype(DTYPES[types[key]]).itemsize)
    return _materialise(state, lambda key, _dtype: storages[key])


class Graph:
    """Nodes and initialisers of an ONNX graph under construction, with unique value names."""

    def __init__(self, weights):
        self.w, self.nodes, self.inits, self.n = weights, [], [], 0

    def name(self, base):
        self.n += 1
        return f"{base}_{self.n}"

    def const(self, base, array, dtype=np.float32):
        n = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(array).astype(dtype), n))
        return n

    def op(self, op_type, inputs, **attrs):
        """Adds one node with a single output and returns the output's name."""
        y = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [y], **attrs))
        return y

    def ops(self, op_type, inputs, count, **attrs):
        """Adds one node with `count` outputs and returns their names."""
        base = self.name(op_type.lower())
        ys = [f"{base}_{i}" for i in range(count)]
        self.nodes.append(helper.make_node(op_type, inputs, ys, **attrs))
        return ys
