"""Datasets: labelled arrays with their valid input range and the normalisation that produced them.

A `Dataset` holds float32 inputs `x` (N x C x H x W for images, N x F for vectors) and int64 labels `y`.
Its `normalization` records how stored values relate to the raw file (x = raw * scale + offset), so
`value_range` is the range every valid input lies in: attacks project onto it, and a model with
another interface (mnist-8 takes 0..255) gets the data rescaled by `to_range`, not re-read.

DATA specs (the CLI's `--data`): `digits` (scikit-learn's 8x8 digits, bundled, the default for tests),
`mnist:DIR`, `cifar10:DIR`, `npz:FILE`, `images:DIR`. `load(spec)` returns train/val/test `Splits`.
Files are untrusted: a truncated file yields its complete records with a `TruncatedDataWarning`,
anything malformed an `InputFileError`, and pickles are decoded without running code.
"""

from __future__ import annotations

import math
import os
import pickle
import struct
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

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
    # tabular data: each sample's group per sensitive attribute (fairness objectives read it)
    sensitive: dict[str, np.ndarray] | None = None

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
        groups = None if self.sensitive is None else {k: v[index] for k, v in
                                                      self.sensitive.items()}
        return replace(self, name=name or self.name, x=self.x[index], y=self.y[index],
                       sensitive=groups)

    def head(self, n: int) -> "Dataset":
        """The first n samples (all if n <= 0 or n >= len)."""
        return self if n <= 0 or n >= len(self) else self.subset(slice(0, n))

    def to_range(self, lo: float, hi: float) -> "Dataset":
        """The same data linearly rescaled so that `value_range` becomes [lo, hi]."""
        a, b = self.value_range
        if (a, b) == (lo, hi):
            return self
        if not a < b:
            raise InputFileError(f"the data's value range [{a:g}, {b:g}] is empty, so it cannot "
                                 f"be rescaled to [{lo:g}, {hi:g}]", where=self.source or self.name)
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


def _splits(name: str, data: Dataset, val_fraction: float, seed: int, *,
            test: Dataset | None = None, test_fraction: float = 0.2) -> Splits:
    """Named train/val/test splits. A source without its own test set has one split off (seeded,
    stratified); val always comes out of what is left for training, so test stays untouched."""
    if test is None:
        data, test = split(data, test_fraction, seed)
    train, val = split(data, val_fraction, seed + 1)
    return Splits(replace(train, name=f"{name}-train"), replace(val, name=f"{name}-val"),
                  replace(test, name=f"{name}-test"))


def digits(test_fraction: float = 0.2, val_fraction: float = 0.1, seed: int = 0) -> Splits:
    """scikit-learn's 8x8 digits (1,797 images, values 0..16), scaled to [0, 1], as N x 1 x 8 x 8."""
    from sklearn.datasets import load_digits
    d = load_digits()
    norm = Normalization((0.0, 16.0), 1.0 / 16.0, 0.0)
    x = (d.images.astype(np.float32) / np.float32(16.0)).reshape(-1, 1, 8, 8)
    full = Dataset("digits", x, d.target, 10, norm, source="sklearn.datasets.load_digits")
    return _splits("digits", full, val_fraction, seed, test_fraction=test_fraction)


# --- shared helpers ------------------------------------------------------------------------------

class TruncatedDataWarning(UserWarning):
    """A data file or set holds fewer records than it declares; the complete ones are used."""


# 8-bit pixels stored in [0, 1], the input range of the models alohac trains.
_PIXELS = Normalization((0.0, 255.0), 1.0 / 255.0, 0.0)


