"""`canonicalize`: the nn graph in the form every later pass expects.

Rewrites, each preserving the network's function (tests check against onnxruntime):
- drop nn.dropout (inference) and reshapes to the same shape;
- merge per-channel constant mul/add into the producing conv, dense or batchnorm (densenet's and
  inception_v2's BN written as Mul/Add with Unsqueezed constants, mnist-8's bias adds);
- fold batch normalisation into the producing conv (or dense); a BN that cannot be folded (densenet's
  pre-activation BN after a concat) is reduced to scale-shift form (scale, bias);
- fuse relu / leaky_relu / clip into the producing conv, dense, add, batchnorm or pool;
- collapse reshape chains; recognise ShuffleNet's reshape-transpose-reshape as nn.channel_shuffle;
- fold a zero pad of H and W into the conv (or count-including average pool) it feeds;
- fold ops whose operands are all constants, and drop dead ops.
On a quantized graph (an imported QDQ model) every rewrite keeps the formats its types give: a fused
producer takes the format of the op it absorbs, a folded bias the accumulator's (aloha_ir.fixedpoint);
a mul or batchnorm is not folded (it would change the weights' format), nor a data movement between
two formats removed (it requantizes).
Splat constants stay splats whenever the arithmetic allows (all light models' weights are splats).

Each rewrite is an xDSL RewritePattern; a GreedyRewritePatternApplier tries them on an op in the
order of `rewrite_patterns` and a PatternRewriteWalker applies them until none matches, however long
the chain of rewrites that enable one another. Dead ops go in a walk of their own after that.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, StringAttr, TensorType
from xdsl.ir import Operation, SSAValue
from xdsl.pattern_rewriter import (GreedyRewritePatternApplier, PatternRewriter,
                                   PatternRewriteWalker, RewritePattern, op_type_rewrite_pattern)
from xdsl.rewriter import InsertPoint

from aloha_ir import fixedpoint as fp
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
                canonicalize_graph(graph, Rewrites(store, stats), self.fold_batchnorm,
                                   self.fuse_activations)
        _drop_unreferenced(op, store)
        record_reports(ctx, self.name, reports)


def canonicalize_graph(graph: nn.GraphOp, rw: Rewrites, fold_batchnorm: bool = True,
                       fuse_activations: bool = True) -> None:
    """Rewrite `graph` to the fixpoint of the patterns, then remove the ops nothing uses.

    Dead ops go in a walk of their own, after the fixpoint, so that an op the patterns rewrite
    (a dropout nothing reads, say) is counted as that rewrite, not as dead."""
    patterns = rewrite_patterns(rw, fold_batchnorm, fuse_activations)
    PatternRewriteWalker(GreedyRewritePatternApplier(patterns, dce_enabled=False)) \
        .rewrite_region(graph.body)
    PatternRewriteWalker(RemoveDeadOp(rw), walk_reverse=True).rewrite_region(graph.body)


def rewrite_patterns(rw: Rewrites, fold_batchnorm: bool = True,
                     fuse_activations: bool = True) -> list[RewritePattern]:
    """The patterns, in the order they are tried on one op (the first that rewrites wins)."""
    patterns: list[RewritePattern] = [
        RemoveDropout(rw), FoldConstantReshape(rw), RemoveIdentityReshape(rw),
        CollapseReshapeChain(rw), FuseChannelShuffle(rw), FoldPadIntoWindow(rw),
        FoldConstantAffine(rw), FoldAffineIntoProducer(rw)]
    if fold_batchnorm:
        patterns.append(FoldBatchNorm(rw))
    patterns.append(BatchNormToScaleShift(rw))
    if fuse_activations:
        patterns.append(FuseActivation(rw))
    return patterns


def _drop_unreferenced(module: ModuleOp, store: WeightStore) -> None:
    """Release blobs no nn.const references any more, so memory stays near the live weights."""
    live = {o.blob.data for o in module.walk() if isinstance(o, nn.ConstOp) and o.blob is not None}
    for key in [k for k in store.arrays if k not in live]:
        del store.arrays[key]


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


def _same_format(*values: SSAValue) -> bool:
    """The values have one format (or are all float): moving data between them needs no
    requantization."""
    return len({fp.format_of(v) for v in values}) == 1


def _hint(op: Operation, suffix: str) -> str:
    name = op.attributes.get("name")
    return f"{name.data if isinstance(name, StringAttr) else op.name}.{suffix}"


@dataclass
class Rewrites:
    """What the patterns share: the weight store constants live in, and the per-graph counts the
    pass reports. The helpers edit the IR through the rewriter, so the walker sees every change."""

    store: WeightStore
    stats: dict[str, int]

    def count(self, what: str) -> None:
        self.stats[what] = self.stats.get(what, 0) + 1

    def value_of(self, v: SSAValue) -> ConstTensor:
        return const_tensor(v.owner, self.store)

    def new_const(self, rewriter: PatternRewriter, value: ConstTensor, before: Operation,
                  hint: str) -> SSAValue:
        op = make_const(value, self.store, hint)
        rewriter.insert(op, InsertPoint.before(before))
        return op.results[0]

    def replace(self, rewriter: PatternRewriter, op: Operation, value: SSAValue) -> None:
        """Uses of `op`'s result read `value`; `op` goes (not `rewriter.replace`, which would pass
        the result's name hint on to `value`)."""
        rewriter.replace_all_uses_with(op.results[0], value)
        self.erase(rewriter, op)

    @staticmethod
    def erase_if_dead_const(rewriter: PatternRewriter, value: SSAValue) -> None:
        owner = value.owner
        if isinstance(owner, nn.ConstOp) and not value.uses and owner.parent is not None:
            rewriter.erase(owner)

    def erase(self, rewriter: PatternRewriter, op: Operation) -> None:
        operands = list(op.operands)
        rewriter.erase(op)
        for v in operands:  # constants that lost their last user go too
            self.erase_if_dead_const(rewriter, v)

    def set_operand(self, rewriter: PatternRewriter, op: Operation, index: int,
                    value: SSAValue) -> None:
        old = op.operands[index]
        ops = list(op.operands)
        ops[index] = value
        op.operands = ops
        rewriter.notify_op_modified(op)
        self.erase_if_dead_const(rewriter, old)

    def add_to_bias(self, rewriter: PatternRewriter, producer: Operation,
                    vec: ConstTensor) -> None:
        i = 2  # conv/dense (input, weight, bias?) and batchnorm (input, scale, bias, ...)
        if len(producer.operands) > i:
            bias = self.value_of(producer.operands[i]).elementwise(vec, np.add)
            self.set_operand(rewriter, producer, i,
                             self.new_const(rewriter, bias, producer, _hint(producer, "bias")))
        else:
            new = self.new_const(rewriter, vec, producer, _hint(producer, "bias"))
            producer.operands = list(producer.operands) + [new]
            rewriter.notify_op_modified(producer)

    def scale_producer(self, rewriter: PatternRewriter, producer: Operation,
                       vec: ConstTensor) -> None:
        """Multiply the producer's output per channel by `vec`: scale weight (or BN scale) and bias."""
        if isinstance(producer, nn.BatchNormOp):
            if len(producer.params) == 4:
                self.to_scale_shift(rewriter, producer)
            scale = self.value_of(producer.operands[1]).elementwise(vec, np.multiply)
            bias = self.value_of(producer.operands[2]).elementwise(vec, np.multiply)
            self.set_operand(rewriter, producer, 1,
                             self.new_const(rewriter, scale, producer, _hint(producer, "scale")))
            self.set_operand(rewriter, producer, 2,
                             self.new_const(rewriter, bias, producer, _hint(producer, "bias")))
            return
        w = self.value_of(producer.operands[1])
        per_row = vec.reshape((vec.shape[0],) + (1,) * (len(w.shape) - 1))
        self.set_operand(rewriter, producer, 1,
                         self.new_const(rewriter, w.elementwise(per_row, np.multiply), producer,
                                        _hint(producer, "weight")))
        if len(producer.operands) > 2:
            b = self.value_of(producer.operands[2]).elementwise(vec, np.multiply)
            self.set_operand(rewriter, producer, 2,
                             self.new_const(rewriter, b, producer, _hint(producer, "bias")))

    @staticmethod
    def quantize_bias(rewriter: PatternRewriter, producer: Operation) -> None:
        """Give a quantized conv's or dense's float bias the accumulator's format: 32 bits at the
        input's frac plus the weight's, per output channel (as the quantize pass gives it)."""
        bias, w = producer.operands[2], producer.operands[1]
        acc = fp.format_of(producer.operands[0]).frac + np.atleast_1d(fp.const_fracs(w.owner))
        acc = np.broadcast_to(acc, nn.shape_of(bias)[:1])
        rewriter.replace_value_with_new_type(bias, TensorType(
            fp.Fixed(fp.BIAS_BITS, int(acc.min())).type(), nn.shape_of(bias)))
        fp.set_const_fracs(producer.operands[2].owner, acc)

    @staticmethod
    def retype_like(rewriter: PatternRewriter, value: SSAValue, like: SSAValue) -> SSAValue:
        """`value` with the type of `like` (a producer taking the format of what it absorbs)."""
        if value.type == like.type:
            return value
        return rewriter.replace_value_with_new_type(value, like.type)

    def bn_scale_shift(self, bn: nn.BatchNormOp) -> tuple[ConstTensor, ConstTensor]:
        params = [self.value_of(p) for p in bn.params]
        if len(params) == 2:
            return params[0], params[1]
        scale, bias, mean, var = params
        eps = np.float32(bn.prop_float("epsilon"))
        factor = scale.elementwise(var, lambda s, v: s / np.sqrt(v + eps))
        shift = bias.elementwise(mean.elementwise(factor, np.multiply), np.subtract)
        return factor, shift

    def to_scale_shift(self, rewriter: PatternRewriter, bn: nn.BatchNormOp) -> None:
        factor, shift = self.bn_scale_shift(bn)
        new = [bn.input, self.new_const(rewriter, factor, bn, _hint(bn, "scale")),
               self.new_const(rewriter, shift, bn, _hint(bn, "bias"))]
        old = list(bn.params)
        bn.operands = new
        rewriter.notify_op_modified(bn)
        for v in old:
            self.erase_if_dead_const(rewriter, v)


