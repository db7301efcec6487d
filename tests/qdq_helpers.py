"""Pre-quantized (QDQ) models for the tests and benchmarks: a small CNN trained in torch, written as
ONNX, quantized by onnxruntime's quantize_static, and onnxruntime's run of it."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime import quantization as oq


def initializer(name: str, a: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(a, name)


def trained_weights(side: int, x: np.ndarray, y: np.ndarray, c: int, hidden: int,
                     epochs: int) -> dict[str, np.ndarray]:
    """The CNN of `_cnn` trained in torch (Adam, seeded): a classifier with real margins, so that
    top-1 agreement measures the arithmetic, not ties between near-equal logits."""
    import torch
    from torch import nn as tnn
    torch.manual_seed(0)
    q = side // 4
    conv1, conv2 = tnn.Conv2d(1, c, 3, padding=1), tnn.Conv2d(c, c, 3, padding=1)
    fc1, fc2 = tnn.Linear(c * q * q, hidden), tnn.Linear(hidden, 10)

    def forward(t):
        r1 = torch.relu(conv1(t))
        s = r1 + torch.relu(conv2(r1))
        p = torch.nn.functional.avg_pool2d(torch.nn.functional.max_pool2d(s, 2), 2)
        return fc2(torch.relu(fc1(p.flatten(1))))

    params = [*conv1.parameters(), *conv2.parameters(), *fc1.parameters(), *fc2.parameters()]
    opt = torch.optim.Adam(params, lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(np.asarray(y, dtype=np.int64))
    gen = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), generator=gen).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(forward(xt[idx]), yt[idx]).backward()
            opt.step()
    d = {k: v.detach().numpy().astype(np.float32) for k, v in (
        ("w1", conv1.weight), ("b1", conv1.bias), ("w2", conv2.weight), ("b2", conv2.bias),
        ("bm", fc1.bias), ("wg", fc2.weight), ("bg", fc2.bias))}
    d["wm"] = np.ascontiguousarray(fc1.weight.detach().numpy().T)  # MatMul's [K, N]
    return d


def cnn(side: int, train_x: np.ndarray, train_y: np.ndarray, path: str, c: int = 8,
         hidden: int = 32, epochs: int = 3) -> str:
    """A float CNN with Conv, Add (a residual), MaxPool, AveragePool, MatMul and Gemm, trained on
    the images, written as onnxruntime's quantizer reads it."""
    w = trained_weights(side, train_x, train_y, c, hidden, epochs)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Add", ["r1", "r2"], ["s"], name="residual"),
        helper.make_node("MaxPool", ["s"], ["p1"], kernel_shape=[2, 2], strides=[2, 2],
                         name="maxpool"),
        helper.make_node("AveragePool", ["p1"], ["p2"], kernel_shape=[2, 2], strides=[2, 2],
                         name="avgpool"),
        helper.make_node("Flatten", ["p2"], ["f"], name="flatten"),
        helper.make_node("MatMul", ["f", "wm"], ["m"], name="matmul"),
        helper.make_node("Add", ["m", "bm"], ["mb"], name="matmul_bias"),
        helper.make_node("Relu", ["mb"], ["h"], name="relu3"),
        helper.make_node("Gemm", ["h", "wg", "bg"], ["y"], transB=1, name="gemm"),
    ]
    g = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 1, side, side])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [1, 10])], [initializer(k, v) for k, v in w.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


class Reader(oq.CalibrationDataReader):
    """quantize_static's calibration: one image at a time."""

    def __init__(self, name: str, x: np.ndarray):
        self.items = iter([{name: x[i:i + 1]} for i in range(len(x))])

    def get_next(self):
        return next(self.items, None)


def quantize_qdq(src: str, dst: str, calib: np.ndarray, per_channel: bool,
                 symmetric: bool = True, activation=None) -> str:
    """quantize_static of `src` into `dst` (QDQ, int8 weights), calibrated on `calib`."""
    name = onnx.load(src).graph.input[0].name
    reader = Reader(name, calib)
    oq.quantize_static(src, dst, reader, quant_format=oq.QuantFormat.QDQ,
                       activation_type=activation or oq.QuantType.QInt8,
                       weight_type=oq.QuantType.QInt8, per_channel=per_channel,
                       extra_options={"ActivationSymmetric": symmetric})
    return dst


def ort_run(model, x: np.ndarray) -> np.ndarray:
    """onnxruntime's outputs for each image of x, one row each: the QDQ graph as written
    (DequantizeLinear, the float op, QuantizeLinear), with graph optimisations off. Optimised,
    onnxruntime fuses it into integer kernels that on an x86 CPU without VNNI (AVX2's
    vpmaddubsw) saturate pairs of products at int16: on this suite's hand-made conv with -128
    weights 11 of 20 inputs came out up to 102 steps off the exact integers, on an AMD EPYC
    (Zen 3), where a VNNI machine agreed."""
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    data = model if isinstance(model, str) else model.SerializeToString()
    s = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {name: x[i:i + 1]})[0].reshape(1, -1)
                           for i in range(len(x))])


def small_qdq(path: str, x: np.ndarray, normalise: bool, activation=None) -> str:
    """A small random-weight CNN (Conv, Relu, GlobalAveragePool, Gemm, Softmax) quantized by
    quantize_static on x[:16] into `path` (symmetric activations, per-tensor weights). With
    `normalise`, a Sub first centres the input: quantize_static leaves it in float, so no
    QuantizeLinear reads the input."""
    rng = np.random.default_rng(0)
    side = x.shape[-1]
    inits = [initializer(n, rng.normal(0, 0.3, s).astype(np.float32)) for n, s in
             (("w", (8, 1, 3, 3)), ("b", (8,)), ("g", (10, 8)), ("c", (10,)),
              ("m", (1, 1, side, side)))]
    nodes = [helper.make_node("Conv", ["xs" if normalise else "x", "w", "b"], ["y"],
                              pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["y"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="gap"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "g", "c"], ["z"], transB=1, name="fc"),
             helper.make_node("Softmax", ["z"], ["s"], name="softmax", axis=1)]
    if normalise:
        nodes.insert(0, helper.make_node("Sub", ["x", "m"], ["xs"], name="center"))
    else:
        inits.pop()
    g = helper.make_graph(nodes, "small", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 1, side, side])], [helper.make_tensor_value_info(
            "s", TensorProto.FLOAT, [1, 10])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    src = path.replace(".onnx", "_float.onnx")
    onnx.save(m, src)
    return quantize_qdq(src, path, x[:16], False, activation=activation)
