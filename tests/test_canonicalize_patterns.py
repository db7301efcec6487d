"""canonicalize's rewrite patterns, each alone as text in / text out, and the walker's fixpoint.

Splat constants keep the expected IR readable and the folded values checkable by hand."""

from __future__ import annotations

import onnx
import pytest
from test_fuzz import tiny_onnx
from xdsl.pattern_rewriter import GreedyRewritePatternApplier, PatternRewriteWalker
from xdsl.utils.exceptions import VerifyException

from aloha_ir.dialects import nn
from aloha_ir.passmanager import PassManager
from aloha_ir.textio import parse_module, print_module, verify_module
from aloha_ir.verify import verify_fast
from aloha_ir.weights import attach_weights, WeightStore
from frontends.onnx import import_model
from passes.canonicalize import (BatchNormToScaleShift, CollapseReshapeChain, FoldAffineIntoProducer,
                                 FoldBatchNorm, FoldConstantAffine, FoldConstantReshape,
                                 FoldPadIntoWindow, FuseActivation, FuseChannelShuffle, RemoveDeadOp,
                                 RemoveDropout, RemoveIdentityReshape, Rewrites)

CONV = ("kernel = array<i64: 1, 1>, strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, "
        "dilations = array<i64: 1, 1>, group = 1 : i64")


def graph(body: str) -> str:
    lines = [line.strip() for line in body.strip().splitlines()]
    return "builtin.module {\n  nn.graph @net {\n" + "".join(f"    {line}\n" for line in lines) + \
        "  }\n}\n"


def run_alone(text: str, pattern: type) -> tuple[str, dict[str, int]]:
    """`text` after the walker applied `pattern` (and nothing else) to its fixpoint."""
    module = parse_module(text)
    store = WeightStore({})
    attach_weights(module, store)
    (net,) = [op for op in module.walk() if isinstance(op, nn.GraphOp)]
    rw = Rewrites(store, {})
    PatternRewriteWalker(GreedyRewritePatternApplier([pattern(rw)], dce_enabled=False)) \
        .rewrite_region(net.body)
    return print_module(module), rw.stats


