"""The layers exporters emit (issue 25 item 3) in generated C: explicit Pad (constant, reflect,
edge), Transpose / DepthToSpace / SpaceToDepth / PixelShuffle, ReduceMean / ReduceSum /
ReduceMax / ReduceMin / ReduceProd over any axes, ArgMax / ArgMin, LogSoftmax and ConvTranspose,
checked against onnxruntime in float and against the bit-exact fixed-point reference (the
arbiter, runtime/reference.py) in fixed point."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from codegen_helpers import build, generate, have_gcc, run
from model_helpers import run_ort

pytestmark = pytest.mark.skipif(not have_gcc(), reason="needs gcc and make")


def _model(nodes, x_shape, y_shape, inits=(), opset=17) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "layers", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                          list(x_shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(y_shape))],
                          initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _ints(name, values):
    return numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)


def _floats(name, values):
    return numpy_helper.from_array(np.asarray(values, dtype=np.float32), name)


def _resize(mode: str, sizes: bool = False, src: str = "x", out: str = "y", table: str = "s",
            **kw):
    """A Resize-13 node reading its scales (or sizes) from the initializer `table`."""
    inputs = [src, "", "", table] if sizes else [src, "", table]
    return helper.make_node("Resize", inputs, [out], mode=mode, **kw)


def _conv_init(rng, cout, cin, k=3):
    return [numpy_helper.from_array(rng.normal(0, 0.4, (cout, cin, k, k)).astype(np.float32), "w"),
            numpy_helper.from_array(rng.normal(0, 0.1, cout).astype(np.float32), "b")]


def _host_float(model: onnx.ModelProto, tmp_path, frames: np.ndarray,
                reference=run_ort) -> tuple[np.ndarray, ...]:
    """(the generated host program's outputs, the reference's: onnxruntime) for each frame,
    flattened."""
    from frontends.loader import load_model
    path = str(tmp_path / "m.onnx")
    onnx.save(model, path)
    code = generate(load_model(path, {}), "host-cpu", str(tmp_path))
    build(code)
    r, y = run(code, frames)
    assert r.returncode == 0, r.stderr[-2000:]
    want = np.stack([reference(model, {"x": f})[0].reshape(-1) for f in frames])
    return y, want


# (name, nodes, initializers, input shape, output shape): each reaches the op's every C path
FLOAT_CASES = [
    ("pad_constant_nchw", [helper.make_node("Pad", ["x", "p", "v"], ["y"], mode="constant")],
     [_ints("p", [0, 1, 2, 0, 0, 0, 1, 3]),
      numpy_helper.from_array(np.array(-1.5, np.float32), "v")], (1, 2, 5, 6), (1, 3, 8, 9)),
    ("pad_reflect", [helper.make_node("Pad", ["x", "p"], ["y"], mode="reflect")],
     [_ints("p", [0, 0, 2, 3, 0, 0, 3, 1])], (1, 2, 5, 6), (1, 2, 10, 10)),
    ("pad_edge_batch2", [helper.make_node("Pad", ["x", "p"], ["y"], mode="edge")],
     [_ints("p", [0, 1, 1, 2, 0, 0, 2, 1])], (2, 2, 4, 5), (2, 3, 7, 8)),
    ("pad_reflect_rank3", [helper.make_node("Pad", ["x", "p"], ["y"], mode="reflect")],
     [_ints("p", [0, 1, 2, 0, 1, 3])], (1, 4, 6), (1, 6, 11)),
    ("zero_pad_folded_into_conv", [
        helper.make_node("Pad", ["x", "p"], ["q"], mode="constant"),
        helper.make_node("Conv", ["q", "w", "b"], ["y"], pads=[0, 1, 1, 0])],
     [_ints("p", [0, 0, 2, 1, 0, 0, 0, 1])] + _conv_init(np.random.default_rng(2), 3, 2),
     (1, 2, 5, 6), (1, 3, 6, 7)),
    ("transpose_nhwc", [helper.make_node("Transpose", ["x"], ["y"], perm=[0, 2, 3, 1])], [],
     (2, 3, 4, 5), (2, 4, 5, 3)),
    ("transpose_rank3", [helper.make_node("Transpose", ["x"], ["y"], perm=[2, 0, 1])], [],
     (3, 4, 5), (5, 3, 4)),
    ("depth_to_space_dcr", [helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=2)], [],
     (1, 8, 3, 4), (1, 2, 6, 8)),
    ("depth_to_space_crd", [helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=3,
                                             mode="CRD")], [], (1, 9, 2, 3), (1, 1, 6, 9)),
    ("space_to_depth", [helper.make_node("SpaceToDepth", ["x"], ["y"], blocksize=2)], [],
     (1, 3, 4, 6), (1, 12, 2, 3)),
    ("reduce_mean_channels_row", [helper.make_node("ReduceMean", ["x"], ["y"], axes=[1])],
     [], (2, 3, 4, 5), (2, 1, 4, 5)),
    ("reduce_mean_width_row", [helper.make_node("ReduceMean", ["x"], ["y"], axes=[-1])],
     [], (1, 3, 4, 5), (1, 3, 4, 1)),
    ("reduce_mean_height_whole", [helper.make_node("ReduceMean", ["x"], ["y"], axes=[2])],
     [], (1, 3, 4, 5), (1, 3, 1, 5)),
    ("resize_nearest_asymmetric", [_resize("nearest", coordinate_transformation_mode="asymmetric",
                                           nearest_mode="floor")],
     [_floats("s", [1, 1, 2, 3])], (2, 2, 3, 4), (2, 2, 6, 12)),
    ("resize_nearest_half_pixel_sizes", [_resize("nearest", sizes=True)],
     [_ints("s", [1, 3, 7, 5])], (1, 3, 4, 6), (1, 3, 7, 5)),
    ("resize_linear_half_pixel", [_resize("linear")], [_floats("s", [1, 1, 2, 2])], (2, 3, 4, 5),
     (2, 3, 8, 10)),
    ("resize_linear_align_corners_sizes", [_resize("linear", sizes=True,
                                                   coordinate_transformation_mode="align_corners")],
     [_ints("s", [1, 2, 9, 4])], (1, 2, 5, 7), (1, 2, 9, 4)),
    ("resize_linear_pytorch_half_pixel_down", [_resize(
        "linear", coordinate_transformation_mode="pytorch_half_pixel")],
     [_floats("s", [1, 1, 0.5, 0.75])], (1, 2, 8, 8), (1, 2, 4, 6)),
    ("add_rank3_constant_broadcast", [helper.make_node("Add", ["x", "k"], ["y"])],
     [_floats("k", np.arange(4).reshape(4, 1) - 1.5)], (3, 4, 5), (3, 4, 5)),
    ("mul_rank2_per_item", [helper.make_node("Mul", ["x", "k"], ["y"])],
     [_floats("k", np.linspace(-2, 2, 6))], (2, 6), (2, 6)),
    ("add_rank3_two_run_time_operands", [
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 1]),
        helper.make_node("Add", ["x", "t"], ["y"])], [], (2, 4, 4), (2, 4, 4)),
    ("mul_rank5_broadcast", [helper.make_node("Mul", ["x", "k"], ["y"])],
     [_floats("k", np.linspace(-1, 1, 3).reshape(3, 1, 1))], (1, 2, 3, 2, 2), (1, 2, 3, 2, 2)),
    ("add_rank1_broadcast", [helper.make_node("Add", ["x", "k"], ["y"])],
     [_floats("k", [0.75])], (7,), (7,)),
    ("concat_width_rank4_per_item", [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Concat", ["x", "r", "x"], ["y"], axis=3)], [], (2, 3, 4, 5),
     (2, 3, 4, 15)),
    ("concat_rank3_last_axis_per_item", [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Concat", ["r", "x"], ["y"], axis=-1)], [], (2, 3, 4), (2, 3, 8)),
    ("concat_rank2_features", [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Concat", ["x", "r"], ["y"], axis=1)], [], (1, 6), (1, 12)),
    ("reduce_max_spatial", [helper.make_node("ReduceMax", ["x"], ["y"], axes=[2, 3])], [],
     (2, 3, 4, 5), (2, 3, 1, 1)),
    ("reduce_max_spatial_dropped", [helper.make_node("ReduceMax", ["x"], ["y"], axes=[-1, -2],
                                                     keepdims=0)], [], (1, 3, 4, 5), (1, 3)),
    ("reduce_mean_dropped_axes", [helper.make_node("ReduceMean", ["x"], ["y"], axes=[1, 3],
                                                   keepdims=0)], [], (2, 3, 4, 5), (2, 4)),
    ("reduce_sum_channels_row", [helper.make_node("ReduceSum", ["x", "ax"], ["y"])],
     [_ints("ax", [1])], (2, 3, 4, 5), (2, 1, 4, 5)),
    ("reduce_sum_spatial_whole", [helper.make_node("ReduceSum", ["x", "ax"], ["y"], keepdims=0)],
     [_ints("ax", [-2, -1])], (1, 3, 4, 5), (1, 3)),
    ("reduce_sum_all_axes", [helper.make_node("ReduceSum", ["x"], ["y"])], [], (2, 3, 4),
     (1, 1, 1)),
    ("reduce_max_channels_row", [helper.make_node("ReduceMax", ["x"], ["y"], axes=[1])], [],
     (2, 3, 4, 5), (2, 1, 4, 5)),
    ("reduce_max_height_dropped", [helper.make_node("ReduceMax", ["x"], ["y"], axes=[2],
                                                    keepdims=0)], [], (1, 3, 4, 5), (1, 3, 5)),
    ("reduce_max_rank3_last_axis", [helper.make_node("ReduceMax", ["x"], ["y"], axes=[-1])], [],
     (3, 4, 5), (3, 4, 1)),
    ("reduce_min_channels_row", [helper.make_node("ReduceMin", ["x"], ["y"], axes=[1])], [],
     (2, 3, 4, 5), (2, 1, 4, 5)),
    ("reduce_prod_width_dropped", [helper.make_node("ReduceProd", ["x"], ["y"], axes=[3],
                                                    keepdims=0)], [], (1, 3, 4, 5), (1, 3, 4)),
    ("reduce_prod_all_axes", [helper.make_node("ReduceProd", ["x"], ["y"])], [], (2, 3),
     (1, 1)),
    ("argmax_channels_row", [helper.make_node("ArgMax", ["x"], ["i"], axis=1),
                             helper.make_node("Cast", ["i"], ["y"], to=TensorProto.FLOAT)], [],
     (2, 5, 4, 3), (2, 1, 4, 3)),
    ("argmax_last_axis_dropped", [helper.make_node("ArgMax", ["x"], ["i"], axis=-1, keepdims=0),
                                  helper.make_node("Cast", ["i"], ["y"], to=TensorProto.FLOAT)],
     [], (3, 7), (3,)),
    ("argmin_height_select_last", [
        helper.make_node("Clip", ["x", "lo", "hi"], ["c"]),  # ties for select_last_index
        helper.make_node("ArgMin", ["c"], ["i"], axis=2, select_last_index=1),
        helper.make_node("Cast", ["i"], ["y"], to=TensorProto.FLOAT)],
     [_floats("lo", -0.5), _floats("hi", 0.5)], (1, 3, 6, 4), (1, 3, 1, 4)),
    ("log_softmax_channels_row", [helper.make_node("LogSoftmax", ["x"], ["y"], axis=1)], [],
     (2, 4, 3, 5), (2, 4, 3, 5)),
    ("log_softmax_last_axis", [helper.make_node("LogSoftmax", ["x"], ["y"])], [], (3, 10),
     (3, 10)),
    ("log_softmax_rank3_middle_axis", [helper.make_node("LogSoftmax", ["x"], ["y"], axis=1)],
     [], (2, 4, 3), (2, 4, 3)),
    ("softmax_rank3_first_axis", [helper.make_node("Softmax", ["x"], ["y"], axis=0)], [],
     (3, 2, 5), (3, 2, 5)),
    ("split_channels_sizes_input", [
        helper.make_node("Split", ["x", "sp"], ["a", "b", "c"], axis=1),
        helper.make_node("Relu", ["b"], ["r"]),
        helper.make_node("Concat", ["c", "r", "a"], ["y"], axis=1)],
     [_ints("sp", [1, 3, 2])], (2, 6, 3, 4), (2, 6, 3, 4)),
    ("split_height", [
        helper.make_node("Split", ["x", "sp"], ["a", "b"], axis=2),
        helper.make_node("ReduceMax", ["a"], ["m"], axes=[2]),
        helper.make_node("ReduceMin", ["b"], ["n"], axes=[2]),
        helper.make_node("Concat", ["n", "m"], ["y"], axis=3)],
     [_ints("sp", [3, 2])], (1, 2, 5, 3), (1, 2, 1, 6)),
    ("split_rank3_last_axis_equal", [
        helper.make_node("Split", ["x"], ["a", "b"], axis=-1),
        helper.make_node("Add", ["a", "b"], ["y"])], [], (2, 3, 8), (2, 3, 4)),
    ("gemm_trans_a_alpha_beta", [
        helper.make_node("Gemm", ["x", "w", "c"], ["y"], transA=1, alpha=0.5, beta=2.0)],
     [_floats("w", np.linspace(-1, 1, 20).reshape(4, 5)), _floats("c", np.linspace(-2, 2, 5))],
     (4, 3), (3, 5)),
    ("gemm_trans_a_trans_b", [helper.make_node("Gemm", ["x", "w"], ["y"], transA=1, transB=1)],
     [_floats("w", np.linspace(-1, 1, 20).reshape(5, 4))], (4, 3), (3, 5)),
    ("matmul_rank3_by_constant", [helper.make_node("MatMul", ["x", "w"], ["y"])],
     [_floats("w", np.linspace(-1, 1, 20).reshape(4, 5))], (2, 3, 4), (2, 3, 5)),
    ("matmul_by_constant_vector", [helper.make_node("MatMul", ["x", "w"], ["y"])],
     [_floats("w", [0.5, -1, 2, 0.25])], (2, 3, 4), (2, 3)),
    ("matmul_constant_by_rank3", [helper.make_node("MatMul", ["w", "x"], ["y"])],
     [_floats("w", np.linspace(-1, 1, 20).reshape(5, 4))], (2, 4, 3), (2, 5, 3)),
    ("normalisation_subgraph_of_constants", [
        helper.make_node("Add", ["var", "eps"], ["ve"]),
        helper.make_node("Sqrt", ["ve"], ["sd"]),
        helper.make_node("Pow", ["sd", "one"], ["sd1"]),
        helper.make_node("Reciprocal", ["sd1"], ["inv"]),
        helper.make_node("Neg", ["mean"], ["nm"]),
        helper.make_node("Add", ["x", "nm"], ["xc"]),
        helper.make_node("Mul", ["xc", "inv"], ["xn"]),
        helper.make_node("Sub", ["xn", "shift"], ["y"])],
     [_floats("var", np.array([0.5, 2.0, 4.0]).reshape(3, 1, 1)), _floats("eps", [1e-5]),
      _floats("mean", np.array([0.1, -0.2, 0.3]).reshape(3, 1, 1)), _floats("one", [1.0]),
      _floats("shift", np.array([1.0, 0.0, -1.0]).reshape(3, 1, 1))], (1, 3, 4, 5),
     (1, 3, 4, 5)),
    ("sub_two_run_time_and_square", [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Sub", ["x", "r"], ["d"]),
        helper.make_node("Pow", ["d", "two"], ["p"]),
        helper.make_node("Neg", ["p"], ["y"])], [_floats("two", [2.0])], (2, 3, 4, 5),
     (2, 3, 4, 5)),
    ("slice_run_time_two_axes", [helper.make_node("Slice", ["x", "st", "en", "ax"], ["y"])],
     [_ints("st", [1, -3]), _ints("en", [3, 100]), _ints("ax", [1, 3])], (2, 4, 3, 5),
     (2, 2, 3, 3)),
]


@pytest.mark.parametrize("case", FLOAT_CASES, ids=[c[0] for c in FLOAT_CASES])
def test_layer_in_host_float_matches_onnxruntime(tmp_path, case):
    _, nodes, inits, xs, ys = case
    model = _model(nodes, xs, ys, inits)
    frames = np.random.default_rng(3).normal(0, 1, (2,) + xs).astype(np.float32)
    y, want = _host_float(model, tmp_path, frames)
    # data movement, a maximum, a minimum and an index are exact; a mean, sum or product (in
    # double here) and a log-softmax differ from onnxruntime's float ones by rounding only
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)


def _decoder(torch):
    """The issue's decoder: ConstantPad2d, a conv, PixelShuffle, two ConvTranspose2d (the second
    U-Net's kernel 2 stride 2)."""
    class Decoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.pad = torch.nn.ConstantPad2d((1, 2, 0, 1), 0.5)
            self.conv = torch.nn.Conv2d(3, 8, 3)
            self.shuffle = torch.nn.PixelShuffle(2)
            self.up = torch.nn.ConvTranspose2d(2, 4, 3, stride=2, padding=1, output_padding=1)
            self.up2 = torch.nn.ConvTranspose2d(4, 2, 2, stride=2)

        def forward(self, x):
            y = torch.relu(self.shuffle(self.conv(self.pad(x))))
            return self.up2(torch.relu(self.up(y)))
    return Decoder().eval()


