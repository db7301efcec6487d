"""The host backend's C kernel library (backends/templates/aloha_kernels.c) through ctypes.

Float kernels are checked against float64 numpy formulas (1e-5 relative); fixed-point kernels must
equal, bit for bit, the integers of runtime/reference.py's computation re-derived here in numpy
from aloha_ir.fixedpoint's helpers (im2col convolution, padded pooling windows, avg_counts, ...).
Convolutions and row kernels run row by row through windows holding only the rows a row needs.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from aloha_ir import fixedpoint as fp
from runtime import reference as ref

RUNTIME = Path(__file__).resolve().parents[1] / "backends" / "templates"
SOURCE = RUNTIME / "aloha_kernels.c"
CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-O2"]
NONE, RELU, LEAKY, CLIP, SIGMOID, TANH = range(6)
P = ctypes.c_void_p
I, I32, F, D = ctypes.c_int, ctypes.c_int32, ctypes.c_float, ctypes.c_double


# element type tags (aloha_kernels.h): 0 is int32_t
TAG = {np.dtype(np.int32): 0, np.dtype(np.int8): 1, np.dtype(np.uint8): 2,
       np.dtype(np.int16): 3, np.dtype(np.uint16): 4, np.dtype(np.float32): 5}


class Win(ctypes.Structure):
    _fields_ = [("p", P), ("base", I), ("rows", I), ("c", I), ("h", I), ("w", I), ("type", I)]


class Act(ctypes.Structure):
    _fields_ = [("kind", I), ("alpha", F), ("lo", F), ("hi", F)]


class Rq(ctypes.Structure):
    _fields_ = [("shift", P), ("shift0", I32), ("kind", I), ("leaky_mult", I32), ("qmin", I32),
                ("qmax", I32), ("clip_lo", I32), ("clip_hi", I32), ("type", I)]


class Conv(ctypes.Structure):
    _fields_ = [(n, I) for n in ("cin", "cout", "h", "w", "oh", "ow", "kh", "kw", "sh", "sw", "pt",
                                 "pl", "dh", "dw", "group", "wtype", "acc32")]


class Pool(ctypes.Structure):
    _fields_ = [(n, I) for n in ("kind", "c", "h", "w", "oh", "ow", "kh", "kw", "sh", "sw", "pt",
                                 "pl", "pb", "pr", "dh", "dw", "count_include_pad")]


SIGNATURES = {
    "aloha_conv_row_f32": [P, P, P, P, P, I, I, I, P],
    "aloha_conv_row_q": [P, P, P, P, P, I, I, I, P],
    "aloha_pool_row_f32": [P, P, P, I, P],
    "aloha_pool_row_q": [P, P, P, I, P],
    "aloha_gpool_f32": [P, I, I, I, P, P],
    "aloha_gpool_q": [P, I, I, I, I, P, P],
    "aloha_dense_f32": [P, P, P, I, I, I, P, P],
    "aloha_dense_q": [P, I, P, I, I, P, I, I, I, P, P],
    "aloha_add_row_f32": [P, P, I, I, I, P, P],
    "aloha_mul_row_f32": [P, P, I, I, I, P, P],
    "aloha_add_row_q": [P, I, P, I, I, I, I, P, P],
    "aloha_mul_row_q": [P, P, I, I, I, P, P],
    "aloha_bn_row_f32": [P, P, P, I, P, P],
    "aloha_bn_row_q": [P, P, I, P, I, P, P],
    "aloha_act_f32": [P, I, P, P],
    "aloha_requant_q": [P, I, I, P, P],
    "aloha_island_q": [P, I, I, I, I, I32, I32, I, P, I],
    "aloha_softmax_f32": [P, I, I, I, P],
    "aloha_softmax_q": [P, I, I, I, I, I, I, I32, I32, P, I],
    "aloha_lrn_row_f32": [P, I, I, I, F, F, F, P],
    "aloha_lrn_row_q": [P, I, I, I, I, D, D, D, I, I, I32, I32, P, I],
    "aloha_shuffle_row_f32": [P, I, I, I, P],
    "aloha_shuffle_row_q": [P, I, I, I, I, P, P],
    "aloha_nchw_to_rows_q": [P, I, I, I, I, P, P],
    "aloha_to_fixed": [D, I, I32, I32],
}


def compile_library(out: Path, extra: list[str] | None = None) -> None:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    cmd = ["gcc", *CFLAGS, *(extra or []), "-o", str(out), str(SOURCE), "-lm"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def load_library(tmp_path_factory, extra: list[str]):
    path = tmp_path_factory.mktemp("host_kernels") / "libaloha_kernels.so"
    compile_library(path, ["-fPIC", "-shared", *extra])
    lib = ctypes.CDLL(str(path))
    for name, args in SIGNATURES.items():
        getattr(lib, name).argtypes = args
        getattr(lib, name).restype = None
    lib.aloha_to_fixed.restype = I32
    return lib


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    return load_library(tmp_path_factory, [])


# a stage of 64 bytes holds no convolution of CONVS: each gathers its columns tap by tap, the
# path of a convolution whose stage would not fit ALOHA_CONV_STAGE_BYTES; with AVX2 (what
# -march=native gives the generated programs on x86 hosts): 32-byte vectors and the int32 sums'
# pair kernel
STAGES = {"staged": [], "gathered": ["-DALOHA_CONV_STAGE_BYTES=64"], "avx2": ["-mavx2", "-mfma"]}


def cpu_has_avx2() -> bool:
    try:
        with open("/proc/cpuinfo") as info:
            return any(line.startswith("flags") and " avx2" in line for line in info)
    except OSError:
        return False


@pytest.fixture(scope="module", params=sorted(STAGES))
def conv_lib(request, tmp_path_factory):
    """The library as built for the baseline x86-64 (a tile's input columns staged once for all
    its output channels), with the tap-by-tap gather, and with AVX2; all must give the same bits."""
    if request.param == "avx2" and not cpu_has_avx2():
        pytest.skip("this CPU has no AVX2 (/proc/cpuinfo)")
    return load_library(tmp_path_factory, STAGES[request.param])


@pytest.fixture
def rng():
    return np.random.default_rng(20240607)


# --------------------------------------------------------------------------------------------------
# marshalling


def arr(a, dtype):
    """A C-contiguous array of the kernel's element type (float32, or an integer type whose range
    holds the values)."""
    if np.dtype(dtype).kind in "iu":
        a, info = np.asarray(a), np.iinfo(dtype)
        assert a.size == 0 or info.min <= a.min() and a.max() <= info.max
    return np.ascontiguousarray(a, dtype=dtype)


def ptr(a) -> int | None:
    return None if a is None else a.ctypes.data


def window(x: np.ndarray, lo: int, hi: int, dtype) -> Win:
    """A window over rows [lo, hi) (clipped to [0, h)) of x [c, h, w]; the struct keeps its data."""
    c, h, w = x.shape
    lo, hi = max(lo, 0), min(hi, h)
    if hi <= lo:
        lo, hi = 0, 0
    data = arr(x[:, lo:hi, :].transpose(1, 0, 2), dtype)
    win = Win(ptr(data) if data.size else None, lo, hi - lo, c, h, w, TAG[np.dtype(dtype)])
    win.keep = data
    return win


def act(kind=NONE, alpha=0.0, lo=0.0, hi=0.0) -> Act:
    return Act(kind, alpha, lo, hi)


def rq(shift, fmt: fp.Fixed, kind=NONE, alpha=0.0, clip=(0.0, 0.0), out=np.int32) -> Rq:
    """The requantisation of an accumulator `shift` bits (int or per channel) above fmt, stored
    as `out`."""
    lo, hi = fp.clip_bounds(clip[0], clip[1], fmt)
    per = np.ndim(shift) > 0
    shifts = arr(shift, np.int32) if per else None
    r = Rq(ptr(shifts), 0 if per else int(shift), kind, fp.leaky_multiplier(alpha), fmt.qmin,
           fmt.qmax, lo, hi, TAG[np.dtype(out)])
    r.keep = shifts
    return r


FUSED = {NONE: None, RELU: ("relu", ()), LEAKY: ("leaky_relu", (0.1,)), CLIP: ("clip", (-1.5, 2.0))}


def rq_fused(shift, fmt, kind) -> Rq:
    fused = FUSED[kind]
    if kind == LEAKY:
        return rq(shift, fmt, kind, alpha=fused[1][0])
    if kind == CLIP:
        return rq(shift, fmt, kind, clip=fused[1])
    return rq(shift, fmt, kind)


def float_act(kind) -> Act:
    fused = FUSED.get(kind)
    if kind == LEAKY:
        return act(LEAKY, alpha=fused[1][0])
    if kind == CLIP:
        return act(CLIP, lo=fused[1][0], hi=fused[1][1])
    return act(kind)


# --------------------------------------------------------------------------------------------------
# the reference's rules in numpy


def accumulate_out(acc: np.ndarray, acc_frac, fmt: fp.Fixed, kind=NONE) -> np.ndarray:
    """runtime/reference.py _accumulate_out with the fused activation `kind` (channel axis 1)."""
    f = np.asarray(acc_frac, dtype=np.int64)
    acc_frac = f.reshape((1, -1) + (1,) * (acc.ndim - 2)) if f.ndim else f
    fused = FUSED[kind]
    if fused is not None and fused[0] == "relu":
        acc = np.maximum(acc, 0)
    elif fused is not None and fused[0] == "leaky_relu":
        mult = fp.leaky_multiplier(fused[1][0])
        neg = fp.saturate(fp.shift_round(acc * mult, acc_frac + fp.LEAKY_FRAC - fmt.frac), fmt)
        return np.where(acc < 0, neg, ref.requantize(acc, acc_frac, fmt))
    out = ref.requantize(acc, acc_frac, fmt)
    if fused is not None and fused[0] == "clip":
        out = np.clip(out, *fp.clip_bounds(fused[1][0], fused[1][1], fmt))
    return out


def np_act(y: np.ndarray, kind) -> np.ndarray:
    if kind == RELU:
        return np.maximum(y, 0)
    if kind == LEAKY:
        return np.where(y < 0, FUSED[LEAKY][1][0] * y, y)
    if kind == CLIP:
        return np.clip(y, *FUSED[CLIP][1])
    if kind == SIGMOID:
        return 1 / (1 + np.exp(-y))
    if kind == TANH:
        return np.tanh(y)
    return y


def conv_windows(x, g):
    """The reference's im2col: [1, cin, oh, ow, kh, kw] windows of the zero-padded input."""
    eff = ((g["kh"] - 1) * g["dh"] + 1, (g["kw"] - 1) * g["dw"] + 1)
    pb = max(0, (g["oh"] - 1) * g["sh"] + eff[0] - g["h"] - g["pt"])
    pr = max(0, (g["ow"] - 1) * g["sw"] + eff[1] - g["w"] - g["pl"])
    xp = np.pad(x[None], ((0, 0), (0, 0), (g["pt"], pb), (g["pl"], pr)))
    return sliding_window_view(xp, eff, axis=(2, 3))[:, :, ::g["sh"], ::g["sw"], ::g["dh"],
                                                     ::g["dw"]][:, :, :g["oh"], :g["ow"]]


