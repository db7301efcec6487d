"""The bit-exact fixed-point reference: a numpy integer evaluator of a quantized nn graph.

It follows aloha_ir.fixedpoint's rules op by op with int64 arithmetic and nothing else, so it is the
arbiter the torch simulation (runtime/torch/fixed.py) and the generated C must equal bit for bit.
Readability beats speed here: convolution is an im2col tensordot in int64.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import SSAValue

from aloha_ir import fixedpoint as fp
from aloha_ir import shapes
from aloha_ir.consts import const_tensor
from aloha_ir.dialects import nn
from aloha_ir.dialects.nn import graph_of, op_label
from aloha_ir.errors import UnsupportedError
from aloha_ir.weights import WeightStore, weights_of

FLOAT_ISLANDS = ("sigmoid", "tanh", "softmax", "log_softmax")


def window_extra(size: int, pad_before: int, pad_after: int, eff_k: int, stride: int, out: int
                 ) -> int:
    """Padding to add after the input so that a floor-mode window yields `out` outputs (ceil mode)."""
    return max(0, (out - 1) * stride + eff_k - (size + pad_before + pad_after))


def resize_matrix(op: nn.ResizeOp, axis: int) -> np.ndarray:
    """[out, in] interpolation weights along H (axis 2) or W (axis 3), ONNX Resize's semantics."""
    n_in, n_out = nn.shape_of(op.input)[axis], op.out_shape()[axis]
    m = np.zeros((n_out, n_in), dtype=np.float64)
    if op.mode.data == "nearest":
        for x, (i, _) in enumerate(op.taps(axis)):
            m[x, i] = 1.0
        return m
    scale = nn.floats(op.scales)[axis - 2]
    for x in range(n_out):
        src = shapes.resize_source(x, n_in, n_out, scale, op.coord_mode.data)
        src = min(max(src, 0.0), n_in - 1.0)
        lo = int(math.floor(src))
        hi = min(lo + 1, n_in - 1)
        m[x, lo] += 1.0 - (src - lo)
        m[x, hi] += src - lo
    return m


def resize_taps(op: nn.ResizeOp, axis: int) -> tuple[np.ndarray, ...]:
    """(lo, hi, w_lo, w_hi) per output index along H (axis 2) or W (axis 3): a linear resize's
    value is w_lo * x[lo] + w_hi * x[hi], ONNX Resize's semantics (the source clamped to the
    input; hi = lo where w_hi is 0, so only rows the row plan reads are named); nearest reads lo
    alone (w_lo 1, w_hi 0)."""
    n_in, n_out = nn.shape_of(op.input)[axis], op.out_shape()[axis]
    lo, hi = np.zeros(n_out, np.int64), np.zeros(n_out, np.int64)
    w_lo, w_hi = np.ones(n_out), np.zeros(n_out)
    if op.mode.data == "nearest":
        lo[:] = hi[:] = [i for i, _ in op.taps(axis)]
        return lo, hi, w_lo, w_hi
    scale = nn.floats(op.scales)[axis - 2]
    for x in range(n_out):
        src = shapes.resize_source(x, n_in, n_out, scale, op.coord_mode.data)
        src = min(max(src, 0.0), n_in - 1.0)
        lo[x] = int(math.floor(src))
        frac = src - lo[x]
        hi[x] = min(lo[x] + 1, n_in - 1) if frac else lo[x]
        w_lo[x], w_hi[x] = 1.0 - frac, frac
    return lo, hi, w_lo, w_hi


def resize_linear(x, taps_h, taps_w):
    """A linear resize of the float64 NCHW `x` (numpy or torch) in the order the C kernel
    computes it: along W first, then H, w_lo * lo + w_hi * hi each time (aloha_kernels.c
    aloha_resize_row_q)."""
    lo, hi, w_lo, w_hi = taps_w
    along_w = x[:, :, :, lo] * w_lo + x[:, :, :, hi] * w_hi
    lo, hi, w_lo, w_hi = taps_h
    return along_w[:, :, lo, :] * w_lo[:, None] + along_w[:, :, hi, :] * w_hi[:, None]