CASES = [
    (RemoveDropout, """
        %x = nn.input {port = "x"} : tensor<1x4xf32>
        %d = nn.dropout %x {ratio = 5.000000e-01 : f64} : tensor<1x4xf32>
        nn.output %d {ports = ["y"]}""", """
        %x = nn.input {port = "x"} : tensor<1x4xf32>
        nn.output %x {ports = ["y"]}""", {"dropout-removed": 1}),
    (FoldConstantReshape, """
        %x = nn.input {port = "x"} : tensor<2x2xf32>
        %k = nn.const {splat = 2.000000e+00 : f32} : tensor<4xf32>
        %r = nn.reshape %k : tensor<2x2xf32>
        %s = nn.add %x, %r : tensor<2x2xf32>
        nn.output %s {ports = ["y"]}""", """
        %x = nn.input {port = "x"} : tensor<2x2xf32>
        %r = nn.const {splat = 2.000000e+00 : f32} : tensor<2x2xf32>
        %s = nn.add %x, %r : tensor<2x2xf32>
        nn.output %s {ports = ["y"]}""", {"constant-folded": 1}),
    (FoldPadIntoWindow, """
        %x = nn.input {port = "x"} : tensor<1x2x4x4xf32>
        %p = nn.pad %x {pads = array<i64: 0, 0, 1, 2, 0, 0, 1, 0>, mode = "constant", value = 0.000000e+00 : f64} : tensor<1x2x6x6xf32>
        %w = nn.const {splat = 5.000000e-01 : f32} : tensor<3x2x3x3xf32>
        %c = nn.conv %p, %w {kernel = array<i64: 3, 3>, strides = array<i64: 1, 1>, pads = array<i64: 0, 1, 0, 1>, dilations = array<i64: 1, 1>, group = 1 : i64, name = "conv"} : tensor<1x3x4x6xf32>
        %q = nn.pad %c {pads = array<i64: 0, 0, 1, 1, 0, 0, 0, 0>, mode = "constant", value = 0.000000e+00 : f64} : tensor<1x3x5x7xf32>
        %a = nn.pool %q {kind = "avg", kernel = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 1, 1>, dilations = array<i64: 1, 1>, count_include_pad = 1 : i64} : tensor<1x3x3x4xf32>
        nn.output %a {ports = ["y"]}""", """
        %x = nn.input {port = "x"} : tensor<1x2x4x4xf32>
        %w = nn.const {splat = 5.000000e-01 : f32} : tensor<3x2x3x3xf32>
        %c = nn.conv %x, %w {kernel = array<i64: 3, 3>, strides = array<i64: 1, 1>, pads = array<i64: 1, 3, 1, 1>, dilations = array<i64: 1, 1>, group = 1 : i64, name = "conv"} : tensor<1x3x4x6xf32>
        %a = nn.pool %c {kind = "avg", kernel = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, count_include_pad = 1 : i64} : tensor<1x3x3x4xf32>
        nn.output %a {ports = ["y"]}""", {"pad-folded": 2}),
    (RemoveIdentityReshape, """
        %x = nn.input {port = "x"} : tensor<1x4xf32>
        %r = nn.reshape %x : tensor<1x4xf32>
        nn.output %r {ports = ["y"]}""", """
        %x = nn.input {port = "x"} : tensor<1x4xf32>
        nn.output %x {ports = ["y"]}""", {"reshape-removed": 1}),
    (CollapseReshapeChain, """
        %x = nn.input {port = "x"} : tensor<2x8xf32>
        %a = nn.flatten %x {axis = 1 : i64} : tensor<2x8xf32>
        %b = nn.reshape %a : tensor<4x4xf32>
        %c = nn.reshape %b : tensor<1x16xf32>
        nn.output %c {ports = ["y"]}""", """
        %x = nn.input {port = "x"} : tensor<2x8xf32>
        %c = nn.reshape %x : tensor<1x16xf32>
        nn.output %c {ports = ["y"]}""", {"reshape-chain-collapsed": 2}),
    (FuseChannelShuffle, """
        %x = nn.input {port = "x"} : tensor<1x6x2x2xf32>
        %a = nn.reshape %x : tensor<1x2x3x2x2xf32>
        %t = nn.transpose %a {perm = array<i64: 0, 2, 1, 3, 4>} : tensor<1x3x2x2x2xf32>
        %b = nn.reshape %t : tensor<1x6x2x2xf32>
        nn.output %b {ports = ["y"]}""", """
        %x = nn.input {port = "x"} : tensor<1x6x2x2xf32>
        %b = nn.channel_shuffle %x {groups = 2 : i64} : tensor<1x6x2x2xf32>
        nn.output %b {ports = ["y"]}""", {"channel-shuffle": 1}),
    (FoldConstantAffine, """
        %x = nn.input {port = "x"} : tensor<1x3xf32>
        %p = nn.const {splat = 2.000000e+00 : f32} : tensor<1x3xf32>
        %q = nn.const {splat = 3.000000e+00 : f32} : tensor<3xf32>
        %m = nn.mul %p, %q : tensor<1x3xf32>
        %s = nn.add %x, %m : tensor<1x3xf32>
        nn.output %s {ports = ["y"]}""", """
        %x = nn.input {port = "x"} : tensor<1x3xf32>
        %m = nn.const {splat = 6.000000e+00 : f32} : tensor<1x3xf32>
        %s = nn.add %x, %m : tensor<1x3xf32>
        nn.output %s {ports = ["y"]}""", {"constant-folded": 1}),
    # x4 into the weight (0.5 -> 2), then +1 as a new bias (the conv had none)
    (FoldAffineIntoProducer, f"""
        %x = nn.input {{port = "x"}} : tensor<1x2x2x2xf32>
        %w = nn.const {{splat = 5.000000e-01 : f32}} : tensor<3x2x1x1xf32>
        %c = nn.conv %x, %w {{{CONV}}} : tensor<1x3x2x2xf32>
        %k = nn.const {{splat = 4.000000e+00 : f32}} : tensor<1x3x1x1xf32>
        %m = nn.mul %c, %k : tensor<1x3x2x2xf32>
        %b = nn.const {{splat = 1.000000e+00 : f32}} : tensor<3x1x1xf32>
        %s = nn.add %b, %m : tensor<1x3x2x2xf32>
        nn.output %s {{ports = ["y"]}}""", f"""
        %x = nn.input {{port = "x"}} : tensor<1x2x2x2xf32>
        %0 = nn.const {{splat = 2.000000e+00 : f32}} : tensor<3x2x1x1xf32>
        %1 = nn.const {{splat = 1.000000e+00 : f32}} : tensor<3xf32>
        %c = nn.conv %x, %0, %1 {{{CONV}}} : tensor<1x3x2x2xf32>
        nn.output %c {{ports = ["y"]}}""", {"mul-folded": 1, "add-folded": 1}),
    # factor = 2 / sqrt(4) = 1 keeps the weight; shift = 1 - 0.5 * 1 = 0.5; the relu moves over
    (FoldBatchNorm, f"""
        %x = nn.input {{port = "x"}} : tensor<1x2x2x2xf32>
        %w = nn.const {{splat = 5.000000e-01 : f32}} : tensor<3x2x1x1xf32>
        %c = nn.conv %x, %w {{{CONV}}} : tensor<1x3x2x2xf32>
        %g = nn.const {{splat = 2.000000e+00 : f32}} : tensor<3xf32>
        %be = nn.const {{splat = 1.000000e+00 : f32}} : tensor<3xf32>
        %mu = nn.const {{splat = 5.000000e-01 : f32}} : tensor<3xf32>
        %v = nn.const {{splat = 4.000000e+00 : f32}} : tensor<3xf32>
        %n = nn.batchnorm %c, %g, %be, %mu, %v {{epsilon = 0.000000e+00 : f64, activation = "relu"}} : tensor<1x3x2x2xf32>
        nn.output %n {{ports = ["y"]}}""", f"""
        %x = nn.input {{port = "x"}} : tensor<1x2x2x2xf32>
        %0 = nn.const {{splat = 5.000000e-01 : f32}} : tensor<3x2x1x1xf32>
        %1 = nn.const {{splat = 5.000000e-01 : f32}} : tensor<3xf32>
        %c = nn.conv %x, %0, %1 {{{CONV}, activation = "relu"}} : tensor<1x3x2x2xf32>
        nn.output %c {{ports = ["y"]}}""", {"batchnorm-folded": 1}),
    (BatchNormToScaleShift, """
        %x = nn.input {port = "x"} : tensor<1x3x2x2xf32>
        %g = nn.const {splat = 2.000000e+00 : f32} : tensor<3xf32>
        %be = nn.const {splat = 1.000000e+00 : f32} : tensor<3xf32>
        %mu = nn.const {splat = 5.000000e-01 : f32} : tensor<3xf32>
        %v = nn.const {splat = 4.000000e+00 : f32} : tensor<3xf32>
        %n = nn.batchnorm %x, %g, %be, %mu, %v {epsilon = 0.000000e+00 : f64} : tensor<1x3x2x2xf32>
        nn.output %n {ports = ["y"]}""", """
        %x = nn.input {port = "x"} : tensor<1x3x2x2xf32>
        %0 = nn.const {splat = 1.000000e+00 : f32} : tensor<3xf32>
        %1 = nn.const {splat = 5.000000e-01 : f32} : tensor<3xf32>
        %n = nn.batchnorm %x, %0, %1 {epsilon = 0.000000e+00 : f64} : tensor<1x3x2x2xf32>
        nn.output %n {ports = ["y"]}""", {"batchnorm-scale-shift": 1}),
    (FuseActivation, """
        %x = nn.input {port = "x"} : tensor<1x3xf32>
        %y = nn.input {port = "y"} : tensor<1x3xf32>
        %s = nn.add %x, %y : tensor<1x3xf32>
        %a = nn.act %s {kind = "clip", params = array<f32: 0.0, 6.0>} : tensor<1x3xf32>
        nn.output %a {ports = ["z"]}""", """
        %x = nn.input {port = "x"} : tensor<1x3xf32>
        %y = nn.input {port = "y"} : tensor<1x3xf32>
        %s = nn.add %x, %y {activation = "clip", act_params = array<f32: 0.000000e+00, 6.000000e+00>} : tensor<1x3xf32>
        nn.output %s {ports = ["z"]}""", {"clip-fused": 1}),
    (RemoveDeadOp, """
        %x = nn.input {port = "x"} : tensor<1x3xf32>
        %k = nn.const {splat = 2.000000e+00 : f32} : tensor<1x3xf32>
        %m = nn.mul %x, %k : tensor<1x3xf32>
        %a = nn.act %m {kind = "sigmoid"} : tensor<1x3xf32>
        nn.output %x {ports = ["y"]}""", """
        %x = nn.input {port = "x"} : tensor<1x3xf32>
        nn.output %x {ports = ["y"]}""", {"dead-removed": 3}),
]


