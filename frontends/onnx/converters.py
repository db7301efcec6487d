"""One converter per ONNX op type (registered in importer.CONVERTERS).

A converter reads its node through the ImportContext, folds it when all its inputs are compile-time
constants, and otherwise emits nn ops with statically inferred result shapes.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper
from xdsl.dialects.builtin import StringAttr

from aloha_ir import shapes
from aloha_ir.dialects import nn
from aloha_ir.weights import ConstTensor
from frontends.onnx import qdq
from frontends.onnx.importer import FLOAT_TYPES, ImportContext, type_name, attrs, converter


def _norm_axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def _out_type(ctx: ImportContext, shape):
    return [ctx.tensor_type(shape)]


# --- windows: Conv, pools --------------------------------------------------------------------------

def _window(ctx: ImportContext, node, a: dict, x_shape, kernel) -> tuple:
    rank = len(kernel)
    if rank != 2:
        raise ctx.unsupported(f"{rank}-D windows are not supported; supported: 2-D (NCHW)")
    strides = list(a.get("strides", [1] * rank))
    dilations = list(a.get("dilations", [1] * rank))
    auto_pad = a.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = shapes.same_pads(x_shape[2:], kernel, strides, dilations, auto_pad == "SAME_UPPER")
    elif auto_pad == "VALID":
        pads = [0] * (2 * rank)
    elif auto_pad == "NOTSET":
        pads = list(a.get("pads", [0] * (2 * rank)))
    else:
        raise ctx.unsupported(f"auto_pad '{auto_pad}' is not supported; supported: NOTSET, VALID, "
                              "SAME_UPPER, SAME_LOWER")
    return strides, pads, dilations


def _constant_weights(ctx: ImportContext, node, w: str, bias: str) -> None:
    for role, name in (("weights", w), ("bias", bias)):
        if name and not ctx.is_const(name):
            # the kernels read their weights from the weights blob, written at compile time
            raise ctx.unsupported(f"{node.op_type} {role} '{name}' computed at run time (a graph "
                                  "input or another node's output): not supported: give the "
                                  "weights as initializers")


@converter("Conv")
def conv(ctx: ImportContext, node) -> None:
    a = attrs(node)
    x, w = node.input[0], node.input[1]
    bias = node.input[2] if len(node.input) > 2 else ""
    _constant_weights(ctx, node, w, bias)
    xs, ws = ctx.shape(x), ctx.shape(w)
    if len(xs) != 4:
        raise ctx.unsupported(f"Conv on a rank-{len(xs)} input is not supported; supported: 2-D "
                              "convolution on NCHW")
    kernel = list(a.get("kernel_shape", ws[2:]))
    strides, pads, dilations = _window(ctx, node, a, xs, kernel)
    group = int(a.get("group", 1))
    out = shapes.conv_out_shape(xs, ws[0], kernel, strides, pads, dilations)
    if min(out) < 1:
        raise ctx.shape_error(f"the output of Conv on {list(xs)} would be empty {list(out)}")
    operands = [ctx.operand(x), ctx.operand(w)]
    qdq.note_weight(ctx, operands[1], w, 0)
    if bias:
        operands.append(ctx.operand(bias))
    ctx.emit(nn.ConvOp.create(operands=operands, result_types=_out_type(ctx, out), properties={
        "kernel": nn.ints_attr(kernel), "strides": nn.ints_attr(strides), "pads": nn.ints_attr(pads),
        "dilations": nn.ints_attr(dilations), "group": nn.int_attr(group)}))


@converter("MaxPool", "AveragePool")
def pool(ctx: ImportContext, node) -> None:
    a = attrs(node)
    if len(node.output) > 1 and node.output[1]:
        raise ctx.unsupported("MaxPool's Indices output is not supported; supported: the pooled "
                              "values only")
    xs = ctx.shape(node.input[0])
    kernel = list(a["kernel_shape"])
    strides, pads, dilations = _window(ctx, node, a, xs, kernel)
    ceil_mode = int(a.get("ceil_mode", 0))
    out = shapes.conv_out_shape(xs, xs[1], kernel, strides, pads, dilations, bool(ceil_mode))
    props = {"kind": StringAttr("max" if node.op_type == "MaxPool" else "avg"),
             "kernel": nn.ints_attr(kernel), "strides": nn.ints_attr(strides),
             "pads": nn.ints_attr(pads), "dilations": nn.ints_attr(dilations)}
    if ceil_mode:
        props["ceil_mode"] = nn.int_attr(1)
    if node.op_type == "AveragePool" and a.get("count_include_pad", 0):
        props["count_include_pad"] = nn.int_attr(1)
    if a.get("storage_order", 0):
        raise ctx.unsupported("MaxPool storage_order=1 is not supported; supported: row major")
    ctx.emit(nn.PoolOp.create(operands=[ctx.operand(node.input[0])],
                              result_types=_out_type(ctx, out), properties=props))


@converter("GlobalAveragePool", "GlobalMaxPool")
def global_pool(ctx: ImportContext, node) -> None:
    xs = ctx.shape(node.input[0])
    if len(xs) != 4:
        raise ctx.unsupported(f"{node.op_type} on rank {len(xs)} is not supported; supported: NCHW")
    kind = "global_avg" if node.op_type == "GlobalAveragePool" else "global_max"
    ctx.emit(nn.PoolOp.create(operands=[ctx.operand(node.input[0])],
                              result_types=_out_type(ctx, (xs[0], xs[1], 1, 1)),
                              properties={"kind": StringAttr(kind)}))


# --- dense -----------------------------------------------------------------------------------------

def _bias_vector(ctx: ImportContext, name: str, m: int, scale: float) -> ConstTensor | None:
    c = ctx.const(name)
    if c.size != m and c.size != 1:
        return None
    vec = c.reshape((c.size,))
    if c.size == 1:
        vec = ConstTensor.full((m,), vec.materialize()[0]) if vec.splat is None else \
            ConstTensor.full((m,), vec.splat)
    if scale != 1.0:
        vec = vec.unary(lambda v: v * np.float32(scale))
    return vec


def _dense(ctx: ImportContext, x: str, weight_mk: ConstTensor, bias: ConstTensor | None,
           hint: str, source: tuple[str, int], target: str | None = None) -> str:
    """A dense layer of weight [M, K] on the [N, K] `x`, bound to `target` (default: the node's
    output); `source` is the ONNX weight's name and the axis of its output channels there (for a
    quantized weight's scales)."""
    xs = ctx.shape(x)
    if len(xs) != 2:
        raise ctx.unsupported(f"a dense layer on a rank-{len(xs)} input is not supported; "
                              "supported: [N, K] (flatten first)")
    m, k = weight_mk.shape
    if xs[1] != k:
        raise ctx.shape_error(f"input {list(xs)} does not match weight [{m}, {k}]")
    operands = [ctx.operand(x), ctx.operand_from(weight_mk, hint + ".weight")]
    qdq.note_weight(ctx, operands[1], *source)
    if bias is not None:
        operands.append(ctx.operand_from(bias, hint + ".bias"))
    target = target or ctx.node.output[0]
    ctx.emit(nn.DenseOp.create(operands=operands, result_types=_out_type(ctx, (xs[0], m))),
             target)
    return target


