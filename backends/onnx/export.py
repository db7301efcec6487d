"""nn IR -> ONNX (float), runnable by onnxruntime.

Opset 13 and IR version 10 (onnx >= 1.16 stamps newer IR versions that onnxruntime 1.31 rejects). Splat
constants are exported as ConstantOfShape nodes, so a light model's export stays small; other constants
become initializers. Fused activations become their own nodes again. What `prune` recorded on a
conv or dense layer travels in the model's metadata (frontends.onnx.importer.PRUNING_KEY), so a
pruned model's ONNX file analyzes as pruned.

Each op is exported by its rule in `ONNX_EXPORTS`, one function per op family registered by op
class (`@onnx_export(nn.ConvOp)`); `GraphExporter.emit` looks the rule up and adds a fused
activation after it. `GraphExporter` is also the base of the quantized (QDQ) exporter in
backends/onnx/qdq.py: it emits for a higher opset when asked (ReduceMean takes its axes as an input
from opset 18) and has two hooks, the value an input port stands for (`input_value`) and the
parameters an activation is exported with (`act_params`).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from xdsl.dialects.builtin import DictionaryAttr, FloatAttr, IntegerAttr, ModuleOp
from xdsl.ir import SSAValue

from aloha_ir import interface
from aloha_ir.consts import const_tensor
from aloha_ir.dialects import nn
from aloha_ir.errors import UnsupportedError
from aloha_ir.optable import registrar
from aloha_ir.weights import weights_of

OPSET = 13
IR_VERSION = 10


class GraphExporter:
    """One nn graph as an ONNX GraphProto (`emit`), node by node."""

    def __init__(self, graph: nn.GraphOp, store, opset: int = OPSET):
        self.graph = graph
        self.store = store
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.names: dict[SSAValue, str] = {}
        self.counter = 0
        self.pruning: dict[str, str] = {}  # Conv/Gemm output -> the op's pruning record, as JSON

    def fresh(self, base: str = "t") -> str:
        self.counter += 1
        return f"{base}_{self.counter}"

    def name(self, v: SSAValue) -> str:
        return self.names[v]

    def int_init(self, values, base: str = "shape") -> str:
        name = self.fresh(base)
        self.inits.append(numpy_helper.from_array(np.asarray(values, dtype=np.int64), name))
        return name

    def node(self, op_type: str, inputs: list[str], output: str | None = None, **kw) -> str:
        out = output or self.fresh(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **kw))
        return out

    def activation(self, op, value: str, output: str) -> str:
        fused = op.fused_activation() if isinstance(op, nn.FusedActivation) else None
        if fused is None:
            return value
        kind, params = fused
        return self.act(kind, self.act_params(op, kind, params), None, value, output)

    def act_params(self, op, kind: str, params: tuple[float, ...]) -> tuple[float, ...]:
        """The parameters `op`'s activation is exported with."""
        return params

    def input_value(self, op: nn.InputOp) -> str:
        """The tensor the graph's input port stands for inside the graph."""
        return self.port_value(op)

    def port_value(self, op: nn.InputOp) -> str:
        """The input port as float32: a port the imported model declared with another element type
        keeps it, followed by a Cast (the importer took it only where that keeps its meaning)."""
        elem = self.port_type(op)
        if elem == TensorProto.FLOAT:
            return op.port.data
        return self.node("Cast", [op.port.data], self.fresh(f"{op.port.data}_f32"),
                         to=TensorProto.FLOAT)

    @staticmethod
    def port_type(op: nn.InputOp) -> int:
        return _elem(interface.input_type(op))

    def act(self, kind: str, params, axis, value: str, output: str) -> str:
        if kind == "relu":
            return self.node("Relu", [value], output)
        if kind == "leaky_relu":
            return self.node("LeakyRelu", [value], output, alpha=float(params[0]))
        if kind == "clip":
            lo = self.float_init(params[0])
            hi = self.float_init(params[1])
            return self.node("Clip", [value, lo, hi], output)
        if kind == "sigmoid":
            return self.node("Sigmoid", [value], output)
        if kind == "tanh":
            return self.node("Tanh", [value], output)
        if kind == "softmax":
            return self.node("Softmax", [value], output, axis=int(axis))
        if kind == "log_softmax":
            return self.node("LogSoftmax", [value], output, axis=int(axis))
        raise UnsupportedError(f"activation '{kind}' has no ONNX export")

    def float_init(self, value: float) -> str:
        name = self.fresh("scalar")
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def export(self) -> onnx.GraphProto:
        inputs, outputs = [], []
        for op in self.graph.ops:
            res = op.results[0] if op.results else None
            if isinstance(op, nn.InputOp):
                inputs.append(helper.make_tensor_value_info(op.port.data, self.port_type(op),
                                                            list(nn.shape_of(res))))
                self.names[res] = self.input_value(op)
                continue
            if isinstance(op, nn.OutputOp):
                types = [_elem(t) for t in interface.output_types(op)]
                for v, port, elem in zip(op.inputs, op.ports.data, types):
                    if elem == TensorProto.FLOAT:
                        self.node("Identity", [self.name(v)], port.data)
                    else:
                        self.node("Cast", [self.name(v)], port.data, to=elem)
                    outputs.append(helper.make_tensor_value_info(port.data, elem,
                                                                 list(nn.shape_of(v))))
                continue
            out = self.fresh(op.name.split(".")[-1])
            first = len(self.nodes)
            self.names[res] = self.emit(op, out)
            pruning = op.attributes.get("pruning")
            if isinstance(pruning, DictionaryAttr):
                for n in self.nodes[first:]:
                    if n.op_type in ("Conv", "Gemm"):
                        self.pruning[n.output[0]] = json.dumps(
                            {k: v.value.data if isinstance(v, (IntegerAttr, FloatAttr)) else v.data
                             for k, v in pruning.data.items()})
        return helper.make_graph(self.nodes, self.graph.sym_name.data, inputs, outputs, self.inits)

    def emit(self, op, out: str) -> str:
        """The ONNX nodes of `op`, by its rule in ONNX_EXPORTS, ending in `out`; a fused activation
        follows as a node of its own (the rule then writes to a fresh name)."""
        rule = ONNX_EXPORTS.get(type(op))
        if rule is None:
            raise UnsupportedError(f"{op.name} has no ONNX export")
        ins = [self.name(v) for v in op.operands]
        raw = self.fresh("pre") if isinstance(op, nn.FusedActivation) and \
            op.properties.get("activation") is not None else out
        value = rule(self, op, ins, raw)
        return self.activation(op, value, out) if raw != out else value


