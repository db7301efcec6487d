"""The fixed-point arithmetic every executor of a quantized graph shares (reference/quantization.md).

A value in format Qm.n (`!nn.fixed<bits, n[, unsigned]>`) is an integer q with real value q / 2**n,
q in [-2**(bits-1), 2**(bits-1) - 1] (signed) or [0, 2**bits - 1] (unsigned). The rules, fixed once so
that the numpy reference, the torch simulation and the generated C agree bit for bit:

- real -> fixed: q = saturate(floor(x * 2**n + 1/2))                    (round half up)
- requantise an accumulator by s bits: s > 0: (acc + 2**(s-1)) >> s      (arithmetic shift: round half
  up); s = 0: acc; s < 0: acc << -s; then saturate to the output format.
- conv/dense accumulate q_x * q_w exactly (>= 48 bits); the bias is rounded to the accumulator's
  format (frac = frac_x + frac_w of the output channel) and saturated to 32 bits.
- fused leaky ReLU multiplies negative accumulators by round(alpha * 2**LEAKY_FRAC) and shifts
  LEAKY_FRAC more bits.
- average pooling divides the integer sum by the window count rounding half up:
  floor((2 * sum + count) / (2 * count)).
- ops without an integer kernel (sigmoid, tanh, softmax, log-softmax, LRN, linear resize,
  reductions and their indices) are float islands: they dequantise, compute in float64 and
  requantise with the real -> fixed rule.

This module is numpy only; passes and executors build on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from xdsl.dialects.builtin import TensorType
from xdsl.ir import SSAValue
from xdsl.rewriter import Rewriter

from aloha_ir.dialects.nn import ConstOp, FixedPointType

LEAKY_FRAC = 8
BIAS_BITS = 32
MIN_BITS, MAX_BITS = 2, 16


@dataclass(frozen=True)
class Fixed:
    """A power-of-two fixed-point format."""

    bits: int
    frac: int
    signed: bool = True

    @property
    def qmin(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def qmax(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def step(self) -> float:
        return 2.0 ** -self.frac

    @property
    def max_real(self) -> float:
        return self.qmax * self.step

    def type(self) -> FixedPointType:
        return FixedPointType(self.bits, self.frac, self.signed)

    @staticmethod
    def of(t: FixedPointType) -> "Fixed":
        return Fixed(t.bits.data, t.frac.data, bool(t.signed.data))

    def __str__(self) -> str:
        return f"{'Q' if self.signed else 'UQ'}{self.bits - self.frac - int(self.signed)}.{self.frac}"

    def to_json(self) -> dict:
        return {"bits": self.bits, "frac": self.frac, "signed": self.signed, "q": str(self)}


def frac_for(max_abs: float, bits: int, signed: bool = True) -> int:
    """The largest frac (finest step) whose format holds max_abs without overflow."""
    int_bits = bits - int(signed)
    if max_abs <= 0 or not math.isfinite(max_abs):
        return int_bits  # an all-zero tensor: any format; keep the finest one that holds [-1, 1)
    # need max_abs * 2**frac <= 2**int_bits - 1 (the rounded value must fit)
    frac = int_bits - math.ceil(math.log2(max_abs))
    while frac > -64 and math.floor(max_abs * 2.0 ** frac + 0.5) > (1 << int_bits) - 1:
        frac -= 1
    while math.floor(max_abs * 2.0 ** (frac + 1) + 0.5) <= (1 << int_bits) - 1:
        frac += 1
    return frac


def format_for(max_abs: float, bits: int, signed: bool = True) -> Fixed:
    return Fixed(bits, frac_for(max_abs, bits, signed), signed)


def saturate(q: np.ndarray, fmt: Fixed) -> np.ndarray:
    return np.clip(q, fmt.qmin, fmt.qmax)


def quantize(x: np.ndarray, frac, bits: int, signed: bool = True) -> np.ndarray:
    """Real -> saturated integers (int64); `frac` may be per channel (broadcast along axis 0)."""
    scale = np.exp2(np.asarray(frac, dtype=np.float64))
    x = np.asarray(x, dtype=np.float64)
    if scale.ndim:
        scale = scale.reshape((-1,) + (1,) * (x.ndim - 1))
    q = np.floor(x * scale + 0.5)
    lo = -(1 << (bits - 1)) if signed else 0
    hi = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
    return np.clip(q, lo, hi).astype(np.int64)


def to_fixed(x: np.ndarray, fmt: Fixed) -> np.ndarray:
    return quantize(x, fmt.frac, fmt.bits, fmt.signed)


def dequantize(q: np.ndarray, frac) -> np.ndarray:
    frac = np.asarray(frac, dtype=np.float64)
    if frac.ndim:
        frac = frac.reshape((-1,) + (1,) * (np.ndim(q) - 1))
    return np.asarray(q, dtype=np.float64) * np.exp2(-frac)


def shift_round(acc: np.ndarray, shift) -> np.ndarray:
    """acc / 2**shift rounded half up (shift may be negative, and per channel along axis 1)."""
    acc = np.asarray(acc, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    if shift.ndim:
        shift = shift.reshape((1, -1) + (1,) * (acc.ndim - 2))
    right = np.maximum(shift, 0)
    half = np.where(right > 0, np.left_shift(1, np.maximum(right - 1, 0)), 0)
    return np.where(shift >= 0, np.right_shift(acc + half, right), np.left_shift(acc, -shift))


def round_div(total: np.ndarray, count) -> np.ndarray:
    """total / count rounded half up, in integers."""
    count = np.asarray(count, dtype=np.int64)
    return np.floor_divide(2 * np.asarray(total, dtype=np.int64) + count, 2 * count)


# ---------------------------------------------------------------------------------------------------
# Formats on the IR


def format_of(value: SSAValue) -> Fixed | None:
    """The fixed-point format of a tensor value, or None when it is float."""
    t = value.type
    if isinstance(t, TensorType) and isinstance(t.element_type, FixedPointType):
        return Fixed.of(t.element_type)
    return None


def const_fracs(op: ConstOp) -> np.ndarray | int:
    """A quantized constant's frac: one int, or one per slice along axis 0 (`nn.fracs`)."""
    if op.fracs is not None:
        return np.asarray(op.fracs, dtype=np.int64)
    fmt = format_of(op.output)
    assert fmt is not None, "const_fracs of a float constant"
    return fmt.frac


