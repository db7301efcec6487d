"""QuantizeLinear / DequantizeLinear: pre-quantized (QDQ) models into the nn IR's fixed-point types.

A QDQ model (onnxruntime's `quantize_static(..., quant_format=QuantFormat.QDQ)`, Brevitas' QDQ
export) keeps float ops and marks each tensor's quantization with a QuantizeLinear -> DequantizeLinear
pair: real = (q - zero_point) * scale. The import folds the pairs away and turns their parameters
into the IR's own power-of-two formats (`!nn.fixed<bits, frac[, unsigned]>`, aloha_ir.fixedpoint):

- a run-time tensor quantized with scale s takes frac = round(-log2 s), the power-of-two step
  nearest to s (in ratio): a power-of-two scale is its format exactly, another one is off by
  step / s - 1, within [-29%, +41%]. int8 with zero point 0 is a signed format; uint8 with zero
  point 0 and int8 with zero point -128 (both [0, 255] x s) are unsigned ones, exactly. Any other
  zero point (asymmetric activations) has no fixed-point equivalent: refused, naming the node.
- a constant behind a DequantizeLinear (weights, biases) is folded to its real values; a weight
  takes, per output channel where its scale is per channel, the power-of-two step next to its
  scale that represents its values best (least squared error, saturation included; a
  power-of-two scale: the model's integers exactly); a bias the accumulator's format (32 bits,
  input frac + weight frac), as quant.formats gives it.
- data-movement ops between the pairs (reshape, flatten, pooling, dropout ...) without a
  QuantizeLinear of their own keep their input's format; relu keeps it, unsigned. An input that no
  QuantizeLinear reads (normalised in float first) takes the format holding its declared range
  (`value_range`), else is refused; an op computing new values without one is refused (a
  partially quantized model).

The scale mapping (the model's scale, the step used, the relative error) is recorded per layer in
the graph's `quantization` attribute (`scales`), read back by `scale_mapping`, and an import
whose scales are not all powers of two warns with the error of each layer.

Why power-of-two formats rather than an integer-scale representation: NEURAghe's convolution engine
and the generated C requantize by an arithmetic shift; a multiplier per layer would need a new
kernel family in every backend. The mapping error is what a user trades for running the model's
own integers on that hardware, and the warning and report state it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import onnx
from xdsl.dialects.builtin import DictionaryAttr, FloatAttr, IntegerAttr, StringAttr, f64, i64
from xdsl.ir import SSAValue

from aloha_ir import fixedpoint as fp
from aloha_ir.consts import const_tensor
from aloha_ir.dialects import nn
from aloha_ir.errors import InputFileError, UnsupportedError
from aloha_ir.weights import ConstTensor
from frontends.onnx.importer import (RANGE_KEY, ImportContext, attrs, converter, node_label,
                                     type_name)

T = onnx.TensorProto
# element type -> (bits, signed range); the zero points that make a fixed-point format exactly
RANGES = {T.INT8: (8, True), T.UINT8: (8, False), T.INT16: (16, True), T.UINT16: (16, False)}
WEIGHTED = (nn.ConvOp, nn.DenseOp)
# ops that only move values (or pick among them): without a QuantizeLinear of their own they keep
# their input's format, as quant.formats' same_format rule does
MOVES = (nn.ReshapeOp, nn.FlattenOp, nn.TransposeOp, nn.SliceOp, nn.ChannelShuffleOp,
         nn.DropoutOp, nn.PadOp, nn.PoolOp)
SYMMETRIC_HINT = ("quantize with symmetric activations: quantize_static(..., "
                  "activation_type=QuantType.QInt8, extra_options={'ActivationSymmetric': True})")


@dataclass(frozen=True)
class QParams:
    """One QuantizeLinear's or DequantizeLinear's parameters: real = (q - zero_point) * scale."""

    scale: np.ndarray  # float64, a scalar or one per slice along `axis`
    zero_point: np.ndarray  # int64, the shape of scale
    elem: int  # the integer element type
    axis: int
    node: str  # the node's label, for messages

    def broadcast(self, a: np.ndarray, rank: int) -> np.ndarray:
        """`a` (scale-shaped) shaped to broadcast against a tensor of `rank` along `axis`."""
        if a.ndim == 0 or rank == 0:
            return a
        shape = [1] * rank
        shape[self.axis] = a.size
        return a.reshape(shape)


@dataclass
class QdqState:
    """What the QDQ converters of one import share."""

    acts: dict[SSAValue, tuple[QParams, fp.Fixed]] = field(default_factory=dict)
    quantized: dict[str, QParams] = field(default_factory=dict)  # run-time QuantizeLinear outputs
    consts: dict[str, QParams] = field(default_factory=dict)  # folded DequantizeLinear outputs
    weights: dict[SSAValue, QParams] = field(default_factory=dict)  # weight consts, per out axis 0


def _state(ctx: ImportContext) -> QdqState:
    st = ctx.state.get("qdq")
    if st is None:
        st = ctx.state["qdq"] = QdqState()
        ctx.finish.append(lambda graph: apply_qdq_formats(ctx, st, graph))
    assert isinstance(st, QdqState)
    return st


def step_frac(scale: float) -> int:
    """The frac whose step 2**-frac is nearest `scale` in ratio (exact for a power of two)."""
    return int(round(-math.log2(scale)))


def _params(ctx: ImportContext, node, elem: int | None) -> QParams:
    """The node's scale, zero point (default 0 of `elem`, else uint8) and axis."""
    a = attrs(node)
    if a.get("block_size", 0):
        raise ctx.unsupported(f"{node.op_type} with block_size (blocked quantization) is not "
                              "supported; supported: per tensor and per axis")
    scale = np.asarray(ctx.value(node.input[1]), dtype=np.float64)
    if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        raise InputFileError(f"{node.op_type} scale '{node.input[1]}' must be finite and > 0, "
                             f"got {scale.ravel()[:4].tolist()}", where=ctx.where())
    if len(node.input) > 2 and node.input[2]:
        zp_raw = np.asarray(ctx.value(node.input[2]))
        elem = onnx.helper.np_dtype_to_tensor_dtype(zp_raw.dtype)
        zp = zp_raw.astype(np.int64)
    else:
        elem = int(a.get("output_dtype", 0)) or elem or T.UINT8
        zp = np.zeros(scale.shape, dtype=np.int64)
    if scale.size == 1 and zp.size == 1:  # exporters write a per-tensor scale as [1] too
        scale, zp = scale.reshape(()), zp.reshape(())
    if scale.ndim > 1 or zp.shape != scale.shape:
        raise ctx.shape_error(f"{node.op_type} scale {list(scale.shape)} and zero point "
                              f"{list(zp.shape)} must be one scalar or one 1-D tensor each")
    rank = len(ctx.shape(node.input[0]))
    axis = int(a.get("axis", 1))
    axis = axis + rank if axis < 0 else axis
    if scale.ndim == 1 and not (0 <= axis < rank and ctx.shape(node.input[0])[axis] == scale.size):
        raise ctx.shape_error(f"{node.op_type} has {scale.size} scales, axis {a.get('axis', 1)} "
                              f"of {list(ctx.shape(node.input[0]))} does not have that size")
    return QParams(scale, zp, elem, axis, node_label(node))


