"""Batch N > 1 in generated C (issue 18, item 18): one input of the program is the model's whole
input tensor, a batch of N items, and every item of every output must be what onnxruntime computes
for the batch (float) or what the fixed-point reference computes for that item alone (quantized).
Ops that would mix items inside a kernel are refused by name."""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from codegen_helpers import build, generate, have_gcc, run
from model_helpers import light_path, randomize_weights, run_ort, strip_final_softmax

pytestmark = pytest.mark.skipif(not have_gcc(), reason="gcc and make are needed to build code")


def _model(nodes, inits, c: int = 3, hw: int = 8) -> onnx.ModelProto:
    """A graph on input x [N, c, hw, hw] (N symbolic, as exporters write a dynamic batch)."""
    g = helper.make_graph(nodes, "batch", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["N", c, hw, hw])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 10
    return m


def _t(name: str, arr) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name)


def _items_match(y: np.ndarray, want: np.ndarray, batch: int) -> None:
    """y: the program's k outputs; want: onnxruntime's, item by item (relative to each item)."""
    y, want = y.reshape(-1, batch, want[0].size // batch), want.reshape(-1, batch,
                                                                       want[0].size // batch)
    for k in range(y.shape[0]):
        for n in range(batch):
            scale = max(1e-6, float(np.abs(want[k, n]).max()))
            err = float(np.abs(y[k, n] - want[k, n]).max()) / scale
            assert err < 1e-4, f"input {k}, item {n}: relative error {err:.3g}"


def test_issue_reproducer_conv_maxpool_at_batch_2_is_right_for_every_item(tmp_path, capsys):
    """The issue's reproducer: Conv(3->4, 3x3, pad 1) + MaxPool 2x2 on [2, 3, 8, 8] compiled
    with the CLI; item 0 was off by 11.6 and item 1 all zeros."""
    rng = np.random.default_rng(0)
    model = _model([helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1]),
                    helper.make_node("MaxPool", ["c"], ["y"], kernel_shape=[2, 2],
                                     strides=[2, 2])],
                   [_t("W", rng.standard_normal((4, 3, 3, 3))), _t("B", rng.standard_normal(4))])
    path = str(tmp_path / "m.onnx")
    onnx.save(model, path)
    from alohac.main import main
    out = str(tmp_path / "out")
    assert main(["compile", path, "--input-shape", "x=2,3,8,8", "--target", "host-cpu", "--emit",
                 "nn,c", "-o", out]) == 0, capsys.readouterr().err
    code = os.path.join(out, "code")
    manifest = json.load(open(os.path.join(code, "network.json")))
    assert manifest["batch"] == 2 and manifest["inputs"][0]["shape"] == [2, 3, 8, 8]
    build(code)
    x = rng.standard_normal((3, 2, 3, 8, 8)).astype(np.float32)  # three inputs of a batch of 2
    r, y = run(code, x)
    assert r.returncode == 0, r.stderr
    want = np.stack([run_ort(model, {"x": xi})[0] for xi in x])
    assert np.abs(y).reshape(3, 2, -1).max(axis=2).min() > 0  # no item comes out all zeros
    _items_match(y, want, 2)


