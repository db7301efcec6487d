"""The bit-exact fixed-point simulation of a quantized nn graph in torch.

Same rules as aloha_ir.fixedpoint and the numpy reference (runtime/reference.py), computed on float64
tensors that hold integers: every product and partial sum stays below 2**53 (checked when the module is
built), so convolutions by BLAS are exact whatever their summation order, and floor/shift are exact.
The result equals the numpy reference bit for bit (tested) while running at BLAS speed.

Rounding is differentiable by a straight-through estimator (floor's gradient taken as 1), so attacks
and fine-tuning can back-propagate through the simulation; saturation has clamp's gradient.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from xdsl.ir import SSAValue

from aloha_ir import fixedpoint as fp
from aloha_ir.consts import const_tensor
from aloha_ir.dialects import nn
from aloha_ir.dialects.nn import op_label
from aloha_ir.errors import UnsupportedError
from aloha_ir.weights import WeightStore
from runtime.reference import (FLOAT_ISLANDS, avg_counts, resize_linear, resize_matrix,
                               resize_taps, slice_array, window_extra)
from runtime.torch.module import batch_shape, pad_like_onnx, pads_lrtb, reduce_tensor

EXACT = 2.0 ** 53


class _FloorSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.floor(x)

    @staticmethod
    def backward(ctx, g):
        return g


def floor_ste(x: torch.Tensor) -> torch.Tensor:
    return _FloorSTE.apply(x)


def _bcast(frac, rank: int) -> torch.Tensor | float:
    """2**frac as a scalar or a per-channel (axis 1) tensor."""
    f = np.asarray(frac, dtype=np.float64)
    if f.ndim == 0:
        return float(2.0 ** f)
    return torch.from_numpy(np.exp2(f)).reshape((1, -1) + (1,) * (rank - 2))


def saturate(q: torch.Tensor, fmt: fp.Fixed) -> torch.Tensor:
    return torch.clamp(q, fmt.qmin, fmt.qmax)


def shift_round(acc: torch.Tensor, shift) -> torch.Tensor:
    """acc / 2**shift rounded half up (shift scalar or per channel along axis 1); a shift <= 0 is
    an exact multiplication, which the floor leaves unchanged."""
    s = np.asarray(shift, dtype=np.int64)
    half = np.where(s > 0, np.exp2(np.maximum(s - 1, 0).astype(np.float64)), 0.0)
    if s.ndim == 0:
        return floor_ste((acc + float(half)) * float(2.0 ** -int(s)))
    shape = (1, -1) + (1,) * (acc.dim() - 2)
    half_t = torch.from_numpy(half).reshape(shape)
    return floor_ste((acc + half_t) * _bcast(-s, acc.dim()))


def requantize(q: torch.Tensor, frac_in, fmt: fp.Fixed) -> torch.Tensor:
    return saturate(shift_round(q, np.asarray(frac_in) - fmt.frac), fmt)


def to_fixed(x: torch.Tensor, fmt: fp.Fixed) -> torch.Tensor:
    return saturate(floor_ste(x.to(torch.float64) * float(2.0 ** fmt.frac) + 0.5), fmt)


def dequantize(q: torch.Tensor, frac) -> torch.Tensor:
    return q / _bcast(frac, q.dim())


class FixedGraphModule(torch.nn.Module):
    """Executes a quantized graph: real inputs in, real (dequantized) outputs out."""

    def __init__(self, graph: nn.GraphOp, store: WeightStore, *, logits: bool = False):
        super().__init__()
        self.graph = graph
        self.ops = [op for op in graph.ops if not isinstance(op, nn.ConstOp)]
        self.inputs = [op for op in self.ops if isinstance(op, nn.InputOp)]
        self.consts: dict[SSAValue, torch.Tensor] = {}
        self.fracs: dict[SSAValue, object] = {}
        for i, op in enumerate(graph.ops):
            if isinstance(op, nn.ConstOp):
                fmt = fp.format_of(op.output)
                values = const_tensor(op, store).materialize()
                if fmt is None:
                    q = values.astype(np.float64)
                else:
                    self.fracs[op.output] = fp.const_fracs(op)
                    q = fp.quantize(values, self.fracs[op.output], fmt.bits, fmt.signed)
                self.consts[op.output] = torch.from_numpy(np.asarray(q, dtype=np.float64))
            elif not isinstance(op, nn.OutputOp):
                if fp.format_of(op.results[0]) is None:
                    raise UnsupportedError(f"{op.name} {op_label(op, i)} is not quantized",
                                           hint="run the quantize pass first")
                if type(op) not in KERNELS and not isinstance(op, nn.InputOp):
                    raise UnsupportedError(f"{op.name} has no fixed-point kernel",
                                           where=op_label(op, i))
        self.skip_softmax = None
        last = self.ops[-1].operands[0].owner if len(self.ops[-1].operands) == 1 else None
        if logits and isinstance(last, nn.ActOp) and last.kind.data == "softmax":
            self.skip_softmax = last
        self._check_exact()

    def frac(self, v: SSAValue):
        return self.fracs[v] if v in self.fracs else fp.format_of(v).frac

    def _check_exact(self) -> None:
        """Every accumulation must stay below 2**53 so float64 sums are exact integers."""
        for op in self.ops:
            if isinstance(op, (nn.ConvOp, nn.DenseOp)):
                x = fp.format_of(op.operands[0])
                w = self.consts.get(op.operands[1])
                if w is None:
                    raise UnsupportedError(f"{op.name}: run-time weights are not supported in "
                                           "fixed point")
                fan = float(w.abs().reshape(w.shape[0], -1).sum(dim=1).max()) if w.numel() else 0.0
                bound = fan * max(abs(x.qmin), x.qmax) + 2.0 ** fp.BIAS_BITS
                if bound * (1 << fp.LEAKY_FRAC) >= EXACT:
                    raise UnsupportedError(f"{op.name}: accumulators may exceed 2**53; use fewer "
                                           "bits")

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        env: dict[SSAValue, torch.Tensor] = dict(self.consts)
        for op, x in zip(self.inputs, xs, strict=True):
            env[op.output] = to_fixed(x, fp.format_of(op.output))
        for op in self.ops:
            if isinstance(op, nn.InputOp):
                continue
            if isinstance(op, nn.OutputOp):
                v = op.operands[0]
                if self.skip_softmax is not None:
                    v = self.skip_softmax.input
                return dequantize(env[v], self.frac(v)).to(torch.float32)
            if op is self.skip_softmax:
                continue
            env[op.results[0]] = KERNELS[type(op)](self, op, env)
        raise AssertionError("nn.graph without nn.output")

    def integers(self, *xs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every block's output integers by block label (for locating a mismatch)."""
        env: dict[SSAValue, torch.Tensor] = dict(self.consts)
        for op, x in zip(self.inputs, xs, strict=True):
            env[op.output] = to_fixed(x, fp.format_of(op.output))
        out = {}
        for i, op in enumerate(self.graph.ops):
            if isinstance(op, nn.InputOp):
                out[op_label(op, i)] = env[op.output]
            elif not isinstance(op, (nn.ConstOp, nn.OutputOp)):
                env[op.results[0]] = KERNELS[type(op)](self, op, env)
                out[op_label(op, i)] = env[op.results[0]]
        return out


