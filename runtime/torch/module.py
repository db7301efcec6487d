"""nn IR -> an executable torch module (float), for training, fine-tuning, accuracy and attacks.

`GraphModule(graph, store)` runs the graph's ops in order with torch.nn.functional. The batch axis is
free: the IR's static batch of 1 becomes N. Conv/dense weights and biases and batch-norm scale/bias are
trainable parameters; batch-norm statistics are buffers updated in training mode; other constants
(the input normalisation inside the graph) are fixed buffers. `logits=True` drops a trailing softmax,
so training uses cross-entropy on logits and argmax is unchanged.

Quantization-aware training hooks in without subclassing: `weight_fns[key]` transforms a parameter
before use and `act_fns[name]` transforms a block's output (both nn.ModuleDicts, so a PACT clip level is
a trained parameter). `write_back(module)` stores the trained values in the IR's weight store.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import SSAValue

from aloha_ir.consts import const_tensor, set_blob
from aloha_ir.dialects import nn
from aloha_ir.dialects.nn import graph_of, op_label
from aloha_ir.errors import UnsupportedError
from aloha_ir.weights import WeightStore, weights_of
from runtime.reference import avg_counts, resize_matrix, slice_array, window_extra

# operand positions that hold trainable parameters, per op
TRAINABLE = {nn.ConvOp: (1, 2), nn.DenseOp: (1, 2), nn.BatchNormOp: (1, 2)}
BN_STATS = (3, 4)  # batch-norm mean and variance: buffers, updated in training mode
BN_MOMENTUM = 0.1

def const_role(graph: nn.GraphOp) -> dict[nn.ConstOp, tuple[str, str]]:
    """For every constant: (role, key) with role 'param', 'stat' or 'buffer' and a unique key
    derived from its first consumer (`conv7_weight`, `bn3_mean`, ...)."""
    names = ("weight", "bias", "mean", "var")
    roles: dict[nn.ConstOp, tuple[str, str]] = {}
    taken: set[str] = set()
    for i, op in enumerate(graph.ops):
        for pos, v in enumerate(op.operands):
            c = v.owner
            if not isinstance(c, nn.ConstOp) or c in roles:
                continue
            role = "buffer"
            if pos in TRAINABLE.get(type(op), ()):
                role = "param"
            elif isinstance(op, nn.BatchNormOp) and pos in BN_STATS:
                role = "stat"
            what = names[pos - 1] if role != "buffer" else f"const{pos}"
            base = key = f"{op_label(op, i)}_{what}"
            n = 1
            while key in taken:
                n += 1
                key = f"{base}_{n}"
            taken.add(key)
            roles[c] = (role, key)
    return roles


def pads_lrtb(pads) -> tuple[int, int, int, int]:
    """IR pads (top, left, bottom, right) as F.pad's (left, right, top, bottom)."""
    t, l, b, r = pads
    return (l, r, t, b)


def batch_shape(op: nn.NnOp) -> list[int]:
    """The result shape with the batch axis free (-1) when the IR's batch is 1."""
    s = list(op.out_shape())
    return [-1] + s[1:] if s and s[0] == 1 else s