# (the exporter, the op, the names of its operands, the name of its output) -> that name
OnnxRule = Callable[[GraphExporter, nn.NnOp, list[str], str], str]

ONNX_EXPORTS: dict[type[nn.NnOp], OnnxRule] = {}

# `@onnx_export(nn.ConvOp)`: the decorated function exports the nn op classes named
onnx_export = registrar(ONNX_EXPORTS, "ONNX export")


@onnx_export(nn.ConstOp)
def const_export(ex: GraphExporter, op: nn.ConstOp, ins: list[str], out: str) -> str:
    c = const_tensor(op, ex.store)
    if c.splat is not None:
        value = numpy_helper.from_array(np.asarray([c.splat], dtype=np.float32))
        return ex.node("ConstantOfShape", [ex.int_init(list(c.shape))], out, value=value)
    ex.inits.append(numpy_helper.from_array(c.materialize().astype(np.float32), out))
    return out


@onnx_export(nn.ConvOp)
def conv_export(ex: GraphExporter, op: nn.ConvOp, ins: list[str], out: str) -> str:
    return ex.node("Conv", ins, out, kernel_shape=list(op.prop_ints("kernel")),
                   strides=list(op.prop_ints("strides")), pads=list(op.prop_ints("pads")),
                   dilations=list(op.prop_ints("dilations")), group=op.prop_int("group", 1))


@onnx_export(nn.PoolOp)
def pool_export(ex: GraphExporter, op: nn.PoolOp, ins: list[str], out: str) -> str:
    kind = op.kind.data
    if op.is_global:
        return ex.node("GlobalMaxPool" if kind == "global_max" else "GlobalAveragePool", ins, out)
    kw = dict(kernel_shape=list(op.prop_ints("kernel")), strides=list(op.prop_ints("strides")),
              pads=list(op.prop_ints("pads")), ceil_mode=op.prop_int("ceil_mode"))
    if kind == "avg":
        if op.prop_ints("dilations", (1, 1)) != (1, 1):
            raise UnsupportedError("dilated average pooling has no opset-13 export")
        kw["count_include_pad"] = op.prop_int("count_include_pad")
        return ex.node("AveragePool", ins, out, **kw)
    return ex.node("MaxPool", ins, out, dilations=list(op.prop_ints("dilations")), **kw)


