"""Activations: softmax and log-softmax (along channels per row, or along the last axis), sigmoid
and tanh as fixed-point islands, and relu, leaky relu and clip as a float activation or a
requantisation."""

from __future__ import annotations

import math

from aloha_ir import fixedpoint as fp
from aloha_ir.dialects import nn
from aloha_ir.errors import UnsupportedError
from backends.codegen.context import BuildContext
from backends.codegen.kernels.registry import kernel
from backends.codegen.ports import folded
from backends.codegen.records import ACT, act_record, island, plain_rq
from backends.codegen.view import ActorView


@kernel(nn.ActOp)
def activation_record(b: BuildContext, view: ActorView, block: nn.ActOp, lo_hi) -> None:
    a = view.args
    kind = block.kind.data
    shape = view.out_shape
    if kind in nn.SOFTMAXES:
        axis = block.prop_int("axis", 1) % len(shape)
        if len(shape) == 4 and axis == 1:
            a.update(n=shape[1], inner=shape[3], per_row=True, outer=shape[0])
        elif axis == len(shape) - 1 or len(shape) != 4:
            # the whole tensor in C order ([H, N, C, W] rows of a rank-4 one: its last axis)
            a.update(n=shape[axis], inner=math.prod(shape[axis + 1:]), per_row=False,
                     outer=math.prod(shape[:axis]))
        else:
            raise UnsupportedError(f"{kind} along axis {axis} of {list(shape)}", where=view.name)
        if b.fixed:
            a.update(fin=fp.format_of(block.input).frac, **island(block))
        view.kernel = kind
        return
    c, _, w = folded(shape)
    a["n"] = c * w
    if b.fixed:
        if kind in ("sigmoid", "tanh"):
            a.update(fin=fp.format_of(block.input).frac, island=ACT[kind], **island(block))
            view.kernel = "island"
            return
        fmt = fp.format_of(block.output)
        rq = plain_rq(block, fp.format_of(block.input).frac - fmt.frac)
        params = nn.floats(block.params)
        if kind == "relu":
            rq["kind"] = ACT["relu"]
        elif kind == "leaky_relu":
            rq.update(kind=ACT["leaky_relu"], leaky_mult=fp.leaky_multiplier(params[0]))
        elif kind == "clip":
            lo, hi = fp.clip_bounds(*params, fmt)
            rq.update(kind=ACT["clip"], clip_lo=lo, clip_hi=hi)
        else:
            raise UnsupportedError(f"activation {kind} has no fixed-point kernel", where=view.name)
        a["rq"] = rq
        view.kernel = "requant"
    else:
        a["act"] = act_record(kind, nn.floats(block.params))
        view.kernel = "act"