# ---------------------------------------------------------------------------------------------------
# kernels: (module, op, env) -> integer-valued float64 tensor of the op's output format


def _finish(m, op, acc: torch.Tensor, acc_frac) -> torch.Tensor:
    fmt = fp.format_of(op.results[0])
    fused = op.fused_activation() if isinstance(op, nn.FusedActivation) else None
    if fused is not None and fused[0] == "relu":
        acc = torch.clamp(acc, min=0)
    elif fused is not None and fused[0] == "leaky_relu":
        mult = fp.leaky_multiplier(fused[1][0])
        neg = saturate(shift_round(acc * mult, np.asarray(acc_frac) + fp.LEAKY_FRAC - fmt.frac),
                       fmt)
        return torch.where(acc < 0, neg, requantize(acc, acc_frac, fmt))
    out = requantize(acc, acc_frac, fmt)
    if fused is not None and fused[0] == "clip":
        lo, hi = fp.clip_bounds(fused[1][0], fused[1][1], fmt)
        out = torch.clamp(out, lo, hi)
    return out


def _quantize_bias(real: torch.Tensor, acc_frac) -> torch.Tensor:
    """A bias in the accumulator's format (frac per output channel), saturated to 32 bits."""
    scale = torch.as_tensor(np.exp2(np.asarray(acc_frac, dtype=np.float64)))
    lim = float(1 << (fp.BIAS_BITS - 1))
    return torch.clamp(torch.floor(real * scale + 0.5), -lim, lim - 1)


