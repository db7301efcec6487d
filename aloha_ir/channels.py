"""Channel surgery on nn graphs: change which output channels convolutions produce, and follow the
change through every value that shares their width.

Two passes need it: `align-to-arch` rounds widths (keeps a prefix of the channels, or appends zero
channels) and `prune` removes inactive kernels (keeps an arbitrary subset). Both describe the result
as a plan, value -> the old channel index of each new channel (-1: a new all-zero channel), and
`retarget_channels` rewrites weights and result types to it.

Widths move in groups: values joined by channel-wise ops (the caller's `preserving` predicate) share
one width, and a group may change only if every value in it comes from a group-1 convolution or such
an op, and every use is one of those ops, a group-1 convolution's input, or a flatten that feeds
dense layers only (their weight columns follow). Network inputs and outputs, concatenations,
reshapes and grouped convolutions pin a group's width.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from xdsl.dialects.builtin import TensorType
from xdsl.ir import Operation, SSAValue
from xdsl.rewriter import Rewriter

from aloha_ir import fixedpoint as fp
from aloha_ir.consts import const_tensor, make_const
from aloha_ir.dialects import nn
from aloha_ir.optable import registrar
from aloha_ir.weights import ConstTensor, WeightStore, weights_of


ChannelRule = Callable[[Operation], bool]

# nn op class -> whether a block of it treats channels independently, so that a width change passes
# through it (an op without a rule pins its group; tests/test_op_coverage.py lists those with why)
CHANNELWISE: dict[type[Operation], ChannelRule] = {}

# `@channelwise(nn.PoolOp)`: the decorated function says whether blocks of the op classes are
channelwise = registrar(CHANNELWISE, "channel-wise rule")


@channelwise(nn.PoolOp, nn.BatchNormOp, nn.LrnOp, nn.AddOp, nn.MulOp, nn.DropoutOp, nn.ResizeOp)
def always_channelwise(op: Operation) -> bool:
    """Each output channel from the same channel of the inputs (LRN's also from its neighbours:
    zero channels appended at the end add nothing to its sums, like its own edge)."""
    return True


@channelwise(nn.ActOp)
def act_channelwise(op: nn.ActOp) -> bool:
    """Element by element, except softmax and log-softmax (they normalise across channels)."""
    return op.kind.data not in nn.SOFTMAXES


@channelwise(nn.PadOp)
def pad_channelwise(op: nn.PadOp) -> bool:
    """When it pads no channels (or the tensor has no channel axis)."""
    pads = op.prop_ints("pads")
    rank = len(pads) // 2
    return rank < 2 or (pads[1] == 0 and pads[1 + rank] == 0)


def is_channelwise(op: Operation) -> bool:
    """Ops that treat channels independently, so that a width change passes through them (by their
    rule in CHANNELWISE; other ops pin their group's width)."""
    rule = CHANNELWISE.get(type(op))
    return rule is not None and rule(op)


def data_operands(op: Operation) -> list[SSAValue]:
    return [v for v in op.operands if not isinstance(v.owner, nn.ConstOp)]


class WidthGroups:
    """Union-find over the rank-4 values of a graph; `movable(v)` says whether v's group may change
    width under the rules of the module docstring."""

    def __init__(self, graph: nn.GraphOp, preserving: Callable[[Operation], bool] = is_channelwise):
        self.parent: dict[SSAValue, SSAValue] = {}
        self.pinned: set[SSAValue] = set()
        rank4 = [op for op in graph.ops if not isinstance(op, (nn.ConstOp, nn.OutputOp))
                 and op.results and len(nn.shape_of(op.results[0])) == 4]
        for op in rank4:
            self.find(op.results[0])
            if preserving(op):
                for v in data_operands(op):
                    self.union(v, op.results[0])
        for op in rank4:
            r = op.results[0]
            if not (preserving(op) or _plain_conv(op)):
                self.pinned.add(self.find(r))
            if not all(_follows(use, preserving) for use in r.uses):
                self.pinned.add(self.find(r))
        self.values = [op.results[0] for op in rank4]

    def find(self, v: SSAValue) -> SSAValue:
        self.parent.setdefault(v, v)
        while self.parent[v] is not v:
            self.parent[v] = self.parent[self.parent[v]]
            v = self.parent[v]
        return v

    def union(self, a: SSAValue, b: SSAValue) -> None:
        self.parent[self.find(a)] = self.find(b)

    def movable(self, v: SSAValue) -> bool:
        return self.find(v) not in self.pinned

    def members(self, v: SSAValue) -> list[SSAValue]:
        root = self.find(v)
        return [u for u in self.values if self.find(u) is root]


def _plain_conv(op: Operation) -> bool:
    return isinstance(op, nn.ConvOp) and op.prop_int("group", 1) == 1


def _follows(use, preserving) -> bool:
    user = use.operation
    if preserving(user) or (_plain_conv(user) and use.index == 0):
        return True
    if isinstance(user, nn.FlattenOp):
        return all(isinstance(u.operation, nn.DenseOp) and u.index == 0 for u in user.output.uses)
    return False


def take_channels(t: ConstTensor, axis: int, index: np.ndarray) -> ConstTensor:
    """`t` with the slices `index` along `axis` (-1: zeros). A prefix, possibly zero-extended, keeps
    a splat a splat and a seeded random tensor seeded random (of the new shape)."""
    index = np.asarray(index, dtype=np.int64)
    shape = list(t.shape)
    keep = min(len(index), shape[axis])
    shape[axis] = len(index)
    prefix = np.array_equal(index[:keep], np.arange(keep)) and bool(np.all(index[keep:] == -1))
    if t.array is None and prefix:
        return ConstTensor(tuple(shape), splat=t.splat, random=t.random)
    a = t.materialize()
    out = np.take(a, np.maximum(index, 0), axis=axis)
    if np.any(index < 0):
        sel = [slice(None)] * a.ndim
        sel[axis] = index < 0
        out[tuple(sel)] = 0
    return ConstTensor.of(out)


def prefix_plan(old: int, new: int) -> np.ndarray:
    """Keep the first channels, append zero channels: the plan of a plain width change."""
    return np.concatenate([np.arange(min(old, new)), -np.ones(max(0, new - old), np.int64)])


def retarget_channels(module, graph: nn.GraphOp, plan: dict[SSAValue, np.ndarray],
                      tag: str = "channels") -> None:
    """Rewrite `graph` so that every value v in `plan` holds the channels plan[v] of its old self.

    The plan must cover whole movable groups (`WidthGroups.members`), one index array per group."""
    store = weights_of(module)
    plan = dict(plan)  # retyped values are new SSA values; they join the plan as they appear
    for op in list(graph.ops):
        if isinstance(op, nn.ConstOp) or not op.results:
            continue
        out = op.results[0]
        if isinstance(op, nn.ConvOp):
            if op.input in plan:
                _take_operand(graph, store, tag, op, 1, 1, plan[op.input])
            if out in plan:
                _take_operand(graph, store, tag, op, 1, 0, plan[out])
                if op.bias is not None:
                    _take_operand(graph, store, tag, op, 2, 0, plan[out])
        elif isinstance(op, nn.DenseOp):
            src = op.input.owner
            if isinstance(src, nn.FlattenOp) and src.input in plan:
                channels = plan[src.input]
                x = nn.shape_of(src.input)
                hw = x[2] * x[3]
                columns = (channels[:, None] * hw + np.arange(hw)).reshape(-1)
                columns[np.repeat(channels < 0, hw)] = -1
                _take_operand(graph, store, tag, op, 1, 1, columns)
            continue
        elif isinstance(op, nn.FlattenOp):
            if op.input in plan:
                x = nn.shape_of(op.input)
                Rewriter.replace_value_with_new_type(
                    out, TensorType(out.type.get_element_type(), [x[0], x[1] * x[2] * x[3]]))
            continue
        elif out in plan:
            for i, v in enumerate(op.operands):
                shape = nn.shape_of(v)
                axis = 1 if len(shape) == 4 else 0
                if isinstance(v.owner, nn.ConstOp) and shape and shape[axis] != 1:
                    _take_operand(graph, store, tag, op, i, axis, plan[out])
        if out in plan:
            shape = list(nn.shape_of(out))
            shape[1] = len(plan[out])
            new = Rewriter.replace_value_with_new_type(
                out, TensorType(out.type.get_element_type(), shape))
            plan[new] = plan[out]


def _take_operand(graph: nn.GraphOp, store: WeightStore, tag: str, op: Operation, index: int,
                  axis: int, channels: np.ndarray) -> None:
    v = op.operands[index]
    c = v.owner
    t = const_tensor(c, store)
    if t.shape[axis] == len(channels) and np.array_equal(channels, np.arange(len(channels))):
        return
    new = make_const(take_channels(t, axis, channels), store,
                     f"{nn.block_label(op) or op.name}.{tag}", v.type.get_element_type())
    if c.fracs is not None:
        per = np.asarray(c.fracs, dtype=np.int64)
        fp.set_const_fracs(new, np.take(per, np.maximum(channels, 0)) if axis == 0 else per)
    graph.body.block.insert_op_before(new, op)
    op.operands = [new.output if i == index else o for i, o in enumerate(op.operands)]
    if not v.uses:
        c.detach()
        c.erase()