@dataclass
class CanonicalizePattern(RewritePattern):
    """A canonicalize rewrite: edits the graph through the shared `Rewrites` and counts itself."""

    rw: Rewrites


# --- dropout and reshapes -------------------------------------------------------------------------

class RemoveDropout(CanonicalizePattern):
    """nn.dropout is the identity at inference."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: nn.DropoutOp, rewriter: PatternRewriter) -> None:
        if not _same_format(op.input, op.output):
            return
        self.rw.replace(rewriter, op, op.input)
        self.rw.count("dropout-removed")


class FoldConstantReshape(CanonicalizePattern):
    """A reshape or flatten of a constant is a constant of the new shape."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: nn.ReshapeOp | nn.FlattenOp,
                          rewriter: PatternRewriter) -> None:
        src = op.operands[0]
        if not _is_const(src):
            return
        value = self.rw.value_of(src).reshape(op.out_shape())
        self.rw.replace(rewriter, op, self.rw.new_const(rewriter, value, op, _hint(op, "folded")))
        self.rw.count("constant-folded")


class RemoveIdentityReshape(CanonicalizePattern):
    """A reshape or flatten to the shape it already has."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: nn.ReshapeOp | nn.FlattenOp,
                          rewriter: PatternRewriter) -> None:
        src = op.operands[0]
        if nn.shape_of(src) != op.out_shape() or not _same_format(src, op.results[0]):
            return
        self.rw.replace(rewriter, op, src)
        self.rw.count("reshape-removed")


class CollapseReshapeChain(CanonicalizePattern):
    """reshape(reshape(x)) with a single-use inner one: one reshape of x."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: nn.ReshapeOp | nn.FlattenOp,
                          rewriter: PatternRewriter) -> None:
        src = op.operands[0]
        producer = src.owner
        if not isinstance(producer, (nn.ReshapeOp, nn.FlattenOp)) or not src.has_one_use() or \
                not _same_format(producer.operands[0], src, op.results[0]):
            return
        new = nn.ReshapeOp.create(operands=[producer.operands[0]],
                                  result_types=[op.results[0].type],
                                  attributes=dict(op.attributes))
        rewriter.insert(new, InsertPoint.before(op))
        self.rw.replace(rewriter, op, new.results[0])
        self.rw.erase(rewriter, producer)
        self.rw.count("reshape-chain-collapsed")


