"""Quantized nn IR -> ONNX QDQ, plus the JSON sidecar of our formats (`save_quantized`).

The float graph of backends/onnx/export.py with QuantizeLinear/DequantizeLinear pairs that implement
our power-of-two formats: scale 2**-frac, zero point 0, so a format *is* a scale. The input and
every block output are re-quantized to their format; constants are the integers
runtime/reference.py uses, stored as integer initializers behind a DequantizeLinear (per-axis
scales along axis 0 for per-channel fracs); biases are int32 at scale = input scale x weight scale,
the form onnxruntime fuses (DQ -> Conv/Gemm -> Q, in the textbook form below) into its
QLinearConv/QGemm kernels. Ops without an integer kernel (softmax, log-softmax, sigmoid, tanh,
LRN, linear resize, reductions) are DQ -> float op -> Q, exactly our float islands.

Widths and opsets (IR version 10 throughout; each checked in onnxruntime 1.31):
- 8 bits: plain (u)int8 QDQ at opset 13, the float exporter's opset (tools that stop at 13 read it).
- 2..7 bits: QCDQ at opset 13 (int8 QuantizeLinear, an int8 Clip to the b-bit range,
  DequantizeLinear). int4 QDQ at opset 21 runs too, but covers 4 bits only; QCDQ covers every width
  and keeps the int8 fused kernels. Weights need no Clip: their integers are already in range.
- 9..16 bits: (u)int16 QDQ, which needs opset 21 (QuantizeLinear/DequantizeLinear take 16-bit
  integers from opset 21 on). onnxruntime 1.31 has no int16 Clip, so below 16 bits the saturation is
  a float Clip to the format's range *before* QuantizeLinear; its bounds lie on the grid, so
  clip-then-round equals our round-then-saturate.
Fused activations are exported with the constants our kernels use: leaky ReLU's alpha as the
multiplier round(alpha * 2**LEAKY_FRAC) / 2**LEAKY_FRAC, clip bounds snapped to the output format.

Rounding. QuantizeLinear (and the requantisation inside onnxruntime's fused kernels) rounds half to
even, our formats half up (aloha_ir.fixedpoint). Measured, that is the *only* difference: with ties
to even our reference reproduces onnxruntime bit for bit. But in fixed point ties are not rare: a
requantisation by s bits lands on one for 2**-s of its values, so adds, multiplies, pools and narrow
formats hit them often and the differences compound. With the textbook form, at 8 bits 57-81% of
the random zoo models' output integers and 97-98% of a trained digits model's stay identical,
argmax 98-100%; at 4 bits argmax agrees for 10-90% of the inputs. Hence two forms:
- `exact=True` (the default) rounds half up before every QuantizeLinear: floor(x * 2**frac + 1/2) *
  2**-frac (Mul, Add, Floor, Mul) lies on the grid, so QuantizeLinear only saturates. onnxruntime
  then runs every op in float32 and equals our reference bit for bit up to 12 bits (measured on
  models with conv, dense, add, mul, concat, max/average/global pooling, fused activations and every
  float island). At 16 bits a product of two 16-bit integers overflows float32's 24-bit mantissa:
  80-99% of the outputs stay identical, the rest move by a few LSB, argmax does not (onnxruntime has
  no integer or float64 convolution that would do better).
- `exact=False`: the textbook QDQ that onnxruntime fuses into QLinearConv/QGemm and its QLinear
  pools; faster, with ties to even.
"""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
from onnx import numpy_helper
from xdsl.dialects.builtin import (
    ArrayAttr,
    DenseArrayBase,
    DictionaryAttr,
    FloatAttr,
    IntegerAttr,
    ModuleOp,
    StringAttr,
)

from aloha_ir import fixedpoint as fp
from aloha_ir.consts import const_tensor
from aloha_ir.dialects import nn
from aloha_ir.dialects.nn import op_label
from aloha_ir.errors import UnsupportedError
from aloha_ir.outputs import write_bytes, write_text
from aloha_ir.weights import weights_of
from backends.onnx.export import GraphExporter, make_model, single_graph
from quant.formats import WEIGHTED, format_table
from runtime.reference import FixedReference

QDQ_OPSET = 13
WIDE_OPSET = 21  # QuantizeLinear/DequantizeLinear on (u)int16
SETTINGS = ("method", "weight_bits", "activation_bits", "granularity")
ROUNDING = {
    "real_to_fixed": "q = saturate(floor(x * 2**frac + 1/2)): round half up",
    "requantize": "by s bits: (acc + 2**(s-1)) >> s, arithmetic shift (round half up), then "
                  "saturate",
    "saturation": "to the format's range: [-2**(bits-1), 2**(bits-1) - 1], unsigned "
                  "[0, 2**bits - 1]",
    "bias": "rounded to the accumulator's format (input frac + weight frac of the output "
            f"channel), saturated to {fp.BIAS_BITS} bits",
    "float_islands": "sigmoid, tanh, softmax, log-softmax, LRN, linear resize, reductions "
                     "(an index cast to float): dequantize, float op, quantize",
}
ONNX_ROUNDING = {True: "half up: floor(x * 2**frac + 1/2) before each QuantizeLinear",
                 False: "half to even (QuantizeLinear's own): differs from the rules above on ties"}