def test_torch_pad_pixelshuffle_convtranspose_cnn_compiles_and_matches_onnxruntime(tmp_path):
    """Issue 25's done-when case, as a user runs it: torch.onnx.export, `alohac compile --target
    host-cpu`, make, run; the program's outputs equal onnxruntime's within 1e-4 relative."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = _decoder(torch)
    path = str(tmp_path / "decoder.onnx")
    torch.onnx.export(model, (torch.rand(1, 3, 8, 8),), path, dynamo=False, opset_version=17)
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert {"Pad", "DepthToSpace", "ConvTranspose"} <= ops, ops
    out = str(tmp_path / "out")
    r = subprocess.run([sys.executable, "-m", "alohac.main", "compile", path, "--target",
                        "host-cpu", "-o", out], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    code = os.path.join(out, "code")
    build(code)
    frames = np.random.default_rng(0).uniform(-1, 1, (3, 3, 8, 8)).astype(np.float32)
    r, y = run(code, frames)
    assert r.returncode == 0, r.stderr[-2000:]
    exported = onnx.load(path)
    name = exported.graph.input[0].name
    want = np.stack([run_ort(exported, {name: f[None]})[0].reshape(-1) for f in frames])
    assert y.shape == want.shape == (3, 2 * 56 * 72)
    assert np.abs(y - want).max() <= 1e-4 * np.abs(want).max()
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_space_to_depth_crd_of_opset_28_matches_the_onnx_reference(tmp_path):
    """Opset 28's SpaceToDepth mode: CRD keeps a channel's blocks together (before: the mode was
    read as DCR, the program's output 0.4 off; the ONNX backend suite found it)."""
    from onnx.reference import ReferenceEvaluator
    model = _model([helper.make_node("SpaceToDepth", ["x"], ["y"], blocksize=2, mode="CRD")],
                   (1, 3, 4, 6), (1, 12, 2, 3), opset=28)
    frames = np.random.default_rng(4).normal(0, 1, (2, 1, 3, 4, 6)).astype(np.float32)
    y, want = _host_float(model, tmp_path, frames,
                          lambda m, feeds: ReferenceEvaluator(m).run(None, feeds))
    np.testing.assert_array_equal(y, want)


def _fixed_models():
    """Digits-sized (1 x 8 x 8) models for the fixed-point path: every new kernel behind a conv
    whose output format the quantizer chooses."""
    rng = np.random.default_rng(5)
    conv = helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1])
    relu = helper.make_node("Relu", ["c"], ["r"])
    movement = _model([
        conv, relu,
        helper.make_node("Pad", ["r", "p1"], ["p"], mode="reflect"),
        helper.make_node("DepthToSpace", ["p"], ["d"], blocksize=2, mode="CRD"),
        helper.make_node("SpaceToDepth", ["d"], ["s"], blocksize=2),
        helper.make_node("Transpose", ["s"], ["t"], perm=[0, 1, 3, 2]),
        helper.make_node("ReduceMean", ["t"], ["m"], axes=[1]),
        helper.make_node("Pad", ["m", "p2", "v"], ["q"], mode="constant"),
        helper.make_node("Pad", ["q", "p3"], ["e"], mode="edge"),
        _resize("linear", src="e", out="l", table="rs"),
        _resize("nearest", src="l", out="n", table="rs",
                coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        helper.make_node("ReduceMean", ["n"], ["y"], axes=[2])],
        (1, 1, 8, 8), (1, 1, 1, 36), _conv_init(rng, 4, 1) + [_floats("rs", [1, 1, 1.5, 1.5]),
            _ints("p1", [0, 0, 1, 2, 0, 0, 2, 1]), _ints("p2", [0, 0, 1, 1, 0, 0, 1, 1]),
            numpy_helper.from_array(np.array(0.3, np.float32), "v"),
            _ints("p3", [0, 0, 1, 2, 0, 0, 1, 1])])
    wt1 = numpy_helper.from_array(rng.normal(0, 0.4, (4, 2, 3, 3)).astype(np.float32), "wt1")
    wt2 = numpy_helper.from_array(rng.normal(0, 0.4, (2, 2, 2, 2)).astype(np.float32), "wt2")
    bt = numpy_helper.from_array(rng.normal(0, 0.1, 2).astype(np.float32), "bt")
    decoder = _model([
        conv, relu,
        helper.make_node("ConvTranspose", ["r", "wt1", "bt"], ["u"], strides=[2, 2],
                         pads=[1, 1, 1, 1], output_padding=[1, 1]),
        helper.make_node("Relu", ["u"], ["v"]),
        helper.make_node("ConvTranspose", ["v", "wt2"], ["y"], strides=[2, 2])],
        (1, 1, 8, 8), (1, 2, 32, 32), _conv_init(rng, 4, 1) + [wt1, wt2, bt])
    any_rank = _model([
        conv, relu,
        helper.make_node("Reshape", ["r", "shape"], ["f"]),
        helper.make_node("Mul", ["f", "k1"], ["m"]),
        helper.make_node("Transpose", ["m"], ["t"], perm=[0, 2, 1]),
        helper.make_node("Add", ["t", "k2"], ["a"]),
        helper.make_node("Transpose", ["a"], ["u"], perm=[0, 2, 1]),
        helper.make_node("Add", ["u", "m"], ["s"]),
        helper.make_node("Concat", ["s", "f"], ["y"], axis=2)],
        (1, 1, 8, 8), (1, 4, 128), _conv_init(rng, 4, 1) + [
            _ints("shape", [1, 4, 64]), _floats("k1", rng.uniform(-2, 2, (4, 1))),
            _floats("k2", rng.uniform(-1, 1, 4))])
    reductions = _model([
        conv, relu,
        helper.make_node("ReduceMax", ["c"], ["mx"], axes=[1]),
        helper.make_node("ReduceSum", ["r", "ax1"], ["sm"]),
        helper.make_node("Add", ["mx", "sm"], ["a"]),
        helper.make_node("Concat", ["c", "a"], ["cc"], axis=1),
        helper.make_node("ReduceMax", ["cc"], ["m"], axes=[2], keepdims=0),
        helper.make_node("Flatten", ["m"], ["y"])],
        (1, 1, 8, 8), (1, 40), _conv_init(rng, 4, 1) + [_ints("ax1", [1])])
    # the indices read the input, which 8 bits hold exactly (digits' k/16): the same in float
    parts = ("mn", "pr", "ls", "l3", "am", "an")
    flat = [helper.make_node("Flatten", [v], [f"{v}f"]) for v in parts]
    arg_reductions = _model([
        conv, relu,
        helper.make_node("ReduceMin", ["c"], ["mn"], axes=[1]),
        helper.make_node("ReduceProd", ["r"], ["pr"], axes=[1]),
        helper.make_node("LogSoftmax", ["c"], ["ls"], axis=1),
        helper.make_node("Reshape", ["c", "shape"], ["c3"]),
        helper.make_node("LogSoftmax", ["c3"], ["l3"], axis=1),
        helper.make_node("ArgMax", ["x"], ["ai"], axis=3),
        helper.make_node("Cast", ["ai"], ["am"], to=TensorProto.FLOAT),
        helper.make_node("ArgMin", ["x"], ["ni"], axis=2, select_last_index=1),
        helper.make_node("Cast", ["ni"], ["an"], to=TensorProto.FLOAT), *flat,
        helper.make_node("Concat", [f"{v}f" for v in parts], ["y"], axis=1)],
        (1, 1, 8, 8), (1, 656), _conv_init(rng, 4, 1) + [_ints("shape", [1, 4, 64])])
    split = _model([
        conv,
        helper.make_node("Split", ["c", "sp"], ["s1", "s2"], axis=1),
        helper.make_node("Relu", ["s2"], ["r2"]),
        helper.make_node("Concat", ["r2", "s1"], ["cc"], axis=1),
        helper.make_node("Slice", ["cc", "st", "en", "ax"], ["sl"]),
        helper.make_node("Flatten", ["sl"], ["y"])],
        (1, 1, 8, 8), (1, 160), _conv_init(rng, 4, 1) + [
            _ints("sp", [1, 3]), _ints("st", [1]), _ints("en", [6]), _ints("ax", [3])])
    return {"movement": movement, "decoder": decoder, "any_rank": any_rank,
            "reductions": reductions, "arg_reductions": arg_reductions, "split": split}


@pytest.mark.parametrize("name", ["movement", "decoder", "any_rank", "reductions",
                                  "arg_reductions", "split"])
def test_layers_in_host_fixed_point_are_bit_exact(tmp_path, name):
    """Quantized to 8 bits, the generated program (under the address and undefined-behaviour
    sanitizers) equals the fixed-point reference bit for bit (the host runs the fixed-point
    kernels NEURAghe and Orlando builds use)."""
    from aloha_ir.context import make_context
    from aloha_ir.passmanager import PassManager
    from frontends.loader import load_model
    from runtime.reference import reference
    path = str(tmp_path / f"{name}.onnx")
    model = _fixed_models()[name]
    onnx.save(model, path)
    module = load_model(path, {})
    PassManager.parse("canonicalize,quantize{bits=8 data=digits samples=32 evaluate=false}").run(
        module, make_context())
    code = generate(module, "host-cpu", str(tmp_path))
    build(code, "network-asan")
    from sklearn.datasets import load_digits
    x = (load_digits().images[:3].astype(np.float32) / 16.0).reshape(3, 1, 1, 8, 8)
    r, y = run(code, x, "network-asan", env={"ASAN_OPTIONS": "detect_leaks=0",
                                            "UBSAN_OPTIONS": "halt_on_error=1"})
    assert r.returncode == 0 and "runtime error" not in r.stderr, r.stderr[-2000:]
    ref = reference(module)
    want = np.stack([ref.real(f.astype(np.float64)).reshape(-1) for f in x])
    assert y.shape == (3, math.prod(d.dim_value for d in
                                    model.graph.output[0].type.tensor_type.shape.dim))
    np.testing.assert_array_equal(y, want.astype(np.float32))
    # the torch simulation computes the same integers, layer by layer
    torch = pytest.importorskip("torch")
    from runtime.torch.fixed import build_fixed
    batch = x.reshape(3, 1, 8, 8)
    ints = reference(module).integers(batch.astype(np.float64))
    with torch.no_grad():
        sim = build_fixed(module).integers(torch.from_numpy(batch))
    for label, q in ints.items():
        np.testing.assert_array_equal(sim[label].numpy(), q, err_msg=label)
    # and the quantized program still computes the float model (8-bit formats' error)
    float_want = np.stack([run_ort(model, {"x": f})[0].reshape(-1) for f in x])
    assert np.abs(y - float_want).max() < 0.1 * np.abs(float_want).max()


@pytest.mark.slow  # eight builds; the host variant runs in make test
@pytest.mark.parametrize("target", ["neuraghe-losa", "orlando"])
@pytest.mark.parametrize("name", ["movement", "decoder", "any_rank", "reductions",
                                  "arg_reductions", "split"])
def test_layers_on_the_fixed_point_platforms_are_bit_exact(tmp_path, target, name):
    """The platforms place these ops on their processor, which runs the same fixed-point
    kernels: the program equals the reference bit for bit."""
    from aloha_ir.context import make_context
    from aloha_ir.passmanager import PassManager
    from frontends.loader import load_model
    from runtime.reference import reference
    from sklearn.datasets import load_digits
    path = str(tmp_path / f"{name}.onnx")
    onnx.save(_fixed_models()[name], path)
    module = load_model(path, {})
    PassManager.parse("canonicalize,quantize{bits=8 data=digits samples=32 evaluate=false}").run(
        module, make_context())
    code = generate(module, target, str(tmp_path))
    build(code)
    x = (load_digits().images[:2].astype(np.float32) / 16.0).reshape(2, 1, 1, 8, 8)
    r, y = run(code, x)
    assert r.returncode == 0, r.stderr[-2000:]
    ref = reference(module)
    want = np.stack([ref.real(f.astype(np.float64)).reshape(-1) for f in x])
    np.testing.assert_array_equal(y, want.astype(np.float32))


# (strides, pads, output_padding, dilations, group, kernel): torch's defaults, U-Net's 2x2 stride
# 2, odd pads, dilation, groups, pads that move some or all inserted zeros before their row
CONV_TRANSPOSE_CASES = [
    ([1, 1], [0, 0, 0, 0], [0, 0], [1, 1], 1, 3),
    ([2, 2], [1, 1, 1, 1], [1, 1], [1, 1], 1, 3),
    ([2, 2], [0, 0, 0, 0], [0, 0], [1, 1], 1, 2),
    ([3, 2], [2, 0, 1, 1], [1, 0], [1, 1], 1, 4),
    ([2, 2], [1, 0, 2, 1], [0, 1], [2, 1], 2, 3),
    ([2, 3], [1, 1, 1, 1], [0, 0], [1, 1], 2, 3),
]


@pytest.mark.parametrize("case", CONV_TRANSPOSE_CASES, ids=[str(i) for i in
                                                            range(len(CONV_TRANSPOSE_CASES))])
def test_conv_transpose_imports_as_the_convolution_it_equals(case):
    """The importer's zero-insertion + pad + flipped-kernel conv computes onnxruntime's
    ConvTranspose (the float executor of the imported graph)."""
    torch = pytest.importorskip("torch")
    from frontends.onnx.importer import import_model
    from runtime.torch.module import build as build_float
    strides, pads, extra, dilations, group, k = case
    rng = np.random.default_rng(7)
    xs = (2, 4, 5, 6)
    w = rng.normal(0, 1, (4, 6 // group, k, k)).astype(np.float32)
    b = rng.normal(0, 1, 6 // group * group).astype(np.float32)
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], strides=strides, pads=pads,
                            output_padding=extra, dilations=dilations, group=group)
    out = [xs[0], 6 // group * group] + [
        strides[i] * (xs[2 + i] - 1) + extra[i] + dilations[i] * (k - 1) + 1 - pads[i] -
        pads[i + 2] for i in (0, 1)]
    model = _model([node], xs, out, [numpy_helper.from_array(w, "w"),
                                     numpy_helper.from_array(b, "b")])
    x = rng.normal(0, 1, xs).astype(np.float32)
    want = run_ort(model, {"x": x})[0]
    got = build_float(import_model(model)).eval()(torch.from_numpy(x)).detach().numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_a_cropping_conv_transpose_is_refused_naming_the_node(tmp_path):
    """A 1x1 kernel with stride 2 yields 2H - 1 rows: the zero-inserted input is one row too
    long, which no conv pad can crop, so the import refuses it (exit 4) naming the node."""
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], name="up1")
    model = _model([node], (1, 2, 4, 4), (1, 3, 7, 7),
                   [numpy_helper.from_array(np.ones((2, 3, 1, 1), np.float32), "w")])
    path = str(tmp_path / "crop.onnx")
    onnx.save(model, path)
    r = subprocess.run([sys.executable, "-m", "alohac.main", "compile", path, "--target",
                        "host-cpu", "-o", str(tmp_path / "out")], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 4, r.stderr
    assert "node 'up1' (ConvTranspose)" in r.stderr and "cropped output" in r.stderr, r.stderr


def test_reductions_import_over_any_axes_and_noop_with_empty_axes_keeps_the_input():
    """ReduceMax over the channels (before: refused, only H and W were supported) and ReduceSum
    become nn.reduce over the axes ONNX names (none: all of them); noop_with_empty_axes and no
    axes is the input itself. The torch float executor and the ONNX export (opset 13, and 18
    where ReduceMax takes its axes as an input) agree with onnxruntime on the original."""
    torch = pytest.importorskip("torch")
    from aloha_ir.textio import parse_module, print_module
    from aloha_ir.weights import weights_of
    from backends.onnx.export import GraphExporter, make_model, single_graph
    from frontends.onnx.importer import import_model
    from runtime.torch.module import build
    cases = [(helper.make_node("ReduceMax", ["x"], ["y"], axes=[1]), [], (1, 1, 4, 5),
              ("max", [1])),
             (helper.make_node("ReduceSum", ["x", "ax"], ["y"], keepdims=0), [_ints("ax", [0, 2])],
              (3, 5), ("sum", [0, 2])),
             (helper.make_node("ReduceSum", ["x"], ["y"]), [], (1, 1, 1, 1), ("sum", [0, 1, 2, 3])),
             (helper.make_node("ReduceSum", ["x"], ["y"], noop_with_empty_axes=1), [],
              (1, 3, 4, 5), None)]
    x = np.random.default_rng(6).normal(0, 1, (1, 3, 4, 5)).astype(np.float32)
    for node, inits, ys, want in cases:
        model = _model([node], (1, 3, 4, 5), ys, inits)
        module = import_model(model)
        reduces = [op for op in module.walk() if op.name == "nn.reduce"]
        got = [(op.kind.data, list(op.prop_ints("axes"))) for op in reduces]
        assert got == ([want] if want else []), node
        (ref,) = run_ort(model, {"x": x})
        with torch.no_grad():
            y = build(module)(torch.from_numpy(x))
        y = (y[0] if isinstance(y, (list, tuple)) else y).numpy()
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)
        again = parse_module(print_module(module))
        for opset in (13, 18):
            exporter = GraphExporter(single_graph(again), weights_of(again), opset)
            (ours,) = run_ort(make_model(exporter.export(), opset), {"x": x})
            np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)


