"""ONNX -> nn dialect.

The importer walks the graph once, in topological order. Every tensor name is bound either to an SSA
value of the nn graph (data flowing at run time) or to a static constant: a `ConstTensor` for float
parameters (splats and seeded randoms stay symbolic) or a numpy array for the small integer tensors of
shape subgraphs (Shape, Gather, Cast, Unsqueeze, Concat feeding a Reshape), which are thus folded.
Shapes are inferred with aloha_ir.shapes as each op is built; the nn verifiers check them again.

One converter per ONNX op lives in converters.py, registered by op type when the package
(frontends/onnx/__init__.py) imports it: importing this module imports its package first.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper
from xdsl.dialects.builtin import ArrayAttr, DictionaryAttr, ModuleOp, StringAttr, TensorType, f32
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.utils.exceptions import VerifyException

from aloha_ir import interface, shapes
from aloha_ir.consts import make_const
from aloha_ir.cost import count_params
from aloha_ir.dialects.csdf import unique_name
from aloha_ir.dialects.nn import (ARG_REDUCTIONS, ConvOp, DenseOp, GraphOp, InputOp, NnOp,
                                  OutputOp, ReduceOp, float_attr, floats_attr, int_attr, shape_of)
from aloha_ir.errors import AlohaError, AlohaWarning, InputFileError, ShapeError, UnsupportedError
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
    runtime: set[SSAValue] = field(default_factory=set)  # values computed from the inputs
    labels: set[str] = field(default_factory=set)  # block names given (symbols of the nn.graph)
    node: onnx.NodeProto | None = None
    # what a family of converters keeps across nodes (qdq.py's quantization parameters), by key
    state: dict[str, object] = field(default_factory=dict)
    consumers: dict[str, list[onnx.NodeProto]] = field(default_factory=dict)  # name -> readers
    # run on the built graph, in order, before its weights are attached (qdq.py's formats)
    finish: list[Callable[[GraphOp], None]] = field(default_factory=list)
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

    def warn(self, what: str) -> None:
        """Say what the import changes in the model's meaning (never silently)."""
        warnings.warn(f"{self.where()}: {what}", AlohaWarning, stacklevel=3)

    # --- bindings --------------------------------------------------------------------------------
    def tensor_type(self, shape: Sequence[int]) -> TensorType:
        """The f32 tensor type of a run-time value; an empty one (a dimension < 1) is refused."""
        key = tuple(int(d) for d in shape)
        if any(d < 1 for d in key):
            raise self.shape_error(f"the result would be an empty tensor {list(key)}; the "
                                   "compiler needs every dimension >= 1")
        self.check_size(key)
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
            values = c.materialize()
            if not np.isfinite(values).all() or (np.abs(values) >= 2.0 ** 63).any():
                raise self.shape_error(f"'{name}' is used as integers (a shape, axes or pads) but "
                                       "holds a value no int64 can hold (NaN, infinite or huge)")
            return values.astype(np.int64)
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
            v = self.const_ops[name] = self.operand_from(self.const(name), name)
        return v

    def operand_from(self, value: ConstTensor, hint: str) -> SSAValue:
        """An nn.const for a parameter; NaN or infinite values are refused (they would poison
        every output, and the saved weights sidecar would not load back)."""
        values = [value.splat] if value.splat is not None else \
            value.array if value.array is not None else []
        if not np.isfinite(values).all():
            raise InputFileError(f"constant '{hint}' holds NaN or infinite values",
                                 where=self.where())
        op = make_const(value, self.store, hint=hint)
        self.ops.append(op)
        return op.results[0]

    def emit(self, op: Operation, output: str | None = None) -> SSAValue | None:
        """Append `op`; bind its first result to `output` (default: the node's first output).
        The op's shape rule is checked now, so a bad model fails here naming its ONNX node (a
        conv whose weight expects other input channels), not later as a compiler bug."""
        if isinstance(op, NnOp):
            try:
                op.check()
            except VerifyException as e:
                raise self.shape_error(str(e).splitlines()[0]) from None
        if op.operands and not any(v in self.runtime for v in op.operands):
            # the lowering makes actors of ops fed by the input; an op of constants is no actor
            raise self.unsupported(f"{self.node.op_type if self.node else op.name} computes on "
                                   "constants only; supported: constant subgraphs of shapes, "
                                   "elementwise arithmetic and data movement (folded)")
        self.runtime.update(op.results)
        self.ops.append(op)
        if not op.results:
            return None
        out = output if output is not None else (self.node.output[0] if self.node else None)
        if out is not None:
            if self.node is not None and "name" not in op.attributes:
                # block names are symbols: a node name used twice (or an input's) gets a suffix
                op.attributes["name"] = StringAttr(unique_name(self.node.name or out,
                                                               self.labels))
            self.values[out] = op.results[0]
        return op.results[0]

    def alias(self, output: str, source: str) -> None:
        if source in self.values:
            self.values[output] = self.values[source]
        else:
            self.consts[output] = self.consts[source]

    def set_const(self, output: str, value: ConstTensor | np.ndarray) -> None:
        self.check_size(value.shape)
        self.consts[output] = value

    def check_size(self, shape: Sequence[int]) -> None:
        """Refuse a tensor larger than the compiler handles before anything materialises it."""
        if shapes.numel(shape) > shapes.MAX_ELEMENTS:
            raise self.shape_error(f"tensor {list(shape)} has more than {shapes.MAX_ELEMENTS:,} "
                                   "elements, more than the compiler handles")


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


