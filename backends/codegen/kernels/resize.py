"""Resize of H and W, nearest or linear, row by row: each output row reads the input rows its row
plan names (one, or the two it interpolates) with per-row and per-column taps computed here, as
the reference computes them (runtime/reference.py resize_taps)."""

from __future__ import annotations

import numpy as np

from aloha_ir import fixedpoint as fp
from aloha_ir.dialects import nn
from aloha_ir.errors import UnsupportedError
from backends.codegen.context import BuildContext
from backends.codegen.kernels.registry import kernel
from backends.codegen.ports import folded
from backends.codegen.records import plain_rq
from backends.codegen.view import ActorView
from runtime.reference import resize_taps


@kernel(nn.ResizeOp)
def resize_record(b: BuildContext, view: ActorView, block: nn.ResizeOp, lo_hi) -> None:
    a = view.args
    nc, h, w = folded(nn.shape_of(block.input))
    a.update(nc=nc, h=h, w=w, ow=view.out_shape[3], linear=block.mode.data == "linear")
    for axis, name in ((2, "h"), (3, "w")):
        lo, hi, w_lo, w_hi = resize_taps(block, axis)
        a[f"{name}lo"], a[f"{name}hi"] = lo.tolist(), hi.tolist()
        a[f"{name}w_lo"] = ["%.17g" % v for v in w_lo]
        a[f"{name}w_hi"] = ["%.17g" % v for v in w_hi]
    if b.fixed:
        fin = b.frac(block.input)
        if np.ndim(fin):
            raise UnsupportedError("resize of a per-channel input format has no generated kernel",
                                   where=view.name)
        fout = fp.format_of(block.output).frac
        a.update(rq=plain_rq(block, int(fin) - fout), fin=int(fin), fout=fout)
    view.kernel = "resize"
