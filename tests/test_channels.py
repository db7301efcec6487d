"""Channel surgery (aloha_ir.channels): any plan of kept, reordered and new zero channels leaves
the network's function unchanged where it should, checked with onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx

from aloha_ir.channels import WidthGroups, retarget_channels, take_channels
from aloha_ir.dialects import nn
from aloha_ir.dialects.nn import graph_of
from aloha_ir.weights import ConstTensor
from backends.onnx.export import save_onnx
from frontends.loader import load_model
from model_helpers import run_ort


def _logits(module, path, x):
    save_onnx(module, path)
    model = onnx.load(path)
    return run_ort(model, {model.graph.input[0].name: x})[0]


def test_reordering_channels_and_adding_zero_ones_keeps_the_function(tmp_path):
    module = load_model("zoo:digits_cnn")  # seeded random weights: the surgery materialises them
    x = np.random.default_rng(0).random((1, 1, 8, 8), dtype=np.float32)
    expected = _logits(module, str(tmp_path / "a.onnx"), x)
    graph = graph_of(module)
    conv = next(op for op in graph.ops if isinstance(op, nn.ConvOp))
    groups = WidthGroups(graph)
    assert groups.movable(conv.output)
    c = nn.shape_of(conv.output)[1]
    plan = np.concatenate([np.random.default_rng(1).permutation(c), [-1, -1]])
    retarget_channels(module, graph, {v: plan for v in groups.members(conv.output)})
    graph.verify()
    assert nn.shape_of(conv.output)[1] == c + 2
    got = _logits(module, str(tmp_path / "b.onnx"), x)
    assert np.allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_take_channels_keeps_lazy_kinds_for_prefixes_only():
    rand = ConstTensor((4, 3), random=(7, 0.0, 1.0))
    assert take_channels(rand, 0, np.array([0, 1])).random == (7, 0.0, 1.0)  # align's down
    assert take_channels(rand, 0, np.array([0, 1, 2, 3, -1])).random == (7, 0.0, 1.0)  # up
    assert np.all(take_channels(rand, 0, np.array([0, 1, -1])).array[2] == 0)
    picked = take_channels(rand, 0, np.array([2, -1, 0]))
    full = rand.materialize()
    assert np.array_equal(picked.array, np.stack([full[2], np.zeros(3), full[0]]))
    assert take_channels(ConstTensor.full((4,), 2.0), 0, np.arange(2)).splat == 2.0
