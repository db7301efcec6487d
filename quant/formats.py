"""Fixed-point formats of an nn graph: what calibration saw, the formats chosen from it, the table.

Shared by the quantize and quantize-for-target passes (which choose and apply formats), the QDQ ONNX
exporter (which writes the table) and the executors (quantization-aware fine-tuning calibrates into
`Range`s). Pure IR and numpy: running the network to calibrate is the executors' job
(runtime.torch.calibrate). aloha_ir.fixedpoint defines the arithmetic of a format.

The formats (`choose_formats`): every block's result becomes `!nn.fixed<bits, frac[, unsigned]>`.
Weights take the smallest format holding max |w| (per layer or per output channel: the constant's
`fracs` attribute); biases live in the accumulator's format (32 bits); activations take the range
calibration saw (max, or a percentile of |x|). The input and its in-graph normalisation keep the
input's bits; reshapes, pads, pooling and nearest resizing keep their input's format; relu's output
is unsigned; softmax, sigmoid and tanh have fixed output ranges.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from xdsl.ir import Operation, SSAValue

from aloha_ir import fixedpoint as fp
from aloha_ir.consts import const_tensor
from aloha_ir.dialects import nn
from aloha_ir.dialects.nn import op_label
from aloha_ir.errors import InternalError, UnsupportedError, UsageError
from aloha_ir.optable import registrar

WEIGHTED = (nn.ConvOp, nn.DenseOp, nn.BatchNormOp)


@dataclass
class Range:
    """What calibration saw of one tensor."""

    lo: float = math.inf
    hi: float = -math.inf
    level: float = 0.0  # max |x| or the running mean of per-batch percentiles
    batches: int = 0

    def update(self, x: np.ndarray, percentile: float | None) -> None:
        self.lo = min(self.lo, float(x.min()))
        self.hi = max(self.hi, float(x.max()))
        a = np.abs(x)
        if percentile is None:
            self.level = max(self.level, float(a.max()))
        else:
            self.level += (float(np.percentile(a, percentile)) - self.level) / (self.batches + 1)
        self.batches += 1


def _weight_format(values: np.ndarray, bits: int, per_channel: bool) -> tuple[fp.Fixed, np.ndarray]:
    """A weight tensor's format and its per-output-channel fracs (all equal when per layer)."""
    a = np.abs(values.reshape(values.shape[0], -1)) if values.ndim else np.abs(values).reshape(1, 1)
    if per_channel and values.ndim >= 2:
        fracs = np.array([fp.frac_for(float(r.max()), bits) for r in a])
    else:
        fracs = np.full(a.shape[0], fp.frac_for(float(a.max()), bits))
    return fp.Fixed(bits, int(fracs.min())), fracs


@dataclass
class Formats:
    """The formats chosen for one graph: values -> format, constants -> per-channel fracs."""

    values: dict[SSAValue, fp.Fixed] = field(default_factory=dict)
    fracs: dict[SSAValue, np.ndarray] = field(default_factory=dict)


def choose_formats(graph: nn.GraphOp, store, stats: dict[SSAValue, Range], wbits: int, abits: int,
                   per_channel: bool, input_bits: int | None = None) -> Formats:
    """Formats for every value of the graph (see the module docstring)."""
    f = Formats()
    chosen = Chosen(f, stats, abits)
    input_like: set[SSAValue] = set()  # the input and its in-graph normalisation keep input bits
    for op in graph.ops:
        if isinstance(op, (nn.ConstOp, nn.OutputOp)):
            continue
        out = op.results[0]
        if isinstance(op, nn.InputOp):
            lo, hi = nn.floats(op.value_range) or (stats[out].lo, stats[out].hi)
            f.values[out] = fp.format_for(max(abs(lo), abs(hi)), input_bits or abits, lo < 0)
            input_like.add(out)
            continue
        if isinstance(op, (nn.MulOp, nn.AddOp)) and \
                sum(v in input_like for v in op.operands) == 1 and \
                any(isinstance(v.owner, nn.ConstOp) for v in op.operands):
            _const_formats(op, store, f, input_bits or abits, False)
            r = stats[out]
            f.values[out] = fp.format_for(max(abs(r.lo), abs(r.hi)), input_bits or abits, r.lo < 0)
            input_like.add(out)
            continue
        _const_formats(op, store, f, wbits, per_channel)
        rule = OUTPUT_FORMATS.get(type(op))
        if rule is None:
            raise InternalError(f"no output format rule for {op.name}: register one with "
                                "quant.formats' @output_format")
        f.values[out] = rule(op, chosen)
        if isinstance(op, WEIGHTED) and len(op.operands) > 2:
            _bias_format(op, f)
    return f


@dataclass
class Chosen:
    """What an output format rule may ask while `choose_formats` walks the graph: the formats
    chosen so far, what calibration saw, the activation bits."""

    formats: Formats
    stats: dict[SSAValue, Range]
    abits: int

    def source(self, op: Operation) -> fp.Fixed:
        """The format of `op`'s first operand."""
        return self.formats.values[op.operands[0]]

    def calibrated(self, op: Operation) -> fp.Fixed:
        """The `abits` format holding the range calibration saw of `op`'s output."""
        r = self.stats[op.results[0]]
        return fp.format_for(r.level, self.abits, r.lo < 0)


FormatRule = Callable[[Operation, Chosen], fp.Fixed]

