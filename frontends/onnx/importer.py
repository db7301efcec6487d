"""ONNX -> nn dialect.

The importer walks the graph once, in topological order. Every tensor name is bound either to an SSA
value of the nn graph (data flowing at run time) or to a static constant: a `ConstTensor` for float
parameters (splats and seeded randoms stay symbolic) or a numpy array for the small integer tensors of
shape subgraphs (Shape, Gather, Cast, Unsqueeze, Concat feeding a Reshape), which are thus folded.
Shapes are inferred with aloha_ir.shapes as each op is built; the nn verifiers check them again.

One converter per ONNX op lives in converters.py, registered by op type.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper
from xdsl.dialects.builtin import ArrayAttr, DictionaryAttr, ModuleOp, StringAttr, TensorType, f32
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.utils.exceptions import VerifyException

from aloha_ir.consts import make_const
from aloha_ir.cost import count_params
from aloha_ir.dialects.nn import (ConvOp, DenseOp, GraphOp, InputOp, OutputOp, float_attr,
                                  floats_attr, int_attr, shape_of)
from aloha_ir.errors import InputFileError, ShapeError, UnsupportedError
from aloha_ir.weights import ConstTensor, WeightStore, attach_weights

# metadata_props key prefix recording an input's expected value range: "<prefix><input>" -> "low,high"
RANGE_KEY = "aloha.input_range."
# metadata_props key prefix recording what `prune` did to a conv/dense (its `pruning` attribute as
# a JSON object, which analyze-cost reads): "<prefix><the Conv/Gemm node's output>" -> "{...}"
PRUNING_KEY = "aloha.pruning."

Converter = Callable[["ImportContext", onnx.NodeProto], None]
CONVERTERS: dict[str, Converter] = {}


def converter(*op_types: str):
    """Register a converter for ONNX op types (domain ai.onnx)."""
    def register(fn: Converter) -> Converter:
        for t in op_types:
            CONVERTERS[t] = fn
        return fn
    return register


def supported_ops() -> list[str]:
    from frontends.onnx import converters  # noqa: F401  (registers)
    return sorted(CONVERTERS)


@dataclass
class ImportContext:
    """State of one import: bindings of ONNX names, the ops built so far, the weight store."""

    source: str
    opset: int
    store: WeightStore
    ops: list[Operation] = field(default_factory=list)
    values: dict[str, SSAValue] = field(default_factory=dict)
    consts: dict[str, ConstTensor | np.ndarray] = field(default_factory=dict)
    const_ops: dict[str, SSAValue] = field(default_factory=dict)
    node: onnx.NodeProto | None = None
    _types: dict[tuple, TensorType] = field(default_factory=dict)

    # --- errors ----------------------------------------------------------------------------------
    def where(self) -> str:
        if self.node is None:
            return self.source
        return f"{self.source}: node '{node_label(self.node)}' ({self.node.op_type})"

    def unsupported(self, what: str) -> UnsupportedError:
        return UnsupportedError(what, where=self.where())

    def shape_error(self, what: str) -> ShapeError:
        return ShapeError(what, where=self.where())

    # --- bindings --------------------------------------------------------------------------------
    def tensor_type(self, shape: Sequence[int]) -> TensorType:
        key = tuple(shape)
        t = self._types.get(key)
        if t is None:
            t = self._types[key] = TensorType(f32, key)
        return t

    def has(self, name: str) -> bool:
        return name in self.values or name in self.consts

    def is_const(self, name: str) -> bool:
        return name in self.consts

    def const(self, name: str) -> ConstTensor:
        """A float constant (integer constants are converted)."""
        c = self._lookup_const(name)
        return c if isinstance(c, ConstTensor) else ConstTensor.of(c.astype(np.float32))

    def ints(self, name: str) -> np.ndarray:
        """An integer constant of a shape subgraph, as int64."""
        c = self._lookup_const(name)
        if isinstance(c, ConstTensor):
            if c.size > 1 << 16:
                raise self.shape_error(f"'{name}' is too large to be a shape tensor")
            return c.materialize().astype(np.int64)
        return c.astype(np.int64)

    def value(self, name: str) -> np.ndarray:
        """A constant as a numpy array of its own dtype (for folding)."""
        c = self._lookup_const(name)
        return c.materialize() if isinstance(c, ConstTensor) else c

    def _lookup_const(self, name: str):
        try:
            return self.consts[name]
        except KeyError:
            if name in self.values:
                raise self.shape_error(f"input '{name}' must be a constant known at compile time "
                                       "(it is computed at run time)") from None
            raise self.shape_error(f"tensor '{name}' is not defined") from None

    def shape(self, name: str) -> tuple[int, ...]:
        if name in self.values:
            return shape_of(self.values[name])
        c = self._lookup_const(name)
        return tuple(c.shape)

    def operand(self, name: str) -> SSAValue:
        """The SSA value for `name`; a constant gets one nn.const op, built on first use."""
        v = self.values.get(name)
        if v is not None:
            return v
        v = self.const_ops.get(name)
        if v is None:
            op = make_const(self.const(name), self.store, hint=name)
            self.ops.append(op)
            v = self.const_ops[name] = op.results[0]
        return v

    def operand_from(self, value: ConstTensor, hint: str) -> SSAValue:
        op = make_const(value, self.store, hint=hint)
        self.ops.append(op)
        return op.results[0]

    def emit(self, op: Operation, output: str | None = None) -> SSAValue | None:
        """Append `op`; bind its first result to `output` (default: the node's first output)."""
        self.ops.append(op)
        if not op.results:
            return None
        out = output if output is not None else (self.node.output[0] if self.node else None)
        if out is not None:
            if self.node is not None and "name" not in op.attributes:
                op.attributes["name"] = StringAttr(self.node.name or out)
            self.values[out] = op.results[0]
        return op.results[0]

    def alias(self, output: str, source: str) -> None:
        if source in self.values:
            self.values[output] = self.values[source]
        else:
            self.consts[output] = self.consts[source]

    def set_const(self, output: str, value: ConstTensor | np.ndarray) -> None:
        self.consts[output] = value


# --- helpers for converters -----------------------------------------------------------------------

def attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def node_label(node: onnx.NodeProto) -> str:
    return node.name or (node.output[0] if node.output else f"<unnamed {node.op_type}>")


def _check_text(model: onnx.ModelProto, source: str) -> None:
    """Names must be text: protobuf hands back invalid UTF-8 string fields (a corrupted file) as
    bytes, which would fail far from here."""
    g = model.graph
    fields = [g.name] + [p.key for p in model.metadata_props] + \
        [p.value for p in model.metadata_props] + \
        [v.name for v in list(g.input) + list(g.output) + list(g.initializer)]
    for n in g.node:
        fields += [n.name, n.op_type, n.domain, *n.input, *n.output]
    if any(isinstance(f, bytes) for f in fields):
        raise InputFileError("corrupted model: a name or op type is not valid UTF-8 text",
                             where=source)


# --- the import -----------------------------------------------------------------------------------

_SYMBOL = re.compile(r"[^A-Za-z0-9_]")


def _symbol(name: str) -> str:
    s = _SYMBOL.sub("_", name).strip("_") or "net"
    return s if not s[0].isdigit() else "n" + s


def load_onnx(path: str) -> onnx.ModelProto:
    """Read an ONNX file; every failure is an InputFileError naming the file."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise InputFileError("no such file", where=path) from None
    except OSError as e:
        raise InputFileError(f"cannot read file ({e.strerror})", where=path) from None
    if not data:
        raise InputFileError("empty file, not an ONNX model", where=path)
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception:
        raise InputFileError("not an ONNX model (protobuf parse failed: truncated or another "
                             "format)", where=path) from None
    if not model.HasField("graph") or not model.graph.node:
        raise InputFileError("not an ONNX model (no graph nodes; truncated or another format)",
                             where=path)
    if model.graph.initializer and any(t.data_location == onnx.TensorProto.EXTERNAL
                                       for t in model.graph.initializer):
        try:
            onnx.load_external_data_for_model(model, os.path.dirname(os.path.abspath(path)))
        except Exception as e:
            raise InputFileError(f"external weight data not readable ({e})", where=path) from None
    return model


def _opset(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return o.version
    return 1


def _sorted_nodes(graph: onnx.GraphProto, known: set[str], source: str) -> list[onnx.NodeProto]:
    """Nodes in topological order (ONNX requires it, but be lenient); a cycle is an error."""
    nodes = list(graph.node)
    avail = set(known) | {""}
    ordered: list[onnx.NodeProto] = []
    pending = nodes
    while pending:
        progress = []
        rest = []
        for n in pending:
            (progress if all(i in avail for i in n.input) else rest).append(n)
            if progress and progress[-1] is n:
                avail.update(n.output)
        if not progress:
            n = rest[0]
            missing = [i for i in n.input if i not in avail]
            producers = {o for m in rest for o in m.output}
            if any(i in producers for i in missing):
                raise ShapeError("the graph is cyclic: " + ", ".join(
                    f"'{node_label(m)}' ({m.op_type})" for m in rest[:4]) +
                    (" ..." if len(rest) > 4 else "") + " wait on each other",
                    where=source)
            raise ShapeError(f"node '{node_label(n)}' ({n.op_type}) reads '{missing[0]}', "
                             "which no node, initializer or input defines", where=source)
        ordered.extend(progress)
        pending = rest
    return ordered


def _graph_input_shape(vi: onnx.ValueInfoProto, overrides: dict[str, Sequence[int]],
                       source: str) -> tuple[int, ...]:
    if vi.name in overrides:
        return tuple(int(d) for d in overrides[vi.name])
    tt = vi.type.tensor_type
    if not vi.type.HasField("tensor_type"):
        raise UnsupportedError(f"input '{vi.name}' is not a tensor", where=source)
    if not tt.HasField("shape"):
        raise ShapeError(f"input '{vi.name}' has no shape", where=source,
                         hint=f"give it with --input-shape {vi.name}=1,3,224,224")
    dims = []
    for i, d in enumerate(tt.shape.dim):
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(d.dim_value)
        elif i == 0:
            dims.append(1)  # a symbolic batch dimension: compile for one frame
        else:
            label = d.dim_param or "?"
            raise ShapeError(f"input '{vi.name}' dimension {i} is dynamic ('{label}')",
                             where=source, hint=f"give a static shape with --input-shape "
                                                f"{vi.name}=d0,d1,...")
    return tuple(dims)


def import_model(model: onnx.ModelProto, source: str = "<model>", name: str | None = None,
                 input_shapes: dict[str, Sequence[int]] | None = None,
                 input_ranges: dict[str, tuple[float, float]] | None = None) -> ModuleOp:
    """Convert an in-memory ONNX model to a module holding one nn.graph, with its weights bound."""
    from frontends.onnx import converters  # noqa: F401  (registers the converters)

    _check_text(model, source)
    opset = _opset(model)
    store = WeightStore()
    ctx = ImportContext(source=source, opset=opset, store=store)
    g = model.graph
    overrides = dict(input_shapes or {})
    input_ranges = {**_recorded_ranges(model, source), **(input_ranges or {})}

    for init in g.initializer:
        ctx.set_const(init.name, _initializer(init, source))
    for vi in g.input:
        if vi.name in ctx.consts:
            continue  # IR < 4: initializers are listed as inputs too
        shape = _graph_input_shape(vi, overrides, source)
        props = {"port": StringAttr(vi.name)}
        if input_ranges and vi.name in input_ranges:
            props["value_range"] = floats_attr(input_ranges[vi.name])
        op = InputOp.create(result_types=[ctx.tensor_type(shape)], properties=props)
        ctx.ops.append(op)
        ctx.values[vi.name] = op.results[0]
    unknown = set(overrides) - set(ctx.values)
    if unknown:
        raise ShapeError(f"--input-shape names {sorted(unknown)}, not inputs of the model "
                         f"(inputs: {sorted(ctx.values)})", where=source)
    if not ctx.values:
        raise UnsupportedError("the model has no run-time input (everything is constant)",
                               where=source)

    for node in _sorted_nodes(g, set(ctx.consts) | set(ctx.values), source):
        ctx.node = node
        if node.domain not in ("", "ai.onnx"):
            raise ctx.unsupported(f"operator domain '{node.domain}' is not supported; supported: "
                                  "the default ONNX domain")
        conv = CONVERTERS.get(node.op_type)
        if conv is None:
            raise ctx.unsupported(f"operator {node.op_type} is not supported; supported: "
                                  f"{', '.join(sorted(CONVERTERS))}")
        try:
            conv(ctx, node)
        except (UnsupportedError, ShapeError):
            raise
        except (ValueError, IndexError, KeyError, TypeError, VerifyException) as e:
            # a malformed node (missing inputs, out-of-range attribute values, ...)
            raise ctx.shape_error(f"cannot convert: {str(e).splitlines()[0]}") from None
    ctx.node = None
    _recorded_pruning(model, ctx, source)

    outs, ports = [], []
    for vo in g.output:
        if vo.name in ctx.values:
            outs.append(ctx.values[vo.name])
        elif vo.name in ctx.consts:
            outs.append(ctx.operand(vo.name))
        else:
            raise ShapeError(f"graph output '{vo.name}' is never produced", where=source)
        ports.append(StringAttr(vo.name))
    ctx.ops.append(OutputOp.create(operands=outs, properties={"ports": ArrayAttr(ports)}))

    gname = _symbol(name or g.name or os.path.splitext(os.path.basename(source))[0])
    graph = GraphOp.build_graph(gname, _live_ops(ctx.ops))
    # `params` of the contract counts tensors as imported, so record it before any transform.
    graph.attributes["imported_params"] = int_attr(count_params(graph))
    module = ModuleOp(Region(Block([graph])))
    attach_weights(module, store)
    return module


def _recorded_ranges(model: onnx.ModelProto, source: str) -> dict[str, tuple[float, float]]:
    ranges = {}
    for p in model.metadata_props:
        key, value = p.key, p.value
        if key.startswith(RANGE_KEY):
            try:
                lo, hi = (float(v) for v in value.split(","))
            except ValueError:
                raise InputFileError(f"metadata '{key}' must be 'low,high', got '{value}'",
                                     where=source) from None
            ranges[key[len(RANGE_KEY):]] = (lo, hi)
    return ranges


def _recorded_pruning(model: onnx.ModelProto, ctx: "ImportContext", source: str) -> None:
    """Give the pruned convs and dense layers their `pruning` attribute back (PRUNING_KEY)."""
    for p in model.metadata_props:
        if not p.key.startswith(PRUNING_KEY):
            continue
        name = p.key[len(PRUNING_KEY):]
        op = ctx.values[name].owner if name in ctx.values else None
        if not isinstance(op, (ConvOp, DenseOp)):
            raise InputFileError(f"metadata '{p.key}' names no Conv or Gemm output", where=source,
                                 hint="the graph was edited after pruning: drop the entry")
        try:
            entries = json.loads(p.value)
        except ValueError:
            entries = None

        def attr(v):
            if isinstance(v, str):
                return StringAttr(v)
            if isinstance(v, int) and not isinstance(v, bool):
                return int_attr(v)
            if isinstance(v, float) and math.isfinite(v):
                return float_attr(v)
            return None
        attrs = {k: attr(v) for k, v in entries.items()} if isinstance(entries, dict) else {}
        if not attrs or None in attrs.values():
            raise InputFileError(f"metadata '{p.key}' must be a JSON object of strings and finite "
                                 f"numbers, got '{p.value[:80]}'", where=source)
        op.attributes["pruning"] = DictionaryAttr(attrs)


def _live_ops(ops: list[Operation]) -> list[Operation]:
    """Drop ops whose results nobody uses (dead branches, unused constants), keeping order."""
    used: set[int] = set()
    keep: list[Operation] = []
    for op in reversed(ops):
        if isinstance(op, (OutputOp, InputOp)) or any(id(r) in used for r in op.results):
            keep.append(op)
            used.update(id(o) for o in op.operands)
    keep.reverse()
    return keep


def _initializer(t: onnx.TensorProto, source: str) -> ConstTensor | np.ndarray:
    try:
        arr = numpy_helper.to_array(t)
    except Exception as e:
        raise InputFileError(f"initializer '{t.name}' is unreadable ({e})", where=source) from None
    if arr.dtype.kind == "f":
        return ConstTensor.of(arr)
    return arr


def import_onnx(path: str, name: str | None = None,
                input_shapes: dict[str, Sequence[int]] | None = None,
                input_ranges: dict[str, tuple[float, float]] | None = None) -> ModuleOp:
    """Load and convert an ONNX file."""
    model = load_onnx(path)
    return import_model(model, source=path, name=name, input_shapes=input_shapes,
                        input_ranges=input_ranges)