class FuseChannelShuffle(CanonicalizePattern):
    """reshape [N,C,H,W]->[N,g,C/g,H,W], transpose (0,2,1,3,4), reshape back: channel shuffle."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: nn.TransposeOp, rewriter: PatternRewriter) -> None:
        src = op.input
        pre = src.owner
        post = op.output.get_user_of_unique_use()
        if op.prop_ints("perm") != (0, 2, 1, 3, 4) or not isinstance(pre, nn.ReshapeOp) or \
                not isinstance(post, nn.ReshapeOp) or not src.has_one_use() or \
                not _same_format(pre.input, src, op.output, post.results[0]):
            return
        x = pre.input
        xs, mid = nn.shape_of(x), nn.shape_of(src)
        if len(xs) != 4 or post.out_shape() != xs or \
                mid != (xs[0], mid[1], xs[1] // max(mid[1], 1), xs[2], xs[3]) or \
                mid[1] * mid[2] != xs[1]:
            return
        new = nn.ChannelShuffleOp.create(operands=[x], result_types=[post.results[0].type],
                                         properties={"groups": nn.int_attr(mid[1])},
                                         attributes=dict(post.attributes))
        rewriter.insert(new, InsertPoint.before(post))
        self.rw.replace(rewriter, post, new.results[0])
        self.rw.erase(rewriter, op)
        self.rw.erase(rewriter, pre)
        self.rw.count("channel-shuffle")


class FoldPadIntoWindow(CanonicalizePattern):
    """A zero constant nn.pad of H and W feeding one nn.conv (or an average pool counting its
    padding) is that op's own zero padding: the pad goes into its pads (torch's ZeroPad2d and
    ConstantPad2d(0), TensorFlow's explicit Pad before a VALID conv)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: nn.ConvOp | nn.PoolOp, rewriter: PatternRewriter) -> None:
        pad = op.input.owner
        if not isinstance(pad, nn.PadOp) or not op.input.has_one_use() or \
                pad.mode.data != "constant" or pad.prop_float("value") != 0.0:
            return
        p = pad.prop_ints("pads")
        if len(p) != 8 or any(p[i] for i in (0, 1, 4, 5)):
            return
        if isinstance(op, nn.PoolOp) and (op.is_global or op.kind.data != "avg" or
                                          not op.prop_int("count_include_pad") or
                                          op.prop_int("ceil_mode")):
            return
        kernel, _, pads, dilations = op.window()
        merged = (pads[0] + p[2], pads[1] + p[3], pads[2] + p[6], pads[3] + p[7])
        if isinstance(op, nn.PoolOp) and (max(merged[0], merged[2]) >= kernel[0] * dilations[0] or
                                          max(merged[1], merged[3]) >= kernel[1] * dilations[1]):
            return  # a pool's pad must stay smaller than its window
        new = op.clone_without_regions()
        new.operands = [pad.input, *new.operands[1:]]
        new.properties["pads"] = nn.ints_attr(merged)
        rewriter.insert(new, InsertPoint.before(op))
        self.rw.replace(rewriter, op, new.results[0])
        self.rw.erase(rewriter, pad)
        self.rw.count("pad-folded")


