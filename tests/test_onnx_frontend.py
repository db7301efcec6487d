"""ONNX import + canonicalize: structure, numerical equivalence (onnxruntime), counts, bad inputs."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from aloha_ir.dialects import nn
from aloha_ir.errors import InputFileError, ShapeError, UnsupportedError
from aloha_ir.passmanager import PassManager
from aloha_ir.textio import parse_module, print_module, verify_module
from backends.onnx.export import export_onnx
from frontends.onnx import import_model, import_onnx
from frontends.zoo import BUILDERS, load_zoo, zoo_onnx
from model_helpers import (LIGHT_MODELS, graph_inputs, light_path, randomize_weights,
                           relative_error, run_ort, strip_final_softmax)

ZOO_NAMES = LIGHT_MODELS + ["mnist-8"] + list(BUILDERS)


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_import_canonicalize_verify_print_parse(name, request):
    if name == "mnist-8":
        request.getfixturevalue("aloha_data")
    module = load_zoo(name)
    verify_module(module)
    PassManager.parse("canonicalize,analyze-cost").run(module)
    text = print_module(module)
    again = parse_module(text)
    verify_module(again)
    assert print_module(again) == text


# --- numerical equivalence: onnxruntime on the original vs. on our canonicalized export -----------

def _check_equivalent(model: onnx.ModelProto, source: str, tol: float = 1e-4) -> dict:
    feeds = {k: np.random.default_rng(7).uniform(0, 1, s).astype(np.float32)
             for k, s in graph_inputs(model).items()}
    module = import_model(model, source=source)
    stats = PassManager.parse("canonicalize").run(module).report("canonicalize")
    ours = run_ort(export_onnx(module), feeds)
    ref = run_ort(model, feeds)
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref):
        assert a.shape == b.shape
        assert relative_error(a, b) < tol, source
    return stats


@pytest.mark.parametrize("name", ["squeezenet", "inception_v1", "resnet50", "densenet121"])
def test_light_models_match_onnxruntime_with_random_weights(name):
    model = strip_final_softmax(randomize_weights(onnx.load(light_path(name)), seed=3))
    stats = _check_equivalent(model, name)
    if name in ("resnet50", "densenet121"):
        assert stats.get("batchnorm-folded", 0) > 0
    if name == "densenet121":  # BN written as Mul/Add with Unsqueezed constants
        assert stats["mul-folded"] == 121 and stats["add-folded"] == 121


def test_mnist8_matches_onnxruntime(aloha_data):
    model = onnx.load(os.path.join(aloha_data, "onnx", "mnist-8.onnx"))
    stats = _check_equivalent(model, "mnist-8")
    assert stats["add-folded"] == 3  # the two conv biases and the dense bias


def _torch_cnn(kind: str):
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(3, 8, 3, padding=1)
            self.b1 = nn.BatchNorm2d(8)
            self.c2 = nn.Conv2d(8, 16, 3, stride=2, padding=(0, 1), bias=False)
            self.b2 = nn.BatchNorm2d(16)
            self.fc = nn.Linear(16 * 6 * 8, 10)
            self.bfc = nn.BatchNorm1d(10)

        def forward(self, x):
            x = torch.relu(self.b1(self.c1(x)))
            x = nn.functional.max_pool2d(x, 2)
            x = nn.functional.leaky_relu(self.b2(self.c2(x)), 0.1)
            x = x.view(x.size(0), -1)  # Shape/Gather/Unsqueeze/Concat feeding a Reshape
            return self.bfc(self.fc(nn.functional.dropout(x, 0.5, self.training)))

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 5, stride=2, padding=2), nn.BatchNorm2d(16),
                                      nn.ReLU6())
            self.a = nn.Sequential(nn.Conv2d(16, 16, 3, padding=2, dilation=2, groups=4),
                                   nn.BatchNorm2d(16), nn.ReLU())
            self.b = nn.Conv2d(16, 8, 1)
            self.head = nn.Linear(24, 5)

        def forward(self, x):
            x = self.stem(x)
            y = self.a(x) + x
            z = torch.cat([y, torch.sigmoid(self.b(y))], dim=1)
            z = nn.functional.avg_pool2d(z, 2, ceil_mode=True)
            z = z.mean(dim=(2, 3))
            return torch.tanh(self.head(torch.flatten(z, 1)))

    model = Plain() if kind == "plain" else Residual()
    torch.manual_seed(0)
    for m in model.modules():  # non-trivial running statistics, so BN folding is really tested
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return torch, model.eval()


@pytest.mark.parametrize("kind", ["plain", "residual"])
def test_torch_exported_cnns_with_batchnorm_match_onnxruntime(kind, tmp_path):
    torch, model = _torch_cnn(kind)
    path = str(tmp_path / f"{kind}.onnx")
    x = torch.rand(1, 3, 28, 32)
    # TrainingMode.PRESERVE keeps the BatchNormalization nodes (in eval mode torch would fuse them)
    torch.onnx.export(model, (x,), path, dynamo=False, opset_version=13,
                      training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False,
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "batch"}})
    onnx_model = onnx.load(path)
    ops = {n.op_type for n in onnx_model.graph.node}
    assert "BatchNormalization" in ops
    if kind == "plain":
        assert {"Shape", "Gather", "Reshape"} <= ops  # the shape subgraph is there to be folded
    module = import_onnx(path)
    assert not any(op.name == "nn.batchnorm" for op in
                   (PassManager.parse("canonicalize").run(module).module.walk()))
    _check_equivalent(onnx_model, path)
    with torch.no_grad():  # and against torch itself
        ref = model(x).numpy()
    got = run_ort(export_onnx(module), {"x": x.numpy()})[0]
    assert relative_error(got, ref) < 1e-4


# --- MACs and params: an independent count from the ONNX file itself -------------------------------

def _independent_counts(model: onnx.ModelProto) -> tuple[int, int]:
    """MACs from ONNX's own shape inference and the weight shapes; params from the float tensors
    (initializers, ConstantOfShape and RandomNormal outputs) that nodes read."""
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(inferred.graph.value_info) + list(inferred.graph.output)
              + list(inferred.graph.input)}
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    weight_shape: dict[str, list[int]] = {}
    float_tensors: dict[str, int] = {}
    for t in g.initializer:
        if t.data_type == TensorProto.FLOAT:
            weight_shape[t.name] = list(t.dims)
            float_tensors[t.name] = math.prod(t.dims)
    for n in g.node:
        if n.op_type == "ConstantOfShape":
            dims = numpy_helper.to_array(inits[n.input[0]]).astype(int).tolist()
            weight_shape[n.output[0]] = dims
            float_tensors[n.output[0]] = math.prod(dims)
        elif n.op_type == "RandomNormal":
            dims = list(helper.get_attribute_value(next(a for a in n.attribute if a.name == "shape")))
            weight_shape[n.output[0]] = dims
            float_tensors[n.output[0]] = math.prod(dims)
        elif n.op_type in ("Reshape", "Unsqueeze") and n.input[0] in weight_shape:
            weight_shape[n.output[0]] = shapes.get(n.output[0]) or weight_shape[n.input[0]]
    macs = 0
    for n in g.node:
        if n.op_type == "Conv":
            w = weight_shape[n.input[1]]
            macs += math.prod(shapes[n.output[0]]) * w[1] * w[2] * w[3]
        elif n.op_type in ("Gemm", "MatMul"):
            out = shapes[n.output[0]]
            a = shapes.get(n.input[0])
            k = a[-1] if a else weight_shape[n.input[1]][0]
            macs += math.prod(out) * k
    # a Dropout's ratio input (opset >= 12) is a hyperparameter, not a parameter tensor
    read = {i for n in g.node for i in (n.input[:1] if n.op_type == "Dropout" else n.input)}
    params = sum(c for name, c in float_tensors.items() if name in read)
    return macs, params


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_macs_and_params_equal_an_independent_count(name, request):
    if name == "mnist-8":
        request.getfixturevalue("aloha_data")
    model = zoo_onnx(name)
    macs, params = _independent_counts(model)
    module = load_zoo(name)
    report = PassManager.parse("canonicalize,analyze-cost").run(module).report("analyze-cost")
    assert report.macs == macs
    assert report.params == params


def test_contract_macs_of_the_builders():
    """The exact figures of DESIGN.md's contract (the architectures' published counts)."""
    expected = {"vgg16": 15_470_264_320, "resnet18": 1_814_073_344, "mobilenet_v1": 568_740_352}
    for name, macs in expected.items():
        report = PassManager.parse("analyze-cost").run(load_zoo(name)).report("analyze-cost")
        assert report.macs == macs, name
    # squeezenet1_1 and the ONNX zoo's squeezenet are the same architecture
    a = PassManager.parse("analyze-cost").run(load_zoo("squeezenet1_1")).report("analyze-cost")
    b = PassManager.parse("analyze-cost").run(load_zoo("squeezenet")).report("analyze-cost")
    assert a.macs == b.macs


def test_builder_weights_stay_lazy_through_canonicalize():
    from aloha_ir.weights import weights_of
    module = load_zoo("resnet18")  # BN folding into random convs keeps them seeded-random
    PassManager.parse("canonicalize").run(module)
    assert weights_of(module).nbytes() < 10_000
    assert "seed =" in print_module(module)


# --- bad inputs --------------------------------------------------------------------------------------

def _tiny(nodes, inputs, outputs, inits=(), opset=13) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "t", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 10
    return m


def _vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def test_truncated_file_is_an_input_error(tmp_path):
    data = open(light_path("squeezenet"), "rb").read()
    p = tmp_path / "cut.onnx"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError, match="cut.onnx: not an ONNX model"):
        import_onnx(str(p))


def test_random_bytes_are_an_input_error(tmp_path):
    p = tmp_path / "noise.onnx"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(InputFileError, match="noise.onnx"):
        import_onnx(str(p))


def test_unsupported_op_names_file_node_op_and_supported_set(tmp_path):
    m = _tiny([helper.make_node("Einsum", ["x", "x"], ["y"], name="mix", equation="ij,ij->ij")],
              [_vi("x", [2, 2])], [_vi("y", [2, 2])])
    p = tmp_path / "einsum.onnx"
    onnx.save(m, str(p))
    with pytest.raises(UnsupportedError) as e:
        import_onnx(str(p))
    text = str(e.value)
    assert "einsum.onnx" in text and "'mix'" in text and "Einsum" in text and "Conv" in text
    assert "\n" not in text


def test_missing_input_shape_asks_for_it():
    m = _tiny([helper.make_node("Relu", ["x"], ["y"])],
              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "h", "w"])],
              [_vi("y", None)])
    with pytest.raises(ShapeError, match="dimension 2 is dynamic.*--input-shape"):
        import_model(m, source="dyn.onnx")
    module = import_model(m, source="dyn.onnx", input_shapes={"x": [1, 3, 5, 6]})
    verify_module(module)
    no_shape = _tiny([helper.make_node("Relu", ["x"], ["y"])],
                     [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)], [_vi("y", None)])
    with pytest.raises(ShapeError, match="has no shape"):
        import_model(no_shape, source="noshape.onnx")


def test_cyclic_graph_is_an_error():
    m = _tiny([helper.make_node("Add", ["x", "b"], ["a"], name="n1"),
               helper.make_node("Relu", ["a"], ["b"], name="n2")],
              [_vi("x", [1, 4])], [_vi("b", [1, 4])])
    with pytest.raises(ShapeError, match="cyclic"):
        import_model(m, source="cycle.onnx")


@pytest.mark.parametrize("bad", [np.nan, np.inf, 1e30])
def test_a_float_shape_no_int64_holds_is_a_shape_error(bad):
    """A float tensor used as a Reshape's shape converts to int64; NaN, inf or 1e30 has no int64
    (numpy gave an arbitrary integer with a RuntimeWarning, found by the ONNX fuzz test)."""
    m = _tiny([helper.make_node("Reshape", ["x", "s"], ["y"], name="r")],
              [_vi("x", [1, 4])], [_vi("y", None)],
              [numpy_helper.from_array(np.array([1, bad], np.float32), "s")])
    with pytest.raises(ShapeError, match="'s' is used as integers.*NaN, infinite or huge"):
        import_model(m, source="nanshape.onnx")


def test_unsorted_graph_is_accepted():
    m = _tiny([helper.make_node("Relu", ["a"], ["y"]), helper.make_node("Sigmoid", ["x"], ["a"])],
              [_vi("x", [1, 4])], [_vi("y", [1, 4])])
    verify_module(import_model(m))


def test_shape_subgraph_folds_and_reshape_matches_onnxruntime():
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape, as torch exports x.view(x.size(0), -1)."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["spec"], axis=0),
        helper.make_node("Cast", ["spec"], ["spec64"], to=TensorProto.INT64),
        helper.make_node("Reshape", ["x", "spec64"], ["flat"]),
        helper.make_node("Gemm", ["flat", "w"], ["y"], transB=1),
    ]
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.asarray(0, np.int64), "zero"),
             numpy_helper.from_array(np.asarray([0], np.int64), "ax0"),
             numpy_helper.from_array(np.asarray([-1], np.int64), "minus1"),
             numpy_helper.from_array(rng.standard_normal((4, 24)).astype(np.float32), "w")]
    m = _tiny(nodes, [_vi("x", [1, 2, 3, 4])], [_vi("y", [1, 4])], inits)
    module = import_model(m)
    assert "nn.flatten" not in print_module(module)  # a reshape: the shape ops left no trace
    assert not any(op.name == "nn.concat" for op in module.walk())
    _check_equivalent(m, "shape-subgraph")


@pytest.mark.parametrize("opset", [9, 13])
def test_remaining_ops_match_onnxruntime(opset):
    """Pad (constant, reflect), ReduceMean, Transpose, Sum of three, run-time Mul, Sub/Div by
    constants, Squeeze/Unsqueeze, Clip, Sigmoid, Softmax on an axis, GlobalMaxPool, Flatten."""
    rng = np.random.default_rng(5)
    c = lambda name, shape: numpy_helper.from_array(  # noqa: E731
        rng.uniform(0.5, 1.5, shape).astype(np.float32), name)
    inits = [c("k", [1, 3, 1, 1]), c("d", [3, 1, 1]), c("w", [4, 3, 3, 3])]
    if opset >= 11:
        inits += [numpy_helper.from_array(np.asarray([0, 0, 1, 2, 0, 0, 2, 1], np.int64), "p"),
                  numpy_helper.from_array(np.asarray([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "p2"),
                  numpy_helper.from_array(np.asarray(-0.5, np.float32), "lo"),
                  numpy_helper.from_array(np.asarray(0.7, np.float32), "hi")]
        pad = helper.make_node("Pad", ["x", "p"], ["xp"], mode="constant")
        pad2 = helper.make_node("Pad", ["r", "p2"], ["rp"], mode="reflect")
        clip = helper.make_node("Clip", ["m", "lo", "hi"], ["cl"])
    else:
        pad = helper.make_node("Pad", ["x"], ["xp"], mode="constant", pads=[0, 0, 1, 2, 0, 0, 2, 1])
        pad2 = helper.make_node("Pad", ["r"], ["rp"], mode="reflect", pads=[0, 0, 1, 1, 0, 0, 1, 1])
        clip = helper.make_node("Clip", ["m"], ["cl"], min=-0.5, max=0.7)
    axes_kw = {"axes": [1]}
    nodes = [
        pad,                                                        # [1,3,9,9]
        helper.make_node("Sub", ["xp", "k"], ["s"]),
        helper.make_node("Div", ["s", "d"], ["q"]),
        helper.make_node("Conv", ["q", "w"], ["cv"], kernel_shape=[3, 3]),  # [1,4,7,7]
        helper.make_node("Sigmoid", ["cv"], ["r"]),
        pad2,                                                       # [1,4,9,9]
        helper.make_node("Transpose", ["rp"], ["t"], perm=[0, 1, 3, 2]),
        helper.make_node("Mul", ["t", "rp"], ["m"]),
        clip,
        helper.make_node("Sum", ["cl", "rp", "t"], ["sm"]),
        helper.make_node("ReduceMean", ["sm"], ["rm"], keepdims=1, **axes_kw),  # [1,1,9,9]
        helper.make_node("Squeeze", ["rm"], ["sq"], **({"axes": [1]} if opset < 13 else {})),
        helper.make_node("GlobalMaxPool", ["sm"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"], axis=1),
        helper.make_node("Softmax", ["f"], ["y"], axis=1),
    ]
    if opset >= 13:  # Squeeze takes its axes as an input from opset 13
        inits.append(numpy_helper.from_array(np.asarray([1], np.int64), "sqa"))
        nodes[11] = helper.make_node("Squeeze", ["rm", "sqa"], ["sq"])
    m = _tiny(nodes, [_vi("x", [1, 3, 6, 6])], [_vi("y", [1, 4]), _vi("sq", [1, 9, 9])], inits,
              opset=opset)
    _check_equivalent(m, f"ops-opset{opset}")


RESIZES = [  # (opset, op type, attributes, scales or None, sizes or None, input H, W)
    (13, "Resize", {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
                    "nearest_mode": "floor"}, [1, 1, 2, 2], None, 5, 4),
    (13, "Resize", {"mode": "nearest"}, [1, 1, 3, 1.5], None, 5, 4),
    (13, "Resize", {"mode": "nearest", "nearest_mode": "round_prefer_ceil",
                    "coordinate_transformation_mode": "tf_half_pixel_for_nn"}, [1, 1, 2.5, 2], None,
     4, 3),
    (13, "Resize", {"mode": "linear"}, [1, 1, 2, 2], None, 5, 4),
    (13, "Resize", {"mode": "linear", "coordinate_transformation_mode": "align_corners"}, None,
     [1, 2, 9, 7], 5, 4),
    (13, "Resize", {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"},
     [1, 1, 1.5, 0.5], None, 6, 4),
    (11, "Resize", {"mode": "nearest", "coordinate_transformation_mode": "asymmetric"},
     [1, 1, 3, 3], None, 4, 4),
    (10, "Resize", {"mode": "nearest"}, [1, 1, 3, 2], None, 4, 3),
    (9, "Upsample", {"mode": "nearest"}, [1, 1, 3, 2], None, 4, 3),
    (9, "Upsample", {"mode": "linear"}, [1, 1, 2, 2], None, 4, 3),
]


def _resize_model(opset, op_type, kw, scales, sizes, h, w):
    inits = []
    if scales is not None:
        inits.append(numpy_helper.from_array(np.asarray(scales, np.float32), "sc"))
    if sizes is not None:
        inits.append(numpy_helper.from_array(np.asarray(sizes, np.int64), "sz"))
    if opset >= 11:
        inits.append(numpy_helper.from_array(np.zeros(0, np.float32), "roi"))
        ins = ["x", "roi", "sc" if scales is not None else "", "sz" if sizes is not None else ""]
        ins = ins if sizes is not None else ins[:3]
    else:
        ins = ["x", "sc"]
    ref = onnx.shape_inference.infer_shapes(_tiny(
        [helper.make_node(op_type, ins, ["y"], **kw)], [_vi("x", [1, 2, h, w])], [], inits, opset))
    out = [d.dim_value for d in ref.graph.value_info[0].type.tensor_type.shape.dim] \
        if ref.graph.value_info else None
    if out is None or not all(out):
        out = sizes or [int(np.floor(d * s)) for d, s in zip([1, 2, h, w], scales)]
    return _tiny([helper.make_node(op_type, ins, ["y"], **kw)], [_vi("x", [1, 2, h, w])],
                 [_vi("y", out)], inits, opset)


@pytest.mark.parametrize("case", RESIZES, ids=lambda c: f"{c[1]}{c[0]}-{c[2]['mode']}")
def test_resize_matches_onnxruntime(case):
    model = _resize_model(*case)
    _check_equivalent(model, "resize")
    # the rows (and columns) the lowering says an output reads: ORT on an index image must agree
    module = import_model(model)
    (op,) = [o for o in module.ops.first.ops if isinstance(o, nn.ResizeOp)]
    _, _, h, w = nn.shape_of(op.input)
    for axis, n in ((2, h), (3, w)):
        idx = np.arange(n, dtype=np.float32)
        x = np.broadcast_to(idx.reshape((1, 1, n, 1) if axis == 2 else (1, 1, 1, n)),
                            (1, 2, h, w)).astype(np.float32)
        (y,) = run_ort(model, {"x": x})
        got = y[0, 0, :, 0] if axis == 2 else y[0, 0, 0, :]
        for v, (lo, hi) in zip(got, op.taps(axis)):
            if op.mode.data == "nearest":
                assert v == lo == hi
            else:
                assert lo - 1e-5 <= v <= hi + 1e-5


# --- issue 18 item 20: scalar constants keep shape () ---------------------------------------------

def _scalar_model(conv: bool) -> onnx.ModelProto:
    """y = x + 1.5 as torch exports it (a rank-0 initializer), with more scalars around a conv."""
    scalar = {n: numpy_helper.from_array(np.array(v, np.float32), n)
              for n, v in (("c", 1.5), ("k", 0.5), ("s", 0.25), ("d", 4.0))}
    nodes = [helper.make_node("Add", ["x", "c"], ["a"], name="add")]
    inits = [scalar["c"]]
    last = "a"
    if conv:
        w = np.random.default_rng(1).standard_normal((4, 3, 3, 3)).astype(np.float32)
        inits += [numpy_helper.from_array(w, "w"), scalar["k"], scalar["s"], scalar["d"]]
        nodes += [helper.make_node("Conv", ["a", "w"], ["cv"], name="conv", pads=[1, 1, 1, 1]),
                  helper.make_node("Mul", ["cv", "k"], ["m"], name="mul"),
                  helper.make_node("Sub", ["m", "s"], ["sb"], name="sub"),
                  helper.make_node("Relu", ["sb"], ["r"], name="relu"),
                  helper.make_node("Div", ["r", "d"], ["dv"], name="div")]
        last = "dv"
    nodes.append(helper.make_node("Identity", [last], ["y"]))
    return _tiny(nodes, [_vi("x", [1, 3, 6, 6])], [_vi("y", None)], inits)


@pytest.mark.parametrize("conv", [False, True], ids=["x+1.5", "scalars-around-conv"])
def test_scalar_constants_survive_export_and_match_onnxruntime(conv, tmp_path):
    """Before: the weight store stored shape () as (1,), and export failed with exit 7."""
    model = _scalar_model(conv)
    module = import_model(model, source="scalar.onnx")
    c = next(op for op in module.walk() if isinstance(op, nn.ConstOp) and
             nn.shape_of(op.output) == ())
    from aloha_ir.weights import weights_of
    assert weights_of(module)[c.blob.data].shape == ()
    _check_equivalent(model, "scalar.onnx", tol=1e-6)
    # through the files: save, reload (the sidecar keeps the shape), export
    from aloha_ir.textio import load_module, save_module
    save_module(module, str(tmp_path / "scalar.mlir"))
    again = load_module(str(tmp_path / "scalar.mlir"))
    feeds = {"x": np.random.default_rng(2).uniform(-1, 1, (1, 3, 6, 6)).astype(np.float32)}
    (ours,), (ref,) = run_ort(export_onnx(again), feeds), run_ort(model, feeds)
    assert np.abs(ours - ref).max() <= 1e-6 * max(1.0, np.abs(ref).max())
    # and the torch executor (training, attacks, accuracy) computes the same
    import torch

    from runtime.torch.module import build
    with torch.no_grad():
        y = build(again)(torch.from_numpy(feeds["x"]))
    y = (y[0] if isinstance(y, (list, tuple)) else y).numpy()
    assert np.abs(y - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())


def test_scalar_constant_in_generated_c_matches_onnxruntime(tmp_path):
    from codegen_helpers import build, generate, have_gcc, run
    if not have_gcc():
        pytest.skip("gcc/make not available")
    model = _scalar_model(conv=True)
    x = np.random.default_rng(3).uniform(-1, 1, (1, 3, 6, 6)).astype(np.float32)
    (ref,) = run_ort(model, {"x": x})
    code = generate(import_model(model, source="scalar.onnx"), "host-cpu", str(tmp_path))
    build(code)
    r, y = run(code, x)
    assert r.returncode == 0, r.stderr
    np.testing.assert_allclose(y.reshape(ref.shape), ref, rtol=1e-5, atol=1e-5)


# --- issue 18 item 10: the importer refuses malformed models at import, naming the node -----------

def _saved(model: onnx.ModelProto, tmp_path) -> str:
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    return str(path)


def _main_exit(model: onnx.ModelProto, tmp_path, capsys) -> tuple[int, str]:
    """`alohac analyze FILE.onnx` in-process: (exit code, stderr)."""
    from alohac.main import main
    code = main(["analyze", _saved(model, tmp_path)])
    return code, capsys.readouterr().err


def _conv_model(w_shape, **attrs) -> onnx.ModelProto:
    w = numpy_helper.from_array(np.ones(w_shape, np.float32), "w")
    return _tiny([helper.make_node("Conv", ["x", "w"], ["y"], name="badconv", **attrs)],
                 [_vi("x", [1, 3, 8, 8])], [_vi("y", None)], [w])


def test_conv_whose_weight_expects_other_channels_is_a_shape_error_at_import(tmp_path, capsys):
    """Before: imported, then exit 7 'IR after pass canonicalize ... compiler bug'."""
    with pytest.raises(ShapeError) as e:
        import_model(_conv_model((4, 5, 3, 3)), source="m.onnx")
    assert "node 'badconv' (Conv)" in str(e.value) and "input has 3" in str(e.value)
    code, err = _main_exit(_conv_model((4, 5, 3, 3)), tmp_path, capsys)
    assert code == 5 and "badconv" in err and "compiler bug" not in err


@pytest.mark.parametrize("attr, value, message", [
    ("group", "two", "attribute 'group' is STRING, Conv-11 declares it INT"),
    ("strides", [1.5, 1.5], "attribute 'strides' is FLOATS, Conv-11 declares it INTS"),
    ("stride", [2, 2], "Conv-11 has no attribute 'stride'"),
])
def test_attribute_of_the_wrong_type_or_name_is_an_input_error(attr, value, message, tmp_path,
                                                               capsys):
    """Before: a STRING group crashed with exit 1; a misspelt attribute was silently ignored."""
    code, err = _main_exit(_conv_model((4, 3, 3, 3), **{attr: value}), tmp_path, capsys)
    assert code == 3 and message in err and "node 'badconv' (Conv)" in err
    m = _tiny([helper.make_node("MaxPool", ["x"], ["y"], name="pool")], [_vi("x", [1, 3, 8, 8])],
              [_vi("y", None)])
    with pytest.raises(InputFileError, match="required attribute 'kernel_shape' is missing"):
        import_model(m)


@pytest.mark.parametrize("dims, where", [([0, 3, 8, 8], "dimension 0 has size 0"),
                                         ([1, 3, 0, 8], "dimension 2 has size 0")])
def test_zero_size_input_dimension_is_refused(dims, where, tmp_path, capsys):
    """Before: a static batch of 0 was read as 1 (and other zero dims failed later)."""
    m = _tiny([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", dims)], [_vi("y", None)])
    code, err = _main_exit(m, tmp_path, capsys)
    assert code == 5 and where in err and "--input-shape" in err


def test_an_empty_intermediate_tensor_is_refused_naming_the_node():
    m = _tiny([helper.make_node("MaxPool", ["x"], ["y"], name="empty", kernel_shape=[9, 9])],
              [_vi("x", [1, 3, 8, 8])], [_vi("y", None)])
    with pytest.raises(ShapeError, match=r"node 'empty'.*empty tensor \[1, 3, 0, 0\]"):
        import_model(m)


def test_graph_without_outputs_is_an_input_error(tmp_path, capsys):
    m = _tiny([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", [1, 4])], [])
    code, err = _main_exit(m, tmp_path, capsys)
    assert code == 3 and "declares no outputs" in err


@pytest.mark.parametrize("opset", [0, 6, 99])
def test_opsets_outside_the_supported_range_are_refused(opset, tmp_path, capsys):
    """Before: opsets 0 and 99 were imported with today's semantics."""
    from frontends.onnx.importer import MAX_OPSET, MIN_OPSET
    m = _tiny([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", [1, 4])], [_vi("y", None)],
              opset=opset)
    code, err = _main_exit(m, tmp_path, capsys)
    assert code == 4 and f"opset {opset} is not supported" in err
    assert f"supported: opsets {MIN_OPSET} to {MAX_OPSET}" in err
    assert ("version_converter" in err) == (opset == 6)
    for ok in (MIN_OPSET, MAX_OPSET):
        verify_module(import_model(_tiny([helper.make_node("Relu", ["x"], ["y"])],
                                         [_vi("x", [1, 4])], [_vi("y", None)], opset=ok)))


# --- issue 18 item 21: input element types are converted with the change stated, or refused -------

def _typed(elem, nodes, inits=(), out_elem=None, shape=(1, 4), opset=14) -> onnx.ModelProto:
    return _tiny(nodes, [helper.make_tensor_value_info("x", elem, list(shape))],
                 [helper.make_tensor_value_info("y", out_elem or elem, list(shape))], inits,
                 opset=opset)


def test_integer_arithmetic_on_an_integer_input_is_refused(tmp_path, capsys):
    """uint8 200 + 100 is 44 in onnxruntime; the export computed 300 (silently float32)."""
    c = numpy_helper.from_array(np.array([100], np.uint8), "c")
    m = _typed(TensorProto.UINT8, [helper.make_node("Add", ["x", "c"], ["y"], name="add")], [c])
    (ref,) = run_ort(m, {"x": np.full((1, 4), 200, np.uint8)})
    assert ref.tolist() == [[44] * 4]  # the semantics a float32 compile cannot keep
    code, err = _main_exit(m, tmp_path, capsys)
    assert code == 4 and "input 'x' is uint8" in err and "'add' (Add)" in err
    for elem in (TensorProto.INT32, TensorProto.BOOL):
        with pytest.raises(UnsupportedError, match="uses it as"):
            import_model(_typed(elem, [helper.make_node("Identity", ["x"], ["y"], name="id")]))


def test_an_integer_input_through_a_cast_keeps_its_interface_and_values():
    from aloha_ir.errors import AlohaWarning
    c = numpy_helper.from_array(np.array([100.5], np.float32), "c")
    m = _typed(TensorProto.UINT8, [helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
                                   helper.make_node("Add", ["xf", "c"], ["y"], name="add")], [c],
               out_elem=TensorProto.FLOAT)
    with pytest.warns(AlohaWarning, match="input 'x' is uint8, used only through a Cast"):
        module = import_model(m, source="u8.onnx")
    exported = export_onnx(module)
    assert exported.graph.input[0].type.tensor_type.elem_type == TensorProto.UINT8
    x = np.array([[0, 1, 200, 255]], np.uint8)
    (ours,), (ref,) = run_ort(exported, {"x": x}), run_ort(m, {"x": x})
    assert ours.tolist() == ref.tolist() == [[100.5, 101.5, 300.5, 355.5]]


@pytest.mark.parametrize("elem, dtype, rtol", [(TensorProto.FLOAT16, np.float16, 2.0 ** -10),
                                               (TensorProto.DOUBLE, np.float64, 1e-6)])
def test_float16_and_double_inputs_compute_in_float32_with_the_change_stated(elem, dtype, rtol,
                                                                              tmp_path):
    """Before: silently float32; now a warning, the report says it, the export keeps the types."""
    from aloha_ir.errors import AlohaWarning
    rng = np.random.default_rng(5)
    k = numpy_helper.from_array(rng.standard_normal((1, 3, 1, 1)).astype(dtype), "k")
    c = numpy_helper.from_array(np.array(0.1, dtype), "c")
    m = _typed(elem, [helper.make_node("Mul", ["x", "k"], ["m"]),
                      helper.make_node("Add", ["m", "c"], ["a"]),
                      helper.make_node("Relu", ["a"], ["y"])], [k, c], shape=(1, 3, 6, 6))
    name = "float16" if elem == TensorProto.FLOAT16 else "double"
    with pytest.warns(AlohaWarning, match=f"input 'x' is {name}") as caught:
        module = import_model(m, source="m.onnx")
    assert any(f"output 'y' is {name}" in str(w.message) for w in caught)
    PassManager.parse("canonicalize").run(module)
    exported = export_onnx(module)
    assert exported.graph.input[0].type.tensor_type.elem_type == elem
    assert exported.graph.output[0].type.tensor_type.elem_type == elem
    x = rng.uniform(-1, 1, (1, 3, 6, 6)).astype(dtype)
    (ours,), (ref,) = run_ort(exported, {"x": x}), run_ort(m, {"x": x})
    assert ours.dtype == ref.dtype == dtype
    scale = float(np.abs(ref).max())
    # float32 inside: within the model type's rounding of its two operations and the output
    assert np.abs(ours.astype(np.float64) - ref).max() <= 3 * rtol * scale
    r = subprocess.run([sys.executable, "-m", "alohac.main", "compile", str(_saved(m, tmp_path)),
                        "-o", str(tmp_path / "out")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"alohac: warning: {tmp_path / 'm.onnx'}: input 'x' is {name}" in r.stderr
    assert f"input 'x' is {name}" in (tmp_path / "out" / "report.md").read_text()


def test_an_op_or_output_of_constants_only_is_refused_at_import():
    """Found by fuzzing: ReduceMean of an initializer, or a constant graph output, imported and
    then crashed the lowering with KeyError (exit 1)."""
    w = numpy_helper.from_array(np.ones((1, 4), np.float32), "w")
    m = _tiny([helper.make_node("ReduceMean", ["w"], ["m"], name="mean", axes=[1]),
               helper.make_node("Add", ["x", "m"], ["y"])],
              [_vi("x", [1, 4])], [_vi("y", None)], [w])
    with pytest.raises(UnsupportedError, match="'mean' .*computes on constants only"):
        import_model(m)
    m = _tiny([helper.make_node("Identity", ["w"], ["c"]), helper.make_node("Relu", ["x"], ["y"])],
              [_vi("x", [1, 4])], [_vi("y", None), _vi("c", None)], [w])
    with pytest.raises(UnsupportedError, match="graph output 'c' is a constant"):
        import_model(m)


def test_non_finite_parameters_and_division_by_zero_are_refused_at_import(tmp_path, capsys):
    """Found by fuzzing: x / 0 became a multiply by inf, and a NaN weight imported; both give a
    weights sidecar the compiler then refuses to load (and outputs of NaN)."""
    zero = numpy_helper.from_array(np.array([1.0, 0.0, 2.0, 4.0], np.float32), "d")
    m = _tiny([helper.make_node("Div", ["x", "d"], ["y"], name="div")], [_vi("x", [1, 4])],
              [_vi("y", None)], [zero])
    code, err = _main_exit(m, tmp_path, capsys)
    assert code == 4 and "Div by constant 'd', which holds 0" in err
    nan = numpy_helper.from_array(np.array([1.0, np.nan, 2.0, 4.0], np.float32), "k")
    m = _tiny([helper.make_node("Mul", ["x", "k"], ["y"], name="mul")], [_vi("x", [1, 4])],
              [_vi("y", None)], [nan])
    code, err = _main_exit(m, tmp_path, capsys)
    assert code == 3 and "constant 'k' holds NaN or infinite values" in err and "'mul'" in err
