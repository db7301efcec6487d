"""Parameter tensors: kept out of the IR text, referenced from `nn.const` ops.

A constant is one of three kinds, so that printed IR stays readable and memory stays close to the raw
arrays:
- splat: one value and a shape (the ONNX zoo's ConstantOfShape weights); never materialised by
  transforms that can keep it a splat (reshape, transpose, BN folding with splat factors);
- random: a seeded normal distribution (seed, mean, std) with a shape, drawn only when a numeric step
  needs the values (the model zoo's builders: VGG16 does not cost 550 MB until it is executed);
- blob: a dense array in a `WeightStore`, referenced by key; saved as `NAME.weights.npz` beside
  `NAME.mlir`.

The store of a module lives in a side table keyed by the module object, as MLIR keeps resource blobs
outside the op tree; `weights_of(module)` finds it.
"""

from __future__ import annotations

import re
import weakref
import zipfile
from dataclasses import dataclass
from typing import Callable

import numpy as np

from aloha_ir.errors import InputFileError


@dataclass(frozen=True, eq=False)
class ConstTensor:
    """A constant value in one of the three kinds; operations keep splats splat."""

    shape: tuple[int, ...]
    splat: float | None = None
    random: tuple[int, float, float] | None = None  # (seed, mean, std)
    array: np.ndarray | None = None

    @staticmethod
    def of(array: np.ndarray) -> "ConstTensor":
        array = np.asarray(array)
        if array.dtype != np.float32:
            array = array.astype(np.float32)
        return ConstTensor(tuple(int(d) for d in array.shape), array=array)

    @staticmethod
    def full(shape, value: float) -> "ConstTensor":
        return ConstTensor(tuple(int(d) for d in shape), splat=float(value))

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def is_splat(self) -> bool:
        return self.splat is not None

    def materialize(self) -> np.ndarray:
        if self.array is not None:
            return self.array
        if self.splat is not None:
            return np.full(self.shape, self.splat, dtype=np.float32)
        assert self.random is not None
        seed, mean, std = self.random
        values = np.random.default_rng(seed).standard_normal(self.size, dtype=np.float32)
        return (values * np.float32(std) + np.float32(mean)).reshape(self.shape)

    def reshape(self, shape) -> "ConstTensor":
        shape = tuple(int(d) for d in shape)
        if self.array is not None:
            return ConstTensor(shape, array=self.array.reshape(shape))
        # splat and random keep their kind: C-order values are the same under a reshape.
        return ConstTensor(shape, splat=self.splat, random=self.random)

    def transpose(self, perm) -> "ConstTensor":
        shape = tuple(self.shape[p] for p in perm)
        if self.splat is not None:
            return ConstTensor(shape, splat=self.splat)
        return ConstTensor(shape, array=c_float32(self.materialize().transpose(perm)))

    def elementwise(self, other: "ConstTensor", fn: Callable[[np.ndarray, np.ndarray], np.ndarray]
                    ) -> "ConstTensor":
        """fn applied with numpy broadcasting; two splats give a splat, and a random tensor scaled
        or shifted by a splat stays a (lazy) random tensor."""
        shape = tuple(np.broadcast_shapes(self.shape, other.shape))
        if self.splat is not None and other.splat is not None:
            value = fn(np.float32(self.splat), np.float32(other.splat))
            return ConstTensor(shape, splat=float(value))
        rand, splat = (self, other) if other.splat is not None else (other, self)
        if rand.random is not None and splat.splat is not None and shape == rand.shape:
            seed, mean, std = rand.random
            s = splat.splat
            if fn is np.multiply:
                return ConstTensor(shape, random=(seed, mean * s, std * s))
            if fn is np.add:
                return ConstTensor(shape, random=(seed, mean + s, std))
        return ConstTensor.of(fn(self.materialize(), other.materialize()))

    def unary(self, fn: Callable[[np.ndarray], np.ndarray]) -> "ConstTensor":
        if self.splat is not None:
            return ConstTensor(self.shape, splat=float(fn(np.float32(self.splat))))
        return ConstTensor.of(fn(self.materialize()))


