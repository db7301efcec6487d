"""Importing pre-quantized (QDQ) models: onnxruntime's quantize_static output, quantized here in the
test, imports into fixed-point types, compiles to C, and classifies as onnxruntime's own QDQ run
does; the scale mapping is checked against hand computations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

from aloha_ir import fixedpoint as fp
from aloha_ir.context import make_context
from aloha_ir.dialects import nn
from aloha_ir.dialects.nn import graph_of
from aloha_ir.errors import AlohaWarning, InputFileError, UnsupportedError
from aloha_ir.passmanager import PassManager
from backends.onnx.qdq import export_qdq
from codegen_helpers import build, have_gcc, run
from frontends.onnx import import_model, import_onnx
from frontends.onnx.qdq import scale_mapping
from qdq_helpers import Reader, cnn, initializer, ort_run, quantize_qdq, small_qdq
from runtime.reference import reference

ALOHAC = [sys.executable, "-m", "alohac.main"]


def _import_quiet(path: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AlohaWarning)
        return import_onnx(path)


def _agreement(path: str, x: np.ndarray) -> float:
    """Top-1 agreement of the imported model (the bit-exact reference, after canonicalize as the
    compile flow runs it) with onnxruntime's run of the QDQ model."""
    module = _import_quiet(path)
    PassManager.parse("canonicalize").run(module, make_context())
    q, _ = reference(module).run(x.astype(np.float64))[0]
    return float(np.mean(q.argmax(1) == ort_run(path, x).argmax(1)))


def _compile_and_run(path: str, out: str, target: str, x: np.ndarray) -> dict:
    """`alohac compile` for `target`, build the C, run it on x: bit for bit the reference of the
    module the compiler wrote. Returns report.json."""
    r = subprocess.run(ALOHAC + ["compile", path, "--target", target, "-o", out],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "quantization scales are not powers of two" in r.stderr
    stem = os.path.splitext(os.path.basename(path))[0]
    from frontends.loader import load_model
    module = load_model(os.path.join(out, f"{stem}.mlir"))
    assert {fp.format_of(op.results[0]).bits for op in graph_of(module).ops
            if op.results and not isinstance(op, nn.ConstOp)} == {8}
    code = os.path.join(out, "code")
    build(code)
    proc, y = run(code, x)
    assert proc.returncode == 0, proc.stderr
    ref = reference(module)
    want = np.stack([ref.real(x[i:i + 1].astype(np.float64)).reshape(-1) for i in range(len(x))])
    np.testing.assert_array_equal(y, want.astype(np.float32))
    with open(os.path.join(out, "report.json")) as f:
        return json.load(f)


# --- synthetic data: always runs -------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """scikit-learn's 8x8 digits (bundled) and the CNN trained on the first 1,200."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    src = cnn(8, x[:1200], d.target[:1200], str(tmp_path_factory.mktemp("digits") / "cnn.onnx"),
               c=16, hidden=64, epochs=40)
    return src, x[:1200], x[1200:], d.target[1200:]


@pytest.mark.parametrize("per_channel", [False, True])
def test_quantize_static_digits_cnn_agrees_with_onnxruntime(tmp_path, digits, per_channel):
    src, train_x, test_x, test_y = digits
    path = quantize_qdq(src, str(tmp_path / "cnn_qdq.onnx"), train_x[:32], per_channel)
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "Add", "MaxPool", "AveragePool",
            "MatMul", "Gemm"} <= ops
    y_ort = ort_run(path, test_x)
    assert np.mean(y_ort.argmax(1) == test_y) > 0.9  # a trained model: agreement means much
    # the imported model runs the scales mapped to powers of two, so a few borderline images
    # change class: 0.988 per channel against onnxruntime's unfused QDQ run (Zen 3)
    assert _agreement(path, test_x) >= 0.985
    module = _import_quiet(path)
    q = graph_of(module).attributes["quantization"]
    assert q.data["method"].data == "qdq"
    assert q.data["granularity"].data == ("channel" if per_channel else "layer")
    # the imported model exported back to QDQ (its power-of-two scales) and run by onnxruntime
    # gives the reference's classes on every image: what differs from the original QDQ run is
    # the scale mapping, nothing else
    PassManager.parse("canonicalize").run(module, make_context())
    q_ref, _ = reference(module).run(test_x.astype(np.float64))[0]
    assert np.array_equal(ort_run(export_qdq(module), test_x).argmax(1), q_ref.argmax(1))