@pytest.mark.parametrize("pattern, before, after, counts", CASES,
                         ids=[case[0].__name__ for case in CASES])
def test_each_pattern_alone_text_in_text_out(pattern, before, after, counts):
    text, stats = run_alone(graph(before), pattern)
    assert text == graph(after)
    assert stats == counts
    verify_module(parse_module(text))


@pytest.mark.parametrize("pattern, before", [
    (FuseActivation, """
        %x = nn.input {port = "x"} : tensor<1x3xf32>
        %y = nn.input {port = "y"} : tensor<1x3xf32>
        %s = nn.add %x, %y : tensor<1x3xf32>
        %a = nn.act %s {kind = "sigmoid"} : tensor<1x3xf32>
        %b = nn.act %s {kind = "relu"} : tensor<1x3xf32>
        nn.output %a, %b {ports = ["u", "v"]}"""),
    (FoldAffineIntoProducer, """
        %x = nn.input {port = "x"} : tensor<1x3xf32>
        %k = nn.const {splat = 2.000000e+00 : f32} : tensor<1x3xf32>
        %m = nn.mul %x, %k : tensor<1x3xf32>
        nn.output %m {ports = ["y"]}"""),
    (FuseChannelShuffle, """
        %x = nn.input {port = "x"} : tensor<1x6x2x2xf32>
        %a = nn.reshape %x : tensor<1x2x3x2x2xf32>
        %t = nn.transpose %a {perm = array<i64: 0, 1, 2, 4, 3>} : tensor<1x2x3x2x2xf32>
        %b = nn.reshape %t : tensor<1x6x2x2xf32>
        nn.output %b {ports = ["y"]}"""),
    (FoldPadIntoWindow, """
        %x = nn.input {port = "x"} : tensor<1x2x4x4xf32>
        %p = nn.pad %x {pads = array<i64: 0, 0, 1, 1, 0, 0, 1, 1>, mode = "constant", value = 5.000000e-01 : f64} : tensor<1x2x6x6xf32>
        %w = nn.const {splat = 5.000000e-01 : f32} : tensor<3x2x3x3xf32>
        %c = nn.conv %p, %w {kernel = array<i64: 3, 3>, strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, group = 1 : i64} : tensor<1x3x4x4xf32>
        %q = nn.pad %c {pads = array<i64: 0, 1, 1, 1, 0, 0, 1, 1>, mode = "constant", value = 0.000000e+00 : f64} : tensor<1x4x6x6xf32>
        %e = nn.pad %q {pads = array<i64: 0, 0, 1, 1, 0, 0, 1, 1>, mode = "edge", value = 0.000000e+00 : f64} : tensor<1x4x8x8xf32>
        %z = nn.pad %e {pads = array<i64: 0, 0, 1, 1, 0, 0, 1, 1>, mode = "constant", value = 0.000000e+00 : f64} : tensor<1x4x10x10xf32>
        %m = nn.pool %z {kind = "max", kernel = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>} : tensor<1x4x5x5xf32>
        nn.output %m {ports = ["y"]}"""),
], ids=["sigmoid-and-shared-producer", "mul-after-an-input", "other-transpose",
        "pads-a-conv-cannot-take"])