def _layout(ctx: ImportContext, x: str, shape=None, perm=None, target: str = "") -> str:
    """`x` reshaped to `shape` or transposed by `perm`, bound to `target`."""
    if perm is not None:
        xs = ctx.shape(x)
        ctx.emit(nn.TransposeOp.create(operands=[ctx.operand(x)],
                                       result_types=_out_type(ctx, [xs[p] for p in perm]),
                                       properties={"perm": nn.ints_attr(perm)}), target)
    else:
        ctx.emit(nn.ReshapeOp.create(operands=[ctx.operand(x)],
                                     result_types=_out_type(ctx, tuple(shape))), target)
    return target


@converter("Gemm")
def gemm(ctx: ImportContext, node) -> None:
    """alpha * A' B' + beta * C with A' = A or its transpose (a run-time transpose before the
    dense layer), B' = B or its transpose (constant weights), C a vector of the outputs (the dense
    layer's bias) or any constant broadcast to [N, M] (an add after it)."""
    a = attrs(node)
    b = node.input[1]
    if not ctx.is_const(b):
        raise ctx.unsupported("Gemm with a run-time B is not supported; supported: constant weights")
    w = ctx.const(b)
    if len(w.shape) != 2:
        raise ctx.shape_error(f"Gemm weight must be 2-D, got {list(w.shape)}")
    w = w if a.get("transB", 0) else w.transpose((1, 0))
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    if alpha != 1.0:
        w = w.unary(lambda v: v * np.float32(alpha))
    stem = node.output[0]
    x = node.input[0]
    if a.get("transA", 0):
        if len(ctx.shape(x)) != 2:
            raise ctx.shape_error(f"Gemm A must be 2-D, got {list(ctx.shape(x))}")
        x = _layout(ctx, x, perm=[1, 0], target=f"{stem}.a")
    bias, add = None, None
    if len(node.input) > 2 and node.input[2]:
        bias = _bias_vector(ctx, node.input[2], w.shape[0], beta)
        if bias is None:
            add = ctx.const(node.input[2])
            out = (ctx.shape(x)[0], w.shape[0])
            if shapes.broadcast(out, add.shape) != tuple(out):
                raise ctx.shape_error(f"Gemm C of shape {list(add.shape)} does not broadcast to "
                                      f"the output {list(out)}")
            if beta != 1.0:
                add = add.unary(lambda v: v * np.float32(beta))
    hint = node.name or stem
    ab = _dense(ctx, x, w, bias, hint, (b, 0 if a.get("transB", 0) else 1),
                f"{stem}.ab" if add is not None else stem)
    if add is not None:
        ctx.emit(nn.AddOp.create(operands=[ctx.operand(ab), ctx.operand_from(add, hint + ".c")],
                                 result_types=_out_type(ctx, ctx.shape(ab))), stem)


@converter("MatMul")
def matmul(ctx: ImportContext, node) -> None:
    """A run-time A of any rank >= 1 times a constant [K, M] (or [K]) B: a dense layer over A's
    rows (reshaped to [rows, K] and back); a constant [M, K] A times a run-time B of rank >= 2:
    the dense layer of A over B's columns (B's last two axes swapped, and the result's back)."""
    a_name, b_name = node.input
    if ctx.is_const(a_name) and ctx.is_const(b_name):
        ctx.set_const(node.output[0], ConstTensor.of(ctx.value(a_name) @ ctx.value(b_name)))
        return
    stem = node.output[0]
    hint = node.name or stem
    if ctx.is_const(b_name):
        w = ctx.const(b_name)
        if len(w.shape) > 2:
            raise ctx.unsupported(f"MatMul with a rank-{len(w.shape)} weight is not supported; "
                                  "supported: a [K, M] or [K] constant")
        xs = ctx.shape(a_name)
        wt = w.transpose((1, 0)) if len(w.shape) == 2 else w.reshape((1, w.shape[0]))
        out = [*xs[:-1], *w.shape[1:]]
        if not out:
            raise ctx.unsupported("MatMul of two vectors (a scalar result) is not supported; "
                                  "supported: a result of rank >= 1")
        if len(xs) == 2 and len(w.shape) == 2:
            _dense(ctx, a_name, wt, None, hint, (b_name, 1))
            return
        rows = _layout(ctx, a_name, shape=(shapes.numel(xs[:-1]), xs[-1]), target=f"{stem}.rows")
        y = _dense(ctx, rows, wt, None, hint, (b_name, 1), f"{stem}.dense")
        _layout(ctx, y, shape=out, target=stem)
        return
    if not ctx.is_const(a_name):
        raise ctx.unsupported("MatMul of two run-time tensors is not supported; supported: "
                              "a constant operand")
    w = ctx.const(a_name)
    xs = ctx.shape(b_name)
    if len(w.shape) != 2 or len(xs) < 2:
        raise ctx.unsupported(f"MatMul of a rank-{len(w.shape)} constant by a rank-{len(xs)} "
                              "run-time tensor is not supported; supported: a [M, K] constant "
                              "by a tensor of rank >= 2")
    swap = [*range(len(xs) - 2), len(xs) - 1, len(xs) - 2]
    cols = _layout(ctx, b_name, perm=swap, target=f"{stem}.cols")
    lead = ctx.shape(cols)
    rows = _layout(ctx, cols, shape=(shapes.numel(lead[:-1]), lead[-1]), target=f"{stem}.rows")
    y = _dense(ctx, rows, w, None, hint, (a_name, 0), f"{stem}.dense")
    back = _layout(ctx, y, shape=(*lead[:-1], w.shape[0]), target=f"{stem}.back")
    _layout(ctx, back, perm=swap, target=stem)


# --- elementwise -----------------------------------------------------------------------------------

_FOLD = {"Add": np.add, "Sum": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}