# nn op class -> the format of a block's output (every block but the input, whose format
# choose_formats derives with its normalisation; tests/test_op_coverage.py checks)
OUTPUT_FORMATS: dict[type[Operation], FormatRule] = {}

# `@output_format(nn.ActOp)`: the decorated function chooses the output format of the op classes
output_format = registrar(OUTPUT_FORMATS, "output format rule")


@output_format(nn.ReshapeOp, nn.FlattenOp, nn.TransposeOp, nn.SliceOp, nn.ChannelShuffleOp,
               nn.DropoutOp,
               nn.PadOp, nn.PoolOp)
def same_format(op: Operation, chosen: Chosen) -> fp.Fixed:
    """The input's format exactly: these only move integers (or pick the max of them); an average
    of values of one format fits that format."""
    return chosen.source(op)


@output_format(nn.ConvOp, nn.DenseOp, nn.AddOp, nn.MulOp, nn.ConcatOp, nn.LrnOp, nn.BatchNormOp)
def calibrated_format(op: Operation, chosen: Chosen) -> fp.Fixed:
    """The range calibration saw (these compute new values)."""
    return chosen.calibrated(op)


@output_format(nn.ResizeOp)
def resize_format(op: nn.ResizeOp, chosen: Chosen) -> fp.Fixed:
    """Nearest resizing copies values (the input's format); linear interpolation is calibrated."""
    return chosen.source(op) if op.mode.data == "nearest" else chosen.calibrated(op)


@output_format(nn.ReduceOp)
def reduce_format(op: nn.ReduceOp, chosen: Chosen) -> fp.Fixed:
    """A maximum or minimum picks one of the input's values (its format); an index holds every
    index of its axis exactly (unsigned, frac >= 0, whatever calibration saw); a mean, sum or
    product is calibrated."""
    kind = op.kind.data
    if kind in ("max", "min"):
        return chosen.source(op)
    if kind in nn.ARG_REDUCTIONS:
        (axis,) = op.prop_ints("axes")
        last = nn.shape_of(op.input)[axis] - 1
        fmt = fp.format_for(max(last, 1), chosen.abits, False)
        if fmt.frac < 0:
            raise UnsupportedError(f"{kind} along an axis of {last + 1} elements: its indices "
                                   f"do not fit {chosen.abits} bits; quantize with more "
                                   "activation bits", where=nn.block_label(op) or op.name)
        return fmt
    return chosen.calibrated(op)


@output_format(nn.ActOp)
def activation_format(op: nn.ActOp, chosen: Chosen) -> fp.Fixed:
    """relu keeps the input's bits and frac, unsigned; softmax and sigmoid are in [0, 1] (all bits
    fractional, unsigned), tanh in [-1, 1] (all bits but the sign); the others are calibrated."""
    kind = op.kind.data
    if kind == "relu":
        fin = chosen.source(op)
        return fp.Fixed(fin.bits, fin.frac, signed=False)
    if kind in ("softmax", "sigmoid"):
        return fp.Fixed(chosen.abits, chosen.abits, signed=False)
    if kind == "tanh":
        return fp.Fixed(chosen.abits, chosen.abits - 1)
    return chosen.calibrated(op)


def _const_formats(op, store, f: Formats, wbits: int, per_channel: bool) -> None:
    """Weights (operand 1 of conv/dense, the scale of a batch norm) and other constant operands."""
    for pos, v in enumerate(op.operands):
        c = v.owner
        if not isinstance(c, nn.ConstOp) or v in f.values:
            continue
        if isinstance(op, WEIGHTED) and pos == 2:
            continue  # the bias: accumulator format, set by _bias_format
        values = const_tensor(c, store).materialize()
        channel = per_channel and isinstance(op, WEIGHTED) and pos == 1
        f.values[v], f.fracs[v] = _weight_format(values, wbits, channel)


def _bias_format(op, f: Formats) -> None:
    x, w, b = op.operands[0], op.operands[1], op.operands[2]
    acc = f.values[x].frac + f.fracs[w]
    f.values[b] = fp.Fixed(fp.BIAS_BITS, int(acc.min()))
    f.fracs[b] = acc


def apply_formats(graph: nn.GraphOp, f: Formats) -> None:
    """Retype every value to its fixed-point format (recorded per channel on constants)."""
    fp.retype(f.values, f.fracs)


def format_table(graph: nn.GraphOp) -> dict[str, dict]:
    """Per block: its output format, and the weight format (fracs per channel) of weighted blocks:
    the `formats` of the JSON report and of the ONNX sidecar."""
    table: dict[str, dict] = {}
    for i, op in enumerate(graph.ops):
        if isinstance(op, (nn.ConstOp, nn.OutputOp)):
            continue
        out = fp.format_of(op.results[0])
        if out is None:
            continue
        row: dict = {"op": op.name, "output": out.to_json()}
        if isinstance(op, WEIGHTED):
            w = op.operands[1]
            wf = fp.format_of(w)
            row["weight"] = wf.to_json()
            fracs = np.atleast_1d(fp.const_fracs(w.owner))
            if len(fracs) > 1:
                row["weight"]["fracs"] = [int(x) for x in fracs]
        table[op_label(op, i)] = row
    return table


def check_bits(*bits: int) -> None:
    for b in bits:
        if not fp.MIN_BITS <= b <= fp.MAX_BITS:
            raise UsageError(f"{b} bits is outside {fp.MIN_BITS}..{fp.MAX_BITS}",
                             hint="fixed-point formats here are 2 to 16 bits wide")
