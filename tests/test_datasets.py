"""Dataset loaders against files the tests write themselves (IDX, CIFAR pickles, npz, image
folders), malformed and truncated inputs, the split/normalisation contracts, and the shared real
MNIST files."""

import gzip
import os
import pickle
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from aloha_ir.errors import InputFileError, UsageError
from frontends import datasets as D
from frontends.datasets import Dataset, Normalization, TruncatedDataWarning

IDX_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D,
             np.float64: 0x0E}


def idx_bytes(a: np.ndarray) -> bytes:
    """An IDX file written from the format's definition: 00 00 code ndim, big-endian dims, data."""
    header = bytes([0, 0, IDX_CODES[a.dtype.type], a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    return header + a.astype(a.dtype.newbyteorder(">")).tobytes()


def random_array(dtype, shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.normal(size=shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)


def gzip_cut_after(a: np.ndarray, k: int) -> bytes:
    """A gzip of `a`'s IDX file cut a few bytes after a sync flush that follows record k: exactly
    the header and k records can be decompressed from it."""
    raw = idx_bytes(a)
    record = a[0].nbytes
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    head = z.compress(raw[:len(raw) - (len(a) - k) * record]) + z.flush(zlib.Z_SYNC_FLUSH)
    rest = z.compress(raw[len(raw) - (len(a) - k) * record:]) + z.flush()
    return head + rest[:3]


# --- IDX -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", list(IDX_CODES))
def test_idx_round_trip(tmp_path, dtype, gz):
    a = random_array(dtype, (6, 3, 4), seed=IDX_CODES[dtype])
    data = idx_bytes(a)
    # names lie on purpose: gzip is recognised by its magic bytes
    path = tmp_path / ("plain.bin" if gz else "looks-gzipped.gz")
    path.write_bytes(gzip.compress(data) if gz else data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = D.read_idx(path)
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative
    np.testing.assert_array_equal(got, a)


def test_idx_vector(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    (tmp_path / "l").write_bytes(idx_bytes(labels))
    np.testing.assert_array_equal(D.read_idx(tmp_path / "l"), labels)


def test_truncated_gzip_keeps_complete_records(tmp_path):
    a = random_array(np.int16, (20, 3, 2))
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip_cut_after(a, 7))
    with pytest.warns(TruncatedDataWarning, match=r"cut\.gz.*promises 20 records.*gzip stream "
                                                  r"ends early.*read the 7 complete"):
        got = D.read_idx(path)
    np.testing.assert_array_equal(got, a[:7])


def test_truncated_plain_keeps_complete_records(tmp_path):
    a = random_array(np.float64, (9, 5))
    path = tmp_path / "cut.idx"
    path.write_bytes(idx_bytes(a)[:-int(a[0].nbytes * 2.5)])
    with pytest.warns(TruncatedDataWarning, match=r"promises 9 records.*file ends early.*read the "
                                                  r"6 complete"):
        got = D.read_idx(path)
    np.testing.assert_array_equal(got, a[:6])


GOOD = idx_bytes(np.arange(24, dtype=np.uint8).reshape(4, 6))

MALFORMED = {
    "empty": b"",
    "bad magic": b"\x01" + GOOD[1:],
    "unknown dtype": GOOD[:2] + b"\x0a" + GOOD[3:],
    "no dimensions": GOOD[:3] + b"\x00" + GOOD[4:],
    "header cut": GOOD[:9],
    "zero dimension": GOOD[:8] + struct.pack(">I", 0) + GOOD[12:],
    "no complete record": GOOD[:12 + 5],
    "trailing bytes": GOOD + b"\x00\x00",
    "gzip of garbage": gzip.compress(b"not an idx file at all"),
    # the gzip trailer is CRC32 then length: a wrong CRC with every record intact
    "gzip checksum wrong": gzip.compress(GOOD)[:-8] + b"\xde\xad\xbe\xef"
    + gzip.compress(GOOD)[-4:],
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_idx_is_an_input_error(tmp_path, case):
    path = tmp_path / "bad"
    path.write_bytes(MALFORMED[case])
    with pytest.raises(InputFileError) as e:
        D.read_idx(path)
    assert e.value.where == str(path)


def test_idx_path_not_a_file(tmp_path):
    for path in (tmp_path, tmp_path / "missing"):
        with pytest.raises(InputFileError, match="not a file"):
            D.read_idx(path)


def test_fuzzed_idx_only_input_errors_or_warnings(tmp_path):
    """Random cuts and byte flips of a valid IDX file, gzipped or plain: an array (maybe with a
    truncation warning) or an InputFileError, never another exception."""
    a = random_array(np.uint8, (40, 4, 4))
    valid = (gzip.compress(idx_bytes(a)), idx_bytes(a))
    rng = np.random.default_rng(1234)
    outcomes = {"read": 0, "warned": 0, "refused": 0}
    path = tmp_path / "fuzz"
    for i in range(200):
        blob = bytearray(valid[i % 2])
        if rng.random() < 0.5:
            blob = blob[:rng.integers(0, len(blob))]
        else:
            for pos in rng.integers(0, len(blob), size=rng.integers(1, 4)):
                blob[pos] ^= 1 << int(rng.integers(0, 8))
        path.write_bytes(bytes(blob))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                got = D.read_idx(path)
            except InputFileError:
                outcomes["refused"] += 1
                continue
        assert all(issubclass(w.category, TruncatedDataWarning) for w in caught)
        assert isinstance(got, np.ndarray) and len(got) >= 1
        outcomes["warned" if caught else "read"] += 1
    assert all(outcomes.values()), outcomes


# --- MNIST ---------------------------------------------------------------------------------------

def write_mnist(root, n_train=30, n_test=20, cut_train_after=None):
    """Images whose first pixel is 20 * label, so the loader's image/label pairing shows."""
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        y = (np.arange(n) % 10).astype(np.uint8)
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        x[:, 0, 0] = y * 20
        images = idx_bytes(x)
        if prefix == "train" and cut_train_after is not None:
            (root / "train-images-idx3-ubyte.gz").write_bytes(gzip_cut_after(x, cut_train_after))
        else:
            (root / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(images))
        (root / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(y))


def test_mnist_from_idx_files(tmp_path):
    write_mnist(tmp_path, cut_train_after=25)
    with pytest.warns(TruncatedDataWarning, match="promises 30 records.*read the 25"):
        s = D.mnist(tmp_path, val_fraction=0.2, seed=3)
    assert len(s.train) + len(s.val) == 25 and len(s.test) == 20
    for d in (s.train, s.val, s.test):
        assert d.x.shape[1:] == (1, 28, 28) and d.x.dtype == np.float32 and d.classes == 10
        assert d.value_range == (0.0, 1.0) and d.normalization.scale == pytest.approx(1 / 255)
        np.testing.assert_allclose(d.x[:, 0, 0, 0] * 255, d.y * 20, atol=1e-3)
        d.check()
    assert (s.train.name, s.val.name, s.test.name) == ("mnist-train", "mnist-val", "mnist-test")


def test_mnist_truncated_labels_cut_the_images(tmp_path):
    write_mnist(tmp_path)
    labels = tmp_path / "t10k-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-5])
    with pytest.warns(TruncatedDataWarning, match="promises 20 records.*read the 15"):
        s = D.mnist(tmp_path)
    assert len(s.test) == 15
    np.testing.assert_allclose(s.test.x[:, 0, 0, 0] * 255, s.test.y * 20, atol=1e-3)


def test_mnist_refuses_mismatched_or_missing_files(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(7, np.uint8)))
    with pytest.raises(InputFileError, match="20 images but t10k-labels-idx1-ubyte declares 7"):
        D.mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(InputFileError, match="no t10k-labels-idx1-ubyte or .*\\.gz"):
        D.mnist(tmp_path)


# --- CIFAR-10 ------------------------------------------------------------------------------------

def py2_batch(data: np.ndarray, labels: list[int]) -> bytes:
    """A batch as the real files are: Python 2 cPickle, str keys, numpy.core paths, written opcode
    by opcode (Python 3's pickler cannot produce it)."""
    def s(b):
        return (b"U" + bytes([len(b)]) if len(b) < 256 else b"T" + struct.pack("<I", len(b))) + b

    def i(v):
        return b"J" + struct.pack("<i", v)
    dtype = b"cnumpy\ndtype\n" + s(b"u1") + i(0) + i(1) + b"\x87R(" + i(3) + s(b"|") + b"NNN" \
        + i(-1) + i(-1) + i(0) + b"tb"
    array = b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + i(0) + b"\x85" \
        + s(b"b") + b"\x87R(" + i(1) + i(data.shape[0]) + i(data.shape[1]) + b"\x86" + dtype \
        + b"\x89" + s(data.tobytes()) + b"tb"
    return b"\x80\x02}(" + s(b"data") + array + s(b"labels") + b"](" \
        + b"".join(i(v) for v in labels) + b"eu."


def cifar_batch(n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    """Rows whose first byte (red channel, pixel 0,0) is 20 * label."""
    data = np.random.default_rng(seed).integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(v) for v in np.arange(n) % 10]
    data[:, 0] = np.asarray(labels) * 20
    return data, labels


def write_cifar(root, batches=(1, 2, 3, 4, 5), n=20):
    root.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate([f"data_batch_{b}" for b in batches] + ["test_batch"]):
        data, labels = cifar_batch(n, k)
        if k == 0:
            blob = py2_batch(data, labels)
        else:
            blob = pickle.dumps({b"batch_label": b"x", b"data": data, b"labels": labels},
                                protocol=3 + k % 3)
        (root / name).write_bytes(blob)


def test_cifar10_batches(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-py")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = D.cifar10(tmp_path, val_fraction=0.1)
    assert len(s.train) + len(s.val) == 100 and len(s.test) == 20
    # CIFAR rows are 1024 red, 1024 green, 1024 blue values, each 32 x 32 row-major
    data, labels = cifar_batch(20, 5)
    np.testing.assert_allclose(s.test.x[3, 1, 2, 5], data[3, 1024 + 2 * 32 + 5] / 255, rtol=1e-6)
    np.testing.assert_array_equal(s.test.y, labels)
    for d in (s.train, s.val, s.test):
        assert d.x.shape[1:] == (3, 32, 32) and d.value_range == (0.0, 1.0)
        np.testing.assert_allclose(d.x[:, 0, 0, 0] * 255, d.y * 20, atol=1e-3)


def test_cifar10_missing_batches(tmp_path):
    write_cifar(tmp_path, batches=(1, 3))
    with pytest.warns(TruncatedDataWarning, match="data_batch_2, data_batch_4, data_batch_5 "
                                                  "missing; using the 2 batches"):
        s = D.cifar10(tmp_path)
    assert len(s.train) + len(s.val) == 40
    for name in ("data_batch_1", "data_batch_3"):
        (tmp_path / name).unlink()
    with pytest.raises(InputFileError, match="no CIFAR-10 training batch"):
        D.cifar10(tmp_path)


class RunsShell:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_cifar10_refuses_code_in_pickles(tmp_path):
    write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    evil = pickle.dumps({b"data": RunsShell(f"touch {marker}"), b"labels": [0]})
    assert b"system" in evil  # the pickle does name os.system
    (tmp_path / "data_batch_2").write_bytes(evil)
    with pytest.raises(InputFileError, match=r"data_batch_2: the pickle refers to \w+\.system"):
        D.cifar10(tmp_path)
    assert not marker.exists()
    (tmp_path / "data_batch_2").write_bytes(pickle.dumps({b"data": eval, b"labels": [0]}))
    with pytest.raises(InputFileError, match="builtins.eval"):
        D.cifar10(tmp_path)


@pytest.mark.parametrize("blob", [b"", b"garbage", pickle.dumps([1, 2]),
                                  pickle.dumps({b"data": np.zeros((2, 10), np.uint8),
                                                b"labels": [0, 1]}),
                                  pickle.dumps({b"data": np.zeros((2, 3072), np.uint8),
                                                b"labels": [0.5, 1.0]})])
def test_cifar10_malformed_batch(tmp_path, blob):
    write_cifar(tmp_path)
    (tmp_path / "test_batch").write_bytes(blob)
    with pytest.raises(InputFileError) as e:
        D.cifar10(tmp_path)
    assert e.value.where == str(tmp_path / "test_batch")


# --- npz -----------------------------------------------------------------------------------------

def test_npz_uint8_images_get_a_channel_and_pixel_scale(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(50, 6, 5), dtype=np.uint8)
    y = np.arange(50) % 5
    np.savez(tmp_path / "d.npz", x=x, y=y)
    s = D.npz(tmp_path / "d.npz", test_fraction=0.2, val_fraction=0.25, seed=1)
    assert [len(d) for d in (s.train, s.val, s.test)] == [30, 10, 10]
    assert s.test.x.shape[1:] == (1, 6, 5) and s.test.classes == 5
    assert s.test.normalization == Normalization((0.0, 255.0), 1 / 255, 0.0)
    # each stored sample is its raw image / 255, paired with its own label
    for xi, yi in zip(s.test.x, s.test.y):
        j = int(np.flatnonzero((x == np.rint(xi[0] * 255)).all(axis=(1, 2)))[0])
        np.testing.assert_allclose(xi[0], x[j] / 255, rtol=1e-6)
        assert yi == y[j]


def test_npz_train_test_with_value_range(tmp_path):
    x_train = np.linspace(-1, 1, 40, dtype=np.float32).reshape(20, 2)
    x_test = np.zeros((5, 2), np.float32)
    np.savez(tmp_path / "v.npz", x_train=x_train, y_train=np.arange(20) % 2, x_test=x_test,
             y_test=np.arange(5) % 2, value_range=np.array([-2.0, 2.0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = D.load(f"npz:{tmp_path / 'v.npz'}", val_fraction=0.5)
    assert s.train.input_shape == (2,) and s.train.classes == 2
    assert s.train.normalization == Normalization((-2.0, 2.0)) == s.test.normalization
    np.testing.assert_array_equal(s.test.x, x_test)
    assert sorted(np.concatenate([s.train.x, s.val.x])[:, 0]) == sorted(x_train[:, 0])


def test_npz_float_without_range_is_inferred_with_a_warning(tmp_path):
    x = np.array([[-3.0, 1.0], [2.0, 7.5]] * 10, np.float64)
    np.savez(tmp_path / "f.npz", x=x, y=np.arange(20) % 2)
    with pytest.warns(UserWarning, match=r"inferred the input range \[-3, 7\.5\]"):
        s = D.npz(tmp_path / "f.npz")
    assert s.train.value_range == (-3.0, 7.5) and s.train.x.dtype == np.float32


@pytest.mark.parametrize("arrays, message", [
    (dict(x=np.zeros((4, 2)), y=np.array([0.0, 1.0, 0.0, 1.0])), "integer class labels"),
    (dict(x=np.zeros((4, 2)), y=np.zeros((4, 1), int)), "integer class labels"),
    (dict(x=np.zeros(4), y=np.zeros(4, int)), "must be N x F"),
    (dict(inputs=np.zeros((4, 2)), y=np.zeros(4, int)), r"found arrays \['inputs', 'y'\]"),
    (dict(x=np.zeros((4, 2)), y=np.zeros(4, int), value_range=np.array([1.0, 0.0])),
     "value_range must be"),
    (dict(x=np.array([None] * 4), y=np.zeros(4, int)), "not a readable .npz"),
])
def test_npz_malformed(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(InputFileError, match=message):
        D.npz(tmp_path / "bad.npz")


def test_npz_not_an_archive(tmp_path):
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(InputFileError, match="not an .npz archive"):
        D.npz(tmp_path / "single.npy")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 junk")
    with pytest.raises(InputFileError, match="junk.npz"):
        D.npz(tmp_path / "junk.npz")


def test_load_checks_the_declared_range(tmp_path):
    np.savez(tmp_path / "r.npz", x=np.full((10, 2), 5.0), y=np.arange(10) % 2,
             value_range=np.array([0.0, 1.0]))
    with pytest.raises(InputFileError, match=r"outside the declared range \[0, 1\]"):
        D.load(f"npz:{tmp_path / 'r.npz'}")


# --- image folders -------------------------------------------------------------------------------

def gray_image(value: int, size=(5, 4)) -> np.ndarray:
    """A unique grey image (h x w) identified by its first pixel."""
    w, h = size
    img = np.random.default_rng(value).integers(0, 256, size=(h, w), dtype=np.uint8)
    img[0, 0] = value
    return img


def write_folder(root, per_class=5):
    written = {}
    for c, cls in enumerate(("b_dog", "a_cat")):  # sorted: a_cat is class 0
        (root / cls).mkdir(parents=True)
        for k in range(per_class):
            value = 10 * (1 - c) + k
            img = gray_image(value)
            suffix = (".png", ".bmp", ".gif")[k % 3]
            Image.fromarray(img).save(root / cls / f"{k}{suffix}")
            written[value] = (img, 1 - c)
    (root / "a_cat" / "notes.txt").write_text("not an image")
    return written


def test_image_folder_grey(tmp_path):
    written = write_folder(tmp_path)
    s = D.image_folder(tmp_path, test_fraction=0.2, val_fraction=0.25)
    assert [len(d) for d in (s.train, s.val, s.test)] == [6, 2, 2]
    for d in (s.train, s.val, s.test):
        assert d.input_shape == (1, 4, 5) and d.classes == 2 and d.value_range == (0.0, 1.0)
        for xi, yi in zip(d.x, d.y):
            img, label = written[int(round(xi[0, 0, 0] * 255))]
            np.testing.assert_allclose(xi[0] * 255, img, atol=1e-3)
            assert yi == label


def test_image_folder_rgb_when_any_image_has_colour(tmp_path):
    write_folder(tmp_path)
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(tmp_path / "a_cat" / "red.png")
    Image.fromarray(rgb).save(tmp_path / "a_cat" / "red.jpg")
    s = D.image_folder(tmp_path)
    assert s.train.input_shape == (3, 4, 5)
    reds = [x for d in (s.train, s.val, s.test) for x in d.x if x[0, 0, 0] > 0.7]
    assert reds and all(np.allclose(x[1:], x[1:] * 0, atol=0.05) for x in reds)


def test_image_folder_refuses_wrong_size_and_unreadable(tmp_path):
    write_folder(tmp_path)
    Image.fromarray(gray_image(99, size=(6, 4))).save(tmp_path / "b_dog" / "z.png")
    with pytest.raises(InputFileError, match="image is 6x4 pixels, expected 5x4") as e:
        D.image_folder(tmp_path)
    assert e.value.where == str(tmp_path / "b_dog" / "z.png")
    (tmp_path / "b_dog" / "z.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    with pytest.raises(InputFileError, match="cannot read the image") as e:
        D.image_folder(tmp_path)
    assert e.value.where == str(tmp_path / "b_dog" / "z.png")


def test_image_folder_needs_class_folders(tmp_path):
    with pytest.raises(InputFileError, match="no class subfolders"):
        D.image_folder(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError, match="holds no PNG"):
        D.image_folder(tmp_path)


# --- splits, ranges, checks ----------------------------------------------------------------------

def indexed(counts=(50, 30, 20)) -> Dataset:
    """x is each sample's own index, so splits can be compared as index sets."""
    y = np.concatenate([np.full(n, c) for c, n in enumerate(counts)])
    x = np.arange(len(y), dtype=np.float32)[:, None]
    return Dataset("idx", x, y, len(counts), Normalization((0.0, float(len(y)))))


def test_split_stratified_disjoint_seeded():
    ds = indexed()
    rest, held = D.split(ds, 0.2, seed=5)
    assert np.bincount(held.y).tolist() == [10, 6, 4]
    a, b = set(rest.x[:, 0]), set(held.x[:, 0])
    assert not a & b and a | b == set(range(100))
    again = D.split(ds, 0.2, seed=5)[1]
    other = D.split(ds, 0.2, seed=6)[1]
    np.testing.assert_array_equal(again.x, held.x)
    assert set(other.x[:, 0]) != b


def test_digits_splits_unchanged():
    """digits now goes through the shared split helper; its splits must be what they were."""
    from sklearn.datasets import load_digits
    s = D.digits(seed=4)
    assert (len(s.train), len(s.val), len(s.test)) == (1295, 143, 359)
    d = load_digits()
    ref = Dataset("digits", d.images.reshape(-1, 1, 8, 8) / 16.0, d.target, 10,
                  s.train.normalization)
    rest, test = D.split(ref, 0.2, 4)
    train, val = D.split(rest, 0.1, 5)
    for got, want in ((s.train, train), (s.val, val), (s.test, test)):
        np.testing.assert_array_equal(got.x, want.x)
        np.testing.assert_array_equal(got.y, want.y)


def test_loader_splits_are_disjoint_and_cover_the_data(tmp_path):
    ds = indexed()
    np.savez(tmp_path / "i.npz", x=ds.x, y=ds.y, value_range=np.array([0.0, 100.0]))
    s = D.npz(tmp_path / "i.npz", test_fraction=0.2, val_fraction=0.1, seed=2)
    parts = [set(d.x[:, 0]) for d in (s.train, s.val, s.test)]
    assert sum(map(len, parts)) == 100 and set.union(*parts) == set(range(100))
    assert np.bincount(s.test.y).tolist() == [10, 6, 4]
    assert np.bincount(s.val.y).tolist() == [4, 2, 2]  # 10% of each class's remaining 40/24/16
    again = D.npz(tmp_path / "i.npz", test_fraction=0.2, val_fraction=0.1, seed=2)
    np.testing.assert_array_equal(again.test.x, s.test.x)


def test_to_range_round_trip(tmp_path):
    raw = np.arange(0, 250, 5, dtype=np.uint8).reshape(50, 1)
    np.savez(tmp_path / "p.npz", x=raw, y=np.arange(50) % 2)
    ds = D.npz(tmp_path / "p.npz").train
    wide = ds.to_range(0.0, 255.0)
    assert wide.value_range == (0.0, 255.0)
    n = wide.normalization
    # stored = raw * scale + offset still holds after rescaling
    originals = np.rint(ds.x * 255)
    np.testing.assert_allclose(wide.x, originals * n.scale + n.offset, atol=1e-3)
    np.testing.assert_allclose(wide.x, originals, atol=1e-3)
    back = wide.to_range(0.0, 1.0)
    np.testing.assert_allclose(back.x, ds.x, atol=1e-6)
    assert back.value_range == pytest.approx((0.0, 1.0))


def test_check_refuses_nan_and_bad_labels():
    ds = indexed((3, 3))
    bad = ds.x.copy()
    bad[2, 0] = np.nan
    with pytest.raises(InputFileError, match="1 input values are NaN"):
        Dataset("n", bad, ds.y, 2, ds.normalization).check()
    with pytest.raises(InputFileError, match=r"labels span \[0, 2\], outside 0..1"):
        Dataset("l", ds.x, np.array([0, 1, 2, 0, 1, 0]), 2, ds.normalization).check()
    with pytest.raises(InputFileError, match=r"labels span \[-1, 1\]"):
        Dataset("l", ds.x, np.array([0, 1, -1, 0, 1, 0]), 2, ds.normalization).check()
    assert ds.check() is ds


# --- DATA specs ----------------------------------------------------------------------------------

def test_load_specs():
    assert set(D.LOADERS) == {"digits", "mnist", "cifar10", "npz", "images", "tabular"}
    with pytest.raises(UsageError, match="'mnist:' needs a path") as e:
        D.load("mnist:")
    assert "npz:FILE" in e.value.hint and "images:DIR" in e.value.hint
    with pytest.raises(InputFileError, match="no such file or directory") as e:
        D.load("cifar10:/nonexistent/aloha")
    assert "cifar10:DIR" in e.value.hint
    with pytest.raises(UsageError, match="unknown dataset 'svhn:x'"):
        D.load("svhn:x")


def test_load_mnist_spec(tmp_path):
    write_mnist(tmp_path)
    s = D.load(f"mnist:{tmp_path}", val_fraction=0.34)
    assert len(s.train) == 20 and np.bincount(s.val.y).tolist() == [1] * 10


# --- the shared real MNIST files -----------------------------------------------------------------

MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_real_mnist(aloha_data):
    root = os.path.join(aloha_data, "mnist")
    with pytest.warns(TruncatedDataWarning, match="promises 60000 records.*read the 6309"):
        train = D.read_idx(os.path.join(root, "train-images-idx3-ubyte.gz"))
    assert train.shape == (6309, 28, 28) and train.dtype == np.uint8
    assert len(D.read_idx(os.path.join(root, "train-labels-idx1-ubyte.gz"))) == 60000
    test_x = D.read_idx(os.path.join(root, "t10k-images-idx3-ubyte.gz"))
    test_y = D.read_idx(os.path.join(root, "t10k-labels-idx1-ubyte.gz"))
    assert test_x.shape == (10000, 28, 28)
    assert np.bincount(test_y, minlength=10).tolist() == MNIST_TEST_COUNTS
    with pytest.warns(TruncatedDataWarning):
        s = D.load(f"mnist:{root}", val_fraction=0.1)
    assert len(s.train) + len(s.val) == 6309 and len(s.test) == 10000
    assert 0 <= s.train.y.min() and s.train.y.max() <= 9
    np.testing.assert_array_equal(np.bincount(s.test.y, minlength=10), MNIST_TEST_COUNTS)