@converter("Add", "Sum", "Sub", "Mul", "Div")
def binary(ctx: ImportContext, node) -> None:
    names = list(node.input)
    if all(ctx.is_const(n) for n in names):
        vals = [ctx.consts[n] for n in names]
        if all(isinstance(v, ConstTensor) for v in vals):
            out = vals[0]
            for v in vals[1:]:
                out = out.elementwise(v, _FOLD[node.op_type])
        else:
            out = ctx.value(names[0])
            for n in names[1:]:
                if node.op_type == "Div" and out.dtype.kind in "iu":
                    out = out // ctx.value(n)
                else:
                    out = _FOLD[node.op_type](out, ctx.value(n))
            out = np.asarray(out)
        ctx.set_const(node.output[0], out)
        return
    if node.op_type == "Sum" and len(names) == 1:
        ctx.alias(node.output[0], names[0])
        return
    if node.op_type == "Sub" and not ctx.is_const(names[1]):
        # a - b as a + (-1) b: exact in float and in fixed point
        lhs, rhs = names
        _negate(ctx, rhs, f"{node.output[0]}.neg")
        names = [lhs, f"{node.output[0]}.neg"]
    elif node.op_type in ("Sub", "Div"):
        lhs, rhs = names
        if not ctx.is_const(rhs):
            raise ctx.unsupported("Div by a run-time tensor is not supported: a division of two "
                                  "run-time values (the kernels divide by constants only, as a "
                                  "product by the reciprocal); supported: a constant divisor")
        c = ctx.const(rhs)
        if node.op_type == "Div" and not np.all(c.materialize() if c.splat is None else c.splat):
            raise ctx.unsupported(f"Div by constant '{rhs}', which holds 0: the result would be "
                                  "infinite or NaN")
        c = c.unary(np.negative) if node.op_type == "Sub" else c.unary(lambda v: 1.0 / v)
        op_cls, operands = (nn.AddOp if node.op_type == "Sub" else nn.MulOp), \
            [ctx.operand(lhs), ctx.operand_from(c, rhs)]
        out = shapes.broadcast(ctx.shape(lhs), c.shape)
        if out is None:
            raise ctx.shape_error(f"shapes {list(ctx.shape(lhs))} and {list(c.shape)} do not "
                                  "broadcast")
        ctx.emit(op_cls.create(operands=operands, result_types=_out_type(ctx, out)))
        return
    op_cls = nn.MulOp if node.op_type == "Mul" else nn.AddOp
    _chain(ctx, op_cls, names, node.output[0])


def _chain(ctx: ImportContext, op_cls, names: list[str], output: str) -> None:
    """names[0] op names[1] op ... with broadcasting, the last bound to `output`."""
    acc = names[0]
    for i, rhs in enumerate(names[1:]):
        out = shapes.broadcast(ctx.shape(acc), ctx.shape(rhs))
        if out is None:
            raise ctx.shape_error(f"shapes {list(ctx.shape(acc))} and {list(ctx.shape(rhs))} do not "
                                  "broadcast")
        last = i == len(names) - 2
        target = output if last else f"{output}.partial{i}"
        ctx.emit(op_cls.create(operands=[ctx.operand(acc), ctx.operand(rhs)],
                               result_types=_out_type(ctx, out)), target)
        acc = target


def _negate(ctx: ImportContext, x: str, target: str) -> None:
    """The run-time `x` times -1, bound to `target`."""
    minus = ctx.operand_from(ConstTensor.full([1] * len(ctx.shape(x)), -1.0), f"{target}.minus1")
    ctx.emit(nn.MulOp.create(operands=[ctx.operand(x), minus],
                             result_types=_out_type(ctx, ctx.shape(x))), target)


_UNARY_FOLD = {"Sqrt": np.sqrt, "Reciprocal": np.reciprocal, "Neg": np.negative, "Exp": np.exp,
               "Log": np.log}


@converter(*_UNARY_FOLD)
def unary(ctx, node):
    """Sqrt, Reciprocal, Neg, Exp, Log of a constant (a normalisation's sqrt(var + eps)) are
    folded; Neg of a run-time tensor is a product by -1; the others of a run-time tensor are
    refused."""
    x = node.input[0]
    fn = _UNARY_FOLD[node.op_type]
    if ctx.is_const(x):
        c = ctx.consts[x]
        with np.errstate(all="ignore"):  # a NaN is refused where a kernel would read it
            ctx.set_const(node.output[0], c.unary(fn) if isinstance(c, ConstTensor) else fn(c))
        return
    if node.op_type == "Neg":
        _negate(ctx, x, node.output[0])
        return
    raise ctx.unsupported(f"{node.op_type} of a run-time tensor is not supported; supported: "
                          f"{node.op_type} of constants (folded at import)")


@converter("Pow")
def power(ctx, node):
    """Pow of constants is folded; a run-time base to the constant power 1 is itself, to 2 its
    square (a product with itself)."""
    base, exponent = node.input[0], node.input[1]
    if ctx.is_const(base) and ctx.is_const(exponent):
        with np.errstate(all="ignore"):
            y = np.power(ctx.value(base), ctx.value(exponent))
        ctx.set_const(node.output[0], ConstTensor.of(y.astype(np.float32))
                      if y.dtype.kind == "f" else y)
        return
    e = ctx.value(exponent).reshape(-1) if ctx.is_const(exponent) else None
    if ctx.is_const(base) or e is None or e.size != 1 or float(e[0]) not in (1.0, 2.0):
        raise ctx.unsupported("Pow of run-time tensors is not supported; supported: constants "
                              "(folded), or a run-time base to the constant power 1 or 2")
    if float(e[0]) == 1.0:
        ctx.alias(node.output[0], base)
        return
    _chain(ctx, nn.MulOp, [base, base], node.output[0])


def _act(ctx: ImportContext, node, kind: str, params=(), axis: int | None = None) -> None:
    x = node.input[0]
    if ctx.is_const(x):
        raise ctx.unsupported(f"{node.op_type} on a constant is not supported")
    props = {"kind": StringAttr(kind)}
    if params:
        props["params"] = nn.floats_attr(params)
    if axis is not None:
        props["axis"] = nn.int_attr(axis)
    ctx.emit(nn.ActOp.create(operands=[ctx.operand(x)], result_types=_out_type(ctx, ctx.shape(x)),
                             properties=props))


@converter("Relu")
def relu(ctx, node):
    _act(ctx, node, "relu")


@converter("LeakyRelu")
def leaky_relu(ctx, node):
    _act(ctx, node, "leaky_relu", [float(attrs(node).get("alpha", 0.01))])


@converter("Sigmoid")
def sigmoid(ctx, node):
    _act(ctx, node, "sigmoid")


@converter("Tanh")
def tanh(ctx, node):
    _act(ctx, node, "tanh")