def _storage(fmt: fp.Fixed) -> type:
    """The ONNX integer type holding a format's integers."""
    if fmt.bits <= 8:
        return np.int8 if fmt.signed else np.uint8
    if fmt.bits <= 16:
        return np.int16 if fmt.signed else np.uint16
    return np.int32


class _QdqExporter(GraphExporter):
    def __init__(self, graph: nn.GraphOp, store, opset: int, exact: bool):
        super().__init__(graph, store, opset)
        self.ref = FixedReference(graph, store)
        self.exact = exact
        self.shared: dict[tuple, str] = {}

    def constant(self, values: np.ndarray) -> str:
        """An initializer, shared between the Q/DQ nodes that use the same scale or zero point."""
        values = np.asarray(values)
        key = (values.dtype.str, values.shape, values.tobytes())
        if key not in self.shared:
            self.shared[key] = self.fresh("qparam")
            self.inits.append(numpy_helper.from_array(values, self.shared[key]))
        return self.shared[key]

    def qparams(self, fracs, dtype) -> tuple[list[str], dict]:
        """(scale, zero point) inputs and the axis attribute of a format (axis 0 if per channel)."""
        fracs = np.asarray(fracs)
        scale = self.constant(np.exp2(-fracs.astype(np.float64)).astype(np.float32))
        zero = self.constant(np.zeros(fracs.shape, dtype))
        return [scale, zero], ({"axis": 0} if fracs.ndim else {})

    def qdq(self, value: str, fmt: fp.Fixed) -> str:
        """`value` rounded and saturated to `fmt`, back in float."""
        if fmt.bits > 16:
            raise UnsupportedError(f"a {fmt.bits}-bit activation has no QuantizeLinear type",
                                   hint="activations are 2 to 16 bits wide")
        dtype = _storage(fmt)
        params, _ = self.qparams(fmt.frac, dtype)
        if 8 < fmt.bits < 16:  # no int16 Clip in onnxruntime: saturate on the float grid
            value = self.node("Clip", [value, self.constant(np.float32(fmt.qmin * fmt.step)),
                                       self.constant(np.float32(fmt.qmax * fmt.step))],
                              f"{value}_sat")
        if self.exact:  # round half up onto the grid; QuantizeLinear then only saturates
            units = self.node("Mul", [value, self.constant(np.float32(2.0 ** fmt.frac))])
            units = self.node("Floor", [self.node("Add", [units, self.constant(np.float32(0.5))])])
            value = self.node("Mul", [units, params[0]], f"{value}_up")
        q = self.node("QuantizeLinear", [value, *params], f"{value}_q")
        if fmt.bits < 8:  # QCDQ
            q = self.node("Clip", [q, self.constant(np.asarray(fmt.qmin, dtype)),
                                   self.constant(np.asarray(fmt.qmax, dtype))], f"{value}_clip")
        return self.node("DequantizeLinear", [q, *params], f"{value}_dq")

    def input_value(self, op: nn.InputOp) -> str:
        return self.qdq(self.port_value(op), fp.format_of(op.output))

    def act_params(self, op, kind: str, params: tuple[float, ...]) -> tuple[float, ...]:
        if kind == "leaky_relu":
            return (fp.leaky_multiplier(params[0]) / (1 << fp.LEAKY_FRAC),)
        if kind == "clip":
            fmt = fp.format_of(op.results[0])
            return tuple(q * fmt.step for q in fp.clip_bounds(*params, fmt))
        return params

    def emit(self, op, out: str) -> str:
        if isinstance(op, nn.ConstOp):
            return self.const(op, out)
        if isinstance(op, WEIGHTED) and len(op.operands) > 2:
            self.check_bias(op)
        return self.qdq(super().emit(op, out), fp.format_of(op.results[0]))

    def const(self, op: nn.ConstOp, out: str) -> str:
        """The reference's integers behind a DequantizeLinear (unused constants stay float)."""
        fmt = fp.format_of(op.output)
        if fmt is None:
            return super().emit(op, out)
        q = self.ref.consts[op.output].astype(_storage(fmt))
        if const_tensor(op, self.store).splat is not None and (q == q.flat[0]).all():
            ints = self.node("ConstantOfShape", [self.int_init(list(q.shape))], f"{out}_q",
                             value=numpy_helper.from_array(q.reshape(-1)[:1]))
        else:
            ints = f"{out}_q"
            self.inits.append(numpy_helper.from_array(q, ints))
        params, axis = self.qparams(fp.const_fracs(op), q.dtype)
        return self.node("DequantizeLinear", [ints, *params], out, **axis)

    def check_bias(self, op) -> None:
        """onnxruntime's fused kernels take the int32 bias to be at input scale x weight scale."""
        x, w, b = op.operands[:3]
        acc = self.ref.frac(x) + np.asarray(self.ref.frac(w))
        channels = nn.shape_of(b)
        if not np.array_equal(np.broadcast_to(acc, channels),
                              np.broadcast_to(self.ref.frac(b), channels)):
            raise UnsupportedError(
                "the bias is not in its accumulator's format (input frac + weight frac)",
                where=op_label(op, list(self.graph.ops).index(op)), hint="re-run the quantize pass")