def activation_format(ctx: ImportContext, qp: QParams) -> fp.Fixed:
    """The fixed-point format of a run-time tensor quantized by `qp`, or exit 4."""
    if qp.elem not in RANGES:
        raise ctx.unsupported(f"{type_name(qp.elem)} quantization is not supported; supported: "
                              "int8, uint8, int16, uint16")
    if qp.scale.ndim:
        raise ctx.unsupported("a run-time tensor quantized per channel is not supported; "
                              "supported: per-tensor activation scales (per-channel weights)")
    bits, signed = RANGES[qp.elem]
    zp = int(qp.zero_point)
    if zp == 0:
        return fp.Fixed(bits, step_frac(float(qp.scale)), signed)
    if signed and zp == -(1 << (bits - 1)):
        return fp.Fixed(bits, step_frac(float(qp.scale)), False)  # [0, 2**bits - 1] x scale
    raise UnsupportedError(
        f"zero point {zp} ({type_name(qp.elem)}, asymmetric activations): the compiler's "
        "fixed-point formats have no zero point; supported: zero point 0, or the lowest value "
        f"({-(1 << (bits - 1))}) of a signed type for a tensor that is never negative",
        where=ctx.where(), hint=SYMMETRIC_HINT)


@converter("QuantizeLinear")
def quantize_linear(ctx: ImportContext, node) -> None:
    x, out = node.input[0], node.output[0]
    qp = _params(ctx, node, None)
    if ctx.is_const(x):  # a weight quantized in the graph (mnist-8's MatMul weight): fold
        bits, signed = RANGES.get(qp.elem, (0, False))
        if not bits:
            raise ctx.unsupported(f"QuantizeLinear to {type_name(qp.elem)} is not supported")
        rank = len(ctx.shape(x))
        q = np.rint(ctx.value(x).astype(np.float64) / qp.broadcast(qp.scale, rank)) + \
            qp.broadcast(qp.zero_point, rank)
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        ctx.set_const(out, np.clip(q, lo, hi).astype(onnx.helper.tensor_dtype_to_np_dtype(
            qp.elem)))
        return
    st = _state(ctx)
    fmt = activation_format(ctx, qp)
    for user in ctx.consumers.get(out, []):
        if user.op_type != "DequantizeLinear":
            # e.g. QCDQ's narrow-range Clip on the integers: read as a float op, it would clip
            # real values at integer bounds
            raise ctx.unsupported(
                f"its integers feed node '{node_label(user)}' ({user.op_type}); supported: "
                "QuantizeLinear -> DequantizeLinear pairs (no integer op between them, such as "
                "QCDQ's Clip)")
    v = ctx.operand(x)
    prev = st.acts.get(v)
    if prev is not None and prev[1] != fmt:
        raise ctx.unsupported(f"'{x}' is quantized twice, to {prev[1]} by '{prev[0].node}' and to "
                              f"{fmt} here; supported: one quantization per tensor")
    st.acts[v] = (qp, fmt)
    st.quantized[out] = qp
    ctx.alias(out, x)