def _torch_and_export_agree(model, module, x, tol: float, opsets=(13,)) -> None:
    """The torch float executor of `module` and its ONNX export at each of `opsets` (its text
    printed and parsed back first, its weights the module's) give onnxruntime's outputs of `model` on `x`, within `tol`."""
    import torch
    from aloha_ir.textio import parse_module, print_module
    from aloha_ir.weights import weights_of
    from backends.onnx.export import GraphExporter, make_model, single_graph
    from runtime.torch.module import build
    want = run_ort(model, {"x": x})
    with torch.no_grad():
        got = build(module)(torch.from_numpy(x))
    runs = [[t.numpy() for t in (got if isinstance(got, (list, tuple)) else (got,))]]
    again = parse_module(print_module(module))
    for opset in opsets:
        exporter = GraphExporter(single_graph(again), weights_of(module), opset)
        runs.append(run_ort(make_model(exporter.export(), opset), {"x": x}))
    for run in runs:
        assert len(run) == len(want)
        for g, w in zip(run, want):
            np.testing.assert_allclose(g, w, rtol=tol, atol=tol)


def _as_float(node: onnx.NodeProto) -> list[onnx.NodeProto]:
    """`node` (ArgMax/ArgMin, an int64 index named 'i') and the Cast of its index to y."""
    return [node, helper.make_node("Cast", ["i"], ["y"], to=TensorProto.FLOAT)]