def test_a_pattern_leaves_what_it_does_not_match(pattern, before):
    text, stats = run_alone(graph(before), pattern)
    assert text == graph(before) and stats == {}


def reshape_chain(levels: int) -> str:
    """conv -> relu -> output, and off the conv a chain of `levels` reshapes, each with a reshape
    back to its input's shape that nothing reads. Collapsing a back-reshape gives an identity
    reshape of the level before, whose removal frees the next back-reshape up the chain (two
    steps a level, each further up the block); only when the whole chain has gone does the conv
    have one user, and the relu fuse."""
    shapes = ["1x16", "1x4x4"]
    body = ['%x = nn.input {port = "x"} : tensor<1x2x2x2xf32>',
            '%w = nn.const {splat = 5.000000e-01 : f32} : tensor<4x2x1x1xf32>',
            f'%c = nn.conv %x, %w {{{CONV}}} : tensor<1x4x2x2xf32>',
            '%y = nn.act %c {kind = "relu"} : tensor<1x4x2x2xf32>']
    prev, prev_shape = "%c", "1x4x2x2"
    for j in range(levels):
        shape = shapes[j % 2]
        body += [f"%a{j} = nn.reshape {prev} : tensor<{shape}xf32>",
                 f"%b{j} = nn.reshape %a{j} : tensor<{prev_shape}xf32>"]
        prev, prev_shape = f"%a{j}", shape
    body.append('nn.output %y {ports = ["y"]}')
    return graph("\n".join(body))


