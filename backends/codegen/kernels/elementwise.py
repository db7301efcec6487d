"""Add and mul: elementwise over rows, an operand broadcast along C, H or W, or a constant from
the weights blob; on tensors of another rank than 4, over the whole tensor with numpy
broadcasting."""

from __future__ import annotations

import numpy as np

from aloha_ir import fixedpoint as fp
from aloha_ir.dialects import nn
from aloha_ir.errors import UnsupportedError
from backends.codegen.context import BuildContext
from backends.codegen.kernels.registry import kernel
from backends.codegen.kernels.layout import MAX_RANK
from backends.codegen.ports import dims, storage_strides
from backends.codegen.records import act_record
from backends.codegen.view import ActorView
from passes.analyze_memory import batch_items


def _bcast_dims(shape: tuple[int, ...], batch: int) -> tuple[int, int, int]:
    """(C, H, W) of an operand broadcast against one item of a rank-4 output with `batch` items
    (numpy right alignment; the operand has one item or one per output item)."""
    s = (1,) * (4 - len(shape)) + tuple(shape)
    if len(s) != 4 or s[0] not in (1, batch):
        raise UnsupportedError(f"cannot broadcast a {list(shape)} operand inside a row")
    return s[1], s[2], s[3]


@kernel(nn.AddOp, nn.MulOp)
def binary_record(b: BuildContext, view: ActorView, block: nn.AddOp | nn.MulOp, lo_hi) -> None:
    a = view.args
    if len(view.out_shape) != 4:
        _any_rank(b, view, block)
        return
    c, h, w = dims(view.out_shape)
    operands = []
    port = 0
    for v in (block.lhs, block.rhs):
        oc, oh, ow = _bcast_dims(nn.shape_of(v), view.out_shape[0])
        if (oc not in (1, c)) or (oh not in (1, h)) or (ow not in (1, w)):
            raise UnsupportedError(f"{block.name} broadcast of {list(nn.shape_of(v))} to "
                                   f"{list(view.out_shape)} is not supported", where=view.name)
        if isinstance(v.owner, nn.ConstOp):
            if len(nn.shape_of(v)) == 4 and nn.shape_of(v)[0] > 1:
                raise UnsupportedError(f"{block.name}: a constant operand with one value per "
                                       f"batch item ({list(nn.shape_of(v))}) has no generated "
                                       "kernel", where=view.name,
                                       hint="compile with batch 1 and stream the items")
            t = b.const(v, f"{view.block}_k{len(operands)}")
            operands.append({"const": t, "c": oc, "h": oh, "w": ow})
        else:
            operands.append({"port": port, "c": oc, "h": oh, "w": ow})
            port += 1
    a["operands"] = operands
    a.update(c=c, w=w)
    _post(b, view, block, c)
    view.kernel = "add" if isinstance(block, nn.AddOp) else "mul"


def _post(b: BuildContext, view: ActorView, block: nn.AddOp | nn.MulOp, channels: int) -> None:
    """The operands' alignment and the requantisation (fixed point) or the activation (float)."""
    a = view.args
    if b.fixed:
        fa, fb = b.frac(block.lhs), b.frac(block.rhs)
        if np.ndim(fa) or np.ndim(fb):
            raise UnsupportedError("per-channel formats on an elementwise operand", where=view.name)
        fout = fp.format_of(block.output).frac
        if isinstance(block, nn.AddOp):
            f = max(fa, fb)
            a.update(la=f - fa, lb=f - fb)
            a["rq"] = b.rq(block, f - fout, channels, view.block)
        else:
            a["rq"] = b.rq(block, fa + fb - fout, channels, view.block, act=False)
    else:
        a["act"] = b.act(block) if isinstance(block, nn.AddOp) else act_record(None, ())


def _any_rank(b: BuildContext, view: ActorView, block: nn.AddOp | nn.MulOp) -> None:
    """An output of another rank than 4: one pass over the whole tensor, each operand read with
    its own strides (0 along a broadcast axis). A kernel run once per batch item (N > 1) sees one
    item: the output and every operand holding N items cut to one."""
    out = list(view.out_shape)
    if len(out) > MAX_RANK:
        raise UnsupportedError(f"{block.name} of rank {len(out)} has no generated kernel (at most "
                               f"{MAX_RANK})", where=view.name)
    sliced = batch_items("compute", block) > 1
    if sliced:
        out[0] = 1
    operands, port = [], 0
    for v in (block.lhs, block.rhs):
        shape = list(nn.shape_of(v))
        const = isinstance(v.owner, nn.ConstOp)
        if const and sliced and len(shape) == len(out) and shape[0] > 1:
            raise UnsupportedError(f"{block.name}: a constant operand with one value per batch "
                                   f"item ({shape}) has no generated kernel", where=view.name,
                                   hint="compile with batch 1 and stream the items")
        if sliced and len(shape) == len(out):
            shape[0] = 1
        # a constant is stored in C order, a run-time tensor as its rows hold it
        steps = storage_strides(tuple(shape)) if not const else \
            [int(np.prod(shape[k + 1:], dtype=np.int64)) for k in range(len(shape))]
        lead = len(out) - len(shape)
        strides = [0] * lead + [0 if d == 1 else st for d, st in zip(shape, steps)]
        rec = {"strides": strides or [0]}
        if const:
            rec["const"] = b.const(v, f"{view.block}_k{len(operands)}")
        else:
            rec["port"] = port
            port += 1
        operands.append(rec)
    view.args.update(operands=operands, dims=out or [1],
                     kind="ALOHA_BINARY_ADD" if isinstance(block, nn.AddOp) else
                     "ALOHA_BINARY_MUL")
    _post(b, view, block, 1)
    view.kernel = "binary"