@converter("Clip")
def clip(ctx, node):
    a = attrs(node)
    if ctx.opset < 11:
        lo, hi = float(a.get("min", -3.4e38)), float(a.get("max", 3.4e38))
    else:
        ins = list(node.input) + ["", ""]
        lo = float(ctx.value(ins[1]).reshape(-1)[0]) if ins[1] else -3.4e38
        hi = float(ctx.value(ins[2]).reshape(-1)[0]) if ins[2] else 3.4e38
    if lo == 0.0 and hi >= 3.4e38:
        _act(ctx, node, "relu")
    else:
        _act(ctx, node, "clip", [lo, hi])


def _softmax(ctx, node, kind: str) -> None:
    xs = ctx.shape(node.input[0])
    default = -1 if ctx.opset >= 13 else 1
    axis = _norm_axis(int(attrs(node).get("axis", default)), len(xs))
    if ctx.opset < 13 and shapes.numel(xs[axis + 1:]) != 1:
        # Before opset 13 Softmax and LogSoftmax flattened [axis:] into one dimension.
        raise ctx.unsupported(f"opset-{ctx.opset} {node.op_type} over the flattened dims "
                              f"{list(xs[axis:])} is not supported; supported: trailing dims of "
                              "size 1")
    _act(ctx, node, kind, axis=axis)


@converter("Softmax")
def softmax(ctx, node):
    _softmax(ctx, node, "softmax")


@converter("LogSoftmax")
def log_softmax(ctx, node):
    _softmax(ctx, node, "log_softmax")


@converter("LRN")
def lrn(ctx, node):
    a = attrs(node)
    x = node.input[0]
    ctx.emit(nn.LrnOp.create(operands=[ctx.operand(x)], result_types=_out_type(ctx, ctx.shape(x)),
                             properties={"size": nn.int_attr(int(a["size"])),
                                         "alpha": nn.float_attr(a.get("alpha", 1e-4)),
                                         "beta": nn.float_attr(a.get("beta", 0.75)),
                                         "bias": nn.float_attr(a.get("bias", 1.0))}))


@converter("BatchNormalization")
def batchnorm(ctx, node):
    if any(o for o in node.output[1:]):
        raise ctx.unsupported("BatchNormalization in training mode (running statistics outputs) is "
                              "not supported; supported: inference mode")
    x = node.input[0]
    for p in node.input[1:5]:
        if not ctx.is_const(p):
            raise ctx.unsupported("BatchNormalization with run-time parameters is not supported")
    ctx.emit(nn.BatchNormOp.create(
        operands=[ctx.operand(x)] + [ctx.operand(p) for p in node.input[1:5]],
        result_types=_out_type(ctx, ctx.shape(x)),
        properties={"epsilon": nn.float_attr(attrs(node).get("epsilon", 1e-5))}))


@converter("Dropout")
def dropout(ctx, node):
    # the optional mask output is a training artefact: no inference graph reads it
    a = attrs(node)
    ratio = float(a.get("ratio", 0.5))
    if len(node.input) > 1 and node.input[1]:
        ratio = float(ctx.value(node.input[1]).reshape(-1)[0])
    x = node.input[0]
    ctx.emit(nn.DropoutOp.create(operands=[ctx.operand(x)], result_types=_out_type(ctx, ctx.shape(x)),
                                 properties={"ratio": nn.float_attr(ratio)}))


@converter("Identity")
def identity(ctx, node):
    ctx.alias(node.output[0], node.input[0])


# --- data movement ---------------------------------------------------------------------------------

def _reshape_to(ctx: ImportContext, x: str, shape) -> None:
    shape = tuple(int(d) for d in shape)
    if ctx.is_const(x):
        c = ctx.consts[x]
        ctx.set_const(ctx.node.output[0], c.reshape(shape))
        return
    if ctx.shape(x) == shape:
        ctx.alias(ctx.node.output[0], x)
        return
    ctx.emit(nn.ReshapeOp.create(operands=[ctx.operand(x)], result_types=_out_type(ctx, shape)))


@converter("Reshape")
def reshape(ctx, node):
    x = node.input[0]
    spec = attrs(node).get("shape") if ctx.opset < 5 else ctx.ints(node.input[1]).tolist()
    target = shapes.reshape_target(ctx.shape(x), spec, bool(attrs(node).get("allowzero", 0)))
    if target is None:
        raise ctx.shape_error(f"cannot reshape {list(ctx.shape(x))} to {list(spec)}")
    _reshape_to(ctx, x, target)


@converter("Flatten")
def flatten(ctx, node):
    x = node.input[0]
    xs = ctx.shape(x)
    axis = _norm_axis(int(attrs(node).get("axis", 1)), len(xs))
    out = (shapes.numel(xs[:axis]), shapes.numel(xs[axis:]))
    if ctx.is_const(x):
        _reshape_to(ctx, x, out)
        return
    ctx.emit(nn.FlattenOp.create(operands=[ctx.operand(x)], result_types=_out_type(ctx, out),
                                 properties={"axis": nn.int_attr(axis)}))


def _axes(ctx: ImportContext, node) -> list[int]:
    a = attrs(node)
    if "axes" in a:
        return list(a["axes"])
    if len(node.input) > 1 and node.input[1]:
        return ctx.ints(node.input[1]).tolist()
    return []


@converter("Unsqueeze")
def unsqueeze(ctx, node):
    x = node.input[0]
    xs = list(ctx.shape(x))
    axes = sorted(_norm_axis(ax, len(xs) + len(_axes(ctx, node))) for ax in _axes(ctx, node))
    for ax in axes:
        xs.insert(ax, 1)
    _reshape_to(ctx, x, xs)


@converter("Squeeze")
def squeeze(ctx, node):
    x = node.input[0]
    xs = ctx.shape(x)
    axes = {_norm_axis(ax, len(xs)) for ax in _axes(ctx, node)} or \
        {i for i, d in enumerate(xs) if d == 1}
    if any(xs[ax] != 1 for ax in axes):
        raise ctx.shape_error(f"cannot squeeze axes {sorted(axes)} of {list(xs)}")
    _reshape_to(ctx, x, [d for i, d in enumerate(xs) if i not in axes])


@converter("Transpose")
def transpose(ctx, node):
    x = node.input[0]
    xs = ctx.shape(x)
    perm = list(attrs(node).get("perm", list(reversed(range(len(xs))))))
    if ctx.is_const(x):
        c = ctx.consts[x]
        ctx.set_const(node.output[0], c.transpose(perm) if isinstance(c, ConstTensor)
                      else np.transpose(c, perm))
        return
    ctx.emit(nn.TransposeOp.create(operands=[ctx.operand(x)],
                                   result_types=_out_type(ctx, [xs[p] for p in perm]),
                                   properties={"perm": nn.ints_attr(perm)}))