@converter("DequantizeLinear")
def dequantize_linear(ctx: ImportContext, node) -> None:
    x, out = node.input[0], node.output[0]
    st = _state(ctx)
    if ctx.is_const(x):  # weights and biases: their real values
        q = np.asarray(ctx.value(x))
        if q.dtype.kind not in "iu":
            raise ctx.unsupported(f"DequantizeLinear of {q.dtype} constant '{x}' is not "
                                  "supported; supported: integer tensors")
        qp = _params(ctx, node, onnx.helper.np_dtype_to_tensor_dtype(q.dtype))
        real = (q.astype(np.int64) - qp.broadcast(qp.zero_point, q.ndim)) * \
            qp.broadcast(qp.scale.astype(np.float32), q.ndim)
        ctx.set_const(out, ConstTensor.of(np.asarray(real, dtype=np.float32)))
        st.consts[out] = qp
        return
    q_in = st.quantized.get(x)
    if q_in is None:
        raise ctx.unsupported(f"DequantizeLinear of '{x}', which no QuantizeLinear of the graph "
                              "produced (an integer input or an integer op's output); supported: "
                              "QuantizeLinear -> DequantizeLinear pairs and quantized constants")
    qp = _params(ctx, node, q_in.elem)
    if not (np.array_equal(qp.scale, q_in.scale) and np.array_equal(qp.zero_point,
                                                                    q_in.zero_point)):
        raise ctx.unsupported(f"DequantizeLinear reads '{x}' with scale {qp.scale.tolist()} and "
                              f"zero point {qp.zero_point.tolist()}, which '{q_in.node}' "
                              f"quantized with {q_in.scale.tolist()}, {q_in.zero_point.tolist()}")
    ctx.alias(out, x)