def _real(m, v: SSAValue, env) -> torch.Tensor:
    """A constant's real values (its fracs run along its own axis 0)."""
    if fp.format_of(v) is None:
        return env[v]
    f = np.asarray(m.frac(v), dtype=np.float64)
    scale = torch.from_numpy(np.exp2(-f)).reshape((-1,) + (1,) * (env[v].dim() - 1)) if f.ndim \
        else float(2.0 ** -f)
    return env[v] * scale


def _bias(m, op, env, acc_frac) -> torch.Tensor | None:
    return None if op.bias is None else _quantize_bias(_real(m, op.bias, env), acc_frac)


def _conv(m, op: nn.ConvOp, env):
    kernel, strides, pads, dil = op.window()
    x = env[op.input]
    if pads[0] != pads[2] or pads[1] != pads[3]:
        x = F.pad(x, pads_lrtb(pads))
        pads = (0, 0, 0, 0)
    acc_frac = np.asarray(m.frac(op.input)) + np.asarray(m.frac(op.weight))
    acc = F.conv2d(x, env[op.weight], _bias(m, op, env, acc_frac), stride=strides,
                   padding=(pads[0], pads[1]), dilation=dil, groups=op.prop_int("group", 1))
    return _finish(m, op, acc, acc_frac)


def _dense(m, op: nn.DenseOp, env):
    acc_frac = np.asarray(m.frac(op.input)) + np.asarray(m.frac(op.weight))
    acc = F.linear(env[op.input], env[op.weight], _bias(m, op, env, acc_frac))
    return _finish(m, op, acc, acc_frac)


def _bn(m, op: nn.BatchNormOp, env):
    if len(op.params) != 2:
        raise UnsupportedError("a quantized batch norm must be in scale-shift form",
                               hint="run canonicalize before quantize")
    x = env[op.input]
    shape = (1, -1) + (1,) * (x.dim() - 2)
    s, b = op.params
    acc_frac = np.asarray(m.frac(op.input)) + np.asarray(m.frac(s))
    acc = x * env[s].reshape(shape) + _quantize_bias(_real(m, b, env), acc_frac).reshape(shape)
    return _finish(m, op, acc, acc_frac)


def _mul(m, op: nn.MulOp, env):
    return requantize(env[op.lhs] * env[op.rhs], m.frac(op.lhs) + m.frac(op.rhs),
                      fp.format_of(op.output))


def _add(m, op: nn.AddOp, env):
    fa, fb = m.frac(op.lhs), m.frac(op.rhs)
    f = max(fa, fb)
    acc = env[op.lhs] * float(2 ** (f - fa)) + env[op.rhs] * float(2 ** (f - fb))
    return _finish(m, op, acc, f)


def _pool(m, op: nn.PoolOp, env):
    x = env[op.input]
    fin = fp.format_of(op.input)
    kind = op.kind.data
    if kind == "global_max":
        q = torch.amax(x, dim=(2, 3), keepdim=True)
    elif kind == "global_avg":
        q = _round_div(x.sum(dim=(2, 3), keepdim=True), x.shape[2] * x.shape[3])
    else:
        kernel, strides, pads, dil = op.window()
        _, _, oh, ow = op.out_shape()
        h, w = x.shape[2], x.shape[3]
        eh = window_extra(h, pads[0], pads[2], (kernel[0] - 1) * dil[0] + 1, strides[0], oh)
        ew = window_extra(w, pads[1], pads[3], (kernel[1] - 1) * dil[1] + 1, strides[1], ow)
        full = (pads[1], pads[3] + ew, pads[0], pads[2] + eh)
        if kind == "max":
            q = F.max_pool2d(F.pad(x, full, value=fin.qmin - 1), kernel, strides, 0, dil)
        else:
            total = F.avg_pool2d(F.pad(x, full), kernel, strides, 0, divisor_override=1)
            counts = torch.from_numpy(avg_counts(op, h, w).astype(np.float64))
            q = _round_div(total, counts)
    return _finish(m, op, q, fin.frac)


def _round_div(total: torch.Tensor, count) -> torch.Tensor:
    """total / count rounded half up: floor((2 total + count) / (2 count)), exact in float64 for
    integers below 2**52 (the quotient of exact integers is correctly rounded, then floored)."""
    return floor_ste((2 * total + count) / (2 * count))


def _concat(m, op: nn.ConcatOp, env):
    fmt = fp.format_of(op.output)
    return torch.cat([requantize(env[v], m.frac(v), fmt) for v in op.inputs],
                     dim=op.prop_int("axis"))