@converter("Concat")
def concat(ctx, node):
    names = [n for n in node.input if n]
    rank = len(ctx.shape(names[0]))
    axis = _norm_axis(int(attrs(node)["axis"]), rank)
    if all(ctx.is_const(n) for n in names):
        vals = [ctx.consts[n] for n in names]
        if all(isinstance(v, np.ndarray) for v in vals):
            ctx.set_const(node.output[0], np.concatenate(vals, axis=axis))
        else:
            ctx.set_const(node.output[0], ConstTensor.of(
                np.concatenate([ctx.const(n).materialize() for n in names], axis=axis)))
        return
    out = list(ctx.shape(names[0]))
    out[axis] = sum(ctx.shape(n)[axis] for n in names)
    ctx.emit(nn.ConcatOp.create(operands=[ctx.operand(n) for n in names],
                                result_types=_out_type(ctx, out),
                                properties={"axis": nn.int_attr(axis)}))


@converter("Pad")
def pad(ctx, node):
    a = attrs(node)
    x = node.input[0]
    xs = ctx.shape(x)
    mode = a.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if ctx.opset < 11:
        pads, value = list(a["pads"]), float(a.get("value", 0.0))
    else:
        pads = ctx.ints(node.input[1]).tolist()
        value = float(ctx.value(node.input[2]).reshape(-1)[0]) if len(node.input) > 2 and \
            node.input[2] else 0.0
        if len(node.input) > 3 and node.input[3]:
            raise ctx.unsupported("Pad with an axes input is not supported; supported: all axes")
    if min(pads) < 0:
        raise ctx.unsupported("negative Pad (cropping) is not supported")
    if mode not in ("constant", "reflect", "edge"):
        raise ctx.unsupported(f"Pad mode '{mode}' is not supported; supported: constant, reflect, "
                              "edge")
    r = len(xs)
    out = [d + pads[i] + pads[i + r] for i, d in enumerate(xs)]
    ctx.emit(nn.PadOp.create(operands=[ctx.operand(x)], result_types=_out_type(ctx, out),
                             properties={"pads": nn.ints_attr(pads), "mode": StringAttr(mode),
                                         "value": nn.float_attr(value)}))


def _text(a: dict, key: str, default: str) -> str:
    v = a.get(key, default)
    return v.decode() if isinstance(v, bytes) else v


@converter("Resize", "Upsample")
def resize(ctx, node):
    """Resize (opsets 10-19) and Upsample (7-9) of H and W, nearest or linear."""
    a = attrs(node)
    x = node.input[0]
    xs = ctx.shape(x)
    if len(xs) != 4:
        raise ctx.unsupported(f"{node.op_type} of a rank-{len(xs)} tensor; supported: NCHW")
    mode = _text(a, "mode", "nearest")
    if mode == "bilinear":
        mode = "linear"
    if mode not in nn.RESIZE_MODES:
        raise ctx.unsupported(f"{node.op_type} mode '{mode}' is not supported; supported: "
                              "nearest, linear")
    legacy = node.op_type == "Upsample" or ctx.opset < 11
    coord = "asymmetric" if legacy else _text(a, "coordinate_transformation_mode", "half_pixel")
    nearest = "floor" if legacy else _text(a, "nearest_mode", "round_prefer_floor")
    if coord not in shapes.RESIZE_COORD_MODES:
        raise ctx.unsupported(f"coordinate_transformation_mode '{coord}' is not supported; "
                              f"supported: {', '.join(shapes.RESIZE_COORD_MODES)}")
    if nearest not in shapes.RESIZE_NEAREST_MODES:
        raise ctx.unsupported(f"nearest_mode '{nearest}'; supported: "
                              f"{', '.join(shapes.RESIZE_NEAREST_MODES)}")
    if a.get("antialias", 0) or "axes" in a or \
            _text(a, "keep_aspect_ratio_policy", "stretch") != "stretch":
        raise ctx.unsupported("Resize with antialias, axes or keep_aspect_ratio_policy is not "
                              "supported")
    if "scales" in a:  # Upsample-7
        scales = [float(v) for v in a["scales"]]
        sizes = None
    else:
        scales_name = node.input[1] if legacy else (node.input[2] if len(node.input) > 2 else "")
        sizes_name = node.input[3] if not legacy and len(node.input) > 3 else ""
        scales = [float(v) for v in ctx.value(scales_name).reshape(-1)] if scales_name and \
            ctx.shape(scales_name) != (0,) else None
        sizes = [int(v) for v in ctx.ints(sizes_name)] if sizes_name else None
    if sizes is not None:
        if len(sizes) != 4:
            raise ctx.shape_error(f"Resize sizes {sizes} must have 4 entries")
        scales = [o / i for o, i in zip(sizes, xs)]
        out = sizes
    elif scales is not None and len(scales) == 4:
        out = [shapes.resize_out(d, s) for d, s in zip(xs, scales)]
    else:
        raise ctx.shape_error(f"{node.op_type} needs 4 scales or 4 sizes")
    if out[0] != xs[0] or out[1] != xs[1]:
        raise ctx.unsupported("Resize of the batch or channel axis is not supported")
    if min(out) < 1:
        raise ctx.shape_error(f"{node.op_type} output {out} is empty")
    props = {"mode": StringAttr(mode), "scales": nn.floats_attr(scales[2:]),
             "coord_mode": StringAttr(coord)}
    if mode == "nearest":
        props["nearest_mode"] = StringAttr(nearest)
    ctx.emit(nn.ResizeOp.create(operands=[ctx.operand(x)], result_types=_out_type(ctx, out),
                                properties=props))


def _reduce(ctx, node, kind: str) -> None:
    """ReduceMean/ReduceSum/ReduceMax over any axes (none given: all of them, or the input itself
    under noop_with_empty_axes). The mean and the maximum over H and W of a kept NCHW tensor are
    global pooling, as torch's x.mean((2, 3), keepdim=True) and adaptive max pooling export."""
    x = node.input[0]
    xs = ctx.shape(x)
    axes = sorted({_norm_axis(ax, len(xs)) for ax in _axes(ctx, node)})
    if not axes and attrs(node).get("noop_with_empty_axes", 0):
        ctx.alias(node.output[0], x)
        return
    axes = axes or list(range(len(xs)))
    keep = int(attrs(node).get("keepdims", 1))
    out = [1 if i in axes else d for i, d in enumerate(xs)] if keep else \
        [d for i, d in enumerate(xs) if i not in axes]
    if keep and len(xs) == 4 and axes == [2, 3] and kind != "sum":
        pool = {"mean": "global_avg", "max": "global_max"}[kind]
        ctx.emit(nn.PoolOp.create(operands=[ctx.operand(x)], result_types=_out_type(ctx, out),
                                  properties={"kind": StringAttr(pool)}))
        return
    ctx.emit(nn.ReduceOp.create(operands=[ctx.operand(x)], result_types=_out_type(ctx, out),
                                properties={"kind": StringAttr(kind), "axes": nn.ints_attr(axes),
                                            "keepdims": nn.int_attr(keep)}))