def test_min_prod_and_index_reductions_and_log_softmax_import_run_and_export():
    """ReduceMin, ReduceProd, ArgMax/ArgMin (keepdims, a negative axis, select_last_index) and
    LogSoftmax (before: refused as unsupported operators) become nn.reduce and nn.act; the torch
    float executor and the ONNX export (opset 13, and 18 where ReduceMin/ReduceProd take their
    axes as an input) agree with onnxruntime on the original, the index as a float."""
    pytest.importorskip("torch")
    from frontends.onnx.importer import import_model
    rng = np.random.default_rng(8)
    x = rng.normal(0, 1, (1, 3, 4, 5)).astype(np.float32)
    x[0, :, 1, :] = x[0, 0, 1, :]  # equal channels in row 1: ties for the index reductions
    cases = [
        ([helper.make_node("ReduceMin", ["x"], ["y"], axes=[1, 3])], [], (1, 1, 4, 1),
         ("nn.reduce", "min", [1, 3], 0)),
        ([helper.make_node("ReduceProd", ["x"], ["y"], axes=[0, 2], keepdims=0)], [], (3, 5),
         ("nn.reduce", "prod", [0, 2], 0)),
        (_as_float(helper.make_node("ArgMax", ["x"], ["i"], axis=1)), [], (1, 1, 4, 5),
         ("nn.reduce", "argmax", [1], 0)),
        (_as_float(helper.make_node("ArgMax", ["x"], ["i"], axis=1, select_last_index=1)), [],
         (1, 1, 4, 5), ("nn.reduce", "argmax", [1], 1)),
        (_as_float(helper.make_node("ArgMin", ["x"], ["i"], axis=-1, keepdims=0)), [],
         (1, 3, 4), ("nn.reduce", "argmin", [3], 0)),
        ([helper.make_node("LogSoftmax", ["x"], ["y"], axis=1)], [], (1, 3, 4, 5),
         ("nn.act", "log_softmax", None, 0)),
    ]
    for nodes, inits, ys, (op_name, kind, axes, last) in cases:
        model = _model(nodes, (1, 3, 4, 5), ys, inits)
        module = import_model(model)
        (op,) = [op for op in module.walk() if op.name == op_name]
        assert op.kind.data == kind, nodes[0]
        if axes is not None:
            assert list(op.prop_ints("axes")) == axes and \
                op.prop_int("select_last_index", 0) == last, nodes[0]
        _torch_and_export_agree(model, module, x, 1e-5, (13, 18))


