"""The weights blob: every constant a kernel reads, once, in its storage type, packed in order."""

from __future__ import annotations

import numpy as np

from aloha_ir import fixedpoint as fp
from aloha_ir.errors import UnsupportedError
from backends.codegen.names import c_identifier
from backends.codegen.view import TensorView


class WeightBlob:
    """The tensors of weights.bin in order, each at the byte offset where the previous one ends
    (no padding), keyed so that a constant several actors read is stored once."""

    def __init__(self):
        self.tensors: list[TensorView] = []
        self.by_key: dict[object, TensorView] = {}
        self.offset = 0

    def add(self, key, name: str, values: np.ndarray, storage: fp.Storage) -> TensorView:
        """The tensor `key` in `storage` (once, however many actors use it)."""
        if key in self.by_key:
            return self.by_key[key]
        flat = np.ascontiguousarray(values).reshape(-1)
        if storage is not fp.FLOAT32 and flat.size:
            info = np.iinfo(np.dtype(storage.dtype))
            if flat.min() < info.min or flat.max() > info.max:
                raise UnsupportedError(f"constant {name} does not fit {storage.ctype}")
        t = TensorView(name, c_identifier(name, len(self.tensors), "w"), storage, self.offset,
                       flat.astype(storage.dtype))
        self.offset += t.nbytes
        self.tensors.append(t)
        self.by_key[key] = t
        return t