# --- affine folding -------------------------------------------------------------------------------

class FoldConstantAffine(CanonicalizePattern):
    """nn.add / nn.mul of two constants is a constant."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: nn.AddOp | nn.MulOp, rewriter: PatternRewriter) -> None:
        lhs, rhs = op.operands
        if not (_is_const(lhs) and _is_const(rhs)):
            return
        fn = np.add if isinstance(op, nn.AddOp) else np.multiply
        value = self.rw.value_of(lhs).elementwise(self.rw.value_of(rhs), fn)
        self.rw.replace(rewriter, op, self.rw.new_const(rewriter, value, op, _hint(op, "folded")))
        self.rw.count("constant-folded")


class FoldAffineIntoProducer(CanonicalizePattern):
    """A per-channel constant add (mul) after a conv, dense or batchnorm goes into its bias
    (its weight and bias)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: nn.AddOp | nn.MulOp, rewriter: PatternRewriter) -> None:
        lhs, rhs = op.operands
        if _is_const(lhs):
            lhs, rhs = rhs, lhs
        if not _is_const(rhs) or _is_const(lhs) or getattr(op, "activation", None) is not None:
            return
        producer = lhs.owner
        if not isinstance(producer, (nn.ConvOp, nn.DenseOp, nn.BatchNormOp)) or \
                not lhs.has_one_use() or producer.properties.get("activation") is not None:
            return
        out_shape = op.out_shape()
        if out_shape != nn.shape_of(lhs):
            return  # broadcasting widens the tensor: not a per-channel affine
        vec = _channel_vector(self.rw.value_of(rhs), out_shape)
        quantized = fp.format_of(op.output) is not None
        if vec is None or (quantized and (isinstance(op, nn.MulOp) or
                                          isinstance(producer, nn.BatchNormOp))):
            return
        if isinstance(op, nn.AddOp):
            self.rw.add_to_bias(rewriter, producer, vec)
            if quantized:
                self.rw.quantize_bias(rewriter, producer)
                lhs = self.rw.retype_like(rewriter, lhs, op.output)
            self.rw.count("add-folded")
        else:
            self.rw.scale_producer(rewriter, producer, vec)
            self.rw.count("mul-folded")
        self.rw.replace(rewriter, op, lhs)


