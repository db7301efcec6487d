"""Test helpers: independent references for the frontend and canonicalize tests."""

from __future__ import annotations

import math
import os

import numpy as np
import onnx
from onnx import helper, numpy_helper

LIGHT_DIR = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
from frontends.zoo import LIGHT as LIGHT_MODELS  # noqa: E402  (one list of the light models)


def light_path(name: str) -> str:
    return os.path.join(LIGHT_DIR, f"light_{name}.onnx")


def randomize_weights(model: onnx.ModelProto, seed: int = 0) -> onnx.ModelProto:
    """Replace every float ConstantOfShape (the light models' 0.02 weights) by seeded random values.

    Values are chosen so that deep networks keep a usable signal: He-normal weights, batch-norm
    scales and variances in [0.5, 1.5], other vectors in [-0.2, 0.2].
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    rng = np.random.default_rng(seed)
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    role: dict[str, str] = {}
    for n in g.node:
        if n.op_type == "BatchNormalization":
            role[n.input[1]] = role[n.input[4]] = "positive"
    keep = []
    for n in g.node:
        if n.op_type == "ConstantOfShape" and n.input[0] in inits:
            shape = numpy_helper.to_array(inits[n.input[0]]).astype(int).tolist()
            value = next((a for a in n.attribute if a.name == "value"), None)
            if value is not None and value.t.data_type != onnx.TensorProto.FLOAT:
                keep.append(n)
                continue
            out = n.output[0]
            if role.get(out) == "positive":
                arr = rng.uniform(0.5, 1.5, shape)
            elif len(shape) >= 2:
                fan_in = math.prod(shape[1:])
                arr = rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)
            else:
                arr = rng.uniform(-0.2, 0.2, shape)
            g.initializer.append(numpy_helper.from_array(arr.astype(np.float32), out))
        else:
            keep.append(n)
    del g.node[:]
    g.node.extend(keep)
    used = {i for n in g.node for i in n.input}
    dropped = {t.name for t in g.initializer if t.name.endswith("__SHAPE") and t.name not in used}
    for t in [t for t in g.initializer if t.name in dropped]:
        g.initializer.remove(t)
    for vi in [vi for vi in g.input if vi.name in dropped]:
        g.input.remove(vi)
    return model


def strip_final_softmax(model: onnx.ModelProto) -> onnx.ModelProto:
    """Make the logits (the Softmax input) the output: comparing probabilities can hide errors."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    last = g.node[-1]
    if last.op_type != "Softmax":
        return model
    logits = last.input[0]
    del g.node[-1]
    del g.output[:]
    g.output.append(helper.make_tensor_value_info(logits, onnx.TensorProto.FLOAT, None))
    return model


def run_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort
    model = onnx.ModelProto.FromString(model.SerializeToString())
    if model.ir_version > 10:
        model.ir_version = 10
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def graph_inputs(model: onnx.ModelProto) -> dict[str, list[int]]:
    inits = {t.name for t in model.graph.initializer}
    out = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        out[vi.name] = [d.dim_value if d.dim_value > 0 else 1 for d in vi.type.tensor_type.shape.dim]
    return out


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-12))


def materialize_random(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace the zoo builders' seeded RandomNormal nodes by initializers holding the values the
    importer draws (onnxruntime's RandomNormal uses its own generator)."""
    from aloha_ir.weights import ConstTensor
    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    keep = []
    for n in g.node:
        if n.op_type != "RandomNormal":
            keep.append(n)
            continue
        a = {x.name: helper.get_attribute_value(x) for x in n.attribute}
        value = ConstTensor(tuple(int(d) for d in a["shape"]),
                            random=(int(a["seed"]), float(a.get("mean", 0.0)),
                                    float(a.get("scale", 1.0)))).materialize()
        g.initializer.append(numpy_helper.from_array(value, n.output[0]))
    del g.node[:]
    g.node.extend(keep)
    return model


def conv7x7(path: str, batch: int = 1) -> None:
    """Save a model with a 7x7 conv, which NEURAghe runs as four 5x5 CE jobs and an ARM merge:
    digits-shaped input [N, 1, 8, 8] -> Conv 7x7 (pad 3, 1 -> 8) + ReLU -> MaxPool -> Gemm."""
    rng = np.random.default_rng(0)
    t = lambda name, a: numpy_helper.from_array(a.astype(np.float32), name)  # noqa: E731
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["conv"], pads=[3, 3, 3, 3]),
             helper.make_node("Relu", ["conv"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "W2"], ["y"], transB=1)]
    f32 = onnx.TensorProto.FLOAT
    g = helper.make_graph(nodes, "c7", [helper.make_tensor_value_info("x", f32, [batch, 1, 8, 8])],
                          [helper.make_tensor_value_info("y", f32, None)],
                          [t("W", rng.standard_normal((8, 1, 7, 7)) * 0.3),
                           t("B", rng.standard_normal(8) * 0.1),
                           t("W2", rng.standard_normal((10, 128)) * 0.1)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 10
    onnx.save(m, path)
