"""The small records kernel arguments share: a float activation, a fixed-point requantisation
(shift, saturation, fused activation), a fixed-point island's output format, and the integer
kernel variant of a conv or dense accumulator. The templates pass them to aloha_kernels.c as
they are."""

from __future__ import annotations

from aloha_ir import fixedpoint as fp
from aloha_ir.errors import UnsupportedError
from backends.codegen.names import c_float

ACT = {None: "ALOHA_ACT_NONE", "relu": "ALOHA_ACT_RELU", "leaky_relu": "ALOHA_ACT_LEAKY",
       "clip": "ALOHA_ACT_CLIP", "sigmoid": "ALOHA_ACT_SIGMOID", "tanh": "ALOHA_ACT_TANH"}
_SHORT = {"int8_t": "i8", "uint8_t": "u8", "int16_t": "i16", "uint16_t": "u16", "int32_t": "i32"}


def act_record(kind, params) -> dict:
    """A float kernel's activation `kind` (None: none) with its parameters as C literals."""
    if kind not in ACT:
        raise UnsupportedError(f"activation {kind} has no float kernel")
    rec = {"kind": ACT[kind], "alpha": 0.0, "lo": 0.0, "hi": 0.0}
    if kind == "leaky_relu":
        rec["alpha"] = float(params[0]) if params else 0.01
    elif kind == "clip":
        rec["lo"], rec["hi"] = float(params[0]), float(params[1])
    return {k: (c_float(v) if isinstance(v, float) else v) for k, v in rec.items()}


def plain_rq(op, shift: int) -> dict:
    """The requantisation of `op`'s input to its output format by one shift, no activation."""
    fmt = fp.format_of(op.results[0])
    return {"kind": ACT[None], "leaky_mult": 0, "qmin": fmt.qmin, "qmax": fmt.qmax,
            "clip_lo": fmt.qmin, "clip_hi": fmt.qmax, "shift0": int(shift), "shift": None,
            "type": fp.storage_of(fmt).tag}


def island(op) -> dict:
    """The output format of a fixed-point island (LRN, softmax, sigmoid, tanh): the kernel
    computes in float and quantizes to it."""
    fmt = fp.format_of(op.results[0])
    return {"fout": fmt.frac, "qmin": fmt.qmin, "qmax": fmt.qmax, "otype": fp.storage_of(fmt).tag}


def accumulator(a: dict, block, fan_in: int, name: str) -> None:
    """A conv/dense's accumulator (int32 where fixedpoint.accumulator_of proves it enough) and
    the integer kernel variant it calls (aloha_kernels.c's `<input>_<weight>_a<bits>`)."""
    x, w = fp.format_of(block.input), fp.format_of(block.weight)
    if not w.signed:
        raise UnsupportedError(f"{name}: unsigned weights ({w}) have no integer kernel",
                               hint="quantize with signed weight formats (alohac quantize does)")
    acc = fp.accumulator_of(fan_in, x, w)
    a["acc32"] = int(acc is fp.INT32)
    a["variant"] = (f"{_SHORT[fp.storage_of(x).ctype]}_{_SHORT[fp.storage_of(w).ctype]}_"
                    f"a{8 * acc.nbytes}")