def note_weight(ctx: ImportContext, value: SSAValue, name: str, out_axis: int) -> None:
    """Record that the conv/dense weight `value` came from the dequantized constant `name` whose
    output channels lie along `out_axis` (the weight's first axis once imported)."""
    st = ctx.state.get("qdq")
    qp = st.consts.get(name) if isinstance(st, QdqState) else None
    if qp is None:
        return
    if qp.scale.ndim and qp.axis != out_axis:
        raise ctx.unsupported(f"weight '{name}' is quantized per slice along axis {qp.axis}, not "
                              f"per output channel (axis {out_axis}); supported: per tensor or "
                              "per output channel")
    st.weights[value] = QParams(qp.scale, qp.zero_point, qp.elem, 0, qp.node)


# --- formats --------------------------------------------------------------------------------------

def weight_fracs(values: np.ndarray, qp: QParams | None, per_channel: bool) -> np.ndarray:
    """Per output channel (axis 0) the frac of a weight: of the steps around its scale (per tensor
    or per channel), the one whose rounding and saturation lose least (squared error; a tie goes to
    the step nearest the scale): a power-of-two scale keeps the model's integers. Without a scale
    (a float constant), the finest frac that holds the values."""
    bits = RANGES.get(qp.elem, (8, True))[0] if qp is not None else 8
    rows = values.reshape(values.shape[0], -1) if values.ndim else values.reshape(1, 1)
    rows = rows.astype(np.float64)
    fmt = fp.Fixed(bits, 0)

    def best(r: np.ndarray, scale: float | None) -> int:
        if scale is None:
            return fp.frac_for(float(np.abs(r).max()), bits)
        near = step_frac(scale)

        def loss(f: int) -> tuple[float, float]:
            q = np.clip(np.floor(r * 2.0 ** f + 0.5), fmt.qmin, fmt.qmax)
            return float(np.sum((r - q * 2.0 ** -f) ** 2)), abs(f + math.log2(scale))
        return min((near - 1, near, near + 1), key=loss)

    if per_channel:
        return np.array([best(r, float(s)) for r, s in zip(rows, qp.scale)], dtype=np.int64)
    return np.full(len(rows), best(rows, None if qp is None else float(np.max(qp.scale))),
                   dtype=np.int64)


def _row(scale, fracs) -> dict:
    """The mapping of scales to power-of-two steps: the worst relative error step / scale - 1."""
    scale = np.atleast_1d(np.asarray(scale, dtype=np.float64))
    step = np.exp2(-np.atleast_1d(np.asarray(fracs, dtype=np.float64)))
    err = step / scale - 1.0
    worst = int(np.argmax(np.abs(err)))
    return {"scale": float(scale[worst % scale.size]), "step": float(step[worst % step.size]),
            "error": float(err[worst])}