def np_conv(x, w, g, dtype):
    """_conv's grouped einsum: [1, cout, oh, ow] in dtype (int64 or float64)."""
    win = conv_windows(x.astype(dtype), g)
    cin, cout, grp = g["cin"], g["cout"], g["group"]
    parts = [np.einsum("ncyxij,ocij->noyx", win[:, i * cin // grp:(i + 1) * cin // grp],
                       w[i * cout // grp:(i + 1) * cout // grp].astype(dtype), dtype=dtype)
             for i in range(grp)]
    return np.concatenate(parts, axis=1)


def conv_geometry(cin, cout, h, w, k, s, pads, d, group):
    kh, kw = k
    oh = (h + pads[0] + pads[2] - ((kh - 1) * d[0] + 1)) // s[0] + 1
    ow = (w + pads[1] + pads[3] - ((kw - 1) * d[1] + 1)) // s[1] + 1
    return dict(cin=cin, cout=cout, h=h, w=w, oh=oh, ow=ow, kh=kh, kw=kw, sh=s[0], sw=s[1],
                pt=pads[0], pl=pads[1], dh=d[0], dw=d[1], group=group)


CONVS = [  # cin, cout, h, w, kernel, strides, pads (t, l, b, r), dilations, group
    (6, 4, 9, 11, (3, 2), (2, 1), (1, 2, 1, 0), (2, 1), 2),    # grouped, dilated, strided, padded
    (4, 4, 7, 6, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 4),     # depthwise
    (5, 7, 8, 9, (1, 1), (2, 2), (0, 0, 0, 0), (1, 1), 1),     # 1x1 stride 2
    (3, 6, 6, 7, (5, 3), (1, 2), (2, 1, 2, 1), (1, 2), 1),
    (2, 3, 5, 5, (2, 2), (3, 3), (3, 3, 3, 3), (1, 1), 1),     # rows entirely in the padding
    (3, 2, 4, 300, (1, 3), (1, 1), (0, 1, 0, 1), (1, 1), 1),   # many column tiles
    (8, 10, 5, 40, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),   # full 4-channel x 16-column tiles
    (8, 16, 4, 37, (3, 3), (1, 1), (1, 1, 1, 1), (1, 2), 2),   # full tiles, grouped and dilated
    (5, 9, 6, 71, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1),    # strided tiles, a 1-channel tail
    (6, 20, 5, 4, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),   # narrow: 8-channel tiles, a tail
    (2, 4, 9, 21, (9, 9), (1, 1), (4, 4, 4, 4), (1, 1), 1),   # 81 taps: more than one call's
]


def run_conv_rows(x, g, call, dtype, out_dtype):
    """Every output row through a window of exactly the rows it needs, output channels in two
    calls ([0, cout // 2) and the rest) to exercise co_lo."""
    out = np.zeros((g["cout"], g["oh"], g["ow"]), dtype=out_dtype)
    geom = Conv(**g)
    split = g["cout"] // 2
    for oy in range(g["oh"]):
        first = oy * g["sh"] - g["pt"]
        win = window(x, first, first + (g["kh"] - 1) * g["dh"] + 1, dtype)
        for lo, hi in ((0, split), (split, g["cout"])):
            row = np.zeros((hi - lo) * g["ow"], dtype=out_dtype)
            call(ctypes.byref(win), geom, oy, lo, hi, row)
            out[lo:hi, oy] = row.reshape(hi - lo, g["ow"])
    return out


# --------------------------------------------------------------------------------------------------
# convolution


def conv_f32_in_tap_order(x, w, b, g, kind):
    """The float32 loop that sums each output over the taps in the order ky, kx, input channel
    (the padding's zero products change no sum), then adds the bias, then the activation: what
    the C float convolution equals bit for bit, whatever its register tiles and vector width."""
    win = conv_windows(x, g)[0]  # [cin, oh, ow, kh, kw], float32
    cig, cog = g["cin"] // g["group"], g["cout"] // g["group"]
    acc = np.zeros((g["cout"], g["oh"], g["ow"]), np.float32)
    for co in range(g["cout"]):
        base = co // cog * cig
        for ky in range(g["kh"]):
            for kx in range(g["kw"]):
                for ci in range(cig):
                    acc[co] += w[co, ci, ky, kx] * win[base + ci, :, :, ky, kx]
    y = acc + b[:, None, None]
    if kind == RELU:
        return np.where(y < 0, np.float32(0), y)
    if kind == LEAKY:
        return np.where(y < 0, np.float32(FUSED[LEAKY][1][0]) * y, y)
    return y


@pytest.mark.parametrize("case", CONVS)
@pytest.mark.parametrize("kind", [NONE, RELU, LEAKY])
def test_conv_row_f32(conv_lib, rng, case, kind):
    g = conv_geometry(*case)
    x = rng.normal(size=(g["cin"], g["h"], g["w"])).astype(np.float32)
    w = rng.normal(size=(g["cout"], g["cin"] // g["group"], g["kh"], g["kw"])).astype(np.float32)
    b = rng.normal(size=g["cout"]).astype(np.float32)
    wa, ba, a = arr(w, np.float32), arr(b, np.float32), float_act(kind)

    def call(win, geom, oy, lo, hi, row):
        conv_lib.aloha_conv_row_f32(win, ptr(wa), ptr(ba), ctypes.byref(geom), ctypes.byref(a), oy,
                               lo, hi, ptr(row))

    got = run_conv_rows(x, g, call, np.float32, np.float32)
    want = np_act(np_conv(x, w, g, np.float64)[0] + b.astype(np.float64)[:, None, None], kind)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    assert np.array_equal(got, conv_f32_in_tap_order(x, w, b, g, kind))


def test_conv_row_f32_without_bias_or_act(conv_lib, rng):
    g = conv_geometry(*CONVS[0])
    x = rng.normal(size=(g["cin"], g["h"], g["w"])).astype(np.float32)
    w = arr(rng.normal(size=(g["cout"], g["cin"] // 2, g["kh"], g["kw"])), np.float32)

    def call(win, geom, oy, lo, hi, row):
        conv_lib.aloha_conv_row_f32(win, ptr(w), None, ctypes.byref(geom), None, oy, lo, hi, ptr(row))

    got = run_conv_rows(x, g, call, np.float32, np.float32)
    want = np_conv(x, w, g, np.float64)[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("case", CONVS)
@pytest.mark.parametrize("kind", [NONE, RELU, LEAKY, CLIP])
def test_conv_row_q_bit_exact(conv_lib, rng, case, kind):
    g = conv_geometry(*case)
    fx, fout = fp.Fixed(8, 5), fp.Fixed(8, 4)
    x = rng.integers(fx.qmin, fx.qmax + 1, size=(g["cin"], g["h"], g["w"]))
    w = rng.integers(-128, 128, size=(g["cout"], g["cin"] // g["group"], g["kh"], g["kw"]))
    # per-channel weight fracs: accumulator shifts to the output format positive, zero, negative
    shifts = np.resize(np.array([9, 0, -2, 5, 12, -1, 3]), g["cout"])
    acc_frac = shifts + fout.frac
    bias = rng.integers(-(1 << 14), 1 << 14, size=g["cout"])
    wa, ba, r = arr(w, np.int32), arr(bias, np.int32), rq_fused(shifts, fout, kind)

    def call(win, geom, oy, lo, hi, row):
        conv_lib.aloha_conv_row_q(win, ptr(wa), ptr(ba), ctypes.byref(geom), ctypes.byref(r), oy, lo,
                             hi, ptr(row))

    got = run_conv_rows(x, g, call, np.int32, np.int32)
    acc = np_conv(x, w, g, np.int64) + bias.reshape(1, -1, 1, 1)
    want = accumulate_out(acc, acc_frac, fout, kind)[0]
    assert (acc < 0).any() and (acc > 0).any()
    assert np.array_equal(got, want)
    if kind in (NONE, LEAKY):  # both ends saturate
        assert (got == fout.qmin).any() and (got == fout.qmax).any()


def test_conv_row_q_without_bias_scalar_shift(conv_lib, rng):
    g = conv_geometry(*CONVS[3])
    fout = fp.Fixed(16, 3)
    x = rng.integers(-128, 128, size=(g["cin"], g["h"], g["w"]))
    w = arr(rng.integers(-128, 128, size=(g["cout"], g["cin"], g["kh"], g["kw"])), np.int32)
    r = rq(7, fout, RELU)

    def call(win, geom, oy, lo, hi, row):
        conv_lib.aloha_conv_row_q(win, ptr(w), None, ctypes.byref(geom), ctypes.byref(r), oy, lo, hi,
                             ptr(row))

    got = run_conv_rows(x, g, call, np.int32, np.int32)
    assert np.array_equal(got, accumulate_out(np_conv(x, w, g, np.int64), 7 + 3, fout, RELU)[0])


# --------------------------------------------------------------------------------------------------
# storage types: every input x weight x output type, int32 sums where they are proven enough

STORED = {(8, True): np.int8, (8, False): np.uint8, (16, True): np.int16, (16, False): np.uint16}


@pytest.mark.parametrize("xfmt", [fp.Fixed(8, 4, False), fp.Fixed(8, 5), fp.Fixed(16, 9),
                                  fp.Fixed(16, 10, False)])
@pytest.mark.parametrize("wbits", [8, 16])
def test_conv_row_q_in_narrow_storage_types(conv_lib, rng, xfmt, wbits):
    """Inputs, weights and outputs in int8/uint8/int16/uint16 give the reference's integers, with
    the accumulator fixedpoint.accumulator_of chooses and with 64-bit sums alike."""
    g = conv_geometry(*CONVS[6])
    wfmt = fp.Fixed(wbits, wbits - 2)
    fout = fp.Fixed(8, 3, signed=xfmt.signed)
    x = rng.integers(xfmt.qmin, xfmt.qmax + 1, size=(g["cin"], g["h"], g["w"]))
    w = rng.integers(wfmt.qmin, wfmt.qmax + 1, size=(g["cout"], g["cin"], g["kh"], g["kw"]))
    w.flat[:4] = wfmt.qmin  # the extreme products
    x.flat[:4] = xfmt.qmin if xfmt.signed else xfmt.qmax
    bias = rng.integers(-(1 << 20), 1 << 20, size=g["cout"])
    shift = 9
    acc = np_conv(x, w, g, np.int64) + bias.reshape(1, -1, 1, 1)
    want = accumulate_out(acc, shift + fout.frac, fout, RELU)[0]
    proven = fp.accumulator_of(g["cin"] * g["kh"] * g["kw"], xfmt, wfmt) is fp.INT32
    # by hand, 72 terms: 72 x 65535 x 128 < 2^31 but 72 x 32768 x 32768 > 2^31
    assert proven == (xfmt.bits == 8 or wbits == 8)
    xt, wt, ot = STORED[xfmt.bits, xfmt.signed], STORED[wbits, True], STORED[8, fout.signed]
    wa, ba = arr(w, wt), arr(bias, np.int32)
    for acc32 in sorted({0, int(proven)}):
        geom = dict(g, wtype=TAG[np.dtype(wt)], acc32=acc32)
        r = rq(shift, fout, RELU, out=ot)

        def call(win, geom_struct, oy, lo, hi, row):
            conv_lib.aloha_conv_row_q(win, ptr(wa), ptr(ba), ctypes.byref(Conv(**geom)),
                                 ctypes.byref(r), oy, lo, hi, ptr(row))

        got = run_conv_rows(x, g, call, xt, ot)
        assert np.array_equal(got, want), (acc32, np.abs(got.astype(np.int64) - want).max())


PAIR_CONVS = CONVS + [  # beyond the stage and the tap list a row's pair kernel takes
    (4097, 5, 3, 5, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),  # a stage over 256 KiB: gathered
    (3, 4, 17, 20, (17, 17), (1, 1), (0, 8, 0, 8), (1, 1), 1),  # 289 taps in a row
    (7, 6, 3, 50, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),  # 1x1, odd channels, 4 column tiles
]


PAIR_WFMT = fp.Fixed(8, 6)


def check_conv_q(conv_lib, rng, case, xfmt, wfmt):
    """A convolution of xfmt inputs and wfmt weights, in int32 sums where accumulator_of proves
    them enough (else 64-bit ones), requantised into 16 bits: numpy's int64 sums' integers."""
    g = conv_geometry(*case)
    fout = fp.Fixed(16, 3, signed=xfmt.signed)
    x = rng.integers(xfmt.qmin, xfmt.qmax + 1, size=(g["cin"], g["h"], g["w"]))
    w = rng.integers(wfmt.qmin, wfmt.qmax + 1,
                     size=(g["cout"], g["cin"] // g["group"], g["kh"], g["kw"]))
    w.flat[:3] = wfmt.qmin
    x.flat[:3] = xfmt.qmin if xfmt.signed else xfmt.qmax
    bias = rng.integers(-(1 << 20), 1 << 20, size=g["cout"])
    shift = 6 if wfmt.bits == 8 else 14
    acc = np_conv(x, w, g, np.int64) + bias.reshape(1, -1, 1, 1)
    want = accumulate_out(acc, shift + fout.frac, fout, NONE)[0]
    xt, wt, ot = STORED[xfmt.bits, xfmt.signed], STORED[wfmt.bits, True], STORED[16, fout.signed]
    wa, ba = arr(w, wt), arr(bias, np.int32)
    fan_in = g["cin"] // g["group"] * g["kh"] * g["kw"]
    acc32 = int(fp.accumulator_of(fan_in, xfmt, wfmt) is fp.INT32)
    geom = Conv(**dict(g, wtype=TAG[np.dtype(wt)], acc32=acc32))
    r = rq(shift, fout, NONE, out=ot)

    def call(win, geom_struct, oy, lo, hi, row):
        conv_lib.aloha_conv_row_q(win, ptr(wa), ptr(ba), ctypes.byref(geom), ctypes.byref(r), oy,
                                  lo, hi, ptr(row))

    got = run_conv_rows(x, g, call, xt, ot)
    assert np.array_equal(got, want), np.abs(got.astype(np.int64) - want).max()


@pytest.mark.parametrize("case,xfmt", [  # where int32 sums are proven (not 4097 x 9 int16 inputs)
    (case, xfmt) for case in PAIR_CONVS
    for xfmt in (fp.Fixed(8, 5), fp.Fixed(8, 4, False), fp.Fixed(16, 9))
    if fp.accumulator_of(case[0] // case[-1] * case[4][0] * case[4][1], xfmt, PAIR_WFMT)
    is fp.INT32])
def test_conv_row_q_int32_sums_in_every_geometry(conv_lib, rng, case, xfmt):
    """8-bit and int16 inputs with 8-bit weights in int32 sums (on AVX2, the pair kernel: input
    channels two to a lane, odd counts, fewer than four output channels, rows of fewer and more
    column tiles than pack their weights, strides, dilations, groups)."""
    check_conv_q(conv_lib, rng, case, xfmt, PAIR_WFMT)


@pytest.mark.parametrize("case", PAIR_CONVS + [  # weights converted to the sum type by chunk:
    (111, 72, 3, 20, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),  # 36 a call: chunks of 32 and 4
    (300, 40, 3, 20, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),  # 20 a call, chunks of 12: unconverted
])
def test_conv_row_q_64_bit_sums_in_every_geometry(conv_lib, rng, case):
    """16-bit inputs and weights in 64-bit sums (on x86-64, in double: exact integers), every
    geometry, with the weights converted to double once per row and chunk of channels."""
    check_conv_q(conv_lib, rng, case, fp.Fixed(16, 9), fp.Fixed(16, 14))


def test_dense_int32_accumulator_holds_exactly_up_to_the_proven_bound(lib):
    """fan_in x 255 x 128 < 2^31 (uint8 inputs, int8 weights): 65793 terms. At 65793 extreme
    products the int32 sum is exact; one more term is where accumulator_of switches to int64,
    and there the int32 sum would indeed wrap."""
    xf, wf, fout = fp.Fixed(8, 0, False), fp.Fixed(8, 0), fp.Fixed(16, 0)
    assert fp.accumulator_of(65793, xf, wf) is fp.INT32
    assert fp.accumulator_of(65794, xf, wf) is fp.INT64
    r = rq(16, fout, out=np.int16)
    for k, exact32 in ((65793, True), (65794, False)):
        x = arr(np.full(k, 255), np.uint8)
        w = arr(np.full((1, k), -128), np.int8)
        want = fp.saturate(fp.shift_round(np.array([-255 * 128 * k]), 16), fout)
        for acc32 in (0, 1):
            got = np.zeros(1, dtype=np.int16)
            lib.aloha_dense_q(ptr(x), TAG[x.dtype], ptr(w), TAG[w.dtype], acc32, None, k, 0, 1,
                              ctypes.byref(r), ptr(got))
            assert (got[0] == want[0]) == (exact32 or not acc32), (k, acc32, got, want)


@pytest.mark.parametrize("xt", [np.int16, np.uint16, np.int8, np.uint8])
@pytest.mark.parametrize("wt", [np.int16, np.int8])
def test_dense_in_narrow_storage_types_with_64_bit_sums(lib, rng, xt, wt):
    """8/16-bit dense layers summed in 64 bits (in double vectors where the machine has them):
    the int64 sums of numpy, extreme operands and a fan-in that is no multiple of the eight
    partial sums, requantised as the reference does."""
    k, m = 203, 9
    xi, wi = np.iinfo(xt), np.iinfo(wt)
    x = rng.integers(xi.min, int(xi.max) + 1, size=k)
    w = rng.integers(wi.min, int(wi.max) + 1, size=(m, k))
    x[:50] = xi.max if xi.min == 0 else xi.min
    w[0, :] = wi.min  # the largest sum of products
    bias = rng.integers(-(1 << 20), 1 << 20, size=m)
    fout = fp.Fixed(16, 0)
    r = rq(20, fout, out=np.int16)
    xa, wa, ba = arr(x, xt), arr(w, wt), arr(bias, np.int32)
    got = np.zeros(m, dtype=np.int16)
    lib.aloha_dense_q(ptr(xa), TAG[xa.dtype], ptr(wa), TAG[wa.dtype], 0, ptr(ba), k, 0, m,
                      ctypes.byref(r), ptr(got))
    acc = w.astype(np.int64) @ x.astype(np.int64) + bias
    assert np.array_equal(got, accumulate_out(acc[None], 20, fout)[0])


def test_row_kernels_in_narrow_storage_types(lib, rng):
    """Pooling, elementwise, batch norm, requantisation, islands, softmax, LRN, shuffle and the
    reshape copy read and write int8/uint8/int16/uint16 as the reference computes in int64."""
    c, h, w = 4, 5, 6
    fin, fout = fp.Fixed(8, 4, False), fp.Fixed(8, 3)
    x = rng.integers(fin.qmin, fin.qmax + 1, size=(c, h, w))
    xt, ot = np.uint8, np.int8
    r = rq(fin.frac - fout.frac, fout, RELU, out=ot)
    p = pool_geometry(1, c, h, w, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), True, 0)
    got = run_pool_rows(x, p, lambda win, geom, oy, row: lib.aloha_pool_row_q(
        win, geom, ctypes.byref(r), oy, ptr(row)), xt, ot)
    q = fp.round_div(pool_windows(x, p, 0).sum(axis=(3, 4)), counts(p))
    assert np.array_equal(got, accumulate_out(q[None], fin.frac, fout, RELU)[0])
    b = rng.integers(-128, 128, size=(c, 1, w))
    fb = fp.Fixed(8, 2)
    f = max(fin.frac, fb.frac)
    ra = rq(f - fout.frac, fout, out=np.int16)
    got = np.zeros((c, h, w), dtype=np.int16)
    for oy in range(h):
        row = np.zeros(c * w, dtype=np.int16)
        lib.aloha_add_row_q(ctypes.byref(window(x, oy, oy + 1, xt)), f - fin.frac,
                            ctypes.byref(window(b, 0, 1, np.int8)), f - fb.frac, oy, c, w,
                            ctypes.byref(ra), ptr(row))
        got[:, oy] = row.reshape(c, w)
    acc = np.left_shift(x, f - fin.frac) + np.left_shift(b, f - fb.frac)
    assert np.array_equal(got, accumulate_out(acc[None], f, fout, NONE)[0])
    scale, bias = arr(rng.integers(-100, 100, size=c), np.int16), arr(rng.integers(-999, 999, c),
                                                                     np.int32)
    got = np.zeros((c, h, w), dtype=np.int8)
    for oy in range(h):
        row = np.zeros(c * w, dtype=np.int8)
        lib.aloha_bn_row_q(ctypes.byref(window(x, oy, oy + 1, xt)), ptr(scale), TAG[scale.dtype],
                           ptr(bias), oy, ctypes.byref(rq(5, fout, out=np.int8)), ptr(row))
        got[:, oy] = row.reshape(c, w)
    acc = x * scale.reshape(-1, 1, 1).astype(np.int64) + bias.reshape(-1, 1, 1)
    assert np.array_equal(got, accumulate_out(acc[None], 5 + fout.frac, fout, NONE)[0])
    flat = arr(np.concatenate([rng.integers(-32768, 32768, 300), [-32768, 32767]]), np.int16)
    fi16 = fp.Fixed(16, 10)
    got = np.zeros(flat.size, dtype=np.uint8)
    lib.aloha_requant_q(ptr(flat), TAG[flat.dtype], flat.size,
                        ctypes.byref(rq(7, fp.Fixed(8, 3, False), RELU, out=np.uint8)), ptr(got))
    assert np.array_equal(got, accumulate_out(flat[None].astype(np.int64), 10,
                                              fp.Fixed(8, 3, False), RELU)[0])
    fo = fp.Fixed(8, 7, False)
    got = np.zeros(flat.size, dtype=np.uint8)
    lib.aloha_island_q(ptr(flat), TAG[flat.dtype], flat.size, fi16.frac, fo.frac, fo.qmin, fo.qmax,
                       SIGMOID, ptr(got), TAG[got.dtype])
    assert np.array_equal(got, fp.to_fixed(1 / (1 + np.exp(-fp.dequantize(flat, 10))), fo))
    soft = arr(rng.integers(-128, 128, size=(2, 10)), np.int8)
    got = np.zeros(soft.shape, dtype=np.uint16)
    lib.aloha_softmax_q(ptr(soft), TAG[soft.dtype], 2, 10, 1, 4, 16, 0, 65535, ptr(got),
                        TAG[got.dtype])
    e = np.exp(fp.dequantize(soft, 4) - fp.dequantize(soft, 4).max(axis=1, keepdims=True))
    assert np.array_equal(got, fp.to_fixed(e / e.sum(axis=1, keepdims=True),
                                           fp.Fixed(16, 16, False)))
    row = arr(x[:, 0], xt)
    got = np.zeros(c * w, dtype=np.int16)
    lib.aloha_lrn_row_q(ptr(row), TAG[row.dtype], c, w, 3, 1e-2, 0.75, 1.0, fin.frac, 12,
                        -32768, 32767, ptr(got), TAG[got.dtype])
    want = fp.to_fixed(ref.lrn(fp.dequantize(x[None, :, :1], fin.frac), 3, 1e-2, 0.75, 1.0),
                       fp.Fixed(16, 12))
    assert np.array_equal(got.reshape(c, w), want[0, :, 0])
    got = np.zeros(c * w, dtype=np.int8)
    lib.aloha_shuffle_row_q(ptr(row), TAG[row.dtype], c, w, 2, ctypes.byref(r), ptr(got))
    op = SimpleNamespace(prop_int=lambda name, default=None: 2)
    want = accumulate_out(ref._shuffle(op, x[None].astype(np.int64)), fin.frac, fout, RELU)
    assert np.array_equal(got.reshape(c, w), want[0, :, 0])
    nchw = arr(x, xt)
    rows = np.zeros(x.size, dtype=np.int8)
    lib.aloha_nchw_to_rows_q(ptr(nchw), TAG[nchw.dtype], c, h, w, ctypes.byref(r), ptr(rows))
    want = accumulate_out(x[None].astype(np.int64), fin.frac, fout, RELU)[0]
    assert np.array_equal(rows.reshape(h, c, w), want.transpose(1, 0, 2))


# --------------------------------------------------------------------------------------------------
# pooling


def pool_geometry(kind, c, h, w, k, s, pads, d, ceil, cip):
    eff = ((k[0] - 1) * d[0] + 1, (k[1] - 1) * d[1] + 1)
    span = (h + pads[0] + pads[2] - eff[0], w + pads[1] + pads[3] - eff[1])
    oh, ow = (-(-n // st) + 1 if ceil else n // st + 1 for n, st in zip(span, s))
    if ceil:  # the cases marked ceil mode do overhang
        assert (oh, ow) != (span[0] // s[0] + 1, span[1] // s[1] + 1)
    return dict(kind=kind, c=c, h=h, w=w, oh=oh, ow=ow, kh=k[0], kw=k[1], sh=s[0], sw=s[1],
                pt=pads[0], pl=pads[1], pb=pads[2], pr=pads[3], dh=d[0], dw=d[1],
                count_include_pad=cip)


def pool_stub(p):
    """What runtime.reference.avg_counts reads from a pool op."""
    return SimpleNamespace(
        window=lambda: ((p["kh"], p["kw"]), (p["sh"], p["sw"]),
                        (p["pt"], p["pl"], p["pb"], p["pr"]), (p["dh"], p["dw"])),
        out_shape=lambda: (1, p["c"], p["oh"], p["ow"]),
        prop_int=lambda name, default=None: p[name] if name in p else default)


def counts(p):
    """Per output position the number of window positions that count (dilation-aware): inside the
    padded area with count_include_pad, inside the input otherwise; equals the reference's
    avg_counts for undilated windows."""
    h, w = p["h"], p["w"]
    if p["count_include_pad"]:
        ylo, yhi, xlo, xhi = -p["pt"], h + p["pb"], -p["pl"], w + p["pr"]
    else:
        ylo, yhi, xlo, xhi = 0, h, 0, w
    iy = np.arange(p["oh"])[:, None] * p["sh"] - p["pt"] + np.arange(p["kh"]) * p["dh"]
    ix = np.arange(p["ow"])[:, None] * p["sw"] - p["pl"] + np.arange(p["kw"]) * p["dw"]
    cy = ((iy >= ylo) & (iy < yhi)).sum(axis=1)
    cx = ((ix >= xlo) & (ix < xhi)).sum(axis=1)
    total = cy[:, None] * cx[None, :]
    if p["dh"] == p["dw"] == 1:
        assert np.array_equal(total, ref.avg_counts(pool_stub(p), h, w))
    return total


def pool_windows(x, p, fill):
    """_pool's padded windows: [c, oh, ow, kh, kw] (the ceil-mode overhang padded with fill)."""
    eff = ((p["kh"] - 1) * p["dh"] + 1, (p["kw"] - 1) * p["dw"] + 1)
    eh = ref.window_extra(p["h"], p["pt"], p["pb"], eff[0], p["sh"], p["oh"])
    ew = ref.window_extra(p["w"], p["pl"], p["pr"], eff[1], p["sw"], p["ow"])
    xp = np.pad(x, ((0, 0), (p["pt"], p["pb"] + eh), (p["pl"], p["pr"] + ew)),
                constant_values=fill)
    return sliding_window_view(xp, eff, axis=(1, 2))[:, ::p["sh"], ::p["sw"], ::p["dh"],
                                                     ::p["dw"]][:, :p["oh"], :p["ow"]]


POOLS = [  # c, h, w, kernel, strides, pads (t, l, b, r), dilations, ceil mode
    (3, 8, 9, (3, 3), (2, 2), (0, 0, 0, 0), (1, 1), True),     # ceil-mode overhang
    (2, 8, 7, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), True),     # padding and overhang
    (4, 6, 8, (2, 3), (1, 2), (1, 2, 0, 1), (1, 1), False),
    (2, 10, 10, (2, 2), (2, 3), (1, 0, 1, 2), (2, 2), True),   # dilated with overhang (*)
    (3, 5, 5, (5, 5), (3, 3), (2, 2, 2, 2), (1, 1), True),
    (2, 4, 150, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), False),  # interiors of several blocks
    (2, 6, 162, (3, 3), (2, 2), (0, 0, 0, 0), (1, 1), True),   # strided, wide, overhang
]


# (*) the average divisor counts the dilated taps inside the input (ONNX); runtime.reference's
# avg_counts counts an undilated window, so the two differ for dilated average pools.


def run_pool_rows(x, p, call, dtype, out_dtype):
    out = np.zeros((p["c"], p["oh"], p["ow"]), dtype=out_dtype)
    geom = Pool(**p)
    for oy in range(p["oh"]):
        first = oy * p["sh"] - p["pt"]
        win = window(x, first, first + (p["kh"] - 1) * p["dh"] + 1, dtype)
        row = np.zeros(p["c"] * p["ow"], dtype=out_dtype)
        call(ctypes.byref(win), ctypes.byref(geom), oy, row)
        out[:, oy] = row.reshape(p["c"], p["ow"])
    return out


@pytest.mark.parametrize("case", POOLS)
@pytest.mark.parametrize("kind,cip", [(0, 0), (1, 0), (1, 1)])
def test_pool_row_q_bit_exact(lib, rng, case, kind, cip):
    c, h, w, k, s, pads, d, ceil = case
    p = pool_geometry(kind, c, h, w, k, s, pads, d, ceil, cip)
    fin, fout = fp.Fixed(8, 4), fp.Fixed(8, 3)
    x = rng.integers(fin.qmin, fin.qmax + 1, size=(c, h, w))
    for act_kind in (NONE, RELU, LEAKY, CLIP):
        r = rq_fused(fin.frac - fout.frac, fout, act_kind)
        got = run_pool_rows(x, p, lambda win, geom, oy, row: lib.aloha_pool_row_q(
            win, geom, ctypes.byref(r), oy, ptr(row)), np.int32, np.int32)
        if kind == 0:
            q = pool_windows(x, p, fin.qmin - 1).max(axis=(3, 4))
        else:
            q = fp.round_div(pool_windows(x, p, 0).sum(axis=(3, 4)), counts(p))
        assert np.array_equal(got, accumulate_out(q[None], fin.frac, fout, act_kind)[0])


@pytest.mark.parametrize("case", POOLS)
@pytest.mark.parametrize("kind,cip", [(0, 0), (1, 0), (1, 1)])
def test_pool_row_f32(lib, rng, case, kind, cip):
    c, h, w, k, s, pads, d, ceil = case
    p = pool_geometry(kind, c, h, w, k, s, pads, d, ceil, cip)
    x = rng.normal(size=(c, h, w)).astype(np.float32)
    a = float_act(RELU)
    got = run_pool_rows(x, p, lambda win, geom, oy, row: lib.aloha_pool_row_f32(
        win, geom, ctypes.byref(a), oy, ptr(row)), np.float32, np.float32)
    x64 = x.astype(np.float64)
    if kind == 0:
        want = pool_windows(x64, p, -np.inf).max(axis=(3, 4))
    else:
        want = pool_windows(x64, p, 0.0).sum(axis=(3, 4)) / counts(p)
    np.testing.assert_allclose(got, np.maximum(want, 0), rtol=1e-5, atol=1e-6)


def test_round_div_floor_half_up_matches_reference(lib):
    """A 1x2 average pool of hand-picked pairs: sums of -3, -1, 1, 3 over 2 round half up."""
    x = np.array([[[-2, -1, -1, 0, 0, 1, 1, 2, -7, 0]]])
    p = pool_geometry(1, 1, 1, 10, (1, 2), (1, 2), (0, 0, 0, 0), (1, 1), False, 0)
    r = rq(0, fp.Fixed(8, 0))
    got = run_pool_rows(x, p, lambda win, geom, oy, row: lib.aloha_pool_row_q(
        win, geom, ctypes.byref(r), oy, ptr(row)), np.int32, np.int32)
    assert got.ravel().tolist() == [-1, 0, 1, 2, -3] == fp.round_div(
        np.array([-3, -1, 1, 3, -7]), 2).tolist()


@pytest.mark.parametrize("kind", [0, 1])
def test_global_pool(lib, rng, kind):
    c, hw = 5, 49
    fin, fout = fp.Fixed(16, 8), fp.Fixed(8, 2)
    x = arr(rng.integers(fin.qmin, fin.qmax + 1, size=(c, hw)), np.int32)
    for act_kind in (NONE, RELU, LEAKY, CLIP):
        got = np.zeros(c, dtype=np.int32)
        lib.aloha_gpool_q(ptr(x), 0, c, hw, kind, ctypes.byref(rq_fused(6, fout, act_kind)),
                          ptr(got))
        x64 = x.astype(np.int64)
        q = x64.max(axis=1) if kind == 0 else fp.round_div(x64.sum(axis=1), hw)
        assert np.array_equal(got, accumulate_out(q[None], fin.frac, fout, act_kind)[0])
    xf = arr(rng.normal(size=(c, hw)), np.float32)
    got = np.zeros(c, dtype=np.float32)
    lib.aloha_gpool_f32(ptr(xf), c, hw, kind, None, ptr(got))
    want = xf.astype(np.float64).max(axis=1) if kind == 0 else xf.astype(np.float64).mean(axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------------------------------
# dense, elementwise, batch norm


@pytest.mark.parametrize("kind", [NONE, RELU, LEAKY, CLIP])
def test_dense(lib, rng, kind):
    k, m = 37, 11
    x = arr(rng.integers(-128, 128, size=k), np.int32)
    w = arr(rng.integers(-128, 128, size=(m, k)), np.int32)
    b = arr(rng.integers(-5000, 5000, size=m), np.int32)
    fout = fp.Fixed(8, 2)
    shifts = np.resize(np.array([8, 0, -3, 4, 11]), m)
    r = rq_fused(shifts, fout, kind)
    got = np.zeros(m, dtype=np.int32)
    for lo, hi in ((0, 4), (4, m)):
        part = np.zeros(hi - lo, dtype=np.int32)
        lib.aloha_dense_q(ptr(x), 0, ptr(w), 0, 0, ptr(b), k, lo, hi, ctypes.byref(r), ptr(part))
        got[lo:hi] = part
    acc = np.einsum("nk,mk->nm", x[None].astype(np.int64), w.astype(np.int64)) + b[None]
    assert np.array_equal(got, accumulate_out(acc, shifts + fout.frac, fout, kind)[0])
    xf, wf = arr(rng.normal(size=k), np.float32), arr(rng.normal(size=(m, k)), np.float32)
    bf = arr(rng.normal(size=m), np.float32)
    gotf = np.zeros(m - 3, dtype=np.float32)
    lib.aloha_dense_f32(ptr(xf), ptr(wf), ptr(bf), k, 3, m, ctypes.byref(float_act(kind)),
                        ptr(gotf))
    want = np_act(wf.astype(np.float64) @ xf.astype(np.float64) + bf, kind)[3:]
    np.testing.assert_allclose(gotf, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())



def dense_f32_in_lane_order(x, w, b):
    """The float32 sums aloha_dense_f32 documents: eight partial sums, s[l] over x[i + l] * w[i + l]
    for the full blocks of eight in the order of i, the tail into s[0], then
    ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)) and the bias, each step rounded to float32."""
    f = np.float32
    out = np.zeros(w.shape[0], dtype=f)
    full = len(x) // 8 * 8
    for j in range(w.shape[0]):
        s = [f(0)] * 8
        for i in range(0, full, 8):
            for lane in range(8):
                s[lane] = f(s[lane] + f(x[i + lane] * w[j, i + lane]))
        for i in range(full, len(x)):
            s[0] = f(s[0] + f(x[i] * w[j, i]))
        out[j] = f(f(f(s[0] + s[1]) + f(s[2] + s[3])) + f(f(s[4] + s[5]) + f(s[6] + s[7]))) + b[j]
    return out


def test_float_dense_sums_in_its_documented_order(lib, rng):
    k, m = 45, 11  # five blocks of eight and a tail of five
    x, w = arr(rng.normal(size=k), np.float32), arr(rng.normal(size=(m, k)), np.float32)
    b = arr(rng.normal(size=m), np.float32)
    want = dense_f32_in_lane_order(x, w, b)
    # every row count from 1 to 10 (rows four at a time, then one by one), from row 1
    for m_hi in range(2, m + 1):
        got = np.zeros(m_hi - 1, dtype=np.float32)
        lib.aloha_dense_f32(ptr(x), ptr(w), ptr(b), k, 1, m_hi, ctypes.byref(float_act(NONE)),
                            ptr(got))
        assert np.array_equal(got, want[1:m_hi]), m_hi


BROADCASTS = [((4, 1, 1), (4, 5, 6)), ((4, 5, 6), (4, 5, 6)), ((1, 5, 6), (4, 1, 6)),
              ((4, 5, 1), (1, 1, 1)), ((4, 1, 6), (1, 5, 1))]


def run_binary_rows(sa, sb, a, b, c, h, w, call, dtype, out_dtype):
    out = np.zeros((c, h, w), dtype=out_dtype)
    for oy in range(h):
        wa = window(a, 0 if sa[1] == 1 else oy, (0 if sa[1] == 1 else oy) + 1, dtype)
        wb = window(b, 0 if sb[1] == 1 else oy, (0 if sb[1] == 1 else oy) + 1, dtype)
        row = np.zeros(c * w, dtype=out_dtype)
        call(ctypes.byref(wa), ctypes.byref(wb), oy, row)
        out[:, oy] = row.reshape(c, w)
    return out


@pytest.mark.parametrize("sa,sb", BROADCASTS)
def test_add_mul_rows_q_broadcast(lib, rng, sa, sb):
    c, h, w = 4, 5, 6
    fa, fb, fout = fp.Fixed(8, 5), fp.Fixed(8, 2), fp.Fixed(8, 3)
    a = rng.integers(fa.qmin, fa.qmax + 1, size=sa)
    b = rng.integers(fb.qmin, fb.qmax + 1, size=sb)
    f = max(fa.frac, fb.frac)
    for kind in (NONE, RELU, LEAKY, CLIP):
        r = rq_fused(f - fout.frac, fout, kind)
        got = run_binary_rows(sa, sb, a, b, c, h, w, lambda wa, wb, oy, row: lib.aloha_add_row_q(
            wa, f - fa.frac, wb, f - fb.frac, oy, c, w, ctypes.byref(r), ptr(row)),
            np.int32, np.int32)
        acc = np.left_shift(a[None], f - fa.frac) + np.left_shift(b[None], f - fb.frac)
        want = accumulate_out(np.broadcast_to(acc, (1, c, h, w)), f, fout, kind)[0]
        assert np.array_equal(got, want)
    r = rq(fa.frac + fb.frac - fout.frac, fout)
    got = run_binary_rows(sa, sb, a, b, c, h, w, lambda wa, wb, oy, row: lib.aloha_mul_row_q(
        wa, wb, oy, c, w, ctypes.byref(r), ptr(row)), np.int32, np.int32)
    want = ref.requantize(np.broadcast_to(a * b, (c, h, w)), fa.frac + fb.frac, fout)
    assert np.array_equal(got, want)
    if sa == sb:  # enough distinct products to reach both ends
        assert (want == fout.qmin).any() and (want == fout.qmax).any()


@pytest.mark.parametrize("sa,sb", [((3, 1, 150), (3, 1, 150)), ((1, 1, 150), (3, 1, 1)),
                                   ((3, 1, 1), (3, 1, 131))])
def test_add_mul_rows_q_in_narrow_types_over_several_blocks(lib, rng, sa, sb):
    """int8 plus uint8 into int16 and uint8, rows of 131-150 columns (the kernel works 64 at a
    time), broadcast either way: numpy's integers."""
    c, w = 3, 150 if 150 in (sa[2], sb[2]) else 131
    fa, fb = fp.Fixed(8, 5), fp.Fixed(8, 2, False)
    a = rng.integers(fa.qmin, fa.qmax + 1, size=sa)
    b = rng.integers(fb.qmin, fb.qmax + 1, size=sb)
    f = max(fa.frac, fb.frac)
    for fout, ot in ((fp.Fixed(16, 4), np.int16), (fp.Fixed(8, 3, False), np.uint8)):
        for op in ("add", "mul"):
            row = np.zeros(c * w, dtype=ot)
            wa, wb = window(a, 0, 1, np.int8), window(b, 0, 1, np.uint8)
            if op == "add":
                r = rq(f - fout.frac, fout, RELU, out=ot)
                lib.aloha_add_row_q(ctypes.byref(wa), f - fa.frac, ctypes.byref(wb), f - fb.frac,
                                    0, c, w, ctypes.byref(r), ptr(row))
                acc = np.left_shift(a, f - fa.frac) + np.left_shift(b, f - fb.frac)
                want = accumulate_out(np.broadcast_to(acc, (1, c, 1, w)), f, fout, RELU)[0]
            else:
                r = rq(fa.frac + fb.frac - fout.frac, fout, out=ot)
                lib.aloha_mul_row_q(ctypes.byref(wa), ctypes.byref(wb), 0, c, w, ctypes.byref(r),
                                    ptr(row))
                want = ref.requantize(np.broadcast_to(a * b, (c, 1, w)), fa.frac + fb.frac, fout)
            assert np.array_equal(row.reshape(c, w), np.asarray(want).reshape(c, w)), (op, ot)


@pytest.mark.parametrize("sa,sb", BROADCASTS)
def test_add_mul_rows_f32_broadcast(lib, rng, sa, sb):
    c, h, w = 4, 5, 6
    a = rng.normal(size=sa).astype(np.float32)
    b = rng.normal(size=sb).astype(np.float32)
    for name, fn in (("aloha_add_row_f32", np.add), ("aloha_mul_row_f32", np.multiply)):
        for kind in (NONE, LEAKY, TANH):
            ak = float_act(kind)
            got = run_binary_rows(sa, sb, a, b, c, h, w, lambda wa, wb, oy, row: getattr(
                lib, name)(wa, wb, oy, c, w, ctypes.byref(ak), ptr(row)), np.float32, np.float32)
            want = np_act(np.broadcast_to(fn(a.astype(np.float64), b), (c, h, w)), kind)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", [NONE, RELU, LEAKY, CLIP])
def test_batch_norm_rows(lib, rng, kind):
    c, h, w = 5, 3, 4
    fx, fout = fp.Fixed(8, 4), fp.Fixed(8, 3)
    x = rng.integers(fx.qmin, fx.qmax + 1, size=(c, h, w))
    scale = arr(rng.integers(-128, 128, size=c), np.int32)
    shifts = np.array([6, 0, -1, 3, 9])
    bias = arr(rng.integers(-3000, 3000, size=c), np.int32)
    r = rq_fused(shifts, fout, kind)
    got = np.zeros((c, h, w), dtype=np.int32)
    for oy in range(h):
        row = np.zeros(c * w, dtype=np.int32)
        lib.aloha_bn_row_q(ctypes.byref(window(x, oy, oy + 1, np.int32)), ptr(scale), 0,
                           ptr(bias), oy, ctypes.byref(r), ptr(row))
        got[:, oy] = row.reshape(c, w)
    acc = x[None] * scale.reshape(1, -1, 1, 1) + bias.reshape(1, -1, 1, 1).astype(np.int64)
    assert np.array_equal(got, accumulate_out(acc, shifts + fout.frac, fout, kind)[0])
    xf = rng.normal(size=(c, h, w)).astype(np.float32)
    sf, bf = arr(rng.normal(size=c), np.float32), arr(rng.normal(size=c), np.float32)
    gotf = np.zeros((c, h, w), dtype=np.float32)
    ak = float_act(kind)
    for oy in range(h):
        row = np.zeros(c * w, dtype=np.float32)
        lib.aloha_bn_row_f32(ctypes.byref(window(xf, oy, oy + 1, np.float32)), ptr(sf), ptr(bf),
                             oy, ctypes.byref(ak), ptr(row))
        gotf[:, oy] = row.reshape(c, w)
    want = np_act(xf.astype(np.float64) * sf[:, None, None] + bf[:, None, None], kind)
    np.testing.assert_allclose(gotf, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shift", [-3, 0, 1, 5, 13])
def test_requant_activations_and_conversions(lib, rng, shift):
    """Fixed relu/leaky/clip ops and format conversions: reference _act / requantize."""
    fin = fp.Fixed(16, 10)
    fout = fp.Fixed(8, fin.frac - shift)
    x = arr(np.concatenate([rng.integers(fin.qmin, fin.qmax + 1, size=500),
                            [fin.qmin, fin.qmax, 0, -1, 1]]), np.int32)
    for kind in (NONE, RELU, LEAKY, CLIP):
        got = np.zeros_like(x)
        lib.aloha_requant_q(ptr(x), 0, x.size, ctypes.byref(rq_fused(shift, fout, kind)),
                            ptr(got))
        want = accumulate_out(x[None].astype(np.int64), fin.frac, fout, kind)[0]
        assert np.array_equal(got, want)


@pytest.mark.parametrize("shift", [1, 2, 31, 32, 61, 62])
def test_requant_of_64_bit_sums_at_the_ends_wraps_like_numpy(lib, shift):
    """The vectorised requantisation (no activation or relu, shift 1..62) of int64 sums up to
    the ends of int64, where adding the rounding half wraps modulo 2^64 as numpy's int64 does:
    the integers of reference requantize, computed by numpy."""
    fout = fp.Fixed(32, 0)
    ends = [2**63 - 1, 2**63 - 2, -2**63, -2**63 + 1, 2**62, -2**62, 2**31, -2**31 - 1]
    small = [0, 1, -1, 2, -2, 3, -3, (1 << shift) - 1, -(1 << shift) + 1, 1 << (shift - 1),
             -(1 << (shift - 1)), (1 << (shift - 1)) - 1, -(1 << (shift - 1)) - 1]
    x = np.array(ends + small + [12345678901234, -12345678901234], dtype=np.int64)
    for kind in (NONE, RELU):
        got = np.zeros(x.size, dtype=np.int32)
        lib.aloha_requant_q(ptr(x), 6, x.size, ctypes.byref(rq_fused(shift, fout, kind)),
                            ptr(got))
        with np.errstate(over="ignore"):
            want = accumulate_out(x[None], shift, fout, kind)[0]
        assert np.array_equal(got, want), (kind, got, want)


def test_act_f32(lib, rng):
    x = arr(rng.normal(size=300) * 3, np.float32)
    for kind in (NONE, RELU, LEAKY, CLIP, SIGMOID, TANH):
        got = np.zeros_like(x)
        lib.aloha_act_f32(ptr(x), x.size, ctypes.byref(float_act(kind)), ptr(got))
        np.testing.assert_allclose(got, np_act(x.astype(np.float64), kind), rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------------------------------
# float islands


@pytest.mark.parametrize("kind", [SIGMOID, TANH])
def test_island_bit_exact(lib, rng, kind):
    fin, fout = fp.Fixed(16, 11), fp.Fixed(8, 7)
    x = arr(np.concatenate([rng.integers(fin.qmin, fin.qmax + 1, size=4000),
                            [fin.qmin, fin.qmax, 0]]), np.int32)
    got = np.zeros_like(x)
    lib.aloha_island_q(ptr(x), 0, x.size, fin.frac, fout.frac, fout.qmin, fout.qmax, kind, ptr(got),
                       0)
    real = fp.dequantize(x, fin.frac)
    y = 1.0 / (1.0 + np.exp(-real)) if kind == SIGMOID else np.tanh(real)
    assert np.array_equal(got, fp.to_fixed(y, fout))


def test_to_fixed(lib):
    f = fp.Fixed(8, 4)
    for v in (0.03125, -0.03125, 100.0, -100.0, 1.2345, -7.96875, float("inf"), float("-inf")):
        assert lib.aloha_to_fixed(v, f.frac, f.qmin, f.qmax) == fp.to_fixed(np.float64(v), f)


@pytest.mark.parametrize("shape,axis", [((1, 1000), 1), ((1, 10), 1), ((1, 7, 3, 4), 1),
                                        ((1, 300, 2, 1), 1), ((1, 3, 5, 4), 2),
                                        ((1, 3, 2, 133), 3)])
def test_softmax(lib, rng, shape, axis):
    fin, fout = fp.Fixed(16, 9), fp.Fixed(16, 15)
    x = arr(rng.integers(fin.qmin // 4, fin.qmax // 4, size=shape), np.int32)
    outer, n = int(np.prod(shape[:axis])), shape[axis]
    inner = int(np.prod(shape[axis + 1:]))
    got = np.zeros_like(x)
    lib.aloha_softmax_q(ptr(x), 0, outer, n, inner, fin.frac, fout.frac, fout.qmin, fout.qmax,
                        ptr(got), 0)
    real = fp.dequantize(x, fin.frac)
    e = np.exp(real - real.max(axis=axis, keepdims=True))
    assert np.array_equal(got, fp.to_fixed(e / e.sum(axis=axis, keepdims=True), fout))
    xf = arr(rng.normal(size=shape) * 4, np.float32)
    gotf = np.zeros_like(xf)
    lib.aloha_softmax_f32(ptr(xf), outer, n, inner, ptr(gotf))
    e = np.exp(xf.astype(np.float64) - xf.max(axis=axis, keepdims=True))
    np.testing.assert_allclose(gotf, e / e.sum(axis=axis, keepdims=True), rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("size,beta", [(5, 0.75), (3, 0.5), (4, 0.75), (2, 1.0)])
def test_lrn_rows(lib, rng, size, beta):
    c, h, w = 9, 3, 5
    alpha, bias = 1e-2, 1.0
    fin, fout = fp.Fixed(16, 10), fp.Fixed(8, 5)
    x = rng.integers(fin.qmin, fin.qmax + 1, size=(c, h, w))
    got = np.zeros((c, h, w), dtype=np.int32)
    for y in range(h):
        row, out = arr(x[:, y], np.int32), np.zeros(c * w, dtype=np.int32)
        lib.aloha_lrn_row_q(ptr(row), 0, c, w, size, alpha, beta, bias, fin.frac, fout.frac,
                            fout.qmin, fout.qmax, ptr(out), 0)
        got[:, y] = out.reshape(c, w)
    want = fp.to_fixed(ref.lrn(fp.dequantize(x[None], fin.frac), size, alpha, beta, bias), fout)
    assert np.array_equal(got, want[0])
    xf = rng.normal(size=(c, h, w)).astype(np.float32) * 5
    gotf = np.zeros_like(xf)
    for y in range(h):
        row, out = arr(xf[:, y], np.float32), np.zeros(c * w, dtype=np.float32)
        lib.aloha_lrn_row_f32(ptr(row), c, w, size, alpha, beta, bias, ptr(out))
        gotf[:, y] = out.reshape(c, w)
    want = ref.lrn(xf[None].astype(np.float64), size, alpha, beta, bias)[0]
    np.testing.assert_allclose(gotf, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("groups", [1, 2, 3, 6])
def test_channel_shuffle_rows(lib, rng, groups):
    c, h, w = 6, 2, 3
    fin, fout = fp.Fixed(16, 6), fp.Fixed(8, 4)
    x = rng.integers(fin.qmin, fin.qmax + 1, size=(c, h, w))
    op = SimpleNamespace(prop_int=lambda name, default=None: groups)
    want = ref.requantize(ref._shuffle(op, x[None]), fin.frac, fout)[0]
    wantf = ref._shuffle(op, x[None].astype(np.float32))[0]
    r = rq(fin.frac - fout.frac, fout)
    for y in range(h):
        row = arr(x[:, y], np.int32)
        got = np.zeros(c * w, dtype=np.int32)
        lib.aloha_shuffle_row_q(ptr(row), 0, c, w, groups, ctypes.byref(r), ptr(got))
        assert np.array_equal(got.reshape(c, w), want[:, y])
        rowf, gotf = arr(x[:, y], np.float32), np.zeros(c * w, dtype=np.float32)
        lib.aloha_shuffle_row_f32(ptr(rowf), c, w, groups, ptr(gotf))
        assert np.array_equal(gotf.reshape(c, w), wantf[:, y])


# --------------------------------------------------------------------------------------------------
# undefined behaviour: every fixed kernel on extreme values under ASan + UBSan

DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "aloha_kernels.h"

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))
static uint64_t check;
static void mix(const int32_t *v, int n)
{
    for (int i = 0; i < n; i++)
        check = check * 31 + (uint64_t)v[i];
}

int main(int argc, char **argv)
{
    static const int64_t accs[] = {0, 1, -1, 2, -2, 3, -3, 12345, -12345, INT32_MAX, INT32_MIN,
                                   INT64_MAX, INT64_MIN, INT64_MAX - 1, INT64_MIN + 1,
                                   (int64_t)1 << 62, -((int64_t)1 << 62)};
    static const int64_t shifts[] = {-100, -64, -63, -40, -1, 0, 1, 2, 31, 40, 62, 63, 64, 65, 100};
    static const int32_t rq_shifts[] = {63, -63, 40, -40, 0, 64, -64, 31};
    static const int kinds[] = {ALOHA_ACT_NONE, ALOHA_ACT_RELU, ALOHA_ACT_LEAKY, ALOHA_ACT_CLIP};
    int32_t x[4 * 5 * 6], xw[2 * 3 * 20], w[8 * 4 * 3 * 3], b[8], y[8 * 6 * 6], sc[8];
    int i, j, k;
    if (argc > 1 && strcmp(argv[1], "missing-row") == 0) {
        /* a conv row reading input row 1 from a window holding only row 0 must assert */
        aloha_win_t win = {x, 0, 1, 1, 3, 3, ALOHA_I32};
        aloha_conv_t g = {1, 1, 3, 3, 1, 1, 3, 3, 1, 1, 0, 0, 1, 1, 1, ALOHA_I32, 0};
        aloha_rq_t r = {NULL, 0, ALOHA_ACT_NONE, 0, -128, 127, 0, 0, ALOHA_I32};
        memset(x, 0, sizeof x);
        memset(w, 0, sizeof w);
        aloha_conv_row_q(&win, w, NULL, &g, &r, 0, 0, 1, y);
        return 0;
    }
    for (i = 0; i < N(accs); i++)
        for (j = 0; j < N(shifts); j++)
            printf("%lld ", (long long)aloha_shift_round(accs[i], shifts[j]));
    printf("\n");
    for (i = 0; i < N(accs); i++)
        for (j = 1; j < N(accs); j++)
            if (accs[j] > 0)
                printf("%lld ", (long long)aloha_round_div(accs[i], accs[j]));
    printf("\n");
    for (i = 0; i < N(x); i++)
        x[i] = i % 3 == 0 ? INT16_MIN : i % 3 == 1 ? INT16_MAX : INT32_MIN;
    for (i = 0; i < N(xw); i++)
        xw[i] = i % 2 ? INT32_MIN : INT32_MAX;
    for (i = 0; i < N(w); i++)
        w[i] = i % 2 ? INT32_MIN : INT32_MAX;
    for (i = 0; i < N(b); i++)
        b[i] = sc[i] = i % 2 ? INT32_MIN : INT32_MAX;
    for (k = 0; k < N(kinds); k++)
        for (j = 0; j < N(rq_shifts); j++) {
            aloha_rq_t r = {NULL, rq_shifts[j], kinds[k], INT32_MAX, INT16_MIN, INT16_MAX, -5, 9,
                            ALOHA_I32};
            aloha_rq_t rc = r;
            aloha_win_t win = {x, 0, 5, 4, 5, 6, ALOHA_I32};
            aloha_conv_t g = {4, 8, 5, 6, 5, 6, 3, 3, 1, 1, 1, 1, 1, 1, 2, ALOHA_I32, 0};
            aloha_conv_t gd = {4, 8, 5, 6, 2, 2, 2, 3, 3, 2, 2, 1, 2, 2, 1, ALOHA_I32, 0};
            aloha_pool_t pm = {0, 4, 5, 6, 3, 3, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 0};
            aloha_pool_t pa = {1, 4, 5, 6, 3, 3, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1};
            aloha_win_t one = {x, 0, 1, 4, 1, 1, ALOHA_I32}, wide = {xw, 0, 3, 2, 3, 20, ALOHA_I32};
            aloha_conv_t gw = {2, 4, 3, 20, 3, 20, 3, 3, 1, 1, 1, 1, 1, 1, 1, ALOHA_I32, 0};
            rc.shift = rq_shifts;
            aloha_conv_row_q(&win, w, b, &g, &r, 2, 0, 8, y), mix(y, 8 * 6);
            aloha_conv_row_q(&win, w, NULL, &g, &rc, 4, 1, 7, y), mix(y, 6 * 6);
            aloha_conv_row_q(&win, w, b, &gd, &rc, 1, 0, 8, y), mix(y, 8 * 2);
            aloha_conv_row_q(&wide, w, b, &gw, &rc, 1, 0, 4, y), mix(y, 4 * 20);
            aloha_pool_row_q(&win, &pm, &r, 2, y), mix(y, 4 * 3);
            aloha_pool_row_q(&win, &pa, &r, 2, y), mix(y, 4 * 3);
            aloha_gpool_q(x, ALOHA_I32, 4, 30, 0, &r, y), mix(y, 4);
            aloha_gpool_q(x, ALOHA_I32, 4, 30, 1, &r, y), mix(y, 4);
            aloha_dense_q(x, ALOHA_I32, w, ALOHA_I32, 0, b, 30, 0, 4, &r, y), mix(y, 4);
            aloha_dense_q(x, ALOHA_I32, w, ALOHA_I32, 0, NULL, 30, 1, 8, &rc, y), mix(y, 7);
            aloha_add_row_q(&win, 40, &one, 63, 3, 4, 6, &rc, y), mix(y, 24);
            aloha_add_row_q(&win, 0, &win, 31, 4, 4, 6, &r, y), mix(y, 24);
            aloha_mul_row_q(&win, &one, 1, 4, 6, &r, y), mix(y, 24);
            aloha_bn_row_q(&win, sc, ALOHA_I32, b, 0, &rc, y), mix(y, 24);
            aloha_requant_q(x, ALOHA_I32, N(x) < N(y) ? N(x) : N(y), &r, y);
            mix(y, N(x) < N(y) ? N(x) : N(y));
            aloha_shuffle_row_q(x, ALOHA_I32, 4, 6, 2, &r, y), mix(y, 24);
        }
    for (j = -40; j <= 40; j += 20) {
        aloha_island_q(x, ALOHA_I32, 24, j, 30, INT32_MIN, INT32_MAX, ALOHA_ACT_SIGMOID, y,
                       ALOHA_I32), mix(y, 24);
        aloha_island_q(x, ALOHA_I32, 24, j, -30, INT32_MIN, INT32_MAX, ALOHA_ACT_TANH, y,
                       ALOHA_I32), mix(y, 24);
        aloha_softmax_q(x, ALOHA_I32, 1, 24, 1, j, 30, INT32_MIN, INT32_MAX, y, ALOHA_I32),
            mix(y, 24);
        aloha_softmax_q(x, ALOHA_I32, 2, 3, 4, j, 30, INT32_MIN, INT32_MAX, y, ALOHA_I32),
            mix(y, 24);
        aloha_lrn_row_q(x, ALOHA_I32, 4, 6, 3, 1e-4, 0.75, 1.0, j, 30, INT32_MIN, INT32_MAX, y,
                        ALOHA_I32), mix(y, 24);
    }
    {   /* the float kernels on the same shapes: full and edge tiles, pools, softmax, LRN */
        static float xf[2 * 3 * 20], wf[8 * 4 * 3 * 3], yf[8 * 6 * 6];
        aloha_win_t wide = {xf, 0, 3, 2, 3, 20, ALOHA_F32};
        aloha_conv_t gw = {2, 4, 3, 20, 3, 20, 3, 3, 1, 1, 1, 1, 1, 1, 1, ALOHA_F32, 0};
        aloha_conv_t gs = {2, 6, 3, 20, 2, 10, 3, 3, 2, 2, 1, 1, 1, 1, 2, ALOHA_F32, 0};
        aloha_pool_t pf = {1, 2, 3, 20, 2, 10, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 0};
        aloha_act_t af = {ALOHA_ACT_LEAKY, 0.1f, 0.0f, 0.0f};
        for (i = 0; i < N(xf); i++)
            xf[i] = (float)(i % 7) - 3.0f;
        for (i = 0; i < N(wf); i++)
            wf[i] = (float)(i % 5) - 2.0f;
        for (j = 0; j < 3; j++) {
            aloha_conv_row_f32(&wide, wf, NULL, &gw, &af, j, 0, 4, yf);
            aloha_conv_row_f32(&wide, wf, wf, &gs, NULL, j < 2 ? j : 1, 1, 6, yf);
            aloha_pool_row_f32(&wide, &pf, &af, j < 2 ? j : 1, yf);
            pf.kind = 0;
            aloha_pool_row_f32(&wide, &pf, NULL, j < 2 ? j : 1, yf);
            pf.kind = 1;
        }
        aloha_softmax_f32(xf, 2, 3, 20, yf);
        aloha_lrn_row_f32(xf, 6, 20, 5, 1e-4f, 0.75f, 2.0f, yf);
        aloha_dense_f32(xf, wf, wf, 60, 0, 4, &af, yf);
    }
    {   /* the narrow integer tiles, whose vector loads widen 8/16-bit inputs: int32 sums near
           their proven bound, full, padded, strided and partial tiles, a 1-channel group tail */
        static int16_t x16[2 * 3 * 40], w16[9 * 2 * 3 * 3], y16[9 * 40];
        static int8_t x8[2 * 3 * 40], w8[9 * 2 * 3 * 3];
        static int32_t b32[9];
        aloha_win_t a16 = {x16, 0, 3, 2, 3, 40, ALOHA_I16}, a8 = {x8, 0, 3, 2, 3, 40, ALOHA_I8};
        aloha_win_t au8 = {x8, 0, 3, 2, 3, 40, ALOHA_U8};
        aloha_conv_t g16 = {2, 9, 3, 40, 3, 40, 3, 3, 1, 1, 1, 1, 1, 1, 1, ALOHA_I16, 1};
        aloha_conv_t g8 = {2, 6, 3, 40, 2, 20, 3, 3, 2, 2, 1, 1, 1, 1, 2, ALOHA_I8, 1};
        aloha_rq_t r16 = {NULL, 3, ALOHA_ACT_RELU, 0, INT16_MIN, INT16_MAX, 0, 0, ALOHA_I16};
        for (i = 0; i < N(x16); i++) {
            x16[i] = i % 2 ? INT16_MIN : INT16_MAX;
            x8[i] = i % 2 ? INT8_MIN : INT8_MAX;
        }
        for (i = 0; i < N(w16); i++) {
            w16[i] = i % 3 ? 1 << 11 : -(1 << 11); /* 18 taps x 2^15 x 2^11 < 2^31 */
            w8[i] = i % 3 ? INT8_MIN : INT8_MAX;
        }
        for (i = 0; i < N(b32); i++)
            b32[i] = i % 2 ? -(1 << 20) : 1 << 20;
        for (j = 0; j < 3; j++) {
            aloha_conv_row_q(&a16, w16, b32, &g16, &r16, j, 0, 9, y16);
            for (i = 0; i < 9 * 40; i++)
                y[i % N(y)] = y16[i];
            mix(y, N(y));
            aloha_conv_row_q(&a8, w8, NULL, &g8, &r16, j < 2 ? j : 1, 1, 6, y16);
            aloha_conv_row_q(&au8, w8, b32, &g8, &r16, j < 2 ? j : 1, 0, 6, y16);
        }
    }
    y[0] = aloha_to_fixed(NAN, 4, -128, 127), y[1] = aloha_to_fixed(1e300, 4, -128, 127);
    y[2] = aloha_to_fixed(-1e300, 4, -128, 127), y[3] = aloha_to_fixed(1.0, 2000, INT32_MIN, 7);
    mix(y, 4);
    printf("%llu\n", (unsigned long long)check);
    return 0;
}
"""


@pytest.mark.slow
def test_fixed_kernels_clean_under_sanitizers(tmp_path):
    """Extreme values (16/32-bit ends, shifts up to +-100, wrapping sums) run without a sanitizer
    report (the float kernels too); the scalar rules equal numpy's int64 semantics even where they
    wrap; a window missing a row the kernel needs trips the assert."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0", UBSAN_OPTIONS="print_stacktrace=1")
    probe = tmp_path / "probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g", "-O1"]
    built = subprocess.run(["gcc", *san, "-o", str(tmp_path / "probe"), str(probe)],
                           capture_output=True, text=True)
    if built.returncode != 0 or subprocess.run([str(tmp_path / "probe")], env=env).returncode:
        pytest.skip("the ASan/UBSan runtime is unavailable")
    driver = tmp_path / "driver.c"
    driver.write_text(DRIVER)
    exe = tmp_path / "driver"
    built = subprocess.run(["gcc", *CFLAGS[:-1], *san, "-I", str(RUNTIME), "-o", str(exe),
                            str(driver), str(SOURCE), "-lm"], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    done = subprocess.run([str(exe)], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "runtime error" not in done.stderr and "Sanitizer" not in done.stderr, done.stderr
    lines = done.stdout.splitlines()
    accs = np.array([0, 1, -1, 2, -2, 3, -3, 12345, -12345, 2**31 - 1, -2**31, 2**63 - 1, -2**63,
                     2**63 - 2, -2**63 + 1, 2**62, -2**62], dtype=np.int64)
    shifts = [-100, -64, -63, -40, -1, 0, 1, 2, 31, 40, 62, 63, 64, 65, 100]
    with np.errstate(over="ignore"):
        want = [int(fp.shift_round(np.array([a]), s)[0]) for a in accs for s in shifts]
        div = [int(fp.round_div(np.array([a]), int(d))[0]) for a in accs for d in accs[1:]
               if d > 0]
    assert [int(v) for v in lines[0].split()] == want
    assert [int(v) for v in lines[1].split()] == div
    missing = subprocess.run([str(exe), "missing-row"], capture_output=True, text=True, env=env,
                             timeout=60)
    assert missing.returncode != 0 and "Assertion" in missing.stderr
