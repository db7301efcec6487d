"""PassManager behaviour, and canonicalize as text in / text out with numeric checks."""

from __future__ import annotations

import io

import numpy as np
import pytest
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from aloha_ir.consts import const_tensor
from aloha_ir.dialects import nn
from aloha_ir.errors import IRVerifyError, UsageError
from aloha_ir.passmanager import PassManager
from aloha_ir.textio import load_module, parse_module, print_module, save_module
from aloha_ir.weights import attach_weights, WeightStore, weights_of

BN_CHAIN = """builtin.module {
  nn.graph @net {
    %0 = nn.input {port = "x"} : tensor<1x2x4x4xf32>
    %1 = nn.const {blob = "w"} : tensor<3x2x1x1xf32>
    %2 = nn.conv %0, %1 {kernel = array<i64: 1, 1>, strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, group = 1 : i64} : tensor<1x3x4x4xf32>
    %3 = nn.const {blob = "scale"} : tensor<3xf32>
    %4 = nn.const {blob = "bias"} : tensor<3xf32>
    %5 = nn.const {blob = "mean"} : tensor<3xf32>
    %6 = nn.const {blob = "var"} : tensor<3xf32>
    %7 = nn.batchnorm %2, %3, %4, %5, %6 {epsilon = 1.000000e-03 : f64} : tensor<1x3x4x4xf32>
    %8 = nn.dropout %7 {ratio = 5.000000e-01 : f64} : tensor<1x3x4x4xf32>
    %9 = nn.act %8 {kind = "relu"} : tensor<1x3x4x4xf32>
    nn.output %9 {ports = ["y"]}
  }
}
"""

EXPECTED = """builtin.module {
  nn.graph @net {
    %0 = nn.input {port = "x"} : tensor<1x2x4x4xf32>
    %1 = nn.const {blob = "nn.conv.weight"} : tensor<3x2x1x1xf32>
    %2 = nn.const {blob = "nn.conv.bias"} : tensor<3xf32>
    %3 = nn.conv %0, %1, %2 {kernel = array<i64: 1, 1>, strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, group = 1 : i64, activation = "relu"} : tensor<1x3x4x4xf32>
    nn.output %3 {ports = ["y"]}
  }
}
"""


def _bn_module():
    rng = np.random.default_rng(0)
    store = WeightStore({"w": rng.standard_normal((3, 2, 1, 1)).astype(np.float32),
                         "scale": rng.uniform(0.5, 1.5, 3).astype(np.float32),
                         "bias": rng.uniform(-1, 1, 3).astype(np.float32),
                         "mean": rng.uniform(-1, 1, 3).astype(np.float32),
                         "var": rng.uniform(0.5, 2, 3).astype(np.float32)})
    module = parse_module(BN_CHAIN)
    attach_weights(module, store)
    return module, store


def test_canonicalize_text_in_text_out_and_numbers():
    module, store = _bn_module()
    x = np.random.default_rng(1).standard_normal((1, 2, 4, 4)).astype(np.float32)
    # the reference, by hand: conv (1x1) then inference BN then relu
    conv = np.einsum("oi,nihw->nohw", store["w"][:, :, 0, 0], x)
    bn = (conv - store["mean"][:, None, None]) / np.sqrt(store["var"][:, None, None] + 1e-3) * \
        store["scale"][:, None, None] + store["bias"][:, None, None]
    ref = np.maximum(bn, 0)
    snapshot = dict(store.arrays)
    PassManager.parse("canonicalize").run(module)
    assert print_module(module) == EXPECTED
    folded = weights_of(module)
    w, b = folded["nn.conv.weight"][:, :, 0, 0], folded["nn.conv.bias"]
    got = np.maximum(np.einsum("oi,nihw->nohw", w, x) + b[:, None, None], 0)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    assert set(folded.arrays) == {"nn.conv.weight", "nn.conv.bias"}  # dead blobs released
    assert snapshot["w"] is not folded["nn.conv.weight"]


