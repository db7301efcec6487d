"""Conv and dense: the MAC kernels, with weights, bias and (fixed point) an accumulator, a
requantisation per output channel and the integer kernel variant."""

from __future__ import annotations

import numpy as np

from aloha_ir import fixedpoint as fp
from aloha_ir.dialects import nn
from backends.codegen.context import BuildContext
from backends.codegen.kernels.registry import kernel
from backends.codegen.records import accumulator
from backends.codegen.view import ActorView


@kernel(nn.ConvOp)
def conv_record(b: BuildContext, view: ActorView, block: nn.ConvOp, lo_hi) -> None:
    a = view.args
    kernel_hw, strides, pads, dil = block.window()
    x = nn.shape_of(block.input)
    o = block.out_shape()
    cin, h, w = x[1], x[2], x[3]
    a["geom"] = dict(cin=cin, cout=o[1], h=h, w=w, oh=o[2], ow=o[3], kh=kernel_hw[0],
                     kw=kernel_hw[1], sh=strides[0], sw=strides[1], pt=pads[0], pl=pads[1],
                     dh=dil[0], dw=dil[1], group=block.prop_int("group", 1))
    a["co"] = lo_hi or (0, o[1])
    a["w"] = b.const(block.weight, f"{view.block}_w")
    if b.fixed:
        acc = b.frac(block.input) + np.asarray(b.frac(block.weight))
        a["bias"] = b.bias_acc(block, 2, acc, f"{view.block}_b")
        a["rq"] = b.rq(block, acc - fp.format_of(block.output).frac, o[1], view.block)
        a["acc_scale"] = np.broadcast_to(2.0 ** -acc, (o[1],)).tolist()
        accumulator(a, block, cin // a["geom"]["group"] * kernel_hw[0] * kernel_hw[1], view.name)
        a["geom"].update(wtype=a["w"].storage.tag, acc32=a["acc32"])
    else:
        a["geom"].update(wtype=fp.FLOAT32.tag, acc32=0)
        a["bias"] = b.const(block.bias, f"{view.block}_b") if block.bias is not None else None
        a["act"] = b.act(block)
        a["acc_scale"] = [1.0] * o[1]
    view.kernel = "conv"


@kernel(nn.DenseOp)
def dense_record(b: BuildContext, view: ActorView, block: nn.DenseOp, lo_hi) -> None:
    a = view.args
    m = block.out_shape()[1]
    k = nn.shape_of(block.weight)[1]
    a.update(k=k, m=lo_hi or (0, m))
    a["w"] = b.const(block.weight, f"{view.block}_w")
    if b.fixed:
        acc = b.frac(block.input) + np.asarray(b.frac(block.weight))
        a["bias"] = b.bias_acc(block, 2, acc, f"{view.block}_b")
        a["rq"] = b.rq(block, acc - fp.format_of(block.output).frac, m, view.block)
        accumulator(a, block, k, view.name)
    else:
        a["bias"] = b.const(block.bias, f"{view.block}_b") if block.bias is not None else None
        a["act"] = b.act(block)
    view.kernel = "dense"
