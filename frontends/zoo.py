"""The model zoo: `zoo:NAME` names of DESIGN.md's contract.

- the ONNX wheel's nine "light" models (weights are ConstantOfShape splats);
- `mnist-8`, read from $ALOHA_DATA/onnx/mnist-8.onnx (inputs 0..255);
- the project's builders: ONNX graphs made with onnx.helper whose weights are seeded RandomNormal nodes,
  so a file is a few KB and the importer keeps each weight as a lazy seeded tensor (VGG16 costs no 550 MB
  until a numeric step draws it). Builders take inputs in [0, 1] (recorded in the model's metadata) and
  carry their input normalisation inside the graph, as DESIGN.md's input contract asks.
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from aloha_ir import shapes
from aloha_ir.errors import InputFileError, UsageError, did_you_mean

LIGHT = ["bvlc_alexnet", "inception_v1", "vgg19", "resnet50", "squeezenet", "densenet121",
         "inception_v2", "shufflenet", "zfnet512"]
ALIASES = {"alexnet": "bvlc_alexnet"}
from frontends.onnx.importer import RANGE_KEY


class NetBuilder:
    """A tiny ONNX graph builder that tracks shapes and draws seeded lazy weights."""

    def __init__(self, name: str, input_shape: tuple[int, ...], seed: int | None = None):
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.shapes: dict[str, tuple[int, ...]] = {"input": tuple(input_shape)}
        # seeds travel as float32 attributes: keep them below 2**24 so every layer's seed is exact
        self.seed = (zlib.crc32(name.encode()) if seed is None else seed) % (1 << 20)
        self.count = 0

    def _name(self, base: str) -> str:
        self.count += 1
        return f"{base}{self.count}"

    def _node(self, op: str, inputs: list[str], shape: tuple[int, ...], base: str, **kw) -> str:
        out = self._name(base)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **kw))
        self.shapes[out] = tuple(shape)
        return out

    def random(self, shape: tuple[int, ...], std: float, base: str) -> str:
        """A seeded normal weight (RandomNormal is a constant here: the importer keeps it lazy)."""
        out = self._name(base)
        self.nodes.append(helper.make_node("RandomNormal", [], [out], name=out, shape=list(shape),
                                           mean=0.0, scale=float(std),
                                           seed=float(self.seed + self.count)))
        return out

    def const(self, array: np.ndarray, base: str) -> str:
        out = self._name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(array, dtype=np.float32), out))
        return out

    def splat(self, shape: tuple[int, ...], value: float, base: str) -> str:
        shape_name = self._name(base + "_shape")
        self.inits.append(numpy_helper.from_array(np.asarray(shape, dtype=np.int64), shape_name))
        out = self._name(base)
        self.nodes.append(helper.make_node(
            "ConstantOfShape", [shape_name], [out], name=out,
            value=numpy_helper.from_array(np.asarray([value], dtype=np.float32))))
        return out

    # --- layers ----------------------------------------------------------------------------------
    def normalize(self, x: str, mean, std) -> str:
        """(x - mean) / std per channel, for [0, 1] inputs."""
        c = len(mean)
        s = self.const(np.asarray([1.0 / v for v in std]).reshape(c, 1, 1), "norm_scale")
        b = self.const(np.asarray([-m / v for m, v in zip(mean, std)]).reshape(c, 1, 1), "norm_shift")
        y = self._node("Mul", [x, s], self.shapes[x], "norm_mul")
        return self._node("Add", [y, b], self.shapes[x], "norm_add")

    def conv(self, x: str, cout: int, k: int, stride: int = 1, pad: int | None = None,
             groups: int = 1, bias: bool = True, pads: list[int] | None = None) -> str:
        n, cin, h, w = self.shapes[x]
        p = k // 2 if pad is None else pad
        pads = pads or [p, p, p, p]
        fan_in = cin // groups * k * k
        ins = [x, self.random((cout, cin // groups, k, k), math.sqrt(2.0 / fan_in), "conv_w")]
        if bias:
            ins.append(self.random((cout,), 0.01, "conv_b"))
        out = shapes.conv_out_shape((n, cin, h, w), cout, (k, k), (stride, stride), pads, (1, 1))
        return self._node("Conv", ins, out, "conv", kernel_shape=[k, k],
                          strides=[stride, stride], pads=pads, group=groups)

    def bn(self, x: str) -> str:
        c = self.shapes[x][1]
        params = [self.splat((c,), v, f"bn_{what}")
                  for what, v in (("scale", 1.0), ("bias", 0.0), ("mean", 0.0), ("var", 1.0))]
        return self._node("BatchNormalization", [x] + params, self.shapes[x], "bn", epsilon=1e-5)

    def relu(self, x: str) -> str:
        return self._node("Relu", [x], self.shapes[x], "relu")

    def leaky(self, x: str, alpha: float = 0.1) -> str:
        return self._node("LeakyRelu", [x], self.shapes[x], "leaky", alpha=alpha)

    def pool(self, x: str, k: int, stride: int, kind: str = "MaxPool", pad: int = 0,
             pads: list[int] | None = None, ceil: bool = False) -> str:
        s = self.shapes[x]
        pads = pads or [pad] * 4
        out = shapes.conv_out_shape(s, s[1], (k, k), (stride, stride), pads, (1, 1), ceil)
        kw = {"ceil_mode": 1} if ceil else {}
        return self._node(kind, [x], out, "pool", kernel_shape=[k, k], strides=[stride, stride], pads=pads, **kw)

    def gap(self, x: str) -> str:
        n, c, _, _ = self.shapes[x]
        return self._node("GlobalAveragePool", [x], (n, c, 1, 1), "gap")

    def flatten(self, x: str) -> str:
        s = self.shapes[x]
        return self._node("Flatten", [x], (s[0], math.prod(s[1:])), "flatten", axis=1)

    def dense(self, x: str, m: int) -> str:
        n, k = self.shapes[x]
        w = self.random((m, k), math.sqrt(2.0 / k), "fc_w")
        b = self.random((m,), 0.01, "fc_b")
        return self._node("Gemm", [x, w, b], (n, m), "fc", transB=1)

    def dropout(self, x: str, ratio: float) -> str:
        # opset 13: the ratio is an input, not an attribute
        r = self.const(np.asarray(ratio, dtype=np.float32), "dropout_ratio")
        return self._node("Dropout", [x, r], self.shapes[x], "dropout")

    def add(self, a: str, b: str) -> str:
        return self._node("Add", [a, b], self.shapes[a], "add")

    def concat(self, xs: list[str]) -> str:
        s = list(self.shapes[xs[0]])
        s[1] = sum(self.shapes[x][1] for x in xs)
        return self._node("Concat", xs, tuple(s), "concat", axis=1)

    def softmax(self, x: str) -> str:
        return self._node("Softmax", [x], self.shapes[x], "softmax", axis=1)

    def model(self, output: str, value_range=(0.0, 1.0)) -> onnx.ModelProto:
        self.nodes.append(helper.make_node("Identity", [output], ["output"], name="output"))
        graph = helper.make_graph(
            self.nodes, self.name,
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(self.shapes["input"]))],
            [helper.make_tensor_value_info("output", TensorProto.FLOAT, list(self.shapes[output]))],
            self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                                  producer_name="aloha-zoo")
        model.ir_version = 10
        helper.set_model_props(model, {RANGE_KEY + "input": f"{value_range[0]},{value_range[1]}"})
        return model


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)


def vgg16() -> onnx.ModelProto:
    b = NetBuilder("vgg16", (1, 3, 224, 224))
    x = b.normalize("input", IMAGENET_MEAN, IMAGENET_STD)
    for widths in ([64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]):
        for c in widths:
            x = b.relu(b.conv(x, c, 3))
        x = b.pool(x, 2, 2)
    x = b.flatten(x)
    x = b.dropout(b.relu(b.dense(x, 4096)), 0.5)
    x = b.dropout(b.relu(b.dense(x, 4096)), 0.5)
    return b.model(b.softmax(b.dense(x, 1000)))


def resnet18() -> onnx.ModelProto:
    b = NetBuilder("resnet18", (1, 3, 224, 224))
    x = b.normalize("input", IMAGENET_MEAN, IMAGENET_STD)
    x = b.relu(b.bn(b.conv(x, 64, 7, 2, 3, bias=False)))
    x = b.pool(x, 3, 2, pad=1)
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        for block in range(2):
            s = stride if block == 0 else 1
            y = b.relu(b.bn(b.conv(x, cout, 3, s, 1, bias=False)))
            y = b.bn(b.conv(y, cout, 3, 1, 1, bias=False))
            short = x if (s == 1 and cin == cout) else b.bn(b.conv(x, cout, 1, s, 0, bias=False))
            x = b.relu(b.add(y, short))
            cin = cout
    x = b.flatten(b.gap(x))
    return b.model(b.softmax(b.dense(x, 1000)))


def mobilenet_v1() -> onnx.ModelProto:
    b = NetBuilder("mobilenet_v1", (1, 3, 224, 224))
    x = b.normalize("input", IMAGENET_MEAN, IMAGENET_STD)
    x = b.relu(b.bn(b.conv(x, 32, 3, 2, 1, bias=False)))
    cin = 32
    plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + \
        [(1024, 2), (1024, 1)]
    for cout, stride in plan:
        x = b.relu(b.bn(b.conv(x, cin, 3, stride, 1, groups=cin, bias=False)))  # depthwise
        x = b.relu(b.bn(b.conv(x, cout, 1, 1, 0, bias=False)))  # pointwise
        cin = cout
    x = b.flatten(b.pool(x, 7, 7, kind="AveragePool"))
    return b.model(b.softmax(b.dense(x, 1000)))


def squeezenet1_1() -> onnx.ModelProto:
    b = NetBuilder("squeezenet1_1", (1, 3, 224, 224))
    x = b.normalize("input", IMAGENET_MEAN, IMAGENET_STD)
    x = b.pool(b.relu(b.conv(x, 64, 3, 2, 0)), 3, 2, ceil=True)

    def fire(x, squeeze, expand):
        s = b.relu(b.conv(x, squeeze, 1, 1, 0))
        return b.concat([b.relu(b.conv(s, expand, 1, 1, 0)), b.relu(b.conv(s, expand, 3, 1, 1))])
    x = fire(fire(x, 16, 64), 16, 64)
    x = b.pool(x, 3, 2, ceil=True)
    x = fire(fire(x, 32, 128), 32, 128)
    x = b.pool(x, 3, 2, ceil=True)
    x = fire(fire(fire(fire(x, 48, 192), 48, 192), 64, 256), 64, 256)
    x = b.relu(b.conv(b.dropout(x, 0.5), 1000, 1, 1, 0))
    return b.model(b.softmax(b.flatten(b.gap(x))))


def lenet5() -> onnx.ModelProto:
    """LeNet-5 for 28x28 digits (conv1 padded by 2, as LeCun's 32x32 input)."""
    b = NetBuilder("lenet5", (1, 1, 28, 28))
    x = b.normalize("input", MNIST_MEAN, MNIST_STD)
    x = b.pool(b.relu(b.conv(x, 6, 5, 1, 2)), 2, 2)
    x = b.pool(b.relu(b.conv(x, 16, 5, 1, 0)), 2, 2)
    x = b.flatten(x)
    x = b.relu(b.dense(b.relu(b.dense(x, 120)), 84))
    return b.model(b.softmax(b.dense(x, 10)))


def tiny_yolov2() -> onnx.ModelProto:
    """Tiny YOLOv2 (VOC): 416x416, 9 convs with BN and leaky ReLU 0.1, output 125x13x13."""
    b = NetBuilder("tiny_yolov2", (1, 3, 416, 416))
    x = "input"
    for i, c in enumerate([16, 32, 64, 128, 256, 512]):
        x = b.leaky(b.bn(b.conv(x, c, 3, 1, 1, bias=False)))
        # the sixth max pool has stride 1 and pads right/bottom to keep 13x13
        x = b.pool(x, 2, 2) if i < 5 else b.pool(x, 2, 1, pads=[0, 0, 1, 1])
    for c in (1024, 1024):
        x = b.leaky(b.bn(b.conv(x, c, 3, 1, 1, bias=False)))
    return b.model(b.conv(x, 125, 1, 1, 0))


def mnist_cnn() -> onnx.ModelProto:
    """The Keras MNIST example: conv32-conv64-maxpool-dropout-dense128-dropout-dense10."""
    b = NetBuilder("mnist_cnn", (1, 1, 28, 28))
    x = b.normalize("input", MNIST_MEAN, MNIST_STD)
    x = b.relu(b.conv(x, 32, 3, 1, 0))
    x = b.relu(b.conv(x, 64, 3, 1, 0))
    x = b.dropout(b.pool(x, 2, 2), 0.25)
    x = b.dropout(b.relu(b.dense(b.flatten(x), 128)), 0.5)
    return b.model(b.softmax(b.dense(x, 10)))


DIGITS_MEAN, DIGITS_STD = (0.3,), (0.37,)


def digits_cnn() -> onnx.ModelProto:
    """A small CNN for scikit-learn's 8x8 digits: conv16-pool-conv32-pool-dense64-dense10."""
    b = NetBuilder("digits_cnn", (1, 1, 8, 8))
    x = b.normalize("input", DIGITS_MEAN, DIGITS_STD)
    x = b.pool(b.relu(b.conv(x, 16, 3)), 2, 2)
    x = b.pool(b.relu(b.conv(x, 32, 3)), 2, 2)
    x = b.dropout(b.relu(b.dense(b.flatten(x), 64)), 0.25)
    return b.model(b.softmax(b.dense(x, 10)))


BUILDERS: dict[str, Callable[[], onnx.ModelProto]] = {
    "vgg16": vgg16, "resnet18": resnet18, "squeezenet1_1": squeezenet1_1,
    "mobilenet_v1": mobilenet_v1, "lenet5": lenet5, "tiny_yolov2": tiny_yolov2,
    "mnist_cnn": mnist_cnn, "digits_cnn": digits_cnn,
}


@dataclass(frozen=True)
class ZooEntry:
    name: str
    kind: str  # "light" | "data" | "builder"
    description: str


def zoo_names() -> list[str]:
    return LIGHT + ["mnist-8"] + list(BUILDERS)


def entries() -> list[ZooEntry]:
    rows = [ZooEntry(n, "light", "ONNX model zoo (onnx wheel), splat weights") for n in LIGHT]
    rows.append(ZooEntry("mnist-8", "data", "ONNX model zoo MNIST CNN, from $ALOHA_DATA/onnx"))
    rows += [ZooEntry(n, "builder", (f.__doc__ or n).strip().splitlines()[0]) for n, f in
             BUILDERS.items()]
    return rows


def canonical_name(name: str) -> str:
    name = ALIASES.get(name, name)
    if name not in zoo_names():
        raise UsageError(f"unknown zoo model 'zoo:{name}'",
                         hint=did_you_mean(name, zoo_names() + list(ALIASES), "known") +
                         " (alohac list zoo)")
    return name


def zoo_path(name: str) -> str | None:
    """The file behind a light model or mnist-8 (None for builders)."""
    name = canonical_name(name)
    if name in LIGHT:
        return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light",
                            f"light_{name}.onnx")
    if name == "mnist-8":
        root = os.environ.get("ALOHA_DATA")
        if not root:
            raise InputFileError("zoo:mnist-8 lives in $ALOHA_DATA/onnx/mnist-8.onnx and ALOHA_DATA "
                                 "is not set", hint="export ALOHA_DATA=path/to/shared/data")
        return os.path.join(root, "onnx", "mnist-8.onnx")
    return None


def zoo_onnx(name: str) -> onnx.ModelProto:
    """The zoo model as ONNX (builders: lazy RandomNormal weights)."""
    name = canonical_name(name)
    path = zoo_path(name)
    if path is None:
        return BUILDERS[name]()
    from frontends.onnx import load_onnx
    return load_onnx(path)


# Known input ranges of imported zoo models (builders record theirs in the ONNX metadata).
KNOWN_RANGES = {"mnist-8": {"Input3": (0.0, 255.0)}}


def load_zoo(name: str):
    """Import a zoo model into a module (weights bound, lazily drawn for builders)."""
    from frontends.onnx import import_model
    name = canonical_name(name)
    model = zoo_onnx(name)
    return import_model(model, source=f"zoo:{name}", name=name,
                        input_ranges=KNOWN_RANGES.get(name))