@converter("ReduceMean")
def reduce_mean(ctx, node):
    _reduce(ctx, node, "mean")


@converter("ReduceSum")
def reduce_sum(ctx, node):
    _reduce(ctx, node, "sum")


@converter("ReduceMax")
def reduce_max(ctx, node):
    _reduce(ctx, node, "max")


@converter("ReduceMin")
def reduce_min(ctx, node):
    _reduce(ctx, node, "min")


@converter("ReduceProd")
def reduce_prod(ctx, node):
    _reduce(ctx, node, "prod")


@converter("ArgMax", "ArgMin")
def arg_reduce(ctx, node):
    """ArgMax/ArgMin along one axis: nn.reduce argmax/argmin, the index as a float (every tensor
    of the IR, the executors and the generated program is float32 or fixed point; an index below
    2^24 is exact in float32), where ONNX gives int64."""
    x = node.input[0]
    xs = ctx.shape(x)
    a = attrs(node)
    axis = _norm_axis(int(a.get("axis", 0)), len(xs))
    if not 0 <= axis < len(xs):
        raise ctx.shape_error(f"{node.op_type} axis {a.get('axis', 0)} is out of range for "
                              f"rank {len(xs)}")
    if xs[axis] > 2 ** 24:
        raise ctx.unsupported(f"{node.op_type} along an axis of {xs[axis]} elements is not "
                              "supported: its indices are float32, exact up to 2^24")
    keep = int(a.get("keepdims", 1))
    out = [1 if i == axis else d for i, d in enumerate(xs)] if keep else \
        [d for i, d in enumerate(xs) if i != axis]
    props = {"kind": StringAttr(node.op_type.lower()), "axes": nn.ints_attr([axis]),
             "keepdims": nn.int_attr(keep)}
    if a.get("select_last_index", 0):
        props["select_last_index"] = nn.int_attr(1)
    ctx.emit(nn.ReduceOp.create(operands=[ctx.operand(x)], result_types=_out_type(ctx, out),
                                properties=props))


# --- layers exporters emit, written with the ops the IR has ----------------------------------------

def _move(ctx: ImportContext, x: str, shape, perm, out: str) -> None:
    """`x` reshaped to `shape`, permuted by `perm` and reshaped to `out`'s shape (a rank-6
    transpose between reshapes: the IR's depth-to-space and space-to-depth)."""
    target = [shape[p] for p in perm]
    final = tuple(int(d) for d in out)
    if ctx.is_const(x):
        c = ctx.const(x).reshape(shape).transpose(perm).reshape(final)
        ctx.set_const(ctx.node.output[0], c)
        return
    stem = ctx.node.output[0]
    split = ctx.emit(nn.ReshapeOp.create(operands=[ctx.operand(x)],
                                         result_types=_out_type(ctx, shape)), f"{stem}.split")
    moved = ctx.emit(nn.TransposeOp.create(operands=[split], result_types=_out_type(ctx, target),
                                           properties={"perm": nn.ints_attr(perm)}),
                     f"{stem}.moved")
    ctx.emit(nn.ReshapeOp.create(operands=[moved], result_types=_out_type(ctx, final)))


def _block_size(ctx: ImportContext, node, xs) -> int:
    if len(xs) != 4:
        raise ctx.unsupported(f"{node.op_type} of a rank-{len(xs)} tensor; supported: NCHW")
    b = int(attrs(node)["blocksize"])
    if b < 1:
        raise ctx.shape_error(f"{node.op_type} blocksize {b} must be >= 1")
    return b