def set_const_fracs(op: ConstOp, fracs) -> None:
    """Record per-channel fracs (axis 0) on a constant, or drop them when they are all equal."""
    fracs = [int(f) for f in np.atleast_1d(fracs)]
    op.fracs = fracs if len(set(fracs)) > 1 else None


def retype(values: dict[SSAValue, Fixed], fracs: dict[SSAValue, np.ndarray]) -> None:
    """Give every value of `values` its fixed-point format as its type; a constant also gets its
    per-channel fracs (`fracs`, else its format's frac). The values are replaced (an SSA value's
    type is fixed), so no reference to them is valid afterwards."""
    for v, fmt in list(values.items()):
        t = v.type
        assert isinstance(t, TensorType)
        owner = v.owner
        Rewriter.replace_value_with_new_type(v, TensorType(fmt.type(), t.get_shape()))
        if isinstance(owner, ConstOp):
            f = fracs.get(v)
            set_const_fracs(owner, f if f is not None else fmt.frac)


# ---------------------------------------------------------------------------------------------------
# Storage: how a deployed program holds a format (the generated C, and what analyze-memory counts)


@dataclass(frozen=True)
class Storage:
    """A C element type: its name, the kernels' type tag, its size and range."""

    ctype: str
    tag: str
    nbytes: int
    dtype: str  # numpy dtype of the weights blob

    def to_json(self) -> dict:
        return {"ctype": self.ctype, "bytes": self.nbytes}


FLOAT32 = Storage("float", "ALOHA_F32", 4, "<f4")
INT8, UINT8 = Storage("int8_t", "ALOHA_I8", 1, "i1"), Storage("uint8_t", "ALOHA_U8", 1, "u1")
INT16 = Storage("int16_t", "ALOHA_I16", 2, "<i2")
UINT16 = Storage("uint16_t", "ALOHA_U16", 2, "<u2")
INT32 = Storage("int32_t", "ALOHA_I32", 4, "<i4")
INT64 = Storage("int64_t", "ALOHA_I64", 8, "<i8")  # accumulators only (partial sums)


def storage_of(fmt: Fixed | None) -> Storage:
    """The narrowest C integer holding every value of `fmt` (float for None): signed formats up to
    8/16/32 bits in int8_t/int16_t/int32_t, unsigned ones up to 8/16 bits in uint8_t/uint16_t and
    up to 31 in int32_t. Wider formats have no C storage here (UnsupportedError)."""
    if fmt is None:
        return FLOAT32
    for limit, signed, unsigned in ((8, INT8, UINT8), (16, INT16, UINT16), (32, INT32, None)):
        if fmt.bits <= limit - (0 if fmt.signed or unsigned else 1):
            return signed if fmt.signed else unsigned or INT32
    from aloha_ir.errors import UnsupportedError
    raise UnsupportedError(f"{fmt} ({fmt.bits}-bit {'signed' if fmt.signed else 'unsigned'}) has "
                           "no C storage type", hint="formats up to 32 bits signed / 31 unsigned")


def accumulator_of(fan_in: int, x: Fixed, w: Fixed) -> Storage:
    """The accumulator of a sum of `fan_in` products x * w (bias excluded: it is added in 64 bits
    after the sum): int32 when no such sum can leave int32 -- fan_in x max|x| x max|w| < 2^31,
    from the formats' ranges -- else int64. Exact either way: the reference sums in int64."""
    mx = max(-x.qmin, x.qmax)
    mw = max(-w.qmin, w.qmax)
    return INT32 if x.bits <= 16 and w.bits <= 16 and fan_in * mx * mw < 1 << 31 else INT64


def leaky_multiplier(alpha: float) -> int:
    return int(math.floor(alpha * (1 << LEAKY_FRAC) + 0.5))


def clip_bounds(lo: float, hi: float, fmt: Fixed) -> tuple[int, int]:
    """A clip activation's bounds as integers of the output format."""
    return int(to_fixed(np.float64(lo), fmt)), int(to_fixed(np.float64(hi), fmt))
