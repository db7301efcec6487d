"""Ops that move elements without arithmetic (bar a requantisation in fixed point): concat (along
a rank-4 tensor's channels, or any axis but the batch and a rank-4 tensor's rows by a strided
walk), channel shuffle, reshape/flatten/dropout as a copy through a staging buffer, transpose
and slice as a strided copy, and pad (constant, reflect, edge)."""

from __future__ import annotations

import math

import numpy as np

from aloha_ir import fixedpoint as fp
from aloha_ir.dialects import nn
from aloha_ir.errors import UnsupportedError
from backends.codegen.context import BuildContext
from backends.codegen.kernels.registry import kernel
from backends.codegen.names import c_float
from backends.codegen.ports import dims, folded, storage_order, storage_strides
from backends.codegen.records import plain_rq
from backends.codegen.view import ActorView

# ALOHA_MAX_RANK of aloha_kernels.h: the most axes a strided kernel walks
MAX_RANK = 8


@kernel(nn.ConcatOp)
def concat_record(b: BuildContext, view: ActorView, block: nn.ConcatOp, lo_hi) -> None:
    a = view.args
    axis = block.prop_int("axis")
    if len(view.out_shape) != 4 or axis != 1:
        _concat_any(b, view, block, axis)
        return
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


def _rq_of(b: BuildContext, block, view: ActorView) -> dict:
    """The plain requantisation of `block`'s input to its output format (one scalar shift)."""
    fin = b.frac(block.operands[0])
    if np.ndim(fin):
        raise UnsupportedError(f"{block.name}: a per-channel input format has no generated "
                               "kernel", where=view.name)
    return plain_rq(block, int(fin) - fp.format_of(block.results[0]).frac)


@kernel(nn.TransposeOp)
def transpose_record(b: BuildContext, view: ActorView, block: nn.TransposeOp, lo_hi) -> None:
    """Any permutation, as one strided copy of the whole input (its rows, in the order they store
    it) into the output's rows: PixelShuffle, depth-to-space and space-to-depth come as a rank-6
    transpose between reshapes."""
    # the output's axis j is the input's axis perm[j]
    _strided_copy(b, view, block, "transpose", block.prop_ints("perm"))
    view.kernel = "permute"


def _strided_copy(b: BuildContext, view: ActorView, block, what: str, axes) -> list[int]:
    """The permute kernel's walk: the output in its storage order, its axis j reading the input's
    axis axes[j]; the input's storage strides."""
    x = nn.shape_of(block.input)
    if len(x) > MAX_RANK:
        raise UnsupportedError(f"a rank-{len(x)} {what} has no generated kernel (at most "
                               f"{MAX_RANK})", where=view.name)
    src = storage_strides(x)
    order = storage_order(len(x))
    a = view.args
    a["dims"] = [view.out_shape[j] for j in order] or [1]
    a["strides"] = [src[axes[j]] for j in order] or [0]
    if b.fixed:
        a["rq"] = _rq_of(b, block, view)
    return src


@kernel(nn.SliceOp)
def slice_record(b: BuildContext, view: ActorView, block: nn.SliceOp, lo_hi) -> None:
    """One strided copy of the slice (the whole input's rows, in the order they store it, from
    the element the slice starts at) into the output's rows: the permute kernel at an offset."""
    src = _strided_copy(b, view, block, "slice", range(len(view.out_shape)))
    view.args["offset"] = block.prop_int("start") * src[block.prop_int("axis")]
    view.kernel = "slice"


PAD_MODES = {"constant": "ALOHA_PAD_CONSTANT", "reflect": "ALOHA_PAD_REFLECT",
             "edge": "ALOHA_PAD_EDGE"}


@kernel(nn.PadOp)
def pad_record(b: BuildContext, view: ActorView, block: nn.PadOp, lo_hi) -> None:
    """A rank-4 pad row by row (each output row copies the input row its row plan reads, padded
    along N, C and W), another rank whole."""
    x = nn.shape_of(block.input)
    pads = block.prop_ints("pads")
    if len(x) > MAX_RANK:
        raise UnsupportedError(f"a rank-{len(x)} pad has no generated kernel (at most "
                               f"{MAX_RANK})", where=view.name)
    a = view.args
    a["geom"] = {"rank": len(x), "mode": PAD_MODES[block.mode.data], "in": list(x) or [1],
                 "out": list(view.out_shape) or [1], "before": list(pads[:len(x)]) or [0]}
    a["c"], a["h"], a["w"] = folded(x)
    value = block.prop_float("value")
    if b.fixed:
        a["rq"] = _rq_of(b, block, view)
        a["value"] = int(fp.to_fixed(np.float64(value), fp.format_of(block.input)))
    else:
        a["value"] = c_float(value)
    view.kernel = "pad_row" if len(x) == 4 else "pad"


def _concat_any(b: BuildContext, view: ActorView, block: nn.ConcatOp, axis: int) -> None:
    """Concat along another axis than a rank-4 tensor's channels: each input written into its
    slice of the output by a strided walk, a row at a time (rank 4: the row plan reads row y of
    every input) or the whole tensor (another rank: one row). Along the batch axis (items of a
    per-item kernel) and along a rank-4 tensor's rows it has no kernel."""
    out = list(view.out_shape)
    rank4 = len(out) == 4
    if axis == 0 and out[0] > 1 or rank4 and axis == 2 or len(out) > MAX_RANK:
        raise UnsupportedError(f"concat along axis {axis} of a rank-{len(out)} tensor has no "
                               "generated kernel", where=view.name)
    items = out[0] > 1  # the kernel runs once per batch item: every operand cut to one item
    keep = (0, 1, 3) if rank4 else tuple(range(len(out)))  # the axes one firing's row holds

    def row(shape) -> list[int]:
        s = [1 if items and k == 0 else d for k, d in enumerate(shape)]
        return [s[k] for k in keep] or [1]

    dims = row(out)
    ostrides = [int(np.prod(dims[k + 1:], dtype=np.int64)) for k in range(len(dims))]
    at = keep.index(axis)
    parts, offset = [], 0
    for v in block.inputs:
        part = {"dims": row(nn.shape_of(v)), "offset": offset * ostrides[at]}
        offset += part["dims"][at]
        if b.fixed:
            part["rq"] = plain_rq(block, fp.format_of(v).frac - fp.format_of(block.output).frac)
        parts.append(part)
    view.args.update(parts=parts, ostrides=ostrides)
    view.kernel = "place"