@converter("DepthToSpace")
def depth_to_space(ctx, node):
    """ONNX DepthToSpace (torch's PixelShuffle exports as its CRD mode)."""
    x = node.input[0]
    n, c, h, w = xs = ctx.shape(x)
    b = _block_size(ctx, node, xs)
    if c % (b * b):
        raise ctx.shape_error(f"DepthToSpace blocksize {b}: {c} channels are not a multiple of "
                              f"{b * b}")
    mode = _text(attrs(node), "mode", "DCR")
    out = (n, c // (b * b), h * b, w * b)
    if mode == "DCR":
        _move(ctx, x, (n, b, b, c // (b * b), h, w), (0, 3, 4, 1, 5, 2), out)
    elif mode == "CRD":
        _move(ctx, x, (n, c // (b * b), b, b, h, w), (0, 1, 4, 2, 5, 3), out)
    else:
        raise ctx.unsupported(f"DepthToSpace mode '{mode}' is not supported; supported: DCR, CRD")


@converter("SpaceToDepth")
def space_to_depth(ctx, node):
    x = node.input[0]
    n, c, h, w = xs = ctx.shape(x)
    b = _block_size(ctx, node, xs)
    if h % b or w % b:
        raise ctx.shape_error(f"SpaceToDepth blocksize {b} does not divide {h} x {w}")
    mode = _text(attrs(node), "mode", "DCR")  # opset 28's mode, the inverse DepthToSpace's
    perms = {"DCR": (0, 3, 5, 1, 2, 4), "CRD": (0, 1, 3, 5, 2, 4)}
    if mode not in perms:
        raise ctx.unsupported(f"SpaceToDepth mode '{mode}' is not supported; supported: DCR, CRD")
    _move(ctx, x, (n, c, h // b, b, w // b, b), perms[mode], (n, c * b * b, h // b, w // b))


@converter("ConvTranspose")
def conv_transpose(ctx, node):
    """ConvTranspose as the convolution it equals, exactly: the input with stride - 1 zeros
    inserted beside every row and column (a reshape to [N, C, H, 1, W, 1], a zero pad of the unit
    axes, a reshape back), convolved with the kernel flipped and its in/out channels swapped, with
    pads dilation * (kernel - 1) - pads (+ output_padding at the end). Zeros add nothing to a sum,
    so float and fixed point compute the transposed convolution's own values; the cost model
    counts the inserted zeros' products too."""
    a = attrs(node)
    x, w = node.input[0], node.input[1]
    bias = node.input[2] if len(node.input) > 2 else ""
    _constant_weights(ctx, node, w, bias)
    xs, ws = ctx.shape(x), ctx.shape(w)
    if len(xs) != 4 or len(ws) != 4:
        raise ctx.unsupported(f"ConvTranspose on a rank-{len(xs)} input is not supported; "
                              "supported: 2-D on NCHW")
    n, cin, h, wd = xs
    group = int(a.get("group", 1))
    if ws[0] != cin or cin % group:
        raise ctx.shape_error(f"ConvTranspose weight {list(ws)} does not match {cin} input "
                              f"channels in {group} groups")
    kernel = list(a.get("kernel_shape", ws[2:]))
    if kernel != list(ws[2:]):
        raise ctx.shape_error(f"ConvTranspose kernel_shape {kernel} differs from the weight "
                              f"{list(ws)}")
    strides = list(a.get("strides", [1, 1]))
    dilations = list(a.get("dilations", [1, 1]))
    extra = list(a.get("output_padding", [0, 0]))
    auto_pad = _text(a, "auto_pad", "NOTSET")
    if "output_shape" in a or auto_pad not in ("NOTSET", "VALID"):
        raise ctx.unsupported("ConvTranspose with output_shape or auto_pad SAME_* is not "
                              "supported; supported: explicit pads (torch's export)")
    pads = list(a.get("pads", [0, 0, 0, 0])) if auto_pad == "NOTSET" else [0, 0, 0, 0]
    if min(strides) < 1 or min(dilations) < 1 or min(extra) < 0 or min(pads) < 0:
        raise ctx.shape_error(f"ConvTranspose strides {strides}, dilations {dilations}, pads "
                              f"{pads} and output_padding {extra} must be positive")
    # conv pads (top, left, bottom, right) over the input with trailing zeros: H * s rows
    reach = [d * (k - 1) for d, k in zip(dilations, kernel)]
    conv_pads = [reach[0] - pads[0], reach[1] - pads[1],
                 reach[0] - pads[2] + extra[0] - (strides[0] - 1),
                 reach[1] - pads[3] + extra[1] - (strides[1] - 1)]
    lead = [0, 0]
    for ax in (0, 1):
        # of the stride - 1 zeros after each row, move as many before it as the end pad lacks
        lead[ax] = min(max(0, -conv_pads[2 + ax]), strides[ax] - 1)
        conv_pads[ax] -= lead[ax]
        conv_pads[2 + ax] += lead[ax]
    if min(conv_pads) < 0:
        raise ctx.unsupported(f"ConvTranspose with pads {pads} beyond dilation x (kernel - 1) "
                              f"= {reach} (a cropped output) is not supported")
    out = (n, ws[1] * group, strides[0] * (h - 1) + extra[0] + reach[0] + 1 - pads[0] - pads[2],
           strides[1] * (wd - 1) + extra[1] + reach[1] + 1 - pads[1] - pads[3])
    if min(out) < 1:
        raise ctx.shape_error(f"the output of ConvTranspose on {list(xs)} would be empty "
                              f"{list(out)}")
    # [Cin, Cout/g, kh, kw] -> [Cout, Cin/g, kh, kw] per group, flipped in space
    wt = ctx.const(w).materialize().reshape(group, cin // group, ws[1], *kernel)
    weight = np.ascontiguousarray(
        wt.transpose(0, 2, 1, 3, 4).reshape(ws[1] * group, cin // group, *kernel)[:, :, ::-1, ::-1])
    stem = node.output[0]
    src = ctx.operand(x)
    if max(strides) > 1:
        six = (n, cin, h, 1, wd, 1)
        src = ctx.emit(nn.ReshapeOp.create(operands=[src], result_types=_out_type(ctx, six)),
                       f"{stem}.rows")
        zpads = [0, 0, 0, lead[0], 0, lead[1], 0, 0, 0, strides[0] - 1 - lead[0], 0,
                 strides[1] - 1 - lead[1]]
        spread = (n, cin, h, strides[0], wd, strides[1])
        src = ctx.emit(nn.PadOp.create(operands=[src], result_types=_out_type(ctx, spread),
                                       properties={"pads": nn.ints_attr(zpads),
                                                   "mode": StringAttr("constant"),
                                                   "value": nn.float_attr(0.0)}),
                       f"{stem}.zeros")
        src = ctx.emit(nn.ReshapeOp.create(
            operands=[src], result_types=_out_type(ctx, (n, cin, h * strides[0],
                                                         wd * strides[1]))), f"{stem}.spread")
    operands = [src, ctx.operand_from(ConstTensor.of(weight), (node.name or stem) + ".weight")]
    if bias:
        operands.append(ctx.operand(bias))
    ctx.emit(nn.ConvOp.create(operands=operands, result_types=_out_type(ctx, out), properties={
        "kernel": nn.ints_attr(kernel), "strides": nn.ints_attr([1, 1]),
        "pads": nn.ints_attr(conv_pads), "dilations": nn.ints_attr(dilations),
        "group": nn.int_attr(group)}))


# --- constants and shape subgraphs (folded) --------------------------------------------------------

@converter("Constant")
def constant(ctx, node):
    a = node.attribute[0]
    if a.name == "value":
        arr = numpy_helper.to_array(a.t)
    elif a.name in ("value_float", "value_floats"):
        arr = np.asarray(onnx.helper.get_attribute_value(a), dtype=np.float32)
    elif a.name in ("value_int", "value_ints"):
        arr = np.asarray(onnx.helper.get_attribute_value(a), dtype=np.int64)
    else:
        raise ctx.unsupported(f"Constant with '{a.name}' is not supported; supported: value, "
                              "value_float(s), value_int(s)")
    ctx.set_const(node.output[0], ConstTensor.of(arr) if arr.dtype.kind == "f" else arr)


@converter("ConstantOfShape")
def constant_of_shape(ctx, node):
    shape = ctx.ints(node.input[0]).tolist()
    a = attrs(node)
    value = numpy_helper.to_array(a["value"]).reshape(-1)[0] if "value" in a else np.float32(0)
    if np.asarray(value).dtype.kind == "f":
        ctx.set_const(node.output[0], ConstTensor.full(shape, float(value)))
    else:
        ctx.set_const(node.output[0], np.full(shape, value))


@converter("RandomNormal")
def random_normal(ctx, node):
    """A seeded random constant (the model zoo's lazily drawn weights); see weights.ConstTensor."""
    a = attrs(node)
    if "seed" not in a:
        raise ctx.unsupported("RandomNormal without a seed is not a constant; give it a seed")
    ctx.set_const(node.output[0], ConstTensor(tuple(int(d) for d in a["shape"]),
                                              random=(int(a["seed"]), float(a.get("mean", 0.0)),
                                                      float(a.get("scale", 1.0)))))


@converter("Shape")
def shape_op(ctx, node):
    xs = ctx.shape(node.input[0])
    a = attrs(node)
    start, end = a.get("start", 0), a.get("end", len(xs))
    ctx.set_const(node.output[0], np.asarray(xs, dtype=np.int64)[start:end])


@converter("Gather")
def gather(ctx, node):
    data, idx = node.input
    if not ctx.is_const(data):
        raise ctx.unsupported("Gather on a run-time tensor is not supported; supported: shape "
                              "subgraphs on constants")
    axis = int(attrs(node).get("axis", 0))
    ctx.set_const(node.output[0], _keep_kind(ctx, data, np.take(ctx.value(data), ctx.ints(idx),
                                                                axis=axis)))


@converter("Cast")
def cast(ctx, node):
    x = node.input[0]
    elem = int(attrs(node)["to"])
    if ctx.is_const(x):
        arr = ctx.value(x).astype(onnx.helper.tensor_dtype_to_np_dtype(elem))
        ctx.set_const(node.output[0], ConstTensor.of(arr) if arr.dtype.kind == "f" else arr)
        return
    if elem not in FLOAT_TYPES:
        raise ctx.unsupported(f"Cast of a run-time tensor to {type_name(elem)} is not "
                              "supported; supported: float types (computed in float32)")
    if elem == onnx.TensorProto.BFLOAT16:  # its rounding (2^-8 relative) is no small change
        raise ctx.unsupported("Cast of a run-time tensor to bfloat16 is not supported: the "
                              "compiler computes in float32, and bfloat16's rounding changes "
                              "values by up to 0.4%; drop the Cast, or cast to float16")
    # run-time values are float32 (an integer graph input only reaches here through this Cast)
    if elem != onnx.TensorProto.FLOAT:
        ctx.warn(f"the Cast to {type_name(elem)} is not applied: the compiler keeps float32, "
                 f"so results differ from a {type_name(elem)} run by its rounding")
    ctx.alias(node.output[0], x)


def _slice(ctx: ImportContext, x: str, axis: int, start: int, n: int, target: str) -> str:
    """The run-time `x` sliced to [start, start + n) along `axis`, bound to `target`."""
    out = list(ctx.shape(x))
    out[axis] = n
    ctx.emit(nn.SliceOp.create(operands=[ctx.operand(x)], result_types=_out_type(ctx, out),
                               properties={"axis": nn.int_attr(axis),
                                           "start": nn.int_attr(start)}), target)
    return target


@converter("Split")
def split(ctx, node):
    """Split into the sizes of the `split` input (the attribute before opset 13), else into
    num_outputs (opset 18) or len(outputs) parts, the last one smaller when they do not divide:
    one nn.slice per output."""
    x = node.input[0]
    xs = ctx.shape(x)
    a = attrs(node)
    axis = _norm_axis(int(a.get("axis", 0)), len(xs))
    if not 0 <= axis < len(xs):
        raise ctx.shape_error(f"Split axis {a.get('axis', 0)} is out of range for rank {len(xs)}")
    if len(node.input) > 1 and node.input[1]:
        sizes = ctx.ints(node.input[1]).tolist()
    elif "split" in a:
        sizes = list(a["split"])
    else:
        parts = int(a.get("num_outputs", len(node.output)))
        step = -(-xs[axis] // parts)
        sizes = [min(step, xs[axis] - i * step) for i in range(parts)]
    if len(sizes) != len(node.output) or sum(sizes) != xs[axis] or min(sizes) < 1:
        raise ctx.shape_error(f"Split of axis {axis} ({xs[axis]} elements) into {sizes} for "
                              f"{len(node.output)} outputs: the sizes must be positive, one per "
                              "output, and add up to the axis")
    starts = np.cumsum([0] + sizes[:-1]).tolist()
    if ctx.is_const(x):
        c = ctx.consts[x]
        arr = c.materialize() if isinstance(c, ConstTensor) else c
        for out, start, n in zip(node.output, starts, sizes):
            part = np.take(arr, range(start, start + n), axis=axis)
            ctx.set_const(out, ConstTensor.of(part) if isinstance(c, ConstTensor) else part)
        return
    for out, start, n in zip(node.output, starts, sizes):
        if out:
            _slice(ctx, x, axis, start, n, out)


def _slice_spec(ctx: ImportContext, node) -> tuple[list, list, list, list]:
    """Slice's (starts, ends, axes, steps): attributes before opset 10, inputs from it."""
    if ctx.opset < 10:
        a = attrs(node)
        starts, ends = list(a["starts"]), list(a["ends"])
        return starts, ends, list(a.get("axes", range(len(starts)))), [1] * len(starts)
    starts, ends = ctx.ints(node.input[1]).tolist(), ctx.ints(node.input[2]).tolist()
    axes = ctx.ints(node.input[3]).tolist() if len(node.input) > 3 and node.input[3] else \
        list(range(len(starts)))
    steps = ctx.ints(node.input[4]).tolist() if len(node.input) > 4 and node.input[4] else \
        [1] * len(starts)
    return starts, ends, axes, steps


@converter("Slice")
def slice_op(ctx, node):
    x = node.input[0]
    starts, ends, axes, steps = _slice_spec(ctx, node)
    if not ctx.is_const(x):
        _runtime_slice(ctx, node, x, starts, ends, axes, steps)
        return
    arr = ctx.value(x)
    index = [slice(None)] * arr.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps):
        index[_norm_axis(ax, arr.ndim)] = slice(s, e, st)
    ctx.set_const(node.output[0], _keep_kind(ctx, x, arr[tuple(index)]))


def _runtime_slice(ctx: ImportContext, node, x: str, starts, ends, axes, steps) -> None:
    """Slice of a run-time tensor with step 1: one nn.slice per axis it cuts (none: the input)."""
    xs = ctx.shape(x)
    if any(s != 1 for s in steps):
        raise ctx.unsupported(f"Slice of a run-time tensor with steps {steps} is not supported; "
                              "supported: step 1")
    cuts = []
    for s, e, ax in zip(starts, ends, axes):
        ax = _norm_axis(ax, len(xs))
        if not 0 <= ax < len(xs):
            raise ctx.shape_error(f"Slice axis {ax} is out of range for rank {len(xs)}")
        dim = xs[ax]
        lo = min(max(s + dim if s < 0 else s, 0), dim)
        hi = min(max(e + dim if e < 0 else e, 0), dim)
        if hi <= lo:
            raise ctx.shape_error(f"Slice [{s}, {e}) of axis {ax} ({dim} elements) is empty: "
                                  "an empty tensor has nothing to compute")
        if hi - lo < dim:
            cuts.append((ax, lo, hi - lo))
    if not cuts:
        ctx.alias(node.output[0], x)
        return
    src = x
    for i, (ax, lo, n) in enumerate(cuts):
        last = i == len(cuts) - 1
        src = _slice(ctx, src, ax, lo, n, node.output[0] if last else f"{node.output[0]}.cut{i}")


def _keep_kind(ctx: ImportContext, source: str, arr: np.ndarray):
    return ConstTensor.of(arr) if isinstance(ctx.consts[source], ConstTensor) else arr