# Opsets the converters implement. Before opset 7 Add, Mul, Gemm ... broadcast by an `axis`
# attribute and BatchNormalization has `spatial`/`is_test`: read with today's rules they would give
# wrong numbers. The newest is what the installed onnx package defines.
MIN_OPSET = 7
MAX_OPSET = onnx.defs.onnx_opset_version()


def _opset(model: onnx.ModelProto, source: str) -> int:
    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not versions:
        raise InputFileError("the model imports no ai.onnx opset (opset_import is empty)",
                             where=source)
    opset = versions[0]
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise UnsupportedError(f"ONNX opset {opset} is not supported; supported: opsets "
                               f"{MIN_OPSET} to {MAX_OPSET}", where=source,
                               hint="convert it with onnx.version_converter.convert_version("
                                    "model, 13)" if 0 < opset < MIN_OPSET else None)
    return opset


def _check_attributes(node: onnx.NodeProto, opset: int, where: str) -> None:
    """Each attribute known to the op's schema at this opset, of the declared type, and the
    required ones present (as onnxruntime's checker demands); a misspelt `stride` would otherwise
    be ignored and a STRING `group` crash a converter."""
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, "")
    except onnx.defs.SchemaError:
        return  # an op unknown at this opset: the converter lookup reports it
    declared = schema.attributes
    for a in node.attribute:
        spec = declared.get(a.name)
        if spec is None:
            raise InputFileError(f"{node.op_type}-{schema.since_version} has no attribute "
                                 f"'{a.name}'", where=where,
                                 hint="its attributes: " + (", ".join(sorted(declared)) or "none"))
        if a.type != spec.type:
            got = onnx.AttributeProto.AttributeType.Name(a.type)
            raise InputFileError(f"attribute '{a.name}' is {got}, {node.op_type}-"
                                 f"{schema.since_version} declares it "
                                 f"{onnx.AttributeProto.AttributeType.Name(spec.type)}",
                                 where=where)
    present = {a.name for a in node.attribute}
    for name, spec in declared.items():
        if spec.required and name not in present:
            raise InputFileError(f"required attribute '{name}' is missing", where=where)


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
        if d.HasField("dim_value") and d.dim_value < 1:
            raise ShapeError(f"input '{vi.name}' dimension {i} has size {d.dim_value}: an empty "
                             "tensor has nothing to compute", where=source,
                             hint=f"give a shape with --input-shape {vi.name}=d0,d1,...")
        if d.HasField("dim_value"):
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
    _check_text(model, source)
    opset = _opset(model, source)
    store = WeightStore()
    ctx = ImportContext(source=source, opset=opset, store=store)
    g = model.graph
    if not g.output:
        raise InputFileError("the graph declares no outputs; an ONNX graph computes at least one",
                             where=source)
    overrides = dict(input_shapes or {})
    input_ranges = {**_recorded_ranges(model, source), **(input_ranges or {})}

    for init in g.initializer:
        ctx.set_const(init.name, _initializer(init, source))
    consumers = ctx.consumers
    for node in g.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    for vi in g.input:
        if vi.name in ctx.consts:
            continue  # IR < 4: initializers are listed as inputs too
        shape = _graph_input_shape(vi, overrides, source)
        elem = _input_type(vi, consumers.get(vi.name, []), source)
        props = {"port": StringAttr(vi.name)}
        if input_ranges and vi.name in input_ranges:
            props["value_range"] = floats_attr(input_ranges[vi.name])
        op = InputOp.create(result_types=[ctx.tensor_type(shape)], properties=props)
        ctx.runtime.add(op.results[0])
        if elem != T.FLOAT:
            op.attributes[interface.INPUT_TYPE] = StringAttr(type_name(elem))
        ctx.ops.append(op)
        ctx.labels.add(vi.name)
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
        _check_attributes(node, opset, ctx.where())
        try:
            conv(ctx, node)
        except AlohaError:
            raise
        except (ValueError, IndexError, KeyError, TypeError, AttributeError, ArithmeticError,
                VerifyException) as e:
            # a malformed node (missing inputs, out-of-range attribute values, ...)
            raise ctx.shape_error(f"cannot convert: {str(e).splitlines()[0] if str(e) else e!r}"
                                  ) from None
    ctx.node = None
    _recorded_pruning(model, ctx, source)

    outs, ports, types = [], [], []
    for vo in g.output:
        if vo.name in ctx.values:
            outs.append(ctx.values[vo.name])
        elif vo.name in ctx.consts:
            node = next((n for n in g.node if vo.name in n.output), None)
            origin = f"node '{node_label(node)}' ({node.op_type})" if node else "an initializer"
            raise UnsupportedError(f"graph output '{vo.name}' is a constant, from {origin}: it "
                                   "does not depend on any input (a Shape's output is known at "
                                   "compile time); supported: outputs computed from the inputs",
                                   where=source, hint="drop the output, or compute it from an "
                                   "input")
        else:
            raise ShapeError(f"graph output '{vo.name}' is never produced", where=source)
        ports.append(StringAttr(vo.name))
        types.append(_output_type(vo, outs[-1], source))
    out_op = OutputOp.create(operands=outs, properties={"ports": ArrayAttr(ports)})
    if any(t != T.FLOAT for t in types):
        out_op.attributes[interface.OUTPUT_TYPES] = ArrayAttr([StringAttr(type_name(t))
                                                               for t in types])
    ctx.ops.append(out_op)

    gname = _symbol(name or g.name or os.path.splitext(os.path.basename(source))[0])
    graph = GraphOp.build_graph(gname, _live_ops(ctx.ops))
    for step in ctx.finish:
        step(graph)
    # `params` of the contract counts tensors as imported, so record it before any transform.
    graph.attributes["imported_params"] = int_attr(count_params(graph))
    module = ModuleOp(Region(Block([graph])))
    attach_weights(module, store)
    for note in interface.notes(module):
        warnings.warn(f"{source}: {note}", AlohaWarning, stacklevel=2)
    return module


