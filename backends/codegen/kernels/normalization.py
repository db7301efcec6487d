"""Batch norm (scale and shift per channel, after canonicalize) and LRN (a fixed-point island)."""

from __future__ import annotations

import numpy as np

from aloha_ir import fixedpoint as fp
from aloha_ir.consts import const_tensor
from aloha_ir.dialects import nn
from aloha_ir.errors import UnsupportedError
from backends.codegen.context import BuildContext
from backends.codegen.kernels.registry import kernel
from backends.codegen.ports import dims
from backends.codegen.records import island
from backends.codegen.view import ActorView


@kernel(nn.BatchNormOp)
def batch_norm_record(b: BuildContext, view: ActorView, block: nn.BatchNormOp, lo_hi) -> None:
    a = view.args
    if len(block.params) != 2:
        raise UnsupportedError("a batch norm must be in scale-shift form", where=view.name,
                               hint="run canonicalize")
    if len(view.out_shape) != 4:  # the kernel scales whole rows of one channel of NCHW
        raise UnsupportedError(f"{block.name} on a rank-{len(view.out_shape)} tensor "
                               f"{list(view.out_shape)} has no generated kernel", where=view.name,
                               hint="the C kernel takes [N, C, H, W]; `alohac analyze` predicts "
                               "the model as it is")
    c = view.out_shape[1]
    s = block.params[0]
    if b.fixed:
        fs = np.asarray(b.frac(s))
        acc = b.frac(block.input) + fs
        scale = np.broadcast_to(b.ref.consts[s].reshape(-1), (c,)) \
            if b.ref.consts[s].size == 1 else b.ref.consts[s].reshape(-1)
        a["scale"] = b.weights.add((s, "bn"), f"{view.block}_scale", scale,
                                   fp.storage_of(fp.format_of(s)))
        accs = np.broadcast_to(acc, (c,)) if np.ndim(acc) else np.full(c, acc)
        bq = b.ref.consts[block.params[1]]
        real = fp.dequantize(bq, b.frac(block.params[1])) if fp.format_of(block.params[1]) \
            else bq
        real = np.broadcast_to(np.asarray(real).reshape(-1), (c,))
        a["bias"] = b.weights.add((block.params[1], "bn"), f"{view.block}_bias",
                                  fp.quantize(real, accs, fp.BIAS_BITS), fp.INT32)
        a["rq"] = b.rq(block, accs - fp.format_of(block.output).frac, c, view.block)
    else:
        for key, v in (("scale", s), ("bias", block.params[1])):
            vals = const_tensor(v.owner, b.store).materialize().reshape(-1)
            a[key] = b.weights.add((v, "bn"), f"{view.block}_{key}",
                                   np.broadcast_to(vals, (c,)), fp.FLOAT32)
        a["act"] = b.act(block)
    view.kernel = "bn"


@kernel(nn.LrnOp)
def lrn_record(b: BuildContext, view: ActorView, block: nn.LrnOp, lo_hi) -> None:
    a = view.args
    c, _, w = dims(view.out_shape)
    a.update(c=c, w=w, size=block.prop_int("size"), alpha=block.prop_float("alpha"),
             beta=block.prop_float("beta"), bias=block.prop_float("bias"))
    if b.fixed:
        a.update(fin=fp.format_of(block.input).frac, **island(block))
    view.kernel = "lrn"
