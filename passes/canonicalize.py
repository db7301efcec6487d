"""`canonicalize`: the nn graph in the form every later pass expects.

Rewrites, each preserving the network's function (tests check against onnxruntime):
- drop nn.dropout (inference) and reshapes to the same shape;
- merge per-channel constant mul/add into the producing conv, dense or batchnorm (densenet's and
  inception_v2's BN written as Mul/Add with Unsqueezed constants, mnist-8's bias adds);
- fold batch normalisation into the producing conv (or dense); a BN that cannot be folded (densenet's
  pre-activation BN after a concat) is reduced to scale-shift form (scale, bias);
- fuse relu / leaky_relu / clip into the producing conv, dense, add, batchnorm or pool;
- collapse reshape chains; recognise ShuffleNet's reshape-transpose-reshape as nn.channel_shuffle;
- fold ops whose operands are all constants, and drop dead ops.
Splat constants stay splats whenever the arithmetic allows (all light models' weights are splats).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.ir import Operation, SSAValue

from aloha_ir.analysis import NN, Requires
from aloha_ir.consts import const_tensor, make_const
from aloha_ir.context import record_reports
from aloha_ir.dialects import nn
from aloha_ir.passmanager import TransformPass
from aloha_ir.weights import ConstTensor, WeightStore, weights_of


@dataclass(frozen=True)
class CanonicalizePass(TransformPass):
    """Fold BN/affine constants into convs, fuse activations, drop dropout, simplify reshapes."""

    name = "canonicalize"
    requires = Requires(level=NN)

    fold_batchnorm: bool = True
    fuse_activations: bool = True

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        store = weights_of(op)
        reports: dict[str, dict[str, int]] = {}
        for graph in op.walk():
            if isinstance(graph, nn.GraphOp):
                stats = reports.setdefault(graph.sym_name.data, {})
                _Canonicalizer(graph, store, stats, self.fold_batchnorm,
                               self.fuse_activations).run()
        _drop_unreferenced(op, store)
        record_reports(ctx, self.name, reports)


def _drop_unreferenced(module: ModuleOp, store: WeightStore) -> None:
    """Release blobs no nn.const references any more, so memory stays near the live weights."""
    live = {o.blob.data for o in module.walk() if isinstance(o, nn.ConstOp) and o.blob is not None}
    for key in [k for k in store.arrays if k not in live]:
        del store.arrays[key]


def _single_user(value: SSAValue) -> Operation | None:
    return value.get_user_of_unique_use()


def _is_const(value: SSAValue) -> bool:
    return isinstance(value.owner, nn.ConstOp)


def _channel_vector(c: ConstTensor, out_shape: tuple[int, ...]) -> ConstTensor | None:
    """`c` as a [C] vector if, broadcast against `out_shape` (NC...), it varies only along axis 1."""
    rank = len(out_shape)
    if len(c.shape) > rank or rank < 2:
        return None
    full = (1,) * (rank - len(c.shape)) + tuple(c.shape)
    if any(d != 1 for i, d in enumerate(full) if i != 1):
        return None
    channels = out_shape[1]
    if full[1] == channels:
        return c.reshape((channels,))
    if full[1] == 1:
        if c.splat is not None:
            return ConstTensor.full((channels,), c.splat)
        return ConstTensor.of(np.full((channels,), c.materialize().reshape(-1)[0], np.float32))
    return None


class _Canonicalizer:
    def __init__(self, graph: nn.GraphOp, store: WeightStore, stats: dict[str, int],
                 fold_bn: bool, fuse_act: bool):
        self.graph = graph
        self.block = graph.body.block
        self.store = store
        self.stats = stats
        self.fold_bn = fold_bn
        self.fuse_act = fuse_act

    def count(self, what: str) -> None:
        self.stats[what] = self.stats.get(what, 0) + 1

    # --- utilities --------------------------------------------------------------------------------
    def value_of(self, v: SSAValue) -> ConstTensor:
        return const_tensor(v.owner, self.store)

    def new_const(self, value: ConstTensor, before: Operation, hint: str) -> SSAValue:
        op = make_const(value, self.store, hint)
        self.block.insert_op_before(op, before)
        return op.results[0]

    def replace(self, op: Operation, value: SSAValue) -> None:
        op.results[0].replace_all_uses_with(value)
        self.erase(op)

    @staticmethod
    def erase_if_dead_const(value: SSAValue) -> None:
        owner = value.owner
        if isinstance(owner, nn.ConstOp) and not value.uses and owner.parent is not None:
            owner.detach()
            owner.erase()

    def erase(self, op: Operation) -> None:
        operands = list(op.operands)
        op.detach()
        op.erase()
        for v in operands:  # constants that lost their last user go too
            self.erase_if_dead_const(v)

    def set_operand(self, op: Operation, index: int, value: SSAValue) -> None:
        old = op.operands[index]
        ops = list(op.operands)
        ops[index] = value
        op.operands = ops
        self.erase_if_dead_const(old)

    @staticmethod
    def hint(op: Operation, suffix: str) -> str:
        name = op.attributes.get("name")
        return f"{name.data if isinstance(name, StringAttr) else op.name}.{suffix}"

    # --- driver -----------------------------------------------------------------------------------
    def run(self) -> None:
        for _ in range(8):  # a few sweeps reach the fixpoint (each rewrite is local)
            changed = False
            for op in list(self.block.ops):
                if op.parent is None:
                    continue
                if self.rewrite(op):
                    changed = True
            if not changed:
                break
        self.drop_dead()

    def rewrite(self, op: Operation) -> bool:
        if isinstance(op, nn.DropoutOp):
            self.replace(op, op.input)
            self.count("dropout-removed")
            return True
        if isinstance(op, (nn.ReshapeOp, nn.FlattenOp)):
            return self.simplify_reshape(op)
        if isinstance(op, nn.TransposeOp):
            return self.channel_shuffle(op)
        if isinstance(op, (nn.AddOp, nn.MulOp)):
            return self.fold_affine(op)
        if isinstance(op, nn.BatchNormOp):
            return self.batchnorm(op)
        if isinstance(op, nn.ActOp) and self.fuse_act:
            return self.fuse_activation(op)
        return False

    # --- reshapes ---------------------------------------------------------------------------------
    def simplify_reshape(self, op: nn.NnOp) -> bool:
        src = op.operands[0]
        out_shape = op.out_shape()
        if _is_const(src):
            self.replace(op, self.new_const(self.value_of(src).reshape(out_shape), op,
                                            self.hint(op, "folded")))
            self.count("constant-folded")
            return True
        if nn.shape_of(src) == out_shape:
            self.replace(op, src)
            self.count("reshape-removed")
            return True
        producer = src.owner
        if isinstance(producer, (nn.ReshapeOp, nn.FlattenOp)) and src.has_one_use():
            new = nn.ReshapeOp.create(operands=[producer.operands[0]],
                                      result_types=[op.results[0].type],
                                      attributes=dict(op.attributes))
            self.block.insert_op_before(new, op)
            self.replace(op, new.results[0])
            self.erase(producer)
            self.count("reshape-chain-collapsed")
            return True
        return False

    def channel_shuffle(self, op: nn.TransposeOp) -> bool:
        """reshape [N,C,H,W]->[N,g,C/g,H,W], transpose (0,2,1,3,4), reshape back: channel shuffle."""
        src = op.input
        pre = src.owner
        post = _single_user(op.output)
        if op.prop_ints("perm") != (0, 2, 1, 3, 4) or not isinstance(pre, nn.ReshapeOp) or \
                not isinstance(post, nn.ReshapeOp) or not src.has_one_use():
            return False
        x = pre.input
        xs, mid = nn.shape_of(x), nn.shape_of(src)
        if len(xs) != 4 or post.out_shape() != xs or \
                mid != (xs[0], mid[1], xs[1] // max(mid[1], 1), xs[2], xs[3]) or \
                mid[1] * mid[2] != xs[1]:
            return False
        new = nn.ChannelShuffleOp.create(operands=[x], result_types=[post.results[0].type],
                                         properties={"groups": nn.int_attr(mid[1])},
                                         attributes=dict(post.attributes))
        self.block.insert_op_before(new, post)
        self.replace(post, new.results[0])
        self.erase(op)
        self.erase(pre)
        self.count("channel-shuffle")
        return True

    # --- affine folding ---------------------------------------------------------------------------
    def fold_affine(self, op: nn.NnOp) -> bool:
        lhs, rhs = op.operands
        if _is_const(lhs) and _is_const(rhs):
            fn = np.add if isinstance(op, nn.AddOp) else np.multiply
            value = self.value_of(lhs).elementwise(self.value_of(rhs), fn)
            self.replace(op, self.new_const(value, op, self.hint(op, "folded")))
            self.count("constant-folded")
            return True
        if _is_const(lhs):
            lhs, rhs = rhs, lhs
        if not _is_const(rhs) or getattr(op, "activation", None) is not None:
            return False
        producer = lhs.owner
        if not isinstance(producer, (nn.ConvOp, nn.DenseOp, nn.BatchNormOp)) or \
                not lhs.has_one_use() or producer.properties.get("activation") is not None:
            return False
        out_shape = op.out_shape()
        if out_shape != nn.shape_of(lhs):
            return False  # broadcasting widens the tensor: not a per-channel affine
        vec = _channel_vector(self.value_of(rhs), out_shape)
        if vec is None:
            return False
        if isinstance(op, nn.AddOp):
            self.add_to_bias(producer, vec)
            self.count("add-folded")
        else:
            self.scale_producer(producer, vec)
            self.count("mul-folded")
        self.replace(op, lhs)
        return True

    def add_to_bias(self, producer: Operation, vec: ConstTensor) -> None:
        i = 2  # conv/dense (input, weight, bias?) and batchnorm (input, scale, bias, ...)
        if len(producer.operands) > i:
            bias = self.value_of(producer.operands[i]).elementwise(vec, np.add)
            self.set_operand(producer, i, self.new_const(bias, producer, self.hint(producer, "bias")))
        else:
            new = self.new_const(vec, producer, self.hint(producer, "bias"))
            producer.operands = list(producer.operands) + [new]

    def scale_producer(self, producer: Operation, vec: ConstTensor) -> None:
        """Multiply the producer's output per channel by `vec`: scale weight (or BN scale) and bias."""
        if isinstance(producer, nn.BatchNormOp):
            if len(producer.params) == 4:
                self.to_scale_shift(producer)
            scale = self.value_of(producer.operands[1]).elementwise(vec, np.multiply)
            bias = self.value_of(producer.operands[2]).elementwise(vec, np.multiply)
            self.set_operand(producer, 1, self.new_const(scale, producer, self.hint(producer, "scale")))
            self.set_operand(producer, 2, self.new_const(bias, producer, self.hint(producer, "bias")))
            return
        w = self.value_of(producer.operands[1])
        per_row = vec.reshape((vec.shape[0],) + (1,) * (len(w.shape) - 1))
        self.set_operand(producer, 1, self.new_const(w.elementwise(per_row, np.multiply), producer,
                                                     self.hint(producer, "weight")))
        if len(producer.operands) > 2:
            b = self.value_of(producer.operands[2]).elementwise(vec, np.multiply)
            self.set_operand(producer, 2, self.new_const(b, producer, self.hint(producer, "bias")))

    # --- batch normalisation ----------------------------------------------------------------------
    def bn_scale_shift(self, bn: nn.BatchNormOp) -> tuple[ConstTensor, ConstTensor]:
        params = [self.value_of(p) for p in bn.params]
        if len(params) == 2:
            return params[0], params[1]
        scale, bias, mean, var = params
        eps = np.float32(bn.prop_float("epsilon"))
        factor = scale.elementwise(var, lambda s, v: s / np.sqrt(v + eps))
        shift = bias.elementwise(mean.elementwise(factor, np.multiply), np.subtract)
        return factor, shift

    def to_scale_shift(self, bn: nn.BatchNormOp) -> None:
        factor, shift = self.bn_scale_shift(bn)
        new = [bn.input, self.new_const(factor, bn, self.hint(bn, "scale")),
               self.new_const(shift, bn, self.hint(bn, "bias"))]
        old = list(bn.params)
        bn.operands = new
        for v in old:
            self.erase_if_dead_const(v)

    def batchnorm(self, bn: nn.BatchNormOp) -> bool:
        producer = bn.input.owner
        if all(_is_const(p) for p in bn.params) and self.fold_bn and \
                isinstance(producer, (nn.ConvOp, nn.DenseOp)) and bn.input.has_one_use() and \
                producer.properties.get("activation") is None:
            factor, shift = self.bn_scale_shift(bn)
            self.scale_producer(producer, factor)
            self.add_to_bias(producer, shift)
            for key in ("activation", "act_params"):
                if key in bn.properties:
                    producer.properties[key] = bn.properties[key]
            self.replace(bn, bn.input)
            self.count("batchnorm-folded")
            return True
        if len(bn.params) == 4 and all(_is_const(p) for p in bn.params):
            self.to_scale_shift(bn)
            self.count("batchnorm-scale-shift")
            return True
        return False

    # --- activations ------------------------------------------------------------------------------
    def fuse_activation(self, act: nn.ActOp) -> bool:
        kind = act.kind.data
        if kind not in nn.FUSABLE_ACTIVATIONS:
            return False
        producer = act.input.owner
        if not isinstance(producer, (nn.ConvOp, nn.DenseOp, nn.AddOp, nn.BatchNormOp, nn.PoolOp)) \
                or not act.input.has_one_use() or producer.properties.get("activation") is not None:
            return False
        producer.properties["activation"] = StringAttr(kind)
        if act.params is not None:
            producer.properties["act_params"] = act.params
        self.replace(act, act.input)
        self.count(f"{kind}-fused")
        return True

    # --- cleanup ----------------------------------------------------------------------------------
    def drop_dead(self) -> None:
        for op in reversed(list(self.block.ops)):
            if isinstance(op, (nn.OutputOp, nn.InputOp)) or any(r.uses for r in op.results):
                continue
            op.detach()
            op.erase()
            self.count("dead-removed")