# --- element types of the interface (aloha_ir/interface.py) ----------------------------------------

T = onnx.TensorProto
FLOAT_TYPES = (T.FLOAT, T.FLOAT16, T.DOUBLE, T.BFLOAT16)
INT_TYPES = (T.BOOL, T.INT8, T.UINT8, T.INT16, T.UINT16, T.INT32, T.UINT32, T.INT64, T.UINT64)


def type_name(elem: int) -> str:
    """ONNX's name of an element type, in lower case (`float`, `float16`, `uint8`)."""
    return T.DataType.Name(elem).lower() if elem in T.DataType.values() else str(elem)


def _input_type(vi: onnx.ValueInfoProto, uses: list[onnx.NodeProto], source: str) -> int:
    """The input's element type, if the compiler can take it: floats (computed in float32), and
    integers or bools that only feed a Cast to a float type (their values are then the same in
    float32). Integer arithmetic would wrap where float32 does not (uint8 200 + 100 is 44 in
    ONNX): refused."""
    elem = vi.type.tensor_type.elem_type
    if elem in FLOAT_TYPES:
        return elem
    name = type_name(elem)
    if elem in INT_TYPES:
        for n in uses:
            to = next((a.i for a in n.attribute if a.name == "to"), None)
            if n.op_type != "Cast" or to not in FLOAT_TYPES:
                raise UnsupportedError(
                    f"input '{vi.name}' is {name} and node '{node_label(n)}' ({n.op_type}) uses "
                    f"it as {name}: the compiler computes in float32, which does not reproduce "
                    f"{name} arithmetic (wrap-around, integer division)", where=source,
                    hint=f"supported: {name} inputs that only feed a Cast to a float type; or "
                         "export the model with a float input")
        return elem
    raise UnsupportedError(f"input '{vi.name}' has element type {name}; supported: float, "
                           "float16, double, bfloat16, and integers or bool that feed a Cast to "
                           "float", where=source)


def _output_type(vo: onnx.ValueInfoProto, value: SSAValue, source: str) -> int:
    """The output's element type, if the compiler can give it: floats (computed in float32), and
    int64 indices (ArgMax, ArgMin), which float32 holds exactly up to 2^24."""
    elem = vo.type.tensor_type.elem_type
    if elem in (T.UNDEFINED,) + FLOAT_TYPES:
        return elem or T.FLOAT
    if elem == T.INT64 and isinstance(value.owner, ReduceOp) and \
            value.owner.kind.data in ARG_REDUCTIONS:
        return elem
    raise UnsupportedError(f"output '{vo.name}' has element type {type_name(elem)}; "
                           "supported: float types (the compiler computes in float32) and the "
                           "int64 indices of ArgMax and ArgMin", where=source)


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
    """Drop ops whose results nobody uses (dead branches, unused constants), keeping order. A
    dropped op lets go of its operands, so no value of the graph keeps a use by an op outside it
    (a rewrite of that value would otherwise visit the dropped op)."""
    used: set[int] = set()
    keep: list[Operation] = []
    for op in reversed(ops):
        if isinstance(op, (OutputOp, InputOp)) or any(id(r) in used for r in op.results):
            keep.append(op)
            used.update(id(o) for o in op.operands)
        else:
            op.drop_all_references()
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