def lrn(x: np.ndarray, size: int, alpha: float, beta: float, bias: float) -> np.ndarray:
    """ONNX LRN across channels (float64)."""
    c = x.shape[1]
    sq = np.pad(x * x, ((0, 0), ((size - 1) // 2, size // 2), (0, 0), (0, 0)))
    total = sum(sq[:, i:i + c] for i in range(size))
    return x / (bias + alpha / size * total) ** beta


def requantize(q: np.ndarray, frac_in, fmt: fp.Fixed) -> np.ndarray:
    """Integers at frac_in -> saturated integers of fmt (frac_in may be per channel, axis 1)."""
    return fp.saturate(fp.shift_round(q, np.asarray(frac_in) - fmt.frac), fmt)


def _channel(frac, rank: int) -> np.ndarray:
    """A per-output-channel frac vector shaped to broadcast along axis 1."""
    f = np.asarray(frac, dtype=np.int64)
    return f.reshape((1, -1) + (1,) * (rank - 2)) if f.ndim else f


class FixedReference:
    """Runs a quantized graph on real-valued inputs; returns the output integers and formats."""

    def __init__(self, graph: nn.GraphOp, store: WeightStore):
        self.graph = graph
        self.store = store
        self.consts: dict[SSAValue, np.ndarray] = {}
        for op in graph.ops:
            if isinstance(op, nn.ConstOp):
                self.consts[op.output] = self._const_ints(op)
            elif not isinstance(op, nn.OutputOp) and fp.format_of(op.results[0]) is None:
                raise UnsupportedError(f"{op.name} {nn.block_label(op)} is not quantized",
                                       hint="run the quantize pass first")

    def _const_ints(self, op: nn.ConstOp) -> np.ndarray:
        fmt = fp.format_of(op.output)
        values = const_tensor(op, self.store).materialize()
        if fmt is None:
            return values.astype(np.float64)
        return fp.quantize(values, fp.const_fracs(op), fmt.bits, fmt.signed)

    def frac(self, v: SSAValue):
        """A value's frac: per channel for per-channel constants."""
        owner = v.owner
        if isinstance(owner, nn.ConstOp):
            return fp.const_fracs(owner)
        return fp.format_of(v).frac

    def run(self, *xs: np.ndarray) -> list[tuple[np.ndarray, fp.Fixed]]:
        """The outputs' integers and formats."""
        env = self._env(xs)
        out = self.graph.ops.last
        return [(env[v], fp.format_of(v)) for v in out.operands]

    def integers(self, *xs: np.ndarray) -> dict[str, np.ndarray]:
        """Every block's output integers by block label (to locate a mismatch)."""
        env = self._env(xs)
        return {op_label(op, i): env[op.results[0]] for i, op in enumerate(self.graph.ops)
                if not isinstance(op, (nn.ConstOp, nn.OutputOp))}

    def _env(self, xs) -> dict[SSAValue, np.ndarray]:
        env: dict[SSAValue, np.ndarray] = dict(self.consts)
        inputs = [op for op in self.graph.ops if isinstance(op, nn.InputOp)]
        for op, x in zip(inputs, xs, strict=True):
            env[op.output] = fp.to_fixed(np.asarray(x, dtype=np.float64), fp.format_of(op.output))
        for i, op in enumerate(self.graph.ops):
            if isinstance(op, (nn.ConstOp, nn.InputOp, nn.OutputOp)):
                continue
            kernel = KERNELS.get(type(op))
            if kernel is None:
                raise UnsupportedError(f"{op.name} has no fixed-point reference kernel",
                                       where=op_label(op, i))
            env[op.results[0]] = kernel(self, op, env)
        return env

    def real(self, *xs: np.ndarray) -> np.ndarray:
        """The first output as real values."""
        q, fmt = self.run(*xs)[0]
        return fp.dequantize(q, fmt.frac)


# ---------------------------------------------------------------------------------------------------
# kernels: (reference, op, env) -> integers of the op's output format


def _accumulate_out(ref, op, acc: np.ndarray, acc_frac) -> np.ndarray:
    """Fused activation on the accumulator, then requantize to the output format."""
    fmt = fp.format_of(op.results[0])
    fused = op.fused_activation() if isinstance(op, nn.FusedActivation) else None
    acc_frac = _channel(acc_frac, acc.ndim)
    if fused is not None and fused[0] == "relu":
        acc = np.maximum(acc, 0)
    elif fused is not None and fused[0] == "leaky_relu":
        mult = fp.leaky_multiplier(fused[1][0])
        neg = fp.saturate(fp.shift_round(acc * mult, acc_frac + fp.LEAKY_FRAC - fmt.frac), fmt)
        pos = requantize(acc, acc_frac, fmt)
        return np.where(acc < 0, neg, pos)
    out = requantize(acc, acc_frac, fmt)
    if fused is not None and fused[0] == "clip":
        lo, hi = fp.clip_bounds(fused[1][0], fused[1][1], fmt)
        out = np.clip(out, lo, hi)
    return out


def _bias(ref, op, env, acc_frac, index: int) -> np.ndarray:
    """The bias operand rounded to the accumulator's format (per channel), 32-bit saturated."""
    if len(op.operands) <= index:
        return np.int64(0)
    b = op.operands[index]
    real = fp.dequantize(env[b], ref.frac(b)) if fp.format_of(b) else env[b]
    return fp.quantize(real, acc_frac, fp.BIAS_BITS)


def _conv(ref, op: nn.ConvOp, env):
    kernel, strides, pads, dil = op.window()
    x, w = env[op.input], env[op.weight]
    t, l, b, r = pads
    x = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)))
    g = op.prop_int("group", 1)
    n, cin = x.shape[:2]
    cout = w.shape[0]
    _, _, oh, ow = op.out_shape()
    eff = ((kernel[0] - 1) * dil[0] + 1, (kernel[1] - 1) * dil[1] + 1)
    win = sliding_window_view(x, eff, axis=(2, 3))[:, :, ::strides[0], ::strides[1], ::dil[0],
                                                   ::dil[1]][:, :, :oh, :ow]
    parts = []
    for gi in range(g):
        xs = win[:, gi * cin // g:(gi + 1) * cin // g]             # n, c, oh, ow, kh, kw
        ws = w[gi * cout // g:(gi + 1) * cout // g]                # o, c, kh, kw
        parts.append(np.einsum("ncyxij,ocij->noyx", xs, ws, dtype=np.int64, optimize=True))
    acc = np.concatenate(parts, axis=1)
    acc_frac = ref.frac(op.input) + np.asarray(ref.frac(op.weight))
    if op.bias is not None:
        acc = acc + _bias(ref, op, env, acc_frac, 2).reshape((1, -1, 1, 1))
    return _accumulate_out(ref, op, acc, acc_frac)


def _dense(ref, op: nn.DenseOp, env):
    acc = np.einsum("nk,mk->nm", env[op.input], env[op.weight], dtype=np.int64)
    acc_frac = ref.frac(op.input) + np.asarray(ref.frac(op.weight))
    if op.bias is not None:
        acc = acc + _bias(ref, op, env, acc_frac, 2).reshape(1, -1)
    return _accumulate_out(ref, op, acc, acc_frac)


def _bn(ref, op: nn.BatchNormOp, env):
    if len(op.params) != 2:
        raise UnsupportedError("a quantized batch norm must be in scale-shift form",
                               hint="run canonicalize before quantize")
    x, s = env[op.input], env[op.params[0]]
    rank = x.ndim
    acc_frac = ref.frac(op.input) + np.asarray(ref.frac(op.params[0]))
    acc = x * _channel(s, rank) if np.ndim(s) else x * s
    b = _bias(ref, op, env, acc_frac, 2)
    acc = acc + (_channel(b, rank) if np.ndim(b) else b)
    return _accumulate_out(ref, op, acc, acc_frac)


def _mul(ref, op: nn.MulOp, env):
    acc = env[op.lhs] * env[op.rhs]
    return requantize(acc, ref.frac(op.lhs) + ref.frac(op.rhs), fp.format_of(op.output))


def _add(ref, op: nn.AddOp, env):
    fa, fb = ref.frac(op.lhs), ref.frac(op.rhs)
    f = max(fa, fb)
    acc = np.left_shift(env[op.lhs], f - fa) + np.left_shift(env[op.rhs], f - fb)
    return _accumulate_out(ref, op, acc, f)


def _pool(ref, op: nn.PoolOp, env):
    x = env[op.input]
    fin = fp.format_of(op.input)
    kind = op.kind.data
    if kind == "global_max":
        q = x.max(axis=(2, 3), keepdims=True)
    elif kind == "global_avg":
        q = fp.round_div(x.sum(axis=(2, 3), keepdims=True), x.shape[2] * x.shape[3])
    else:
        kernel, strides, pads, dil = op.window()
        _, _, oh, ow = op.out_shape()
        h, w = x.shape[2:]
        eh = window_extra(h, pads[0], pads[2], (kernel[0] - 1) * dil[0] + 1, strides[0], oh)
        ew = window_extra(w, pads[1], pads[3], (kernel[1] - 1) * dil[1] + 1, strides[1], ow)
        fill = fin.qmin - 1 if kind == "max" else 0
        xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2] + eh), (pads[1], pads[3] + ew)),
                    constant_values=fill)
        eff = ((kernel[0] - 1) * dil[0] + 1, (kernel[1] - 1) * dil[1] + 1)
        win = sliding_window_view(xp, eff, axis=(2, 3))[:, :, ::strides[0], ::strides[1],
                                                        ::dil[0], ::dil[1]][:, :, :oh, :ow]
        if kind == "max":
            q = win.max(axis=(4, 5))
        else:
            q = fp.round_div(win.sum(axis=(4, 5)), avg_counts(op, h, w))
    return _accumulate_out(ref, op, q, fin.frac)