def _quantized_graph(module: ModuleOp) -> nn.GraphOp:
    graph = single_graph(module)
    floats = [op_label(op, i) for i, op in enumerate(graph.ops) if not isinstance(
        op, (nn.ConstOp, nn.OutputOp)) and fp.format_of(op.results[0]) is None]
    if floats:
        raise UnsupportedError(f"@{graph.sym_name.data} is not quantized ({len(floats)} float "
                               f"blocks, first {floats[0]}): QDQ export needs fixed-point formats",
                               hint="export a float model with backends.onnx.export.export_onnx "
                                    "(alohac --emit onnx), or run the quantize pass first")
    return graph


def _opset(graph: nn.GraphOp) -> int:
    widths = {fmt.bits for op in graph.ops for v in op.results if (fmt := fp.format_of(v))}
    return WIDE_OPSET if any(8 < b <= 16 for b in widths) else QDQ_OPSET


def export_qdq(module: ModuleOp, exact: bool = True) -> onnx.ModelProto:
    """The module's quantized nn.graph as an ONNX QDQ model; `exact=False` gives the textbook form
    onnxruntime fuses, which rounds ties to even (see the module docstring)."""
    graph = _quantized_graph(module)
    exporter = _QdqExporter(graph, weights_of(module), _opset(graph), exact)
    return make_model(exporter.export(), exporter.opset)


def quant_json_path(onnx_path: str) -> str:
    """The sidecar of `PATH.onnx`: `PATH.quant.json`."""
    root = onnx_path[:-5] if onnx_path.endswith(".onnx") else onnx_path
    return root + ".quant.json"


def _plain(attr):
    """An attribute as a JSON value."""
    if isinstance(attr, IntegerAttr):
        return attr.value.data
    if isinstance(attr, FloatAttr):
        return attr.value.data
    if isinstance(attr, StringAttr):
        return attr.data
    if isinstance(attr, DenseArrayBase):
        return list(attr.get_values())
    if isinstance(attr, ArrayAttr):
        return [_plain(a) for a in attr.data]
    if isinstance(attr, DictionaryAttr):
        return {k: _plain(v) for k, v in attr.data.items()}
    return str(attr)


def annotations(module: ModuleOp, model: onnx.ModelProto, exact: bool) -> dict:
    """The sidecar's content: settings, per-layer formats, rounding rules, pruning and how the
    exported `model` represents them."""
    graph = _quantized_graph(module)
    q = graph.attributes.get("quantization")
    settings = q.data if isinstance(q, DictionaryAttr) else {}
    pruning = {op_label(op, i): _plain(op.attributes["pruning"]) for i, op in enumerate(graph.ops)
               if isinstance(op, WEIGHTED) and isinstance(op.attributes.get("pruning"),
                                                          DictionaryAttr)}
    return {"graph": graph.sym_name.data,
            **{k: _plain(settings[k]) if k in settings else None for k in SETTINGS},
            "formats": format_table(graph), "rounding": ROUNDING, "pruning": pruning,
            "onnx": {"opset": model.opset_import[0].version, "ir_version": model.ir_version,
                     "scale": "2**-frac", "zero_point": 0, "rounding": ONNX_ROUNDING[exact]}}


def save_quantized(module: ModuleOp, path: str, exact: bool = True) -> list[str]:
    """Write `path` (QDQ ONNX) and its `.quant.json` sidecar; returns both paths.

    Everything is serialised before the first write, and each file goes through a temporary and a
    rename; if the sidecar cannot be written the model is removed, so no half pair is left.
    """
    model = export_qdq(module, exact)
    side = quant_json_path(path)
    text = json.dumps(annotations(module, model, exact), indent=2) + "\n"
    write_bytes(path, model.SerializeToString())
    try:
        write_text(side, text)
    except BaseException:
        os.remove(path)
        raise
    return [path, side]
