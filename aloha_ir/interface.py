"""Element types at a model's boundary, and what the compiler changes there.

The nn graph computes in float32 (fixed point after `quantize`). An imported model whose inputs or
outputs have another ONNX element type keeps it in the IR as a discardable attribute, the ONNX type
name in lower case: `onnx_type = "float16"` on nn.input, `onnx_types = ["float32", "double"]` on
nn.output. The ONNX export restores the interface from them (Casts at the boundary) and the import
warning and the compile report state what computing in float32 changes (`notes`).
"""

from __future__ import annotations

from xdsl.dialects.builtin import ArrayAttr, ModuleOp, StringAttr

from aloha_ir.dialects.nn import InputOp, OutputOp

INPUT_TYPE = "onnx_type"
OUTPUT_TYPES = "onnx_types"
FLOAT32 = "float"  # ONNX's name for float32
# unit roundoff of the float types narrower than float32: how far a run in that type may differ
ROUNDOFF = {"float16": 2.0 ** -11, "bfloat16": 2.0 ** -8}
# integers float32 holds exactly; the wider ones only up to 2**24 in magnitude
EXACT_INTS = ("bool", "int8", "uint8", "int16", "uint16")


def input_type(op: InputOp) -> str:
    t = op.attributes.get(INPUT_TYPE)
    return t.data if isinstance(t, StringAttr) else FLOAT32


def output_types(op: OutputOp) -> list[str]:
    t = op.attributes.get(OUTPUT_TYPES)
    if isinstance(t, ArrayAttr) and len(t.data) == len(op.inputs):
        return [x.data if isinstance(x, StringAttr) else FLOAT32 for x in t.data]
    return [FLOAT32] * len(op.inputs)


def notes(module: ModuleOp) -> list[str]:
    """One sentence per input or output whose type the compiled model changes."""
    out = []
    for op in module.walk():
        if isinstance(op, InputOp) and input_type(op) != FLOAT32:
            out.append(_input_note(op.port.data, input_type(op)))
        elif isinstance(op, OutputOp):
            for port, t in zip(op.ports.data, output_types(op)):
                if t == "int64":
                    out.append(f"output '{port.data}' is int64: indices computed as float32 "
                               "(exact up to 2^24), cast to int64 only by the exported ONNX "
                               "model; generated code writes float32")
                elif t != FLOAT32:
                    out.append(f"output '{port.data}' is {t}: computed in float32, cast to {t} "
                               "only by the exported ONNX model; generated code writes float32")
    return out


def _input_note(port: str, t: str) -> str:
    code = "; generated code reads float32 values"
    if t == "double":
        return (f"input '{port}' is double: rounded to float32 (relative error up to 6e-08 per "
                f"value; magnitudes beyond 3.4e+38 become infinite, below 1.2e-38 lose "
                f"precision) and computed in float32{code}")
    if t in ROUNDOFF:
        return (f"input '{port}' is {t}: computed in float32, so results differ from a {t} run "
                f"by up to {t} rounding ({ROUNDOFF[t]:.0e} relative per operation){code}")
    exact = "exactly" if t in EXACT_INTS else "exactly up to 2^24 in magnitude"
    return (f"input '{port}' is {t}, used only through a Cast to float: float32 holds its values "
            f"{exact}{code}")