def avg_counts(op: nn.PoolOp, h: int, w: int) -> np.ndarray:
    """Per output position the divisor of an average pool (ONNX: pads counted only with
    count_include_pad; the ceil-mode overhang never)."""
    kernel, strides, pads, _ = op.window()
    _, _, oh, ow = op.out_shape()
    ones = np.ones((h, w), dtype=np.int64)
    if op.prop_int("count_include_pad"):
        ones = np.pad(ones, ((pads[0], pads[2]), (pads[1], pads[3])), constant_values=1)
        pads = (0, 0, 0, 0)
        h, w = ones.shape
    eh = window_extra(h, pads[0], pads[2], kernel[0], strides[0], oh)
    ew = window_extra(w, pads[1], pads[3], kernel[1], strides[1], ow)
    ones = np.pad(ones, ((pads[0], pads[2] + eh), (pads[1], pads[3] + ew)))
    win = sliding_window_view(ones, kernel)[::strides[0], ::strides[1]][:oh, :ow]
    return win.sum(axis=(2, 3))


def _concat(ref, op: nn.ConcatOp, env):
    fmt = fp.format_of(op.output)
    return np.concatenate([requantize(env[v], ref.frac(v), fmt) for v in op.inputs],
                          axis=op.prop_int("axis"))


def _act(ref, op: nn.ActOp, env):
    kind = op.kind.data
    fmt = fp.format_of(op.output)
    x, fin = env[op.input], ref.frac(op.input)
    if kind == "relu":
        return requantize(np.maximum(x, 0), fin, fmt)
    if kind == "leaky_relu":
        mult = fp.leaky_multiplier(nn.floats(op.params)[0])
        neg = fp.saturate(fp.shift_round(x * mult, fin + fp.LEAKY_FRAC - fmt.frac), fmt)
        return np.where(x < 0, neg, requantize(x, fin, fmt))
    if kind == "clip":
        lo, hi = fp.clip_bounds(*nn.floats(op.params), fmt)
        return np.clip(requantize(x, fin, fmt), lo, hi)
    real = fp.dequantize(x, fin)
    if kind == "sigmoid":
        y = 1.0 / (1.0 + np.exp(-real))
    elif kind == "tanh":
        y = np.tanh(real)
    else:
        axis = op.prop_int("axis", 1)
        shifted = real - real.max(axis=axis, keepdims=True)
        e = np.exp(shifted)
        y = shifted - np.log(e.sum(axis=axis, keepdims=True)) if kind == "log_softmax" else \
            e / e.sum(axis=axis, keepdims=True)
    return fp.to_fixed(y, fmt)