@onnx_export(nn.DenseOp)
def dense_export(ex: GraphExporter, op: nn.DenseOp, ins: list[str], out: str) -> str:
    return ex.node("Gemm", ins, out, transB=1)


BINARY_NODES = {nn.AddOp: "Add", nn.MulOp: "Mul"}


@onnx_export(*BINARY_NODES)
def binary_export(ex: GraphExporter, op, ins: list[str], out: str) -> str:
    return ex.node(BINARY_NODES[type(op)], ins, out)


@onnx_export(nn.ConcatOp)
def concat_export(ex: GraphExporter, op: nn.ConcatOp, ins: list[str], out: str) -> str:
    return ex.node("Concat", ins, out, axis=op.prop_int("axis"))


@onnx_export(nn.ActOp)
def act_export(ex: GraphExporter, op: nn.ActOp, ins: list[str], out: str) -> str:
    kind = op.kind.data
    return ex.act(kind, ex.act_params(op, kind, nn.floats(op.params)), op.prop_int("axis", -1),
                  ins[0], out)


@onnx_export(nn.LrnOp)
def lrn_export(ex: GraphExporter, op: nn.LrnOp, ins: list[str], out: str) -> str:
    return ex.node("LRN", ins, out, size=op.prop_int("size"), alpha=op.prop_float("alpha"),
                   beta=op.prop_float("beta"), bias=op.prop_float("bias"))


@onnx_export(nn.BatchNormOp)
def batchnorm_export(ex: GraphExporter, op: nn.BatchNormOp, ins: list[str], out: str) -> str:
    """Four parameters: BatchNormalization; two (scale, bias folded): x * scale + bias."""
    if len(op.params) == 4:
        return ex.node("BatchNormalization", ins, out, epsilon=op.prop_float("epsilon"))
    rank = len(nn.shape_of(op.input))
    per_channel = ex.int_init([-1] + [1] * (rank - 2))
    scale = ex.node("Reshape", [ins[1], per_channel])
    bias = ex.node("Reshape", [ins[2], per_channel])
    return ex.node("Add", [ex.node("Mul", [ins[0], scale]), bias], out)


@onnx_export(nn.ReshapeOp)
def reshape_export(ex: GraphExporter, op: nn.ReshapeOp, ins: list[str], out: str) -> str:
    return ex.node("Reshape", [ins[0], ex.int_init(list(op.out_shape()))], out)


@onnx_export(nn.FlattenOp)
def flatten_export(ex: GraphExporter, op: nn.FlattenOp, ins: list[str], out: str) -> str:
    return ex.node("Flatten", ins, out, axis=op.prop_int("axis"))


@onnx_export(nn.TransposeOp)
def transpose_export(ex: GraphExporter, op: nn.TransposeOp, ins: list[str], out: str) -> str:
    return ex.node("Transpose", ins, out, perm=list(op.prop_ints("perm")))


@onnx_export(nn.SliceOp)
def slice_export(ex: GraphExporter, op: nn.SliceOp, ins: list[str], out: str) -> str:
    axis, start = op.prop_int("axis"), op.prop_int("start")
    end = start + nn.shape_of(op.output)[axis]
    return ex.node("Slice", [ins[0], ex.int_init([start], "starts"), ex.int_init([end], "ends"),
                             ex.int_init([axis], "axes")], out)


