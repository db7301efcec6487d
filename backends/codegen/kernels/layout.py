"""Ops that move elements without arithmetic (bar a requantisation in fixed point): concat along
channels, channel shuffle, and reshape/flatten/dropout as a copy through a staging buffer."""

from __future__ import annotations

import math

from aloha_ir import fixedpoint as fp
from aloha_ir.dialects import nn
from aloha_ir.errors import UnsupportedError
from backends.codegen.context import BuildContext
from backends.codegen.kernels.registry import kernel
from backends.codegen.ports import dims, folded
from backends.codegen.records import plain_rq
from backends.codegen.view import ActorView


@kernel(nn.ConcatOp)
def concat_record(b: BuildContext, view: ActorView, block: nn.ConcatOp, lo_hi) -> None:
    a = view.args
    axis = block.prop_int("axis")
    if len(view.out_shape) != 4 or axis != 1:
        raise UnsupportedError(f"concat along axis {axis} of a rank-{len(view.out_shape)} "
                               "tensor has no generated kernel", where=view.name)
    parts = []
    for v in block.inputs:
        c = nn.shape_of(v)[1]
        shift = fp.format_of(v).frac - fp.format_of(block.output).frac if b.fixed else 0
        parts.append({"c": c, "rq": plain_rq(block, shift) if b.fixed else None})
    a["parts"] = parts
    a["w"] = view.out_shape[3]
    view.kernel = "concat"


@kernel(nn.ChannelShuffleOp)
def shuffle_record(b: BuildContext, view: ActorView, block: nn.ChannelShuffleOp, lo_hi) -> None:
    a = view.args
    c, _, w = dims(view.out_shape)
    a.update(c=c, w=w, groups=block.prop_int("groups"))
    if b.fixed:
        a["rq"] = plain_rq(block, fp.format_of(block.input).frac -
                           fp.format_of(block.output).frac)
    view.kernel = "shuffle"


@kernel(nn.ReshapeOp, nn.FlattenOp, nn.DropoutOp)
def copy_record(b: BuildContext, view: ActorView, block, lo_hi) -> None:
    a = view.args
    x = nn.shape_of(block.operands[0])
    a["in_dims"] = folded(x)
    a["out_dims"] = folded(view.out_shape)
    a["n"] = math.prod(x)
    view.staging = a["n"]
    if b.fixed:
        a["rq"] = plain_rq(block, fp.format_of(block.operands[0]).frac -
                           fp.format_of(block.results[0]).frac)
    view.kernel = "copy"