def test_an_int64_index_output_is_float32_in_the_program_and_int64_in_the_export():
    """ArgMax as the graph's int64 output (before: refused, 'output has element type int64'):
    the import says the program writes float32 indices, and the ONNX export restores int64 and
    the values onnxruntime gives on the original."""
    from aloha_ir.errors import AlohaWarning
    from backends.onnx.export import export_onnx
    from frontends.onnx.importer import import_model
    g = helper.make_graph([helper.make_node("ArgMax", ["x"], ["y"], axis=2, keepdims=0)], "arg",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.INT64, [2, 3])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.warns(AlohaWarning, match=r"output 'y' is int64: indices computed as float32 "
                                          r"\(exact up to 2\^24\)"):
        module = import_model(model)
    exported = export_onnx(module)
    assert exported.graph.output[0].type.tensor_type.elem_type == TensorProto.INT64
    x = np.random.default_rng(9).normal(0, 1, (2, 3, 4)).astype(np.float32)
    (want,) = run_ort(model, {"x": x})
    (got,) = run_ort(exported, {"x": x})
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, want)


def _split_model(nodes, opset, outs, inits=()):
    g = helper.make_graph(nodes, "split", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                         [2, 6, 5])],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, None)
                           for o in outs], initializer=list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("opset,split_node,inits", [
    (11, helper.make_node("Split", ["x"], ["a", "b", "c"], axis=1, split=[1, 2, 3]), []),
    (13, helper.make_node("Split", ["x", "sp"], ["a", "b", "c"], axis=-2),
     [_ints("sp", [1, 2, 3])]),
    (18, helper.make_node("Split", ["x"], ["a", "b", "c"], axis=1, num_outputs=3), []),
    (18, helper.make_node("Split", ["x"], ["a", "b", "c"], axis=2, num_outputs=3), [])])
