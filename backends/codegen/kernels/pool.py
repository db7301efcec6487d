"""Pooling: windowed max/average over rows (`pool`), or global over the whole staged tensor
(`gpool`)."""

from __future__ import annotations

import math

from aloha_ir import fixedpoint as fp
from aloha_ir.dialects import nn
from backends.codegen.context import BuildContext
from backends.codegen.kernels.registry import kernel
from backends.codegen.view import ActorView


@kernel(nn.PoolOp)
def pool_record(b: BuildContext, view: ActorView, block: nn.PoolOp, lo_hi) -> None:
    a = view.args
    ksel = {"max": 0, "avg": 1, "global_max": 0, "global_avg": 1}[block.kind.data]
    x = nn.shape_of(block.input)
    o = block.out_shape()
    if b.fixed:
        a["rq"] = b.rq(block, fp.format_of(block.input).frac - fp.format_of(block.output).frac,
                       o[1], view.block)
    else:
        a["act"] = b.act(block)
    if block.is_global:
        view.kernel = "gpool"
        a.update(c=x[0] * x[1], hw=x[2] * x[3], kind=ksel)
        view.staging = math.prod(x)
    else:
        kernel_hw, strides, pads, dil = block.window()
        a["geom"] = dict(kind=ksel, c=x[0] * x[1], h=x[2], w=x[3], oh=o[2], ow=o[3],
                         kh=kernel_hw[0], kw=kernel_hw[1], sh=strides[0], sw=strides[1],
                         pt=pads[0], pl=pads[1], pb=pads[2], pr=pads[3], dh=dil[0], dw=dil[1],
                         count_include_pad=block.prop_int("count_include_pad"))
        view.kernel = "pool"