class GraphModule(torch.nn.Module):
    """A float executor of one nn.graph (see the module docstring)."""

    def __init__(self, graph: nn.GraphOp, store: WeightStore, *, logits: bool = False,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        self.graph = graph
        self.ops = [op for op in graph.ops if not isinstance(op, nn.ConstOp)]
        self.labels = {op: op_label(op, i) for i, op in enumerate(graph.ops)}
        self.inputs = [op for op in self.ops if isinstance(op, nn.InputOp)]
        self.params = torch.nn.ParameterDict()
        self.const_keys: dict[SSAValue, str] = {}
        self.const_ops: dict[str, nn.ConstOp] = {}
        self.const_roles: dict[str, str] = {}
        for c, (role, key) in const_role(graph).items():
            self.const_roles[key] = role
            value = torch.from_numpy(np.array(const_tensor(c, store).materialize())).to(dtype)
            self.const_keys[c.output] = key
            self.const_ops[key] = c
            if role == "param":
                self.params[key] = torch.nn.Parameter(value)
            else:
                self.register_buffer(f"c_{key}", value)
        self.skip_softmax = None
        last = self.ops[-1].operands[0].owner if len(self.ops[-1].operands) == 1 else None
        if logits and isinstance(last, nn.ActOp) and last.kind.data == "softmax":
            self.skip_softmax = last
        self.weight_fns = torch.nn.ModuleDict()
        self.act_fns = torch.nn.ModuleDict()
        self._resize = {op: [torch.from_numpy(resize_matrix(op, a)).to(dtype) for a in (2, 3)]
                        for op in self.ops if isinstance(op, nn.ResizeOp)}
        for op in self.ops:
            if type(op) not in FLOAT_KERNELS and not isinstance(op, (nn.InputOp, nn.OutputOp)):
                raise UnsupportedError(f"{op.name} has no torch kernel", where=self.labels[op])

    # --- values ----------------------------------------------------------------------------------
    def const(self, value: SSAValue) -> torch.Tensor:
        key = self.const_keys[value]
        t = self.params[key] if key in self.params else getattr(self, f"c_{key}")
        fn = self.weight_fns[key] if key in self.weight_fns else None
        return fn(t) if fn is not None else t

    def forward(self, *xs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        return self._run(xs, None)

    def values(self, *xs: torch.Tensor) -> dict[SSAValue, torch.Tensor]:
        """Every block's output (inputs included) for these inputs: calibration and debugging."""
        env: dict[SSAValue, torch.Tensor] = {}
        self._run(xs, env)
        return {v: t for v, t in env.items() if not isinstance(v.owner, nn.ConstOp)}

    def _run(self, xs, env: dict | None):
        env = {} if env is None else env
        if len(xs) != len(self.inputs):
            raise ValueError(f"{len(self.inputs)} inputs expected, got {len(xs)}")
        for op, x in zip(self.inputs, xs):
            env[op.output] = x
        get = lambda v: env[v] if v in env else self.const(v)  # noqa: E731
        for op in self.ops:
            if isinstance(op, nn.InputOp):
                continue
            if isinstance(op, nn.OutputOp):
                outs = tuple(get(v) for v in op.operands)
                return outs[0] if len(outs) == 1 else outs
            if op is self.skip_softmax:
                env[op.output] = get(op.input)
                continue
            y = FLOAT_KERNELS[type(op)](self, op, [get(v) for v in op.operands])
            name = self.labels[op]
            if name in self.act_fns:
                y = self.act_fns[name](y)
            env[op.results[0]] = y
        raise AssertionError("nn.graph without nn.output")

    # --- write back ------------------------------------------------------------------------------
    def write_back(self, module: ModuleOp) -> None:
        """Store the trained parameters (after weight_fns) and batch-norm statistics as blobs of
        the IR's weight store; fixed buffers are left as they are."""
        store = weights_of(module)
        with torch.no_grad():
            for key, c in self.const_ops.items():
                if self.const_roles[key] != "buffer":
                    array = self.const(c.output).detach().cpu().numpy().astype(np.float32)
                    set_blob(c, store, array, key)


# ---------------------------------------------------------------------------------------------------
# Float kernels: (module, op, operand tensors) -> result


def _activation(op, y: torch.Tensor) -> torch.Tensor:
    fused = op.fused_activation() if isinstance(op, nn.FusedActivation) else None
    if fused is None:
        return y
    return _act(fused[0], fused[1], None, y)


def _act(kind: str, params, axis, y: torch.Tensor) -> torch.Tensor:
    if kind == "relu":
        return F.relu(y)
    if kind == "leaky_relu":
        return F.leaky_relu(y, float(params[0]))
    if kind == "clip":
        return torch.clamp(y, float(params[0]), float(params[1]))
    if kind == "sigmoid":
        return torch.sigmoid(y)
    if kind == "tanh":
        return torch.tanh(y)
    if kind == "softmax":
        return torch.softmax(y, dim=int(axis))
    if kind == "log_softmax":
        return torch.log_softmax(y, dim=int(axis))
    raise UnsupportedError(f"activation '{kind}' has no torch kernel")


def _conv(m, op: nn.ConvOp, xs):
    kernel, strides, pads, dil = op.window()
    x, w = xs[0], xs[1]
    b = xs[2] if len(xs) > 2 else None
    t, l, bo, r = pads
    if (t, l) != (bo, r):
        x = F.pad(x, pads_lrtb(pads))
        pads = (0, 0, 0, 0)
    y = F.conv2d(x, w, b, stride=strides, padding=(pads[0], pads[1]), dilation=dil,
                 groups=op.prop_int("group", 1))
    return _activation(op, y)


def _dense(m, op: nn.DenseOp, xs):
    return _activation(op, F.linear(xs[0], xs[1], xs[2] if len(xs) > 2 else None))


def _pool(m, op: nn.PoolOp, xs):
    x = xs[0]
    kind = op.kind.data
    if kind == "global_max":
        y = torch.amax(x, dim=(2, 3), keepdim=True)
    elif kind == "global_avg":
        y = torch.mean(x, dim=(2, 3), keepdim=True)
    else:
        y = _window_pool(op, x)
    return _activation(op, y)


def _window_pool(op: nn.PoolOp, x: torch.Tensor) -> torch.Tensor:
    kernel, strides, pads, dil = op.window()
    _, _, oh, ow = op.out_shape()
    h, w = x.shape[2], x.shape[3]
    eh = window_extra(h, pads[0], pads[2], (kernel[0] - 1) * dil[0] + 1, strides[0], oh)
    ew = window_extra(w, pads[1], pads[3], (kernel[1] - 1) * dil[1] + 1, strides[1], ow)
    full = (pads[1], pads[3] + ew, pads[0], pads[2] + eh)
    if op.kind.data == "max":
        xp = F.pad(x, full, value=-math.inf)
        return F.max_pool2d(xp, kernel, strides, 0, dil)
    if dil != (1, 1):
        raise UnsupportedError("dilated average pooling has no torch kernel", where=op.name)
    total = F.avg_pool2d(F.pad(x, full), kernel, strides, 0, divisor_override=1)
    return total / torch.from_numpy(avg_counts(op, h, w)).to(x.dtype)


def _bn(m, op: nn.BatchNormOp, xs):
    x, scale, bias = xs[0], xs[1], xs[2]
    shape = (1, -1) + (1,) * (x.dim() - 2)
    if len(xs) == 5:
        mean, var = xs[3], xs[4]
        if m.training:
            dims = [d for d in range(x.dim()) if d != 1]
            bmean = x.mean(dim=dims)
            bvar = x.var(dim=dims, unbiased=False)
            with torch.no_grad():
                n = x.numel() / x.shape[1]
                mean.mul_(1 - BN_MOMENTUM).add_(BN_MOMENTUM * bmean)
                var.mul_(1 - BN_MOMENTUM).add_(BN_MOMENTUM * bvar * n / max(n - 1, 1))
            mean, var = bmean, bvar
        scale = scale / torch.sqrt(var + op.prop_float("epsilon"))
        bias = bias - mean * scale
    return _activation(op, x * scale.reshape(shape) + bias.reshape(shape))


def _add(m, op, xs):
    return _activation(op, xs[0] + xs[1])


def _mul(m, op, xs):
    return xs[0] * xs[1]


def _concat(m, op: nn.ConcatOp, xs):
    return torch.cat(xs, dim=op.prop_int("axis"))


def _actop(m, op: nn.ActOp, xs):
    return _act(op.kind.data, nn.floats(op.params), op.prop_int("axis", 1), xs[0])


def _lrn(m, op: nn.LrnOp, xs):
    return F.local_response_norm(xs[0], op.prop_int("size"), op.prop_float("alpha"),
                                 op.prop_float("beta"), op.prop_float("bias"))


def _reshape(m, op, xs):
    return xs[0].reshape(batch_shape(op))


def _flatten(m, op: nn.FlattenOp, xs):
    x, axis = xs[0], op.prop_int("axis")
    return x.reshape(math.prod(x.shape[:axis]), -1)


def _transpose(m, op: nn.TransposeOp, xs):
    return xs[0].permute(*op.prop_ints("perm"))


def _shuffle(m, op: nn.ChannelShuffleOp, xs):
    return F.channel_shuffle(xs[0], op.prop_int("groups"))


def pad_like_onnx(x: torch.Tensor, op: nn.PadOp, value: float) -> torch.Tensor:
    """nn.pad's ONNX pads (all begins, then all ends) applied with F.pad (last axis first)."""
    pads = op.prop_ints("pads")
    r = x.dim()
    flat: list[int] = []
    for axis in reversed(range(r)):
        flat += [pads[axis], pads[axis + r]]
    if op.mode.data == "constant":
        return F.pad(x, flat, value=value)
    while len(flat) > 4 and flat[-1] == 0 and flat[-2] == 0:
        flat = flat[:-2]  # reflect/replicate pad only the trailing (spatial) axes
    return F.pad(x, flat, mode={"reflect": "reflect", "edge": "replicate"}[op.mode.data])


def _pad(m, op: nn.PadOp, xs):
    return pad_like_onnx(xs[0], op, op.prop_float("value"))


def _resize(m, op: nn.ResizeOp, xs):
    mh, mw = m._resize[op]
    return torch.einsum("oh,nchw,pw->ncop", mh.to(xs[0].dtype), xs[0], mw.to(xs[0].dtype))


def reduce_tensor(op: nn.ReduceOp, x: torch.Tensor) -> torch.Tensor:
    """nn.reduce of `x` in torch (runtime.reference.reduce_array's): an index as x's dtype."""
    kind, dims = op.kind.data, list(op.prop_ints("axes"))
    keep = bool(op.prop_int("keepdims", 1))
    if kind in nn.ARG_REDUCTIONS:
        (dim,) = dims
        pick = torch.argmax if kind == "argmax" else torch.argmin
        if op.prop_int("select_last_index", 0):
            return (x.shape[dim] - 1 - pick(x.flip(dim), dim=dim, keepdim=keep)).to(x.dtype)
        return pick(x, dim=dim, keepdim=keep).to(x.dtype)
    if kind == "prod":  # torch.prod takes one dim
        for d in sorted(dims, reverse=True):
            x = torch.prod(x, dim=d, keepdim=keep)
        return x
    reduce = {"max": torch.amax, "min": torch.amin, "mean": torch.mean, "sum": torch.sum}[kind]
    return reduce(x, dim=dims, keepdim=keep)


def _reduce(m, op: nn.ReduceOp, xs):
    return reduce_tensor(op, xs[0])


def _slice(m, op: nn.SliceOp, xs):
    return slice_array(op, xs[0])


def _dropout(m, op: nn.DropoutOp, xs):
    return F.dropout(xs[0], op.prop_float("ratio"), training=m.training)


# each nn op's torch float kernel (tests/test_op_coverage.py checks that every op has one)
FLOAT_KERNELS = {
    nn.ConvOp: _conv, nn.DenseOp: _dense, nn.PoolOp: _pool, nn.BatchNormOp: _bn, nn.AddOp: _add,
    nn.MulOp: _mul, nn.ConcatOp: _concat, nn.ActOp: _actop, nn.LrnOp: _lrn,
    nn.ReshapeOp: _reshape, nn.FlattenOp: _flatten, nn.TransposeOp: _transpose,
    nn.SliceOp: _slice,
    nn.ChannelShuffleOp: _shuffle, nn.PadOp: _pad, nn.ResizeOp: _resize,
    nn.ReduceOp: _reduce, nn.DropoutOp: _dropout,
}


def build(module: ModuleOp, *, logits: bool = False) -> GraphModule:
    """The float torch executor of a module's single nn.graph, with its weights."""
    return GraphModule(graph_of(module), weights_of(module), logits=logits)
