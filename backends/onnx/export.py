"""nn IR -> ONNX (float), runnable by onnxruntime.

Opset 13 and IR version 10 (onnx >= 1.16 stamps newer IR versions that onnxruntime 1.31 rejects). Splat
constants are exported as ConstantOfShape nodes, so a light model's export stays small; other constants
become initializers. Fused activations become their own nodes again. What `prune` recorded on a
conv or dense layer travels in the model's metadata (frontends.onnx.importer.PRUNING_KEY), so a
pruned model's ONNX file analyzes as pruned.

`GraphExporter` is also the base of the quantized (QDQ) exporter in backends/onnx/qdq.py: it emits
for a higher opset when asked (ReduceMean takes its axes as an input from opset 18) and has two
hooks, the value an input port stands for (`input_value`) and the parameters an activation is
exported with (`act_params`).
"""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from xdsl.dialects.builtin import DictionaryAttr, FloatAttr, IntegerAttr, ModuleOp
from xdsl.ir import SSAValue

from aloha_ir import interface
from aloha_ir.consts import const_tensor
from aloha_ir.dialects import nn
from aloha_ir.errors import UnsupportedError
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
        ins = [self.name(v) for v in op.operands] if not isinstance(op, nn.ConstOp) else []
        raw = self.fresh("pre") if isinstance(op, nn.FusedActivation) and \
            op.properties.get("activation") is not None else out
        if isinstance(op, nn.ConstOp):
            c = const_tensor(op, self.store)
            if c.splat is not None:
                value = numpy_helper.from_array(np.asarray([c.splat], dtype=np.float32))
                return self.node("ConstantOfShape", [self.int_init(list(c.shape))], out, value=value)
            self.inits.append(numpy_helper.from_array(c.materialize().astype(np.float32), out))
            return out
        if isinstance(op, nn.ConvOp):
            self.node("Conv", ins, raw, kernel_shape=list(op.prop_ints("kernel")),
                      strides=list(op.prop_ints("strides")), pads=list(op.prop_ints("pads")),
                      dilations=list(op.prop_ints("dilations")), group=op.prop_int("group", 1))
        elif isinstance(op, nn.PoolOp):
            kind = op.kind.data
            if op.is_global:
                self.node("GlobalMaxPool" if kind == "global_max" else "GlobalAveragePool", ins, raw)
            else:
                kw = dict(kernel_shape=list(op.prop_ints("kernel")),
                          strides=list(op.prop_ints("strides")), pads=list(op.prop_ints("pads")),
                          ceil_mode=op.prop_int("ceil_mode"))
                if kind == "avg":
                    if op.prop_ints("dilations", (1, 1)) != (1, 1):
                        raise UnsupportedError("dilated average pooling has no opset-13 export")
                    kw["count_include_pad"] = op.prop_int("count_include_pad")
                    self.node("AveragePool", ins, raw, **kw)
                else:
                    self.node("MaxPool", ins, raw, dilations=list(op.prop_ints("dilations")), **kw)
        elif isinstance(op, nn.DenseOp):
            self.node("Gemm", ins, raw, transB=1)
        elif isinstance(op, nn.AddOp):
            self.node("Add", ins, raw)
        elif isinstance(op, nn.MulOp):
            self.node("Mul", ins, raw)
        elif isinstance(op, nn.ConcatOp):
            self.node("Concat", ins, raw, axis=op.prop_int("axis"))
        elif isinstance(op, nn.ActOp):
            kind = op.kind.data
            return self.act(kind, self.act_params(op, kind, nn.floats(op.params)),
                            op.prop_int("axis", -1), ins[0], out)
        elif isinstance(op, nn.LrnOp):
            self.node("LRN", ins, raw, size=op.prop_int("size"), alpha=op.prop_float("alpha"),
                      beta=op.prop_float("beta"), bias=op.prop_float("bias"))
        elif isinstance(op, nn.BatchNormOp):
            if len(op.params) == 4:
                self.node("BatchNormalization", ins, raw, epsilon=op.prop_float("epsilon"))
            else:
                rank = len(nn.shape_of(op.input))
                per_channel = self.int_init([-1] + [1] * (rank - 2))
                scale = self.node("Reshape", [ins[1], per_channel])
                bias = self.node("Reshape", [ins[2], per_channel])
                self.node("Add", [self.node("Mul", [ins[0], scale]), bias], raw)
        elif isinstance(op, (nn.ReshapeOp,)):
            return self.node("Reshape", [ins[0], self.int_init(list(op.out_shape()))], out)
        elif isinstance(op, nn.FlattenOp):
            return self.node("Flatten", ins, out, axis=op.prop_int("axis"))
        elif isinstance(op, nn.TransposeOp):
            return self.node("Transpose", ins, out, perm=list(op.prop_ints("perm")))
        elif isinstance(op, nn.ChannelShuffleOp):
            n, c, h, w = op.out_shape()
            g = op.prop_int("groups")
            v = self.node("Reshape", [ins[0], self.int_init([n, g, c // g, h, w])])
            v = self.node("Transpose", [v], perm=[0, 2, 1, 3, 4])
            return self.node("Reshape", [v, self.int_init([n, c, h, w])], out)
        elif isinstance(op, nn.PadOp):
            pads = self.int_init(list(op.prop_ints("pads")), "pads")
            return self.node("Pad", [ins[0], pads, self.float_init(op.prop_float("value"))], out,
                             mode=op.mode.data)
        elif isinstance(op, nn.ResizeOp):
            scales = self.fresh("scales")
            self.inits.append(numpy_helper.from_array(
                np.asarray([1.0, 1.0, *nn.floats(op.scales)], dtype=np.float32), scales))
            kw = {"nearest_mode": op.nearest_mode.data} if op.nearest_mode is not None else {}
            f32 = np.asarray([1.0, 1.0, *nn.floats(op.scales)], dtype=np.float32)
            if list(op.out_shape()) == np.floor(
                    np.asarray(nn.shape_of(op.input), dtype=np.float32) * f32).astype(int).tolist():
                inputs = [ins[0], "", scales]
            else:  # float32 scales would round the size differently: give the sizes
                inputs = [ins[0], "", "", self.int_init(list(op.out_shape()), "sizes")]
            return self.node("Resize", inputs, out, mode=op.mode.data,
                             coordinate_transformation_mode=op.coord_mode.data, **kw)
        elif isinstance(op, nn.ReduceMeanOp):
            axes, keep = list(op.prop_ints("axes")), op.prop_int("keepdims", 1)
            if self.opset >= 18:
                return self.node("ReduceMean", [ins[0], self.int_init(axes, "axes")], out,
                                 keepdims=keep)
            return self.node("ReduceMean", ins, out, axes=axes, keepdims=keep)
        elif isinstance(op, nn.DropoutOp):
            return self.node("Identity", ins, out)
        else:
            raise UnsupportedError(f"{op.name} has no ONNX export")
        return self.activation(op, raw, out) if raw != out else out


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
