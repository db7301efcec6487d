"""Datasets: labelled arrays with their valid input range and the normalisation that produced them.

A `Dataset` holds float32 inputs `x` (N x C x H x W for images, N x F for vectors) and int64 labels `y`.
Its `normalization` records how stored values relate to the raw file (x = raw * scale + offset), so
`value_range` is the range every valid input lies in: attacks project onto it, and a model with
another interface (mnist-8 takes 0..255) gets the data rescaled by `to_range`, not re-read.

DATA specs (the CLI's `--data`): `digits` (scikit-learn's 8x8 digits, bundled, the default for tests),
`mnist:DIR`, `cifar10:DIR`, `npz:FILE`, `images:DIR`. `load(spec)` returns train/val/test `Splits`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from aloha_ir.errors import InputFileError, UsageError


@dataclass(frozen=True)
class Normalization:
    """Stored value = raw * scale + offset; `raw_range` is the range of the raw data (0..255 pixels)."""

    raw_range: tuple[float, float]
    scale: float = 1.0
    offset: float = 0.0

    @property
    def value_range(self) -> tuple[float, float]:
        lo, hi = (v * self.scale + self.offset for v in self.raw_range)
        return (min(lo, hi), max(lo, hi))

    def to_json(self) -> dict:
        return {"raw_range": list(self.raw_range), "scale": self.scale, "offset": self.offset}


@dataclass(frozen=True, eq=False)
class Dataset:
    """Inputs, labels and the facts a consumer needs about them."""

    name: str
    x: np.ndarray
    y: np.ndarray
    classes: int
    normalization: Normalization
    source: str = ""

    def __post_init__(self):
        if len(self.x) != len(self.y):
            raise InputFileError(f"{len(self.x)} inputs but {len(self.y)} labels", where=self.source
                                 or self.name)
        if self.x.dtype != np.float32:
            object.__setattr__(self, "x", self.x.astype(np.float32))
        if self.y.dtype != np.int64:
            object.__setattr__(self, "y", self.y.astype(np.int64))

    def __len__(self) -> int:
        return len(self.y)

    @property
    def value_range(self) -> tuple[float, float]:
        return self.normalization.value_range

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample (without the batch axis)."""
        return tuple(self.x.shape[1:])

    def subset(self, index, name: str | None = None) -> "Dataset":
        return replace(self, name=name or self.name, x=self.x[index], y=self.y[index])

    def head(self, n: int) -> "Dataset":
        """The first n samples (all if n <= 0 or n >= len)."""
        return self if n <= 0 or n >= len(self) else self.subset(slice(0, n))

    def to_range(self, lo: float, hi: float) -> "Dataset":
        """The same data linearly rescaled so that `value_range` becomes [lo, hi]."""
        a, b = self.value_range
        if (a, b) == (lo, hi):
            return self
        k = (hi - lo) / (b - a)
        n = self.normalization
        norm = Normalization(n.raw_range, n.scale * k, (n.offset - a) * k + lo)
        x = ((self.x - np.float32(a)) * np.float32(k) + np.float32(lo)).astype(np.float32)
        return replace(self, x=x, normalization=norm)

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        order = np.random.default_rng(seed).permutation(len(self)) if shuffle else \
            np.arange(len(self))
        for i in range(0, len(self), batch_size):
            idx = order[i:i + batch_size]
            yield self.x[idx], self.y[idx]

    def check(self) -> "Dataset":
        """Refuse data a model cannot be trained or evaluated on: NaN/Inf, values outside
        `value_range`, negative labels or labels >= classes. Returns self."""
        where = self.source or self.name
        if not np.isfinite(self.x).all():
            bad = int(np.count_nonzero(~np.isfinite(self.x)))
            raise InputFileError(f"{bad} input values are NaN or infinite", where=where,
                                 hint="clean the data before training")
        lo, hi = self.value_range
        tol = 1e-5 * max(1.0, abs(hi - lo))
        if len(self) and (self.x.min() < lo - tol or self.x.max() > hi + tol):
            raise InputFileError(f"inputs span [{self.x.min():g}, {self.x.max():g}], outside the "
                                 f"declared range [{lo:g}, {hi:g}]", where=where)
        if len(self) and (self.y.min() < 0 or self.y.max() >= self.classes):
            raise InputFileError(f"labels span [{self.y.min()}, {self.y.max()}], outside 0.."
                                 f"{self.classes - 1}", where=where)
        return self

    def check_fits(self, n_outputs: int, input_shape: tuple[int, ...] | None = None) -> None:
        """Labels must index the model's outputs and samples must have the model's input shape."""
        where = self.source or self.name
        if self.classes > n_outputs:
            raise UsageError(f"dataset '{self.name}' has {self.classes} classes but the model has "
                             f"{n_outputs} outputs", where=where,
                             hint="pick a model whose last layer matches the data")
        if input_shape is not None and tuple(input_shape) != self.input_shape:
            raise UsageError(f"dataset '{self.name}' samples are {list(self.input_shape)} but the "
                             f"model takes {list(input_shape)}", where=where)


@dataclass(frozen=True)
class Splits:
    train: Dataset
    val: Dataset
    test: Dataset

    def to_range(self, lo: float, hi: float) -> "Splits":
        return Splits(*(d.to_range(lo, hi) for d in (self.train, self.val, self.test)))


def split(ds: Dataset, fraction: float, seed: int = 0) -> tuple[Dataset, Dataset]:
    """A seeded, stratified split: (the rest, `fraction` of every class)."""
    if not 0.0 < fraction < 1.0:
        raise UsageError(f"a split fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(ds.y):
        idx = np.flatnonzero(ds.y == c)
        rng.shuffle(idx)
        held.extend(idx[:int(round(len(idx) * fraction))])
    mask = np.zeros(len(ds), dtype=bool)
    mask[np.asarray(held, dtype=np.int64)] = True
    return ds.subset(np.flatnonzero(~mask)), ds.subset(np.flatnonzero(mask))


def digits(test_fraction: float = 0.2, val_fraction: float = 0.1, seed: int = 0) -> Splits:
    """scikit-learn's 8x8 digits (1,797 images, values 0..16), scaled to [0, 1], as N x 1 x 8 x 8."""
    from sklearn.datasets import load_digits
    d = load_digits()
    norm = Normalization((0.0, 16.0), 1.0 / 16.0, 0.0)
    x = (d.images.astype(np.float32) / np.float32(16.0)).reshape(-1, 1, 8, 8)
    full = Dataset("digits", x, d.target, 10, norm, source="sklearn.datasets.load_digits")
    rest, test = split(full, test_fraction, seed)
    train, val = split(rest, val_fraction, seed + 1)
    return Splits(train.subset(slice(None), "digits-train"), val.subset(slice(None), "digits-val"),
                  test.subset(slice(None), "digits-test"))


LOADERS = {"digits": "scikit-learn's 8x8 digits (no argument)"}


def load(spec: str, *, val_fraction: float = 0.1, seed: int = 0) -> Splits:
    """A DATA spec (see the module docstring) -> checked train/val/test splits."""
    kind, _, arg = spec.partition(":")
    if kind == "digits" and not arg:
        splits = digits(val_fraction=val_fraction, seed=seed)
    else:
        raise UsageError(f"unknown dataset '{spec}'",
                         hint="DATA is " + "; ".join(f"{k}: {v}" for k, v in LOADERS.items()))
    for d in (splits.train, splits.val, splits.test):
        d.check()
    return splits