# --- batch normalisation --------------------------------------------------------------------------

class FoldBatchNorm(CanonicalizePattern):
    """A constant batchnorm after an activation-free conv or dense goes into its weight and bias
    (the batchnorm's fused activation moves onto the producer)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, bn: nn.BatchNormOp, rewriter: PatternRewriter) -> None:
        producer = bn.input.owner
        if not all(_is_const(p) for p in bn.params) or \
                not isinstance(producer, (nn.ConvOp, nn.DenseOp)) or not bn.input.has_one_use() \
                or producer.properties.get("activation") is not None or \
                fp.format_of(bn.output) is not None:
            return
        factor, shift = self.rw.bn_scale_shift(bn)
        self.rw.scale_producer(rewriter, producer, factor)
        self.rw.add_to_bias(rewriter, producer, shift)
        for key in ("activation", "act_params"):
            if key in bn.properties:
                producer.properties[key] = bn.properties[key]
        rewriter.notify_op_modified(producer)
        self.rw.replace(rewriter, bn, bn.input)
        self.rw.count("batchnorm-folded")


class BatchNormToScaleShift(CanonicalizePattern):
    """A constant batchnorm that cannot be folded: (scale, bias, mean, var) become (scale, bias)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, bn: nn.BatchNormOp, rewriter: PatternRewriter) -> None:
        if len(bn.params) != 4 or not all(_is_const(p) for p in bn.params) or \
                fp.format_of(bn.output) is not None:
            return
        self.rw.to_scale_shift(rewriter, bn)
        self.rw.count("batchnorm-scale-shift")


# --- activations and dead ops ---------------------------------------------------------------------

class FuseActivation(CanonicalizePattern):
    """relu / leaky_relu / clip after an activation-free conv, dense, add, batchnorm or pool
    becomes that op's fused activation."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, act: nn.ActOp, rewriter: PatternRewriter) -> None:
        kind = act.kind.data
        if kind not in nn.FUSABLE_ACTIVATIONS:
            return
        producer = act.input.owner
        if not isinstance(producer, (nn.ConvOp, nn.DenseOp, nn.AddOp, nn.BatchNormOp, nn.PoolOp)) \
                or not act.input.has_one_use() or producer.properties.get("activation") is not None:
            return
        producer.properties["activation"] = StringAttr(kind)
        if act.params is not None:
            producer.properties["act_params"] = act.params
        rewriter.notify_op_modified(producer)
        self.rw.replace(rewriter, act, self.rw.retype_like(rewriter, act.input, act.output))
        self.rw.count(f"{kind}-fused")


class RemoveDeadOp(CanonicalizePattern):
    """An op (other than the graph's inputs and output) whose results nothing reads."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /) -> None:
        if not isinstance(op, nn.NnOp) or isinstance(op, (nn.OutputOp, nn.InputOp)) or \
                any(r.uses for r in op.results):
            return
        rewriter.erase(op)
        self.rw.count("dead-removed")