def test_a_chain_longer_than_the_old_sweep_cap_reaches_the_fixpoint():
    """Before: the hand-rolled driver stopped after 8 sweeps; 6 levels need 12, so the relu stayed
    a separate op after the conv (the dead reshapes went, but not as a fixpoint)."""
    levels = 6
    module = parse_module(reshape_chain(levels))
    attach_weights(module, WeightStore({}))
    stats = PassManager.parse("canonicalize").run(module).report("canonicalize")
    assert print_module(module) == graph(f"""
        %x = nn.input {{port = "x"}} : tensor<1x2x2x2xf32>
        %w = nn.const {{splat = 5.000000e-01 : f32}} : tensor<4x2x1x1xf32>
        %c = nn.conv %x, %w {{{CONV}, activation = "relu"}} : tensor<1x4x2x2xf32>
        nn.output %c {{ports = ["y"]}}""")
    assert stats == {"reshape-chain-collapsed": levels, "reshape-removed": levels,
                     "relu-fused": 1}


def test_a_dead_onnx_node_reading_a_fused_value_leaves_no_use_behind():
    """Found by the slow ONNX fuzz test: a dead MaxPool reading the relu's output (its output renamed
    to the graph input's name, so nothing reads it). The importer dropped it but left its use of
    the relu; fusing the relu then handed the detached pool to the rewrite walker ('Operation
    insertion point must have a parent block', exit 1). Now the importer drops the use, the
    verifier refuses a use by an op outside the IR, and the relu fuses as in the graph without the
    dead node."""
    model = tiny_onnx()
    dead = onnx.NodeProto()
    dead.CopyFrom(model.graph.node[2])  # the MaxPool
    dead.output[:] = ["x"]
    model.graph.node.append(dead)
    module = import_model(model, source="dead.onnx")
    verify_fast(module)
    relu = next(op for op in module.walk() if isinstance(op, nn.ActOp))
    assert [u.operation.name for u in relu.output.uses] == ["nn.pool"]
    stats = PassManager.parse("canonicalize").run(module).report("canonicalize")
    assert stats == {"relu-fused": 1}
    assert [op.name for op in nn.graph_of(module).ops] == [
        "nn.input", "nn.const", "nn.const", "nn.conv", "nn.pool", "nn.flatten", "nn.const",
        "nn.const", "nn.dense", "nn.output"]


def test_verify_refuses_a_use_by_an_op_outside_the_ir():
    module = parse_module(graph("""
        %x = nn.input {port = "x"} : tensor<1x2x2x2xf32>
        %r = nn.act %x {kind = "relu"} : tensor<1x2x2x2xf32>
        nn.output %r {ports = ["y"]}"""))
    relu = next(op for op in module.walk() if isinstance(op, nn.ActOp))
    stray = relu.clone()  # a copy in no block, still reading %x
    with pytest.raises(VerifyException, match="nn.input's result is used by a nn.act that is in "
                                              "no block"):
        verify_fast(module)
    stray.drop_all_references()
    verify_fast(module)