def _act(m, op: nn.ActOp, env):
    kind = op.kind.data
    fmt = fp.format_of(op.output)
    x, fin = env[op.input], m.frac(op.input)
    if kind == "relu":
        return requantize(torch.clamp(x, min=0), fin, fmt)
    if kind == "leaky_relu":
        mult = fp.leaky_multiplier(nn.floats(op.params)[0])
        neg = saturate(shift_round(x * mult, fin + fp.LEAKY_FRAC - fmt.frac), fmt)
        return torch.where(x < 0, neg, requantize(x, fin, fmt))
    if kind == "clip":
        lo, hi = fp.clip_bounds(*nn.floats(op.params), fmt)
        return torch.clamp(requantize(x, fin, fmt), lo, hi)
    assert kind in FLOAT_ISLANDS
    real = dequantize(x, fin)
    if kind == "sigmoid":
        y = 1.0 / (1.0 + torch.exp(-real))
    elif kind == "tanh":
        y = torch.tanh(real)
    else:
        axis = op.prop_int("axis", 1)
        shifted = real - real.amax(dim=axis, keepdim=True)
        e = torch.exp(shifted)
        y = shifted - torch.log(e.sum(dim=axis, keepdim=True)) if kind == "log_softmax" else \
            e / e.sum(dim=axis, keepdim=True)
    return to_fixed(y, fmt)


def _lrn(m, op: nn.LrnOp, env):
    real = dequantize(env[op.input], m.frac(op.input))
    size = op.prop_int("size")
    c = real.shape[1]
    sq = F.pad(real * real, (0, 0, 0, 0, (size - 1) // 2, size // 2))
    total = sum(sq[:, i:i + c] for i in range(size))
    y = real / (op.prop_float("bias") + op.prop_float("alpha") / size * total) ** \
        op.prop_float("beta")
    return to_fixed(y, fp.format_of(op.output))


def _move(fn):
    def kernel(m, op, env):
        v = op.operands[0]
        return requantize(fn(op, env[v]), m.frac(v), fp.format_of(op.results[0]))
    return kernel


def _pad(m, op: nn.PadOp, env):
    x, fin = env[op.input], fp.format_of(op.input)
    value = float(fp.to_fixed(np.float64(op.prop_float("value")), fin))
    return requantize(pad_like_onnx(x, op, value), fin.frac, fp.format_of(op.output))


def _resize(m, op: nn.ResizeOp, env):
    x, fin = env[op.input], m.frac(op.input)
    mh, mw = resize_matrix(op, 2), resize_matrix(op, 3)
    if op.mode.data == "nearest":
        ih = torch.from_numpy(mh.argmax(axis=1))
        iw = torch.from_numpy(mw.argmax(axis=1))
        return requantize(x[:, :, ih][:, :, :, iw], fin, fp.format_of(op.output))
    taps = [tuple(torch.from_numpy(t) for t in resize_taps(op, axis)) for axis in (2, 3)]
    y = resize_linear(dequantize(x, fin), *taps)
    return to_fixed(y, fp.format_of(op.output))


def _reduce(m, op: nn.ReduceOp, env):
    real = dequantize(env[op.input], m.frac(op.input))
    return to_fixed(reduce_tensor(op, real), fp.format_of(op.output))


# each nn op's torch fixed-point kernel (tests/test_op_coverage.py checks that every op has one)
KERNELS = {
    nn.ConvOp: _conv, nn.DenseOp: _dense, nn.BatchNormOp: _bn, nn.MulOp: _mul, nn.AddOp: _add,
    nn.PoolOp: _pool, nn.ConcatOp: _concat, nn.ActOp: _act, nn.LrnOp: _lrn, nn.PadOp: _pad,
    nn.ResizeOp: _resize, nn.ReduceOp: _reduce,
    nn.ReshapeOp: _move(lambda op, x: x.reshape(batch_shape(op))),
    nn.FlattenOp: _move(lambda op, x: x.reshape(math.prod(x.shape[:op.prop_int("axis")]), -1)),
    nn.TransposeOp: _move(lambda op, x: x.permute(*op.prop_ints("perm"))),
    nn.SliceOp: _move(slice_array),
    nn.ChannelShuffleOp: _move(lambda op, x: F.channel_shuffle(x, op.prop_int("groups"))), nn.DropoutOp: _move(lambda op, x: x),
}


def build_fixed(module, *, logits: bool = False) -> FixedGraphModule:
    """The fixed-point torch simulation of a quantized module's single nn.graph."""
    from aloha_ir.weights import weights_of
    from aloha_ir.dialects.nn import graph_of
    return FixedGraphModule(graph_of(module), weights_of(module), logits=logits)