@pytest.mark.skipif(not have_gcc(), reason="gcc and make are needed to build code")
@pytest.mark.parametrize("target", ["neuraghe-losa", "host-cpu"])
def test_quantize_static_digits_cnn_compiles_to_bit_exact_c(tmp_path, digits, target):
    src, train_x, test_x, _ = digits
    path = quantize_qdq(src, str(tmp_path / "cnn_qdq.onnx"), train_x[:32], True)
    report = _compile_and_run(path, str(tmp_path / "out"), target, test_x[:5])
    # the report's mapping of conv1's output scale, from the QDQ model's own initializer: the
    # nearest power-of-two step
    model = onnx.load(path)
    q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "c1")
    scale = float(next(numpy_helper.to_array(t) for t in model.graph.initializer
                       if t.name == q.input[1]))
    step = 2.0 ** -round(-np.log2(scale))
    assert report["scale_mapping"]["conv1"]["output"] == pytest.approx(
        {"scale": scale, "step": step, "error": step / scale - 1})
    with open(os.path.join(str(tmp_path / "out"), "report.md")) as f:
        assert "| conv1 | output |" in f.read()


def _hand_qdq(act_scale: float, w_scale: float) -> onnx.ModelProto:
    """x -> Q/DQ(act_scale) -> Conv(int8 weights at w_scale, int32 bias) -> Q/DQ(act_scale)."""
    w = np.array([[[[-128, 3], [64, 127]]], [[[5, -7], [0, 100]]]], np.int8)
    bias = np.array([40, -9], np.int32)
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="x_q"),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="x_dq"),
        helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], name="w_dq"),
        helper.make_node("DequantizeLinear", ["b", "bs", "bz"], ["bd"], name="b_dq"),
        helper.make_node("Conv", ["xd", "wd", "bd"], ["c"], name="conv"),
        helper.make_node("QuantizeLinear", ["c", "s", "z"], ["cq"], name="c_q"),
        helper.make_node("DequantizeLinear", ["cq", "s", "z"], ["y"], name="c_dq"),
    ]
    inits = [initializer("s", np.float32(act_scale)), initializer("z", np.int8(0)), initializer("w", w),
             initializer("ws", np.float32(w_scale)), initializer("wz", np.int8(0)), initializer("b", bias),
             initializer("bs", np.float32(act_scale * w_scale)), initializer("bz", np.int32(0))]
    g = helper.make_graph(nodes, "hand", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 1, 4, 4])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [1, 2, 3, 3])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m


def test_power_of_two_scales_are_the_formats_exactly():
    model = _hand_qdq(2.0 ** -4, 2.0 ** -6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", AlohaWarning)  # nothing to report: every scale maps exactly
        module = import_model(model, source="hand.onnx")
    graph = graph_of(module)
    conv = next(op for op in graph.ops if isinstance(op, nn.ConvOp))
    assert fp.format_of(conv.input) == fp.Fixed(8, 4)
    assert fp.format_of(conv.output) == fp.Fixed(8, 4)
    assert fp.format_of(conv.weight) == fp.Fixed(8, 6)
    assert fp.format_of(conv.bias) == fp.Fixed(32, 10)
    ref = reference(module)
    np.testing.assert_array_equal(ref.consts[conv.weight], numpy_helper.to_array(
        model.graph.initializer[2]))  # the model's own int8 weights, -128 included
    np.testing.assert_array_equal(ref.consts[conv.bias], [40, -9])
    assert all(r["error"] == 0.0 for roles in scale_mapping(graph).values() for r in roles.values())
    # onnxruntime's QDQ run on inputs away from rounding ties: the same integers
    x = (np.random.default_rng(0).integers(-100, 100, (20, 1, 1, 4, 4)) / 16.0 + 1 / 64)
    for xi in x.astype(np.float32):
        q, fmt = ref.run(xi.astype(np.float64))[0]
        want = np.rint(ort_run(model, xi).reshape(q.shape) * 16).astype(np.int64)
        assert np.abs(q - want).max() <= 1  # ties in the requantization round differently
        assert np.mean(q == want) > 0.9


def test_other_scales_map_to_the_nearest_step_with_the_error_reported():
    # 0.1: -log2 = 3.32 -> frac 3, step 0.125, +25%; 0.006: -log2 = 7.38 -> frac 7, step 2^-7 =
    # 0.0078125 (+30.2%), which holds 127 x 0.006 = 0.762 (97.5 steps): no coarser step needed
    with pytest.warns(AlohaWarning, match=r"hand.onnx: 3 quantization scales are not powers of two"
                      r".*conv output \+25\.0%.*conv weight \+30\.2%"):
        module = import_model(_hand_qdq(0.1, 0.006), source="hand.onnx")
    graph = graph_of(module)
    conv = next(op for op in graph.ops if isinstance(op, nn.ConvOp))
    assert fp.format_of(conv.output) == fp.Fixed(8, 3)
    assert fp.format_of(conv.weight) == fp.Fixed(8, 7)
    rows = scale_mapping(graph)
    assert rows["conv"]["output"] == pytest.approx({"scale": 0.1, "step": 0.125, "error": 0.25},
                                                   rel=1e-6)
    assert rows["conv"]["weight"]["error"] == pytest.approx(0.0078125 / 0.006 - 1, rel=1e-6)


def test_weights_that_the_nearest_step_would_saturate_take_a_coarser_one():
    # 0.0035: -log2 = 8.16 -> frac 8 (step 0.0039); -128 x 0.0035 = -0.448 is -114.7 steps and
    # 127 x 0.0035 = 0.4445 is 113.8: fits; 0.0045: -log2 = 7.80 -> frac 8, but 127 x 0.0045 =
    # 0.5715 is 146 steps of 2^-8: frac 7
    assert fp.format_of(_conv_weight(0.0035)) == fp.Fixed(8, 8)
    assert fp.format_of(_conv_weight(0.0045)) == fp.Fixed(8, 7)


def test_an_integer_op_between_quantize_and_dequantize_is_refused():
    """QCDQ (a Clip of the integers narrowing int8 to 4 bits): a float Clip would clip the real
    values at the integer bounds, silently wrong."""
    model = _hand_qdq(2.0 ** -4, 2.0 ** -6)
    clip = helper.make_node("Clip", ["cq", "lo", "hi"], ["cc"], name="narrow")
    nodes = list(model.graph.node)
    nodes[-1].input[0] = "cc"
    nodes.insert(len(nodes) - 1, clip)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend([initializer("lo", np.int8(-8)), initializer("hi", np.int8(7))])
    with pytest.raises(UnsupportedError, match=r"node 'c_q' \(QuantizeLinear\): its integers feed "
                       r"node 'narrow' \(Clip\)") as e:
        import_model(model, source="qcdq.onnx")
    assert e.value.exit_code == 4


def test_a_scale_that_is_not_positive_is_a_malformed_model():
    with pytest.raises(InputFileError, match=r"node 'x_q' \(QuantizeLinear\): .*must be finite "
                       r"and > 0") as e:
        import_model(_hand_qdq(-0.1, 0.01), source="bad.onnx")
    assert e.value.exit_code == 3


def _conv_weight(w_scale: float):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AlohaWarning)
        module = import_model(_hand_qdq(2.0 ** -4, w_scale), source="hand.onnx")
    return next(op for op in graph_of(module).ops if isinstance(op, nn.ConvOp)).weight