def test_split_outputs_consumed_in_the_graph_import_run_and_export(opset, split_node, inits):
    """Split by the split attribute (opset 11), the split input (13) and num_outputs (18: 5 into
    2, 2, 1) becomes one nn.slice per output (before: refused, an unsupported operator); each
    output feeds another node, and the torch float executor and the ONNX export (opsets 13 and
    18) agree with onnxruntime."""
    pytest.importorskip("torch")
    from frontends.onnx.importer import import_model
    nodes = [split_node, helper.make_node("Relu", ["a"], ["ra"]),
             helper.make_node("Mul", ["b", "b"], ["mb"]),
             helper.make_node("Sigmoid", ["c"], ["sc"])]
    model = _split_model(nodes, opset, ["ra", "mb", "sc"], inits)
    module = import_model(model)
    assert len([op for op in module.walk() if op.name == "nn.slice"]) == 3
    x = np.random.default_rng(10).normal(0, 1, (2, 6, 5)).astype(np.float32)
    _torch_and_export_agree(model, module, x, 1e-6, (13, 18))


def test_split_of_a_constant_folds_and_bad_splits_are_refused_naming_the_node():
    """A Split of a constant is folded (no nn.slice); sizes that do not add up to the axis and a
    run-time Slice with a step other than 1 are refused with the node named (exit 5, exit 4)."""
    from aloha_ir.errors import ShapeError, UnsupportedError
    from frontends.onnx.importer import import_model
    k = np.arange(24, dtype=np.float32).reshape(2, 12, 1)
    folded = _split_model([helper.make_node("Split", ["k", "sp"], ["k1", "k2"], axis=1),
                           helper.make_node("Add", ["x", "k2"], ["y"])], 13, ["y"],
                          [_floats("k", k), _ints("sp", [6, 6])])
    module = import_model(folded)
    assert not [op for op in module.walk() if op.name == "nn.slice"]
    x = np.random.default_rng(11).normal(0, 1, (2, 6, 5)).astype(np.float32)
    from runtime.torch.module import build
    torch = pytest.importorskip("torch")
    with torch.no_grad():
        y = build(module)(torch.from_numpy(x))
    y = y[0] if isinstance(y, (list, tuple)) else y
    np.testing.assert_allclose(y.numpy(), x + k[:, 6:], rtol=1e-6)
    bad = _split_model([helper.make_node("Split", ["x", "sp"], ["a", "b"], axis=1, name="sp1")],
                       13, ["a", "b"], [_ints("sp", [2, 3])])
    with pytest.raises(ShapeError, match=r"node 'sp1' \(Split\): Split of axis 1 \(6 elements\) "
                                         r"into \[2, 3\]") as e:
        import_model(bad)
    assert e.value.exit_code == 5
    stepped = _split_model([helper.make_node("Slice", ["x", "st", "en", "ax", "stp"], ["y"],
                                             name="sl")], 13, ["y"],
                           [_ints("st", [0]), _ints("en", [6]), _ints("ax", [1]),
                            _ints("stp", [2])])
    with pytest.raises(UnsupportedError, match=r"node 'sl' \(Slice\): Slice of a run-time tensor "
                                               r"with steps \[2\] is not supported") as e:
        import_model(stepped)
    assert e.value.exit_code == 4