def c_float32(array) -> np.ndarray:
    """`array` as C-contiguous float32 with its shape kept: np.ascontiguousarray would turn a
    scalar (shape ()) into shape (1,), which then contradicts its nn.const's type."""
    return np.require(array, dtype=np.float32, requirements="C")


_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.\-/]")


class WeightStore:
    """Dense parameter arrays by key; keys are unique, stable and safe as npz member names."""

    def __init__(self, arrays: dict[str, np.ndarray] | None = None):
        self.arrays: dict[str, np.ndarray] = dict(arrays or {})

    def add(self, array: np.ndarray, hint: str = "w") -> str:
        base = _KEY_CHARS.sub("_", hint) or "w"
        key = base
        i = 1
        while key in self.arrays:
            key = f"{base}.{i}"
            i += 1
        self.arrays[key] = c_float32(array)
        return key

    def __getitem__(self, key: str) -> np.ndarray:
        try:
            return self.arrays[key]
        except KeyError:
            raise InputFileError(f"weight blob '{key}' is not in the module's weight store",
                                 hint="load the .mlir with its .weights.npz sidecar") from None

    def __contains__(self, key: str) -> bool:
        return key in self.arrays

    def __len__(self) -> int:
        return len(self.arrays)

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values())

    def save(self, path: str, keys: set[str] | None = None) -> None:
        """Write the arrays (only `keys` if given) to an npz, atomically."""
        chosen = {k: self.arrays[k] for k in sorted(keys if keys is not None else self.arrays)}
        from aloha_ir.outputs import atomic_path
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            # npz members are files: the keys may contain '/', which np.savez keeps as a path.
            np.savez(f, **chosen)

    def check(self, expected: dict[str, tuple[int, ...]], source: str) -> None:
        """Refuse a sidecar that does not hold what the IR references: each key present, float32,
        of the nn.const's shape, finite (a NaN weight would silently poison every output)."""
        for key, shape in sorted(expected.items()):
            if key not in self.arrays:
                raise InputFileError(f"weight '{key}' is missing", where=source,
                                     hint="the .weights.npz does not belong to this .mlir")
            a = self.arrays[key]
            if a.dtype != np.float32:
                raise InputFileError(f"weight '{key}' is {a.dtype}, expected float32", where=source,
                                     hint="save the arrays as float32")
            if tuple(a.shape) != tuple(shape):
                raise InputFileError(f"weight '{key}' has shape {list(a.shape)}, its nn.const says "
                                     f"{list(shape)}", where=source,
                                     hint="the .weights.npz does not belong to this .mlir")
            flat, bad = a.reshape(-1), 0
            for i in range(0, flat.size, 1 << 22):  # chunks: a small temporary next to 400 MB
                part = flat[i:i + (1 << 22)]
                bad += part.size - int(np.count_nonzero(np.isfinite(part)))
            if bad:
                raise InputFileError(f"weight '{key}' holds {bad} NaN or infinite value"
                                     f"{'s' if bad > 1 else ''}", where=source)

    @staticmethod
    def load(path: str) -> "WeightStore":
        try:
            with np.load(path, allow_pickle=False) as data:
                return WeightStore({k: data[k] for k in data.files})
        except FileNotFoundError:
            raise InputFileError("weights sidecar not found", where=path,
                                 hint="a module with blob constants needs its .weights.npz") from None
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
            raise InputFileError(f"not a readable weights file ({e})", where=path) from None


_STORES: "weakref.WeakKeyDictionary[object, WeightStore]" = weakref.WeakKeyDictionary()


def weights_of(module) -> WeightStore:
    """The weight store bound to `module` (an empty one is created and bound on first use)."""
    store = _STORES.get(module)
    if store is None:
        store = _STORES[module] = WeightStore()
    return store


def attach_weights(module, store: WeightStore) -> None:
    _STORES[module] = store


def clone_with_weights(module):
    """A copy of `module` whose weights can change without touching the original's (blobs are
    replaced, never written in place, so the arrays themselves are shared until then)."""
    copy = module.clone()
    attach_weights(copy, WeightStore(dict(weights_of(module).arrays)))
    return copy


def sidecar_path(mlir_path: str) -> str:
    root = mlir_path[:-5] if mlir_path.endswith(".mlir") else mlir_path
    return root + ".weights.npz"