@onnx_export(nn.ChannelShuffleOp)
def channel_shuffle_export(ex: GraphExporter, op: nn.ChannelShuffleOp, ins: list[str],
                           out: str) -> str:
    """Reshape to (n, groups, c / groups, h, w), swap the two channel axes, reshape back."""
    n, c, h, w = op.out_shape()
    g = op.prop_int("groups")
    v = ex.node("Reshape", [ins[0], ex.int_init([n, g, c // g, h, w])])
    v = ex.node("Transpose", [v], perm=[0, 2, 1, 3, 4])
    return ex.node("Reshape", [v, ex.int_init([n, c, h, w])], out)


@onnx_export(nn.PadOp)
def pad_export(ex: GraphExporter, op: nn.PadOp, ins: list[str], out: str) -> str:
    pads = ex.int_init(list(op.prop_ints("pads")), "pads")
    return ex.node("Pad", [ins[0], pads, ex.float_init(op.prop_float("value"))], out,
                   mode=op.mode.data)


@onnx_export(nn.ResizeOp)
def resize_export(ex: GraphExporter, op: nn.ResizeOp, ins: list[str], out: str) -> str:
    scales = ex.fresh("scales")
    ex.inits.append(numpy_helper.from_array(
        np.asarray([1.0, 1.0, *nn.floats(op.scales)], dtype=np.float32), scales))
    kw = {"nearest_mode": op.nearest_mode.data} if op.nearest_mode is not None else {}
    f32 = np.asarray([1.0, 1.0, *nn.floats(op.scales)], dtype=np.float32)
    if list(op.out_shape()) == np.floor(
            np.asarray(nn.shape_of(op.input), dtype=np.float32) * f32).astype(int).tolist():
        inputs = [ins[0], "", scales]
    else:  # float32 scales would round the size differently: give the sizes
        inputs = [ins[0], "", "", ex.int_init(list(op.out_shape()), "sizes")]
    return ex.node("Resize", inputs, out, mode=op.mode.data,
                   coordinate_transformation_mode=op.coord_mode.data, **kw)


REDUCE_NODES = {"mean": "ReduceMean", "sum": "ReduceSum", "max": "ReduceMax", "min": "ReduceMin",
                "prod": "ReduceProd", "argmax": "ArgMax", "argmin": "ArgMin"}


@onnx_export(nn.ReduceOp)
def reduce_export(ex: GraphExporter, op: nn.ReduceOp, ins: list[str], out: str) -> str:
    """ReduceMean/Sum/Max/Min/Prod, the axes an attribute up to opset 17 (ReduceSum: 12), an input
    from opset 18 (13); ArgMax/ArgMin, whose int64 index is cast to the IR's float."""
    axes, keep = list(op.prop_ints("axes")), op.prop_int("keepdims", 1)
    name = REDUCE_NODES[op.kind.data]
    if op.kind.data in nn.ARG_REDUCTIONS:
        kw = {"select_last_index": 1} if op.prop_int("select_last_index", 0) else {}
        index = ex.node(name, ins, None, axis=axes[0], keepdims=keep, **kw)
        return ex.node("Cast", [index], out, to=TensorProto.FLOAT)
    if ex.opset >= (13 if name == "ReduceSum" else 18):
        return ex.node(name, [ins[0], ex.int_init(axes, "axes")], out, keepdims=keep)
    return ex.node(name, ins, out, axes=axes, keepdims=keep)


@onnx_export(nn.DropoutOp)
def dropout_export(ex: GraphExporter, op: nn.DropoutOp, ins: list[str], out: str) -> str:
    return ex.node("Identity", ins, out)


def _elem(name: str) -> int:
    """The TensorProto element type of an aloha_ir.interface type name."""
    return TensorProto.DataType.Value(name.upper())


def single_graph(module: ModuleOp) -> nn.GraphOp:
    graphs = [g for g in module.walk() if isinstance(g, nn.GraphOp)]
    if len(graphs) != 1:
        raise UnsupportedError(f"ONNX export needs exactly one nn.graph, found {len(graphs)}")
    return graphs[0]


def make_model(graph: onnx.GraphProto, opset: int = OPSET) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="aloha")
    model.ir_version = IR_VERSION
    return model


def export_onnx(module: ModuleOp) -> onnx.ModelProto:
    """The module's (single) nn.graph as an ONNX model."""
    from frontends.onnx.importer import PRUNING_KEY
    exporter = GraphExporter(single_graph(module), weights_of(module))
    model = make_model(exporter.export())
    for name, record in exporter.pruning.items():
        model.metadata_props.add(key=PRUNING_KEY + name, value=record)
    return model


def save_onnx(module: ModuleOp, path: str) -> None:
    from aloha_ir.outputs import atomic_path
    model = export_onnx(module)
    with atomic_path(path) as tmp:
        onnx.save(model, tmp)