def test_asymmetric_activations_are_refused_naming_the_node(tmp_path, digits):
    src, train_x, _, _ = digits
    path = quantize_qdq(src, str(tmp_path / "cnn_u8.onnx"), train_x[:16], False, symmetric=False,
                     activation=QuantType.QUInt8)
    with pytest.raises(UnsupportedError) as e:
        _import_quiet(path)
    assert e.value.exit_code == 4
    assert "zero point" in str(e.value) and "node '" in str(e.value)
    assert "ActivationSymmetric" in e.value.hint and "QInt8" in e.value.hint
    r = subprocess.run(ALOHAC + ["compile", path, "--target", "host-cpu", "-o",
                                 str(tmp_path / "out")], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 4 and "ActivationSymmetric" in r.stderr


def test_uint8_relu_outputs_and_int8_zero_point_minus_128_are_unsigned():
    """uint8 with zero point 0 and int8 with -128 both hold [0, 255] x scale: the unsigned format."""
    for elem, zp in ((TensorProto.UINT8, np.uint8(0)), (TensorProto.INT8, np.int8(-128))):
        model = _hand_qdq(2.0 ** -4, 2.0 ** -6)
        for i, t in enumerate(model.graph.initializer):
            if t.name == "z":
                model.graph.initializer[i].CopyFrom(initializer("z", zp))
        module = import_model(model, source="hand.onnx")
        conv = next(op for op in graph_of(module).ops if isinstance(op, nn.ConvOp))
        assert fp.format_of(conv.output) == fp.Fixed(8, 4, signed=False), elem


def test_a_partially_quantized_model_is_refused(digits, tmp_path):
    src, train_x, _, _ = digits
    name = onnx.load(src).graph.input[0].name
    reader = Reader(name, train_x[:8])
    path = str(tmp_path / "part.onnx")
    quantize_static(src, path, reader, quant_format=QuantFormat.QDQ,
                       activation_type=QuantType.QInt8, op_types_to_quantize=["Conv"],
                       extra_options={"ActivationSymmetric": True})
    with pytest.raises(UnsupportedError, match="not quantized") as e:
        _import_quiet(path)
    assert e.value.exit_code == 4


# --- MNIST: needs ALOHA_DATA -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def mnist():
    root = os.environ.get("ALOHA_DATA")
    if not root or not os.path.isdir(root):
        pytest.skip("ALOHA_DATA is not set (real data: shared/data); .ci/run sets it")
    from frontends.datasets import load
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the shared copy of the training set is truncated
        splits = load(f"mnist:{os.path.join(root, 'mnist')}")
    return root, splits


@pytest.mark.skipif(not have_gcc(), reason="gcc and make are needed to build code")
@pytest.mark.slow  # trains a CNN, 1,000 images: make test-all
def test_quantize_static_mnist_cnn_agrees_on_1000_images_and_compiles(tmp_path, mnist):
    _, splits = mnist
    src = cnn(28, splits.train.x[:6000], splits.train.y[:6000], str(tmp_path / "mnist_cnn.onnx"),
               epochs=4)
    path = quantize_qdq(src, str(tmp_path / "mnist_cnn_qdq.onnx"), splits.train.x[:32], True)
    x = splits.test.x[:1000]
    assert np.mean(ort_run(path, x).argmax(1) == splits.test.y[:1000]) > 0.9
    assert _agreement(path, x) >= 0.99
    for target in ("neuraghe-losa", "host-cpu"):
        _compile_and_run(path, str(tmp_path / target), target, x[:5])


@pytest.mark.skipif(not have_gcc(), reason="gcc and make are needed to build code")
@pytest.mark.slow  # 1,000 images: make test-all
def test_quantize_static_mnist8_agrees_on_1000_images_and_compiles(tmp_path, mnist):
    """mnist-8 (opset 8, taking 0..255) converted to opset 13, where per-channel QDQ exists."""
    root, splits = mnist
    from onnx import version_converter
    src = str(tmp_path / "mnist8_13.onnx")
    onnx.save(version_converter.convert_version(onnx.load(os.path.join(root, "onnx",
                                                                        "mnist-8.onnx")), 13), src)
    path = quantize_qdq(src, str(tmp_path / "mnist8_qdq.onnx"), splits.train.x[:32] * 255.0, True)
    x = splits.test.x[:1000] * 255.0
    assert np.mean(ort_run(path, x).argmax(1) == splits.test.y[:1000]) > 0.97
    assert _agreement(path, x) >= 0.99
    for target in ("neuraghe-losa", "host-cpu"):
        _compile_and_run(path, str(tmp_path / target), target, x[:5])


def test_an_input_normalised_in_float_takes_its_recorded_range(tmp_path):
    x = np.random.default_rng(1).uniform(0, 1, (64, 1, 8, 8)).astype(np.float32)
    path = small_qdq(str(tmp_path / "norm.onnx"), x, normalise=True)
    assert not any(n.op_type == "QuantizeLinear" and n.input[0] == "x"
                   for n in onnx.load(path).graph.node)
    with pytest.raises(UnsupportedError, match="input 'x' is not quantized") as e:
        _import_quiet(path)
    assert "aloha.input_range.x" in e.value.hint
    model = onnx.load(path)
    helper.set_model_props(model, {"aloha.input_range.x": "0,1"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AlohaWarning)
        module = import_model(model, source="norm.onnx")
    inp = next(op for op in graph_of(module).ops if isinstance(op, nn.InputOp))
    # [0, 1] in 8 unsigned bits: 1 x 2^7 = 128 <= 255 < 1 x 2^8
    assert fp.format_of(inp.output) == fp.Fixed(8, 7, signed=False)
    q, fmt = reference(module).run(x.astype(np.float64))[0]
    y = ort_run(path, x)
    assert np.mean(q.argmax(1) == y.argmax(1)) >= 0.95
    assert np.abs(fp.dequantize(q, fmt.frac) - y).max() < 0.05  # softmax probabilities


def test_int16_activations_are_16_bit_formats(tmp_path):
    """quantize_static with QInt16 activations (QDQ at opset 21): 16-bit formats, the weights 8."""
    x = np.random.default_rng(1).uniform(0, 1, (64, 1, 8, 8)).astype(np.float32)
    path = small_qdq(str(tmp_path / "norm16.onnx"), x, normalise=True,
                     activation=QuantType.QInt16)
    model = onnx.load(path)
    assert model.opset_import[0].version == 21
    helper.set_model_props(model, {"aloha.input_range.x": "0,1"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AlohaWarning)
        module = import_model(model, source="norm16.onnx")
    graph = graph_of(module)
    conv = next(op for op in graph.ops if isinstance(op, nn.ConvOp))
    assert fp.format_of(conv.output).bits == 16 and fp.format_of(conv.weight).bits == 8
    assert graph.attributes["quantization"].data["activation_bits"].value.data == 16
    q, fmt = reference(module).run(x.astype(np.float64))[0]
    y = ort_run(model, x)
    assert np.mean(q.argmax(1) == y.argmax(1)) >= 0.95
    assert np.abs(fp.dequantize(q, fmt.frac) - y).max() < 0.02