def test_pipeline_options_and_errors():
    pm = PassManager.parse("canonicalize{fuse_activations=false},analyze-cost")
    assert [p.name for p in pm.passes] == ["canonicalize", "analyze-cost"]
    assert pm.passes[0].fuse_activations is False
    module, _ = _bn_module()
    pm.run(module)
    assert "nn.act" in print_module(module)  # not fused: the option took effect
    # pipeline text is the user's: its mistakes are usage errors (exit 2), with the closest name
    with pytest.raises(UsageError, match="unknown pass 'fold'.*known passes"):
        PassManager.parse("canonicalize,fold")
    with pytest.raises(UsageError, match="did you mean 'analyze-cost'"):
        PassManager.parse("analyse-cost")
    with pytest.raises(UsageError, match="pass 'canonicalize' has no option 'bits'"):
        PassManager.parse("canonicalize{bits=3}")
    with pytest.raises(UsageError, match="did you mean 'fuse_activations'"):
        PassManager.parse("canonicalize{fuse-activation=false}")
    with pytest.raises(UsageError, match="bad options for pass 'canonicalize'"):
        PassManager.parse("canonicalize{fuse_activations=3}")
    with pytest.raises(UsageError, match="cannot parse pipeline"):
        PassManager.parse("canonicalize{")


def test_results_are_typed_and_instruments_report(tmp_path):
    module, _ = _bn_module()
    # text carries no as-imported stamp: `params` is then the current count
    plain = PassManager.parse("analyze-cost").run(_bn_module()[0]).report("analyze-cost")
    assert plain.params == plain.params_deployed == 6 + 4 * 3
    from aloha_ir.cost import count_params
    graph = next(o for o in module.walk() if isinstance(o, nn.GraphOp))
    graph.attributes["imported_params"] = nn.int_attr(count_params(graph))  # as the frontend does
    out = io.StringIO()
    result = PassManager.parse("canonicalize,analyze-cost", time_passes=True,
                               print_ir_after_all=True, dump_dir=str(tmp_path / "dump"),
                               stream=out).run(module)
    report = result.report("analyze-cost")
    assert report.macs == 3 * 4 * 4 * 2  # hand count of a 1x1 conv 2->3 on 4x4
    assert report.params == 6 + 4 * 3 and report.params_deployed == 6 + 3
    assert [t.name for t in result.timings] == ["canonicalize", "analyze-cost"]
    text = out.getvalue()
    assert "IR Dump After canonicalize" in text and "Pass execution timing report" in text
    dumped = sorted(p.name for p in (tmp_path / "dump").iterdir())
    assert "01-canonicalize.mlir" in dumped and "02-analyze-cost.mlir" in dumped
    reloaded = load_module(str(tmp_path / "dump" / "01-canonicalize.mlir"))
    assert "nn.batchnorm" not in print_module(reloaded)


def test_verification_after_each_pass_names_the_pass():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class BreakShapes(ModulePass):
        name = "break-shapes"

        def apply(self, ctx: Context, op: ModuleOp) -> None:
            conv = next(o for o in op.walk() if isinstance(o, nn.ConvOp))
            from xdsl.dialects.builtin import TensorType, f32
            conv.results[0]._type = TensorType(f32, [1, 3, 5, 4])

    module, _ = _bn_module()
    with pytest.raises(IRVerifyError, match="after pass 'break-shapes'.*nn.conv"):
        PassManager([BreakShapes()]).run(module)


def test_weights_round_trip_through_save(tmp_path):
    module, store = _bn_module()
    save_module(module, str(tmp_path / "m.mlir"))
    loaded = load_module(str(tmp_path / "m.mlir"))
    consts = [op for op in loaded.walk() if isinstance(op, nn.ConstOp)]
    assert len(consts) == 5
    for op in consts:
        np.testing.assert_array_equal(const_tensor(op, weights_of(loaded)).materialize(),
                                      store[op.blob.data])
