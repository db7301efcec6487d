"""Add and mul: elementwise over rows, an operand broadcast along C, H or W, or a constant from
the weights blob."""

from __future__ import annotations

import numpy as np

from aloha_ir import fixedpoint as fp
from aloha_ir.dialects import nn
from aloha_ir.errors import UnsupportedError
from backends.codegen.context import BuildContext
from backends.codegen.kernels.registry import kernel
from backends.codegen.ports import dims
from backends.codegen.records import act_record
from backends.codegen.view import ActorView


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
        raise UnsupportedError(f"{block.name} on a rank-{len(view.out_shape)} tensor has no "
                               "generated kernel", where=view.name)
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
    if b.fixed:
        fa, fb = b.frac(block.lhs), b.frac(block.rhs)
        if np.ndim(fa) or np.ndim(fb):
            raise UnsupportedError("per-channel formats on an elementwise operand", where=view.name)
        fout = fp.format_of(block.output).frac
        if isinstance(block, nn.AddOp):
            f = max(fa, fb)
            a.update(la=f - fa, lb=f - fb)
            a["rq"] = b.rq(block, f - fout, c, view.block)
        else:
            a["rq"] = b.rq(block, fa + fb - fout, c, view.block, act=False)
    else:
        a["act"] = b.act(block) if isinstance(block, nn.AddOp) else act_record(None, ())
    view.kernel = "add" if isinstance(block, nn.AddOp) else "mul"

