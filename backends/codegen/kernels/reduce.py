"""ReduceMean, ReduceSum, ReduceMax, ReduceMin, ReduceProd, ArgMax, ArgMin: the reduction over
axes, row by row when the rows stay (a rank-4 tensor kept, not reduced along H: each output row
reduces its input row over N, C or W), else over the whole input at once."""

from __future__ import annotations

import numpy as np

from aloha_ir.dialects import nn
from aloha_ir.errors import UnsupportedError
from backends.codegen.context import BuildContext
from backends.codegen.kernels.layout import MAX_RANK
from backends.codegen.kernels.registry import kernel
from backends.codegen.ports import storage_order, storage_strides
from backends.codegen.records import island
from backends.codegen.view import ActorView


def _walk(out_axes: list[int], out_rank: int, in_strides: list[int], out_shape) -> tuple:
    """(dims, strides) of the output walked in its storage order: output axis j reads input axis
    out_axes[j]."""
    order = storage_order(out_rank)
    return ([out_shape[j] for j in order] or [1]), ([in_strides[out_axes[j]] for j in order] or [0])


@kernel(nn.ReduceOp)
def reduce_record(b: BuildContext, view: ActorView, block: nn.ReduceOp, lo_hi) -> None:
    x = nn.shape_of(block.input)
    axes = sorted(block.prop_ints("axes"))
    keep = bool(block.prop_int("keepdims", 1))
    if len(x) > MAX_RANK:
        raise UnsupportedError(f"a rank-{len(x)} reduce has no generated kernel (at most "
                               f"{MAX_RANK})", where=view.name)
    a = view.args
    a["kind"] = f"ALOHA_REDUCE_{block.kind.data.upper()}" + \
        (" | ALOHA_REDUCE_LAST" if block.prop_int("select_last_index", 0) else "")
    if len(x) == 4 and keep and 2 not in axes:
        # one row: [N, C, W] in C order, reduced to [N', C', W'] (the row plan reads row oy)
        row = (x[0], x[1], x[3])
        strides = [x[1] * x[3], x[3], 1]
        kept = {0: 0, 1: 1, 3: 2}
        a["dims"] = [1 if ax in axes else row[kept[ax]] for ax in (0, 1, 3)]
        a["strides"] = strides
        a["rdims"] = [row[kept[ax]] for ax in axes]
        a["rstrides"] = [strides[kept[ax]] for ax in axes]
        a["per_row"] = True
    else:
        src = storage_strides(x)
        out_axes = list(range(len(x))) if keep else [i for i in range(len(x)) if i not in axes]
        a["dims"], a["strides"] = _walk(out_axes, len(view.out_shape), src, view.out_shape)
        a["rdims"] = [x[ax] for ax in axes] or [1]
        a["rstrides"] = [src[ax] for ax in axes] or [0]
        a["per_row"] = False
    if b.fixed:
        fin = b.frac(block.input)
        if np.ndim(fin):
            raise UnsupportedError("reduce of a per-channel input format has no generated "
                                   "kernel", where=view.name)
        a.update(island(block), fin=int(fin))
    view.kernel = "reduce"