def _every_kernel_model() -> onnx.ModelProto:
    """One graph through every kernel of the host library that looks at an item's channels
    (grouped and depthwise conv, batch norm, LRN, concat, add/mul with broadcast operands,
    channel shuffle, softmax over C, pooling, global pooling, flatten, dense), with convs and
    the dense split over the host's cores by `partition` (so gathers run too)."""
    rng = np.random.default_rng(1)

    def w(name, *s):  # He-normal
        return _t(name, rng.standard_normal(s) * (2.0 / np.prod(s[1:])) ** 0.5)

    def shape(name, dims):
        return numpy_helper.from_array(np.array(dims, np.int64), name)

    n = helper.make_node
    nodes = [
        n("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),                  # 3 -> 8
        n("Relu", ["c1"], ["r1"]),
        n("LRN", ["r1"], ["l1"], size=3, alpha=1e-2, beta=0.75, bias=1.0),
        n("Conv", ["l1", "w2"], ["dw"], group=8, pads=[1, 1, 1, 1]),              # depthwise
        n("Conv", ["l1", "w3"], ["gc"], group=2),                                 # grouped 1x1
        n("Concat", ["dw", "gc"], ["cat"], axis=1),                               # 16 channels
        n("BatchNormalization", ["cat", "s", "bb", "m", "v"], ["bn"]),            # not foldable
        n("Reshape", ["bn", "s1"], ["sh1"]),
        n("Transpose", ["sh1"], ["sh2"], perm=[0, 2, 1, 3, 4]),
        n("Reshape", ["sh2", "s2"], ["shuf"]),                                    # shuffle
        n("Add", ["shuf", "k"], ["a1"]),                                          # + [1, 16, 1, 1]
        n("Conv", ["a1", "w4"], ["gate"]),                                        # 16 -> 1
        n("Sigmoid", ["gate"], ["g"]),
        n("Mul", ["a1", "g"], ["mul"]),                                           # x [N, 1, H, W]
        n("Softmax", ["mul"], ["sm"], axis=1),
        n("MaxPool", ["sm"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        n("AveragePool", ["p1"], ["p2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        n("Conv", ["p2", "w5", "b5"], ["c5"]),
        n("Add", ["c5", "p2"], ["res"]),                                          # two activations
        n("GlobalAveragePool", ["res"], ["gap"]),
        n("Mul", ["res", "gap"], ["se"]),                                         # x [N, 16, 1, 1]
        n("LeakyRelu", ["se"], ["lr"], alpha=0.1),
        n("Flatten", ["lr"], ["f"]),
        n("Gemm", ["f", "wd", "bd"], ["d"], transB=1),
        n("Softmax", ["d"], ["y"], axis=1),
    ]
    inits = [w("w1", 8, 3, 3, 3), _t("b1", rng.uniform(-.2, .2, 8)),
             _t("s", rng.uniform(.5, 1.5, 16)), _t("bb", rng.uniform(-.2, .2, 16)),
             _t("m", rng.uniform(-.2, .2, 16)), _t("v", rng.uniform(.5, 1.5, 16)),
             w("w2", 8, 1, 3, 3), w("w3", 8, 4, 1, 1), shape("s1", [0, 2, 8, 8, 8]),
             shape("s2", [0, 16, 8, 8]), _t("k", rng.uniform(-.5, .5, (1, 16, 1, 1))),
             w("w4", 1, 16, 1, 1), w("w5", 16, 16, 1, 1), _t("b5", rng.uniform(-.2, .2, 16)),
             w("wd", 6, 16 * 4 * 4), _t("bd", rng.uniform(-.2, .2, 6))]
    return _model(nodes, inits)


def test_every_kernel_at_batch_3_is_right_for_every_item(tmp_path):
    from frontends.loader import load_model
    model = _every_kernel_model()
    path = str(tmp_path / "every.onnx")
    onnx.save(model, path)
    module = load_model(path, {"x": [3, 3, 8, 8]})
    code = generate(module, "host-cpu", str(tmp_path))
    manifest = json.load(open(os.path.join(code, "network.json")))
    kernels = {a["kernel"] for a in manifest["actors"]}
    assert {"conv", "bn", "lrn", "concat", "shuffle", "add", "mul", "softmax", "pool", "gpool",
            "copy", "dense", "gather", "act"} <= kernels, kernels
    build(code)
    x = np.random.default_rng(2).uniform(-1, 1, (2, 3, 3, 8, 8)).astype(np.float32)
    r, y = run(code, x)
    assert r.returncode == 0, r.stderr
    want = np.stack([run_ort(model, {"x": xi})[0] for xi in x])
    _items_match(y, want, 3)


@pytest.mark.parametrize("axis_op", ["concat", "softmax"])
def test_an_op_that_mixes_the_items_of_a_batch_is_refused_by_name(tmp_path, axis_op):
    from aloha_ir.errors import UnsupportedError
    from frontends.loader import load_model
    node = (helper.make_node("Concat", ["x", "x"], ["y"], axis=0) if axis_op == "concat" else
            helper.make_node("Softmax", ["x"], ["y"], axis=0))
    path = str(tmp_path / "mix.onnx")
    onnx.save(_model([node], []), path)
    with pytest.raises(UnsupportedError, match=rf"{axis_op}.*axis 0"):
        generate(load_model(path, {"x": [2, 3, 8, 8]}), "host-cpu", str(tmp_path))


# --------------------------------------------------------------------------------------------------
# conformance (slow): zoo models at batch 2 and 4, every backend in float and in fixed point


def _with_batch(model: onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    """The model with a symbolic batch (onnxruntime then runs any N) and its data input's name."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    inits = {t.name for t in model.graph.initializer}
    x = next(i for i in model.graph.input if i.name not in inits)
    x.type.tensor_type.shape.dim[0].dim_param = "N"
    del model.graph.value_info[:]
    for o in model.graph.output:
        o.type.tensor_type.ClearField("shape")
    model.ir_version = min(model.ir_version, 10)
    return model, x.name


def _zoo_onnx(name: str, path: str) -> onnx.ModelProto:
    if name.startswith("light:"):
        model = randomize_weights(onnx.load(light_path(name[6:])), seed=0)
    else:
        from backends.onnx.export import save_onnx
        from frontends.loader import load_model
        save_onnx(load_model(f"zoo:{name}", {}), path)
        model = onnx.load(path)
    model, _ = _with_batch(strip_final_softmax(model))
    onnx.save(model, path)
    return model


@pytest.mark.slow
@pytest.mark.parametrize("batch", [2, 4])
@pytest.mark.parametrize("name", ["lenet5", "mnist_cnn", "mobilenet_v1", "resnet18",
                                  "light:squeezenet"])
def test_zoo_models_at_batch_2_and_4_match_onnxruntime_item_by_item(tmp_path, name, batch):
    from frontends.loader import load_model
    path = str(tmp_path / "m.onnx")
    model = _zoo_onnx(name, path)
    _, x_name = _with_batch(model)
    dims = [d.dim_value for d in next(i for i in model.graph.input if i.name == x_name)
            .type.tensor_type.shape.dim[1:]]
    code = generate(load_model(path, {x_name: [batch] + dims}), "host-cpu", str(tmp_path))
    build(code)
    x = np.random.default_rng(batch).uniform(0, 1, (1, batch, *dims)).astype(np.float32)
    r, y = run(code, x, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    _items_match(y, run_ort(model, {x_name: x[0]})[0][None], batch)


@pytest.mark.slow
@pytest.mark.parametrize("batch", [2, 4])
@pytest.mark.parametrize("target", ["host-cpu", "neuraghe-losa", "orlando"])
def test_every_platform_at_batch_2_and_4_in_float_and_fixed_point(tmp_path, target, batch):
    """Float lenet5 against onnxruntime (on a variant of the platform with a float data type: a
    float model is quantized for NEURAghe and Orlando; NEURAghe's ARM slow in float so the convs
    still run on the CE); the 8-bit digits CNN bit for bit against the reference of each item
    alone through the batch-1 quantized model (same calibration, same formats)."""
    from sklearn.datasets import load_digits

    from aloha_ir.context import make_context
    from aloha_ir.passmanager import PassManager
    from runtime.reference import reference
    from codegen_helpers import SLOW_FLOAT_ARM, float_variant
    from frontends.loader import load_model
    path = str(tmp_path / "lenet5.onnx")
    model = _zoo_onnx("lenet5", path)
    code = generate(load_model(path, {"input": [batch, 1, 28, 28]}),
                    float_variant(target, tmp_path, SLOW_FLOAT_ARM
                                  if target.startswith("neuraghe") else ""),
                    str(tmp_path / "float"))
    build(code)
    x = np.random.default_rng(0).uniform(0, 1, (2, batch, 1, 28, 28)).astype(np.float32)
    r, y = run(code, x)
    assert r.returncode == 0, r.stderr[-2000:]
    _items_match(y, np.stack([run_ort(model, {"input": xi})[0] for xi in x]), batch)

    digits = str(tmp_path / "digits.onnx")
    _zoo_onnx("digits_cnn", digits)

    def quantized(n):
        m = load_model(digits, {"input": [n, 1, 8, 8]})
        PassManager.parse("canonicalize,quantize{bits=8 data=digits samples=64}").run(
            m, make_context())
        return m
    code = generate(quantized(batch), target, str(tmp_path / "fixed"))
    build(code)
    imgs = (load_digits().images[:2 * batch] / 16.0).astype(np.float32).reshape(2, batch, 1, 8, 8)
    r, y = run(code, imgs)
    assert r.returncode == 0, r.stderr[-2000:]
    one = reference(quantized(1))
    want = np.stack([one.real(item[None].astype(np.float64)).reshape(-1)
                     for item in imgs.reshape(-1, 1, 8, 8)])
    np.testing.assert_array_equal(y.reshape(want.shape), want.astype(np.float32))


def test_a_conv_engine_runs_every_item_so_its_predicted_time_scales_with_the_batch(tmp_path):
    """The CE/CA cost model works from one item's geometry: a batch of 4 is 4 passes of the job
    table (it was charged as one item, so NEURAghe's latency at batch 4 came out ~2x batch 1)."""
    from aloha_ir.dialects import csdf
    from codegen_helpers import lower
    from frontends.loader import load_model
    rng = np.random.default_rng(0)
    model = _model([helper.make_node("Conv", ["x", "W"], ["y"], pads=[1, 1, 1, 1])],
                   [_t("W", rng.standard_normal((32, 16, 3, 3)))], c=16, hw=32)
    path = str(tmp_path / "conv.onnx")
    onnx.save(model, path)
    ce_s = {}
    for n in (1, 4):
        module = load_model(path, {"x": [n, 16, 32, 32]})
        lower(module, "neuraghe-losa")
        ce = [a for a in csdf.csdf_graphs(module)[0].actors()
              if a.pe_kind == "conv-engine"]
        assert ce, "the conv runs on the CE"
        ce_s[n] = sum(a.cost_s for a in ce)
    assert ce_s[4] == pytest.approx(4 * ce_s[1], rel=1e-9)