def apply_qdq_formats(ctx: ImportContext, st: QdqState, graph: nn.GraphOp) -> None:
    """Give every value of the imported graph its format (see the module docstring), record the
    scale mapping, and warn when a scale is not a power of two."""
    values: dict[SSAValue, fp.Fixed] = {}
    fracs: dict[SSAValue, np.ndarray] = {}
    rows: dict[str, dict[str, dict]] = {}
    per_channel = any(qp.scale.ndim for qp in st.weights.values())
    for op in graph.ops:
        if isinstance(op, (nn.ConstOp, nn.OutputOp)):
            continue
        out, label = op.results[0], nn.block_label(op)
        hit = st.acts.get(out)
        if hit is not None:
            values[out] = hit[1]
            rows.setdefault(label, {})["output"] = _row(hit[0].scale, hit[1].frac)
        elif isinstance(op, MOVES) and op.operands[0] in values:
            values[out] = values[op.operands[0]]
        elif isinstance(op, nn.ActOp) and op.kind.data == "relu" and op.operands[0] in values:
            fin = values[op.operands[0]]
            values[out] = fp.Fixed(fin.bits, fin.frac, False)
        elif isinstance(op, nn.InputOp) and op.value_range is not None:
            # an input normalised in float before its first QuantizeLinear (quantize_static
            # leaves a Sub or Div unquantized): the format holding its declared range
            lo, hi = nn.floats(op.value_range)[:2]
            bits = max((f.bits for _, f in st.acts.values()), default=8)
            values[out] = fp.format_for(max(abs(lo), abs(hi)), bits, lo < 0)
        else:
            what = f"input '{label}'" if isinstance(op, nn.InputOp) else \
                f"the output of node '{label}' ({op.name})"
            raise UnsupportedError(
                f"{what} is not quantized: no QuantizeLinear reads it, in a model that others "
                "are quantized in (QDQ)", where=ctx.source,
                hint=f"record the input's range in the model's metadata ('{RANGE_KEY}{label}' = "
                     "'low,high')" if isinstance(op, nn.InputOp) else
                "quantize every op (quantize_static's default op_types_to_quantize), or give "
                "the float model and quantize it with `alohac quantize`")
        for pos, v in enumerate(op.operands):
            c = v.owner
            if not isinstance(c, nn.ConstOp) or v in values:
                continue
            if isinstance(op, WEIGHTED) and pos == 2:  # the bias: the accumulator's format
                acc = values[op.operands[0]].frac + fracs[op.operands[1]]
                values[v], fracs[v] = fp.Fixed(fp.BIAS_BITS, int(acc.min())), acc
                continue
            qp = st.weights.get(v)
            weight = isinstance(op, WEIGHTED) and pos == 1
            f = weight_fracs(const_tensor(c, ctx.store).materialize(), qp,
                             weight and qp is not None and bool(qp.scale.ndim))
            bits = RANGES.get(qp.elem, (8, True))[0] if qp is not None else 8
            values[v], fracs[v] = fp.Fixed(bits, int(f.min())), f
            if weight and qp is not None:
                rows.setdefault(label, {})["weight"] = _row(qp.scale, f)
    fp.retype(values, fracs)
    abits = max(f.bits for v, f in values.items() if not isinstance(v.owner, nn.ConstOp))
    wbits = max((f.bits for v, f in values.items() if isinstance(v.owner, nn.ConstOp) and
                 f.bits != fp.BIAS_BITS), default=abits)
    graph.attributes["quantization"] = DictionaryAttr({
        "method": StringAttr("qdq"), "weight_bits": IntegerAttr(wbits, i64),
        "activation_bits": IntegerAttr(abits, i64),
        "granularity": StringAttr("channel" if per_channel else "layer"),
        "scales": DictionaryAttr({label: DictionaryAttr({
            role: DictionaryAttr({k: FloatAttr(x, f64) for k, x in r.items()})
            for role, r in roles.items()}) for label, roles in rows.items()})})
    off = [f"{label} {role} {r['error']:+.1%}" for label, roles in rows.items()
           for role, r in roles.items() if r["error"] != 0.0]
    if off:
        ctx.node = None
        ctx.warn(f"{len(off)} quantization scales are not powers of two: mapped to power-of-two "
                 "fixed-point steps (the nearest for activations, the least-error one for "
                 "weights; step / scale - 1, a weight's worst channel): " + ", ".join(off))


def scale_mapping(graph: nn.GraphOp) -> dict[str, dict[str, dict[str, float]]]:
    """The scale mapping an import of a QDQ model recorded: block -> {"output"/"weight": {"scale",
    "step", "error"}} ({} for a graph that was not imported from QDQ)."""
    q = graph.attributes.get("quantization")
    scales = q.data.get("scales") if isinstance(q, DictionaryAttr) else None
    if not isinstance(scales, DictionaryAttr):
        return {}
    return {label: {role: {k: float(x.value.data) for k, x in r.data.items()}
                    for role, r in roles.data.items()} for label, roles in scales.data.items()}