@pytest.mark.parametrize("nodes,x_shape,w_shape,c_shape", [
    ([helper.make_node("Gemm", ["x", "w", "c"], ["y"], transA=1, alpha=0.5, beta=2.0)], (4, 3),
     (4, 5), (3, 5)),
    ([helper.make_node("Gemm", ["x", "w", "c"], ["y"], transA=1, transB=1)], (4, 3), (5, 4),
     (3, 1)),
    ([helper.make_node("MatMul", ["x", "w"], ["y"])], (2, 3, 4), (4, 5), None),
    ([helper.make_node("MatMul", ["x", "w"], ["y"])], (4,), (4, 5), None),
    ([helper.make_node("MatMul", ["w", "x"], ["y"])], (2, 4, 3), (5, 4), None),
    ([helper.make_node("MatMul", ["w", "x"], ["y"])], (4, 3), (5, 4), None)])
def test_gemm_and_matmul_with_constant_weights_in_any_layout(nodes, x_shape, w_shape, c_shape):
    """Gemm with transA (before: refused) and a C broadcast to the whole output (before: refused
    unless a vector), MatMul of a rank-3 or rank-1 A by constant weights and of constant weights
    by a run-time B (before: refused, run-time right-hand side): the torch float executor and the
    ONNX export agree with onnxruntime."""
    pytest.importorskip("torch")
    from frontends.onnx.importer import import_model
    rng = np.random.default_rng(12)
    inits = [_floats("w", rng.normal(0, 1, w_shape))] + \
        ([_floats("c", rng.normal(0, 1, c_shape))] if c_shape else [])
    g = helper.make_graph(nodes, "mm", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                      list(x_shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          initializer=inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    module = import_model(model)
    x = rng.normal(0, 1, x_shape).astype(np.float32)
    _torch_and_export_agree(model, module, x, 1e-5)


@pytest.mark.parametrize("node,inits,message", [
    (helper.make_node("Div", ["x", "r"], ["y"], name="d"), [],
     r"node 'd' \(Div\): Div by a run-time tensor is not supported: a division of two run-time "
     r"values"),
    (helper.make_node("Exp", ["r"], ["y"], name="e"), [],
     r"node 'e' \(Exp\): Exp of a run-time tensor is not supported; supported: Exp of constants"),
    (helper.make_node("Pow", ["x", "k"], ["y"], name="p"), [_floats("k", [3.0])],
     r"node 'p' \(Pow\): Pow of run-time tensors is not supported; supported: constants \(folded\),"
     r" or a run-time base to the constant power 1 or 2")])
def test_run_time_operations_without_a_kernel_are_refused_naming_the_node(node, inits, message):
    """What normalisation subgraphs with run-time statistics need (the backend suite's expanded
    softmax, group normalisation, windows): a division by, an exponential or a power of a run-time
    tensor, refused with exit 4 and what is supported."""
    from aloha_ir.errors import UnsupportedError
    from frontends.onnx.importer import import_model
    model = _model([helper.make_node("Relu", ["x"], ["r"]), node], (1, 3, 4, 5), (1, 3, 4, 5),
                   inits)
    with pytest.raises(UnsupportedError, match=message) as e:
        import_model(model)
    assert e.value.exit_code == 4


def test_sub_of_run_time_tensors_and_unary_ops_import_run_and_export():
    """x - relu(x) (before: refused, 'Sub by a run-time tensor'), a constant minus a run-time
    tensor, Neg and the square by Pow: the torch float executor and the ONNX export agree with
    onnxruntime; the constant Sqrt/Reciprocal/Neg/Pow subgraph of a normalisation is folded (no
    op of it remains)."""
    pytest.importorskip("torch")
    from frontends.onnx.importer import import_model
    model = _model([
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Sub", ["x", "r"], ["d"]),
        helper.make_node("Sub", ["k", "d"], ["e"]),
        helper.make_node("Pow", ["e", "two"], ["p"]),
        helper.make_node("Neg", ["p"], ["n"]),
        helper.make_node("Sqrt", ["k"], ["sk"]),
        helper.make_node("Reciprocal", ["sk"], ["rk"]),
        helper.make_node("Pow", ["rk", "two"], ["rk2"]),
        helper.make_node("Mul", ["n", "rk2"], ["y"])],
        (2, 3, 4, 5), (2, 3, 4, 5), [_floats("k", np.array([1.0, 4.0, 9.0]).reshape(3, 1, 1)),
                                     _floats("two", [2.0])])
    module = import_model(model)
    kinds = sorted(op.name for op in module.walk() if op.name in ("nn.add", "nn.mul"))
    assert kinds == ["nn.add", "nn.add", "nn.mul", "nn.mul", "nn.mul", "nn.mul", "nn.mul"]
    x = np.random.default_rng(13).normal(0, 1, (2, 3, 4, 5)).astype(np.float32)
    _torch_and_export_agree(model, module, x, 1e-6)