def _pixels(raw: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 in [0, 1] (the _PIXELS normalisation)."""
    return raw.astype(np.float32) / np.float32(255.0)


def _directory(path) -> Path:
    directory = Path(path)
    if not directory.is_dir():
        raise InputFileError("not a directory", where=str(path))
    return directory


def _labels(y: np.ndarray, what: str, where: str) -> np.ndarray:
    """Labels must be a non-empty vector of integers: a float label would be silently truncated."""
    if y.ndim != 1 or y.dtype.kind not in "iu" or not len(y):
        raise InputFileError(f"{what} must be a non-empty vector of integer class labels, got "
                             f"{y.dtype} {list(y.shape)}", where=where)
    return y


# --- IDX (MNIST) ---------------------------------------------------------------------------------

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_MAX_DIMS = 32  # numpy's portable limit; real IDX files have 1..4
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 16  # small: a chunk that hits damage yields nothing, so little is lost


def _gunzip(f) -> tuple[bytes, str | None]:
    """Decompress a gzip stream chunk by chunk, keeping what was produced before it ends early or
    turns out damaged: a cut download still holds usable records. Returns (bytes, what went
    wrong or None)."""
    out = []
    z = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        while chunk := f.read(_CHUNK):
            out.append(z.decompress(chunk))
    except zlib.error as e:
        return b"".join(out), f"the gzip stream is damaged ({e})"
    return b"".join(out), None if z.eof else "the gzip stream ends early"


def _file_bytes(path: Path) -> tuple[bytes, str | None]:
    """The file's contents, gunzipped when it starts with the gzip magic whatever its name."""
    try:
        with open(path, "rb") as f:
            gzipped = f.read(2) == _GZIP_MAGIC
            f.seek(0)
            return _gunzip(f) if gzipped else (f.read(), None)
    except OSError as e:
        raise InputFileError(f"cannot read ({e.strerror or e})", where=str(path)) from None


def _read_idx(path: Path) -> tuple[np.ndarray, int]:
    """(the complete records, the record count the header promises); warns when they differ."""
    where = str(path)
    if not path.is_file():
        raise InputFileError("not a file (expected an IDX file, optionally gzipped)", where=where)
    data, broken = _file_bytes(path)
    if len(data) < 4 or data[:2] != b"\0\0":
        raise InputFileError("not an IDX file (expected the magic bytes 00 00 <dtype> <ndim>)",
                             where=where)
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
        raise InputFileError(f"unknown IDX dtype code 0x{code:02X} (expected one of {known})",
                             where=where)
    if not 1 <= ndim <= _IDX_MAX_DIMS:
        raise InputFileError(f"the IDX header gives {ndim} dimensions (expected "
                             f"1..{_IDX_MAX_DIMS})", where=where)
    start = 4 + 4 * ndim
    if len(data) < start:
        raise InputFileError(f"the file ends inside the IDX header (expected {ndim} dimension "
                             f"sizes)", where=where)
    dims = struct.unpack(f">{ndim}I", data[4:start])
    if 0 in dims:
        raise InputFileError(f"IDX dimensions {list(dims)} include 0 (expected positive sizes)",
                             where=where)
    dtype = np.dtype(_IDX_DTYPES[code])
    promised, shape = dims[0], dims[1:]
    record = math.prod(shape) * dtype.itemsize
    payload = len(data) - start
    n = min(promised, payload // record)
    if n == 0:
        raise InputFileError(f"no complete record: the header promises {promised} records of "
                             f"{record} bytes but {payload} bytes follow it", where=where)
    if payload > promised * record:
        raise InputFileError(f"{payload - promised * record} bytes follow the {promised} records "
                             f"the IDX header declares (expected none)", where=where)
    if n < promised:
        warnings.warn(f"{where}: the header promises {promised} records but "
                      f"{broken or 'the file ends early'}; read the {n} complete ones",
                      TruncatedDataWarning, stacklevel=3)
    elif broken:
        raise InputFileError(f"all {promised} records decompressed but {broken}, so they cannot be "
                             f"trusted", where=where)
    x = np.frombuffer(data, dtype, count=n * math.prod(shape), offset=start)
    return x.reshape(n, *shape).astype(dtype.newbyteorder("=")), promised


def read_idx(path) -> np.ndarray:
    """An IDX array (MNIST's format; gzipped or plain, told apart by the magic bytes) in native
    byte order. A truncated file yields its complete records and a TruncatedDataWarning."""
    return _read_idx(Path(path))[0]


_MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _mnist_file(directory: Path, stem: str) -> Path:
    for path in (directory / stem, directory / f"{stem}.gz"):
        if path.is_file():
            return path
    raise InputFileError(f"no {stem} or {stem}.gz", where=str(directory),
                         hint="an MNIST folder holds train-/t10k- images-idx3/labels-idx1 files")


def _mnist_part(directory: Path, part: str) -> Dataset:
    """One of MNIST's image/label file pairs; a truncated file (already warned about) limits both
    to the pairs that are complete."""
    images_path, labels_path = (_mnist_file(directory, stem) for stem in _MNIST_FILES[part])
    images, n_images = _read_idx(images_path)
    labels, n_labels = _read_idx(labels_path)
    where = str(images_path)
    if n_images != n_labels:
        raise InputFileError(f"the header declares {n_images} images but {labels_path.name} "
                             f"declares {n_labels} labels", where=where)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise InputFileError(f"expected N x H x W unsigned bytes, got {images.dtype} "
                             f"{list(images.shape)}", where=where)
    n = min(len(images), len(labels))
    y = _labels(labels[:n], "MNIST labels", str(labels_path))
    return Dataset("mnist", _pixels(images[:n, None]), y, 10, _PIXELS, source=where)


def mnist(directory, val_fraction: float = 0.1, seed: int = 0) -> Splits:
    """MNIST (or a same-format set such as Fashion-MNIST) from its four IDX files, N x 1 x H x W in
    [0, 1]; val is split off train, test is the t10k files."""
    root = _directory(directory)
    return _splits("mnist", _mnist_part(root, "train"), val_fraction, seed,
                   test=_mnist_part(root, "test"))


# --- CIFAR-10 ------------------------------------------------------------------------------------

class _ArrayUnpickler(pickle.Unpickler):
    """Resolves only the globals that numpy arrays and plain containers need: unpickling calls
    whatever a pickle names, so anything else (os.system, eval, ...) is refused, never imported."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"),
               *((f"numpy.{core}.multiarray", "_reconstruct") for core in ("core", "_core")),
               *((f"numpy.{core}.numeric", "_frombuffer") for core in ("core", "_core")),
               *((module, name) for module in ("builtins", "__builtin__")
                 for name in ("dict", "list", "tuple", "set", "frozenset", "bytearray"))}

    def __init__(self, file, where: str):
        super().__init__(file, encoding="bytes")
        self.where = where

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise InputFileError(f"the pickle refers to {module}.{name} (only numpy arrays and "
                                 f"plain containers are allowed)", where=self.where)
        return super().find_class(module, name)


# What malformed pickle bytes raise while being decoded.
_PICKLE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
                  IndexError, KeyError, OverflowError, struct.error, MemoryError)


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch -> (N x 3 x 32 x 32 uint8, labels)."""
    where = str(path)
    try:
        with open(path, "rb") as f:
            batch = _ArrayUnpickler(f, where).load()
        data, y = batch[b"data"], np.asarray(batch[b"labels"])
    except OSError as e:
        raise InputFileError(f"cannot read ({e.strerror or e})", where=where) from None
    except _PICKLE_ERRORS as e:
        raise InputFileError(f"not a CIFAR-10 batch: a pickled dict with b'data' and b'labels' "
                             f"({type(e).__name__}: {e})", where=where) from None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3 * 32 * 32:
        raise InputFileError("b'data' must be an N x 3072 uint8 array", where=where)
    return data.reshape(-1, 3, 32, 32), _labels(y, "b'labels'", where)


def _cifar_part(root: Path, names: list[str]) -> Dataset:
    batches = [_cifar_batch(root / n) for n in names]
    x = _pixels(np.concatenate([b[0] for b in batches]))
    return Dataset("cifar10", x, np.concatenate([b[1] for b in batches]), 10, _PIXELS,
                   source=str(root))


def cifar10(directory, val_fraction: float = 0.1, seed: int = 0) -> Splits:
    """CIFAR-10's python batches (in DIR or its cifar-10-batches-py folder), N x 3 x 32 x 32 in
    [0, 1]. Missing training batches are tolerated with a warning so a partial copy still works."""
    root = _directory(directory)
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    expected = [f"data_batch_{i}" for i in range(1, 6)]
    present = [n for n in expected if (root / n).is_file()]
    if not present:
        raise InputFileError("no CIFAR-10 training batch (expected data_batch_1..5)",
                             where=str(root))
    if len(present) < len(expected):
        missing = ", ".join(sorted(set(expected) - set(present)))
        warnings.warn(f"{root}: {missing} missing; using the {len(present)} batches present",
                      TruncatedDataWarning, stacklevel=2)
    if not (root / "test_batch").is_file():
        raise InputFileError("no CIFAR-10 test_batch", where=str(root))
    return _splits("cifar10", _cifar_part(root, present), val_fraction, seed,
                   test=_cifar_part(root, ["test_batch"]))


# --- npz -----------------------------------------------------------------------------------------

_NPZ_SPLIT = ("x_train", "y_train", "x_test", "y_test")


def _npz_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz archive; pickled (object) arrays are refused, never unpickled."""
    where = str(path)
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise InputFileError("a single array, not an .npz archive of named arrays",
                                 where=where)
        with archive:
            return {k: archive[k] for k in archive.files}
    except OSError as e:
        raise InputFileError(f"cannot read ({e.strerror or e})", where=where) from None
    except (ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise InputFileError(f"not a readable .npz archive ({e})", where=where) from None


def _npz_inputs(x: np.ndarray, what: str, where: str) -> np.ndarray:
    """N x F, N x H x W (given a channel axis) or N x C x H x W numbers."""
    if x.dtype.kind not in "iuf" or not 2 <= x.ndim <= 4:
        raise InputFileError(f"{what} must be N x F, N x H x W or N x C x H x W numbers, got "
                             f"{x.dtype} {list(x.shape)}", where=where)
    return x[:, None] if x.ndim == 3 else x


def _npz_normalization(arrays: dict[str, np.ndarray], xs: list[np.ndarray], where: str
                       ) -> Normalization:
    """uint8 inputs are pixels: their range (value_range, else 0..255) is mapped onto [0, 1].
    Other inputs are kept as stored, within value_range or, lacking it, their own extremes."""
    if len({x.dtype for x in xs}) > 1:
        types = ", ".join(str(x.dtype) for x in xs)
        raise InputFileError(f"the input arrays differ in type ({types})", where=where)
    pixels = xs[0].dtype == np.uint8
    if "value_range" in arrays:
        vr = arrays["value_range"]
        if vr.shape != (2,) or vr.dtype.kind not in "iuf" or not np.isfinite(vr).all() \
                or not vr[0] < vr[1]:
            raise InputFileError(f"value_range must be [lo, hi] with lo < hi, got {vr.tolist()}",
                                 where=where)
        lo, hi = float(vr[0]), float(vr[1])
    elif pixels:
        lo, hi = _PIXELS.raw_range
    else:
        lo, hi = min(float(x.min()) for x in xs), max(float(x.max()) for x in xs)
        if not lo < hi:
            raise InputFileError(f"every input value is {lo:g}, so its range cannot be inferred",
                                 where=where, hint="add a value_range = [lo, hi] array")
        warnings.warn(f"{where}: no value_range array; inferred the input range [{lo:g}, {hi:g}] "
                      f"from the data", UserWarning, stacklevel=3)
    if pixels:
        return Normalization((lo, hi), 1.0 / (hi - lo), -lo / (hi - lo))
    return Normalization((lo, hi))


def npz(path, test_fraction: float = 0.2, val_fraction: float = 0.1, seed: int = 0) -> Splits:
    """An .npz archive: arrays x, y (test split off, seeded and stratified) or x_train, y_train,
    x_test, y_test, and optionally value_range = [lo, hi] of the stored x. Images are N x C x H x W
    (N x H x W gets a channel axis); N x F vectors stay as they are."""
    path = Path(path)
    where = str(path)
    arrays = _npz_arrays(path)
    if set(_NPZ_SPLIT) <= arrays.keys():
        parts = [("x_train", "y_train"), ("x_test", "y_test")]
    elif {"x", "y"} <= arrays.keys():
        parts = [("x", "y")]
    else:
        raise InputFileError(f"found arrays {sorted(arrays)} (expected x and y, or x_train, "
                             f"y_train, x_test and y_test)", where=where)
    xs = [_npz_inputs(arrays[x], x, where) for x, _ in parts]
    ys = [_labels(arrays[y], y, where) for _, y in parts]
    if len({x.shape[1:] for x in xs}) > 1:
        raise InputFileError(f"train samples are {list(xs[0].shape[1:])} but test samples are "
                             f"{list(xs[1].shape[1:])}", where=where)
    norm = _npz_normalization(arrays, xs, where)
    x_scale, x_offset = np.float32(norm.scale), np.float32(norm.offset)
    classes = max(int(y.max()) for y in ys) + 1
    data = [Dataset(path.stem, x.astype(np.float32) * x_scale + x_offset, y, classes, norm,
                    source=where) for x, y in zip(xs, ys)]
    return _splits(path.stem, data[0], val_fraction, seed, test=data[1] if len(data) > 1 else None,
                   test_fraction=test_fraction)


# --- image folders -------------------------------------------------------------------------------

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}
_GRAY_MODES = {"1", "L", "LA"}


def _image_pixels(path: Path) -> tuple[np.ndarray, bool]:
    """(H x W x 3 uint8, whether the image has a single grey channel). GIFs keep grey as a palette,
    so a palette image counts as grey when every colour it uses is."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            if im.mode.startswith(("I", "F")):
                raise InputFileError(f"{im.mode} images are not supported (expected 8-bit)",
                                     where=str(path))
            rgb = np.asarray(im.convert("RGB"))
            mode = im.mode
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise InputFileError(f"cannot read the image ({e})", where=str(path)) from None
    gray = mode in _GRAY_MODES or (mode in ("P", "PA") and (rgb == rgb[..., :1]).all())
    return rgb, gray


def image_folder(directory, test_fraction: float = 0.2, val_fraction: float = 0.1,
                 seed: int = 0) -> Splits:
    """One subfolder of PNG/JPEG/BMP/GIF images per class (sorted names give the class indices),
    all one size; grey N x 1 x H x W if every image is single-channel, else RGB, in [0, 1]."""
    root = _directory(directory)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise InputFileError("no class subfolders (expected one folder of images per class)",
                             where=str(root))
    files, labels = [], []
    for c, folder in enumerate(folders):
        found = sorted(p for p in folder.iterdir()
                       if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file())
        if not found:
            raise InputFileError("class folder holds no PNG, JPEG, BMP or GIF image",
                                 where=str(folder))
        files += found
        labels += [c] * len(found)
    pixels, grays = [], []
    for path in files:
        rgb, gray = _image_pixels(path)
        if pixels and rgb.shape != pixels[0].shape:
            (h, w), (eh, ew) = rgb.shape[:2], pixels[0].shape[:2]
            raise InputFileError(f"image is {w}x{h} pixels, expected {ew}x{eh} like {files[0]}",
                                 where=str(path))
        pixels.append(rgb)
        grays.append(gray)
    x = np.stack(pixels).transpose(0, 3, 1, 2)
    x = x[:, :1] if all(grays) else x
    data = Dataset(root.name, _pixels(x), np.asarray(labels), len(folders), _PIXELS,
                   source=str(root))
    return _splits(root.name, data, val_fraction, seed, test_fraction=test_fraction)


# --- DATA specs ----------------------------------------------------------------------------------

LOADERS = {
    "digits": "scikit-learn's 8x8 digits (no argument)",
    "mnist": "DIR with MNIST's IDX files: train-/t10k- images-idx3-ubyte and labels-idx1-ubyte, "
             "optionally .gz",
    "cifar10": "DIR with CIFAR-10's python batches data_batch_1..5 and test_batch (or its "
               "cifar-10-batches-py folder)",
    "npz": "FILE with arrays x, y (or x_train, y_train, x_test, y_test) and optionally "
           "value_range [lo, hi]",
    "images": "DIR with one subfolder of PNG/JPEG/BMP/GIF images per class",
    "tabular": "NAME[:ATTR,...], NAME adult, compas or german (frontends.tabular): each row an "
               "F x 1 x 1 sample, its sensitive groups kept for the fairness objectives",
}

_PATH_LOADERS = {"mnist": ("DIR", mnist), "cifar10": ("DIR", cifar10), "npz": ("FILE", npz),
                 "images": ("DIR", image_folder)}


def tabular(arg: str, val_fraction: float = 0.1, seed: int = 0) -> Splits:
    """A bundled tabular dataset as train/val/test splits of F x 1 x 1 samples (so the
    explorer's chain networks take them as they take images), sensitive groups attached."""
    from frontends.tabular import TEST_FRACTION, load_tabular
    name, _, attrs = arg.partition(":")
    t = load_tabular(name, sensitive=[a for a in attrs.split(",") if a] or None)
    rest, test = t.split(TEST_FRACTION, seed)
    train, val = rest.split(val_fraction, seed)
    norm = Normalization((float(t.x.min()), float(t.x.max())))

    def ds(part, label: str) -> Dataset:
        return Dataset(f"{name}-{label}", part.x.reshape(len(part), -1, 1, 1), part.y, 2, norm,
                       source=t.source, sensitive=part.sensitive)
    return Splits(ds(train, "train"), ds(val, "val"), ds(test, "test"))

_FORMS = "DATA is digits, " + ", ".join(f"{k}:{meta}" for k, (meta, _) in _PATH_LOADERS.items()) \
    + ", tabular:NAME[:ATTR,...]"


def load(spec: str, *, val_fraction: float = 0.1, seed: int = 0) -> Splits:
    """A DATA spec (see the module docstring) -> checked train/val/test splits."""
    kind, _, arg = spec.partition(":")
    if kind == "digits" and not arg:
        splits = digits(val_fraction=val_fraction, seed=seed)
    elif kind == "tabular" and arg:
        splits = tabular(arg, val_fraction=val_fraction, seed=seed)
    elif kind in _PATH_LOADERS and not arg:
        raise UsageError(f"'{kind}:' needs a path", hint=_FORMS)
    elif kind in _PATH_LOADERS:
        if not os.path.exists(arg):
            raise InputFileError("no such file or directory", where=arg, hint=_FORMS)
        splits = _PATH_LOADERS[kind][1](arg, val_fraction=val_fraction, seed=seed)
    else:
        raise UsageError(f"unknown dataset '{spec}'", hint=_FORMS)
    for d in (splits.train, splits.val, splits.test):
        d.check()
    return splits