def _lrn(ref, op: nn.LrnOp, env):
    real = fp.dequantize(env[op.input], ref.frac(op.input))
    y = lrn(real, op.prop_int("size"), op.prop_float("alpha"), op.prop_float("beta"),
            op.prop_float("bias"))
    return fp.to_fixed(y, fp.format_of(op.output))


def _move(fn):
    """A data-movement op: integers rearranged, then converted to the output format."""
    def kernel(ref, op, env):
        return requantize(fn(op, env[op.operands[0]]), ref.frac(op.operands[0]),
                          fp.format_of(op.results[0]))
    return kernel


def slice_array(op: nn.SliceOp, x):
    """nn.slice of `x` (a numpy array or a torch tensor)."""
    axis, start = op.prop_int("axis"), op.prop_int("start")
    index = [slice(None)] * x.ndim
    index[axis] = slice(start, start + nn.shape_of(op.output)[axis])
    return x[tuple(index)]


def _reshape(op, x):
    s = list(op.out_shape())
    return x.reshape([-1] + s[1:] if s and s[0] == 1 else s)


def _flatten(op, x):
    axis = op.prop_int("axis")
    return x.reshape(math.prod(x.shape[:axis]), -1)


def _shuffle(op, x):
    n, c, h, w = x.shape
    g = op.prop_int("groups")
    return x.reshape(n, g, c // g, h, w).swapaxes(1, 2).reshape(n, c, h, w)


def _pad(ref, op: nn.PadOp, env):
    x, fin = env[op.input], fp.format_of(op.input)
    pads = op.prop_ints("pads")
    r = x.ndim
    width = [(pads[i], pads[i + r]) for i in range(r)]
    if op.mode.data == "constant":
        value = fp.to_fixed(np.float64(op.prop_float("value")), fin)
        y = np.pad(x, width, constant_values=value)
    else:
        y = np.pad(x, width, mode={"reflect": "reflect", "edge": "edge"}[op.mode.data])
    return requantize(y, fin.frac, fp.format_of(op.output))


def _resize(ref, op: nn.ResizeOp, env):
    x, fin = env[op.input], ref.frac(op.input)
    mh, mw = resize_matrix(op, 2), resize_matrix(op, 3)
    if op.mode.data == "nearest":
        ih, iw = mh.argmax(axis=1), mw.argmax(axis=1)
        return requantize(x[:, :, ih][:, :, :, iw], fin, fp.format_of(op.output))
    y = resize_linear(fp.dequantize(x, fin), resize_taps(op, 2), resize_taps(op, 3))
    return fp.to_fixed(y, fp.format_of(op.output))


def reduce_array(op: nn.ReduceOp, x: np.ndarray) -> np.ndarray:
    """nn.reduce of `x` in numpy: the mean, sum (float64: exact for a sum of fixed-point values
    below 2^53 units), maximum, minimum or product, or the index of the first (the last under
    select_last_index) maximum or minimum as a float."""
    kind, axes = op.kind.data, tuple(op.prop_ints("axes"))
    keep = bool(op.prop_int("keepdims", 1))
    if kind in nn.ARG_REDUCTIONS:
        (axis,) = axes
        pick = np.argmax if kind == "argmax" else np.argmin
        if op.prop_int("select_last_index", 0):
            at = x.shape[axis] - 1 - pick(np.flip(x, axis), axis=axis, keepdims=keep)
        else:
            at = pick(x, axis=axis, keepdims=keep)
        return at.astype(x.dtype)
    reduce = {"mean": np.mean, "sum": np.sum, "max": np.max, "min": np.min,
              "prod": np.prod}[kind]
    return reduce(x, axis=axes, keepdims=keep)


def _reduce(ref, op: nn.ReduceOp, env):
    """The reduction of the real values in float64, then to the output's format."""
    real = fp.dequantize(env[op.input], ref.frac(op.input))
    return fp.to_fixed(reduce_array(op, real), fp.format_of(op.output))


# each nn op's numpy fixed-point kernel (tests/test_op_coverage.py checks that every op has one)
KERNELS = {
    nn.ConvOp: _conv, nn.DenseOp: _dense, nn.BatchNormOp: _bn, nn.MulOp: _mul, nn.AddOp: _add,
    nn.PoolOp: _pool, nn.ConcatOp: _concat, nn.ActOp: _act, nn.LrnOp: _lrn, nn.PadOp: _pad,
    nn.ResizeOp: _resize, nn.ReduceOp: _reduce,
    nn.ReshapeOp: _move(_reshape), nn.FlattenOp: _move(_flatten),
    nn.TransposeOp: _move(lambda op, x: x.transpose(op.prop_ints("perm"))),
    nn.SliceOp: _move(lambda op, x: slice_array(op, x)),
    nn.ChannelShuffleOp: _move(_shuffle), nn.DropoutOp: _move(lambda op, x: x),
}


def reference(module: ModuleOp) -> FixedReference:
    return FixedReference(graph_of(module), weights_of(module))

