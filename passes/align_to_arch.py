"""`align-to-arch`: round layer widths to the target's channel granularity (the seeds' VGG16-over/under).

NEURAghe's CE pads input maps to multiples of 3 x N_COL and output maps to multiples of N_ROW, so a
64-map layer on LOSA wastes an eighth of the engine. This pass changes the network instead: every
convolution width that can change is rounded `up` (over-sized layers: more work in about the same
time) or `down` (under-sized: less work, some accuracy lost) to a multiple of the granularity, by
default lcm over the target's conv engines of (grid rows, input maps per column x grid columns).

Widths move together: values joined by channel-preserving ops (activations, pooling, batch norm,
padding, element-wise add/mul, resize) share one width, and a group changes only if every value in
it comes from a group-1 convolution or such an op, and every use is one of those ops, a group-1
convolution's input, or a flatten feeding dense layers. Network inputs and outputs, concatenations,
reshapes and grouped convolutions keep their widths. Weights follow: new output channels and input
columns of blob weights are zeros (so `up` keeps the function of the original network until it is
retrained), seeded random weights stay seeded random of the new shape, splats stay splats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, TensorType
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass

from aloha_ir.consts import const_tensor, make_const
from aloha_ir.context import record_analysis
from aloha_ir.dialects import nn
from aloha_ir.errors import PassError
from aloha_ir.weights import ConstTensor, weights_of
from passes.target import platform_of

PRESERVING = (nn.ActOp, nn.PoolOp, nn.BatchNormOp, nn.LrnOp, nn.PadOp, nn.AddOp, nn.MulOp,
              nn.DropoutOp, nn.ResizeOp)


def granularity(platform) -> int:
    g = 1
    for pe in platform.pes:
        if pe.kind == "conv-engine":
            per_col = max(1, pe.multipliers // 9)
            g = math.lcm(g, pe.grid[0], per_col * pe.grid[1])
    return g


def _round(c: int, multiple: int, direction: str) -> int:
    if direction == "up":
        return -(-c // multiple) * multiple
    return max(multiple, c // multiple * multiple)


class _Groups:
    def __init__(self):
        self.parent: dict[SSAValue, SSAValue] = {}

    def find(self, v: SSAValue) -> SSAValue:
        self.parent.setdefault(v, v)
        while self.parent[v] is not v:
            self.parent[v] = self.parent[self.parent[v]]
            v = self.parent[v]
        return v

    def union(self, a: SSAValue, b: SSAValue) -> None:
        self.parent[self.find(a)] = self.find(b)


def _data_operands(op: Operation) -> list[SSAValue]:
    return [v for v in op.operands if not isinstance(v.owner, nn.ConstOp)]


def _resize(t: ConstTensor, axis: int, new: int) -> ConstTensor:
    shape = list(t.shape)
    old = shape[axis]
    shape[axis] = new
    if t.array is None:  # splat and seeded random keep their kind
        return ConstTensor(tuple(shape), splat=t.splat, random=t.random)
    a = t.array
    if new <= old:
        return ConstTensor.of(np.take(a, range(new), axis=axis))
    pad = [(0, 0)] * a.ndim
    pad[axis] = (0, new - old)
    return ConstTensor.of(np.pad(a, pad))


def plan_widths(graph: nn.GraphOp, multiple: int, direction: str) -> dict[SSAValue, int]:
    """New channel count for every value whose width changes (by group, as the docstring says)."""
    groups = _Groups()
    rank4 = [op for op in graph.ops if not isinstance(op, (nn.ConstOp, nn.OutputOp))
             and op.results and len(nn.shape_of(op.results[0])) == 4]
    for op in rank4:
        groups.find(op.results[0])
        if isinstance(op, PRESERVING):
            for v in _data_operands(op):
                groups.union(v, op.results[0])
    fixed = set()
    for op in rank4:
        r = op.results[0]
        ok_source = isinstance(op, PRESERVING) or (isinstance(op, nn.ConvOp) and
                                                   op.prop_int("group", 1) == 1)
        if isinstance(op, nn.PoolOp) and op.kind.data.startswith("global"):
            ok_source = True
        if not ok_source:
            fixed.add(groups.find(r))
        for use in r.uses:
            user = use.operation
            fine = isinstance(user, PRESERVING) or (
                isinstance(user, nn.ConvOp) and use.index == 0 and user.prop_int("group", 1) == 1)
            if isinstance(user, nn.FlattenOp):
                fine = all(isinstance(u.operation, nn.DenseOp) and u.index == 0
                           for u in user.output.uses)
            if not fine:
                fixed.add(groups.find(r))
    widths: dict[SSAValue, int] = {}
    for op in rank4:
        r = op.results[0]
        root = groups.find(r)
        if root in fixed:
            continue
        c = nn.shape_of(r)[1]
        new = _round(c, multiple, direction)
        if new != c:
            widths[r] = new
    return widths


def align_graph(module, graph: nn.GraphOp, multiple: int, direction: str) -> dict[str, tuple]:
    widths = plan_widths(graph, multiple, direction)
    store = weights_of(module)
    changed: dict[str, tuple] = {}

    def width(v: SSAValue) -> int:
        return widths.get(v, nn.shape_of(v)[1])

    def const_operand(op: Operation, index: int, axis: int, new: int) -> None:
        v = op.operands[index]
        t = const_tensor(v.owner, store)
        if t.shape[axis] == new:
            return
        c = make_const(_resize(t, axis, new), store, f"{nn.block_label(op) or op.name}.aligned")
        graph.body.block.insert_op_before(c, op)
        ops = list(op.operands)
        ops[index] = c.results[0]
        op.operands = ops
        if not v.uses:
            v.owner.detach()
            v.owner.erase()

    for op in list(graph.ops):
        if isinstance(op, nn.ConstOp) or not op.results:
            continue
        old = op.results[0]
        if isinstance(op, nn.ConvOp):  # the input may have changed even if the output keeps
            cout = width(old)
            group = op.prop_int("group", 1)
            const_operand(op, 1, 0, cout)
            const_operand(op, 1, 1, nn.shape_of(op.input)[1] // group)
            if op.bias is not None:
                const_operand(op, 2, 0, cout)
            if old not in widths:
                continue
        elif isinstance(op, nn.DenseOp):
            src = op.input.owner
            if not isinstance(src, nn.FlattenOp) or src.input not in widths:
                continue
            x = nn.shape_of(src.input)
            t = const_tensor(op.weight.owner, store)
            c_new, hw = widths[src.input], x[2] * x[3]
            c_old = t.shape[1] // hw
            if c_old == c_new:
                continue
            w3 = t.reshape((t.shape[0], c_old, hw))
            new_w = _resize(w3, 1, c_new).reshape((t.shape[0], c_new * hw))
            c = make_const(new_w, store, f"{nn.block_label(op) or 'dense'}.aligned")
            graph.body.block.insert_op_before(c, op)
            prev = op.weight
            ops = list(op.operands)
            ops[1] = c.results[0]
            op.operands = ops
            if not prev.uses:
                prev.owner.detach()
                prev.owner.erase()
            continue  # dense output is unchanged
        elif isinstance(op, PRESERVING):
            if old not in widths:
                continue
            new = width(old)
            for i, v in enumerate(op.operands):
                if isinstance(v.owner, nn.ConstOp):
                    shape = nn.shape_of(v)
                    axis = 1 if len(shape) == 4 else 0
                    if len(shape) >= 1 and shape[axis] not in (1, new):
                        const_operand(op, i, axis, new)
        elif not isinstance(op, nn.FlattenOp):
            continue
        shape = list(nn.shape_of(old))
        if isinstance(op, nn.FlattenOp):
            x = nn.shape_of(op.input)
            if op.input not in widths:
                continue
            shape = [x[0], widths[op.input] * x[2] * x[3]]
        else:
            shape[1] = width(old)
        new_type = TensorType(old.type.get_element_type(), shape)
        clone = type(op).create(operands=list(op.operands), result_types=[new_type],
                                properties=dict(op.properties), attributes=dict(op.attributes))
        graph.body.block.insert_op_before(clone, op)
        old.replace_all_uses_with(clone.results[0])
        if old in widths:
            widths[clone.results[0]] = widths.pop(old)
        if isinstance(op, nn.ConvOp):
            changed[nn.block_label(op) or op.name] = (nn.shape_of(old)[1], shape[1])
        op.detach()
        op.erase()
    return changed


@dataclass(frozen=True)
class AlignToArchPass(ModulePass):
    """Round conv widths to the target's channel granularity (direction=up|down)."""

    name = "align-to-arch"

    target: str = ""
    direction: str = "up"
    multiple: int = 0

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.direction not in ("up", "down"):
            raise PassError(f"align-to-arch: direction must be up or down, got '{self.direction}'")
        multiple = self.multiple or granularity(platform_of(ctx, self.target, self.name))
        if multiple < 1:
            raise PassError("align-to-arch: multiple must be >= 1")
        changed = {}
        for g in [g for g in op.ops if isinstance(g, nn.GraphOp)]:
            changed.update(align_graph(op, g, multiple, self.direction))
        record_analysis(ctx, self.name, changed)
