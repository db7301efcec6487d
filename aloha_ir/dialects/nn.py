"""The `nn` dialect: a DNN as a block graph (the seeds' DNN(B, E)).

One `nn.graph` symbol op per network holds SSA ops in topological order, one per block. Tensors are
statically shaped (NCHW) with element type f32 or `!nn.fixed<bits, frac[, unsigned]>`. Parameters are
`nn.const` ops (splat, seeded random, or a blob key into the module's weight store; see weights.py).
A quantized constant whose output channels have formats of their own records them as the typed
annotation `nn.fracs` (aloha_ir.annotations; `op.fracs`).

Every compute op verifies its result shape against its operands and properties with the formulas of
aloha_ir.shapes. All ops share one compact syntax, types of operands coming from their definitions:

    %3 = nn.conv %0, %1, %2 {kernel = array<i64: 3, 3>, ...} : tensor<1x64x56x56xf32>
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from xdsl.dialects.builtin import (
    ArrayAttr,
    DenseArrayBase,
    FloatAttr,
    IntAttr,
    IntegerAttr,
    StringAttr,
    TensorType,
    f64,
    i64,
)
from xdsl.ir import Attribute, Dialect, ParametrizedAttribute, Region, SSAValue, TypeAttribute
from xdsl.irdl import (
    IRDLOperation,
    irdl_attr_definition,
    irdl_op_definition,
    operand_def,
    opt_operand_def,
    opt_prop_def,
    prop_def,
    region_def,
    result_def,
    traits_def,
    var_operand_def,
)
from xdsl.parser import AttrParser, Parser
from xdsl.printer import Printer
from xdsl.traits import (
    IsolatedFromAbove,
    NoTerminator,
    OptionalSymbolOpInterface,
    SymbolOpInterface,
    SymbolTable,
)
from xdsl.utils.exceptions import VerifyException

from aloha_ir import shapes
from aloha_ir.annotations import Annotation, check_annotations
from aloha_ir.errors import UnsupportedError


# ---------------------------------------------------------------------------------------------------
# Types


@irdl_attr_definition
class FixedPointType(ParametrizedAttribute, TypeAttribute):
    """Power-of-two fixed point Qm.n: value = int / 2**frac, `bits` wide, signed unless `unsigned`."""

    name = "nn.fixed"

    bits: IntAttr
    frac: IntAttr
    signed: IntAttr

    def __init__(self, bits: int, frac: int, signed: bool = True):
        super().__init__(IntAttr(bits), IntAttr(frac), IntAttr(int(signed)))

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> Sequence[Attribute]:
        parser.parse_punctuation("<")
        bits = parser.parse_integer(allow_negative=False)
        parser.parse_punctuation(",")
        frac = parser.parse_integer()
        signed = 1
        if parser.parse_optional_punctuation(","):
            parser.parse_keyword("unsigned")
            signed = 0
        parser.parse_punctuation(">")
        return (IntAttr(bits), IntAttr(frac), IntAttr(signed))

    def print_parameters(self, printer: Printer) -> None:
        printer.print_string(f"<{self.bits.data}, {self.frac.data}")
        if not self.signed.data:
            printer.print_string(", unsigned")
        printer.print_string(">")

    def verify(self) -> None:
        if not 1 <= self.bits.data <= 64:
            raise VerifyException(f"fixed-point width must be 1..64 bits, got {self.bits.data}")


def element_bytes(element_type: Attribute) -> int:
    """Storage bytes of one element (fixed point rounds up to whole bytes)."""
    if isinstance(element_type, FixedPointType):
        return (element_type.bits.data + 7) // 8
    width = getattr(element_type, "bitwidth", None)
    if width is None:
        width = getattr(element_type, "width", IntAttr(32)).data
    return (int(width) + 7) // 8


def tensor_bytes(t: TensorType) -> int:
    """Storage bytes of a statically shaped tensor type."""
    return shapes.numel(t.get_shape()) * element_bytes(t.element_type)


def block_label(op) -> str:
    """A block's user-facing name: its `name` attribute, an input's port, or "" when unnamed.
    Within its nn.graph this is the block's symbol (`@net::@conv1`); constants and the output
    are no blocks."""
    if isinstance(op, (ConstOp, OutputOp)):
        return ""
    name = op.attributes.get("name")
    if isinstance(name, StringAttr):
        return name.data
    if isinstance(op, InputOp):
        return op.port.data
    return ""


_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


def op_label(op, index: int) -> str:
    """A stable, identifier-safe name for an op's output (its `name`, else its kind and index)."""
    return _UNSAFE.sub("_", block_label(op) or f"{op.name.split('.')[-1]}{index}")


def graph_of(module) -> GraphOp:
    """The module's single nn.graph (executors and whole-network passes work on one network)."""
    graphs = [op for op in module.ops if isinstance(op, GraphOp)]
    if len(graphs) != 1:
        raise UnsupportedError(f"executing a module needs exactly one nn.graph, found {len(graphs)}",
                               hint="run it before convert-nn-to-csdf")
    return graphs[0]
class BlockSymbol(OptionalSymbolOpInterface):
    """A block is a symbol of its nn.graph, named by its label (`name` attribute, an input's port);
    an unnamed block is no symbol until something names it (the lowering does)."""

    def get_sym_attr_name(self, op) -> StringAttr | None:
        label = block_label(op)
        return StringAttr(label) if label else None


class BlockTable(SymbolTable):
    """nn.graph is the symbol table of its blocks: their names are unique, so `@net::@conv1`
    refers to one block."""

    def verify(self, op) -> None:
        seen: set[str] = set()
        for block in op.regions[0].block.ops:
            label = block_label(block)
            if not label:
                continue
            if label in seen:
                raise VerifyException(f"nn.graph @{op.sym_name.data}: two blocks are named "
                                      f"'{label}' (block names are symbols; rename one)")
            seen.add(label)


def print_graph_body(printer: Printer, op: IRDLOperation) -> None:
    """` attributes {...} { region }`: the tail both dialects' graph ops print."""
    if op.attributes:
        printer.print_string(" attributes ")
        printer.print_attr_dict(op.attributes)
    printer.print_string(" ")
    printer.print_region(op.regions[0], print_entry_block_args=False, print_empty_block=True)


def parse_graph_body(parser: Parser) -> tuple[dict[str, Attribute], Region]:
    attrs = {}
    if parser.parse_optional_keyword("attributes"):
        attrs = parser.parse_optional_attr_dict()
    return attrs, parser.parse_region()


def shape_of(value: SSAValue) -> tuple[int, ...]:
    t = value.type
    if not isinstance(t, TensorType):
        raise VerifyException(f"expected a tensor, got {t}")
    return tuple(t.get_shape())


# ---------------------------------------------------------------------------------------------------
# Attribute helpers (small, cached: ops of one graph share their immutable attributes)

_INT_CACHE: dict[int, IntegerAttr] = {}
_ARR_CACHE: dict[tuple[int, ...], DenseArrayBase] = {}


def int_attr(v: int) -> IntegerAttr:
    a = _INT_CACHE.get(v)
    if a is None:
        a = _INT_CACHE[v] = IntegerAttr(v, i64)
    return a


def ints_attr(vs: Sequence[int]) -> DenseArrayBase:
    key = tuple(int(v) for v in vs)
    a = _ARR_CACHE.get(key)
    if a is None:
        a = _ARR_CACHE[key] = DenseArrayBase.from_list(i64, key)
    return a


def floats_attr(vs: Sequence[float]) -> DenseArrayBase:
    return DenseArrayBase.from_list(f64, [float(v) for v in vs])


def float_attr(v: float) -> FloatAttr:
    return FloatAttr(float(v), f64)


def ints(a: DenseArrayBase | None, default: Sequence[int] = ()) -> tuple[int, ...]:
    return tuple(a.get_values()) if a is not None else tuple(default)


def floats(a: DenseArrayBase | None) -> tuple[float, ...]:
    return tuple(a.get_values()) if a is not None else ()


# ---------------------------------------------------------------------------------------------------
# Shared syntax


class NnOp(IRDLOperation):
    """Base of the nn ops: the compact custom syntax and small property accessors."""

    traits = traits_def(BlockSymbol())

    def check(self) -> None:
        """The op's own invariant (shape rule); `verify_fast` runs only this. Every op class
        defines its own or inherits its family's (tests/test_op_coverage.py checks): this empty
        default verifies nothing."""

    def verify_(self) -> None:
        # irdl_op_definition wraps this with the generic IRDL constraint check
        self.check()

    def print(self, printer: Printer) -> None:
        if self.operands:
            printer.print_string(" ")
            printer.print_list(self.operands, printer.print_operand)
        entries = {**{k: v for k, v in self.properties.items()}, **self.attributes}
        if entries:
            printer.print_string(" ")
            printer.print_attr_dict(entries)
        if self.results:
            printer.print_string(" : ")
            printer.print_list([r.type for r in self.results], printer.print_attribute)

    @classmethod
    def parse(cls, parser: Parser):
        operands = []
        first = parser.parse_optional_operand()
        if first is not None:
            operands.append(first)
            while parser.parse_optional_punctuation(","):
                operands.append(parser.parse_operand())
        entries = parser.parse_optional_attr_dict()
        result_types = []
        if parser.parse_optional_punctuation(":"):
            result_types.append(parser.parse_type())
            while parser.parse_optional_punctuation(","):
                result_types.append(parser.parse_type())
        known = cls.get_irdl_definition().properties
        props = {k: v for k, v in entries.items() if k in known}
        attrs = {k: v for k, v in entries.items() if k not in known}
        return cls.create(operands=operands, result_types=result_types, properties=props,
                          attributes=attrs)

    # convenience ------------------------------------------------------------------------------
    def prop_ints(self, name: str, default: Sequence[int] = ()) -> tuple[int, ...]:
        return ints(self.properties.get(name), default)  # type: ignore[arg-type]

    def prop_int(self, name: str, default: int = 0) -> int:
        a = self.properties.get(name)
        return a.value.data if isinstance(a, IntegerAttr) else default

    def prop_float(self, name: str, default: float = 0.0) -> float:
        a = self.properties.get(name)
        return a.value.data if isinstance(a, FloatAttr) else default

    def prop_str(self, name: str, default: str = "") -> str:
        a = self.properties.get(name)
        return a.data if isinstance(a, StringAttr) else default

    def out_shape(self) -> tuple[int, ...]:
        return shape_of(self.results[0])

    def _expect_shape(self, expected: Sequence[int] | None, what: str = "") -> None:
        got = self.out_shape()
        if expected is None or tuple(expected) != got:
            detail = f" ({what})" if what else ""
            raise VerifyException(
                f"{self.name}: result shape {list(got)} does not match the expected "
                f"{list(expected) if expected is not None else 'a valid shape'}{detail}")


ACTIVATIONS = ("relu", "leaky_relu", "clip", "sigmoid", "tanh", "softmax", "log_softmax")
# the activations that normalise along their axis
SOFTMAXES = ("softmax", "log_softmax")
FUSABLE_ACTIVATIONS = ("relu", "leaky_relu", "clip")


class FusedActivation:
    """The interface of ops that may carry a fused activation (`activation`, `act_params`) after
    canonicalize: every executor and code generator asks `fused_activation()` of these ops."""

    def fused_activation(self) -> tuple[str, tuple[float, ...]] | None:
        a = self.properties.get("activation")  # type: ignore[attr-defined]
        if a is None:
            return None
        return a.data, floats(self.properties.get("act_params"))  # type: ignore[attr-defined]

    def _verify_activation(self) -> None:
        a = self.properties.get("activation")  # type: ignore[attr-defined]
        if a is not None and a.data not in FUSABLE_ACTIVATIONS:
            raise VerifyException(f"cannot fuse activation '{a.data}'; fusable: "
                                  f"{', '.join(FUSABLE_ACTIVATIONS)}")


# ---------------------------------------------------------------------------------------------------
# Structure


@irdl_op_definition
class GraphOp(IRDLOperation):
    """A network: a symbol holding its blocks in topological order."""

    name = "nn.graph"
    sym_name = prop_def(StringAttr)
    body = region_def("single_block")
    traits = traits_def(SymbolOpInterface(), BlockTable(), IsolatedFromAbove(), NoTerminator())

    @staticmethod
    def build_graph(name: str, ops: list) -> "GraphOp":
        from xdsl.ir import Block
        return GraphOp.create(properties={"sym_name": StringAttr(name)},
                              regions=[Region(Block(ops))])

    @property
    def ops(self):
        return self.body.block.ops

    def blocks(self) -> dict[str, IRDLOperation]:
        """Symbol -> block: the named blocks (constants and the output are no blocks)."""
        return {label: op for op in self.ops if (label := block_label(op))}

    def print(self, printer: Printer) -> None:
        printer.print_string(f" @{self.sym_name.data}")
        print_graph_body(printer, self)

    @classmethod
    def parse(cls, parser: Parser) -> "GraphOp":
        name = parser.parse_symbol_name()
        attrs, region = parse_graph_body(parser)
        return cls.create(properties={"sym_name": name}, attributes=attrs, regions=[region])

    def verify_(self) -> None:
        ops = list(self.ops)
        outputs = [op for op in ops if isinstance(op, OutputOp)]
        if len(outputs) != 1 or ops[-1] is not outputs[0]:
            raise VerifyException(f"nn.graph @{self.sym_name.data} must end with exactly one "
                                  "nn.output")
        if not any(isinstance(op, InputOp) for op in ops):
            raise VerifyException(f"nn.graph @{self.sym_name.data} has no nn.input")
        for op in ops:
            if not isinstance(op, NnOp):
                raise VerifyException(f"nn.graph may only hold nn ops, found {op.name}")
        BlockTable().verify(self)


@irdl_op_definition
class InputOp(NnOp):
    """A network input; `value_range` is the range of values the model expects (e.g. [0, 255])."""

    name = "nn.input"
    output = result_def(TensorType)
    port = prop_def(StringAttr)
    value_range = opt_prop_def(DenseArrayBase)

    def check(self) -> None:
        if self.value_range is not None:
            lo_hi = floats(self.value_range)
            if len(lo_hi) != 2 or lo_hi[0] >= lo_hi[1]:
                raise VerifyException(f"nn.input value_range must be [low, high], got {lo_hi}")


@irdl_op_definition
class OutputOp(NnOp):
    """The network outputs, with their names."""

    name = "nn.output"
    inputs = var_operand_def(TensorType)
    ports = prop_def(ArrayAttr[StringAttr])

    def check(self) -> None:
        if len(self.ports.data) != len(self.inputs):
            raise VerifyException("nn.output needs one port name per operand")


@irdl_op_definition
class ConstOp(NnOp):
    """A parameter tensor: exactly one of `splat`, `blob` (weight-store key) or `seed` (+mean/std)."""

    name = "nn.const"
    output = result_def(TensorType)
    splat = opt_prop_def(FloatAttr)
    blob = opt_prop_def(StringAttr)
    seed = opt_prop_def(IntegerAttr)
    mean = opt_prop_def(FloatAttr)
    std = opt_prop_def(FloatAttr)
    fracs = Annotation("ints", "quantize: the fracs of the slices along axis 0 (output "
                               "channels), when they differ; the type's frac is their minimum")

    def check(self) -> None:
        kinds = [k for k in ("splat", "blob", "seed") if self.properties.get(k) is not None]
        if len(kinds) != 1:
            raise VerifyException("nn.const needs exactly one of splat, blob or seed, got "
                                  f"{kinds or 'none'}")
        if (self.mean is not None or self.std is not None) and self.seed is None:
            raise VerifyException("nn.const mean/std only go with seed")
        check_annotations(self)
        fracs = self.fracs
        if fracs is None:
            return
        t = self.output.type
        if not isinstance(t.element_type, FixedPointType):
            raise VerifyException(f"nn.const: nn.fracs on a {t.element_type} constant (per-channel "
                                  "fracs need a fixed-point type)")
        if not t.get_shape() or len(fracs) != t.get_shape()[0]:
            raise VerifyException(f"nn.const: nn.fracs has {len(fracs)} values for "
                                  f"{t.get_shape()[0] if t.get_shape() else 'no'} slices along "
                                  "axis 0")

    @property
    def kind(self) -> str:
        return "splat" if self.splat is not None else "blob" if self.blob is not None else "random"


# ---------------------------------------------------------------------------------------------------
# Compute blocks


def _window_props(op: NnOp, rank: int = 2) -> tuple:
    kernel = op.prop_ints("kernel")
    strides = op.prop_ints("strides", (1,) * rank)
    pads = op.prop_ints("pads", (0,) * (2 * rank))
    dilations = op.prop_ints("dilations", (1,) * rank)
    if len(kernel) != rank or len(strides) != rank or len(pads) != 2 * rank or len(dilations) != rank:
        raise VerifyException(f"{op.name}: kernel/strides/dilations need {rank} values and pads "
                              f"{2 * rank}")
    if min(kernel) < 1 or min(strides) < 1 or min(dilations) < 1 or min(pads) < 0:
        raise VerifyException(f"{op.name}: kernel, strides, dilations must be >= 1 and pads >= 0")
    return kernel, strides, pads, dilations


@irdl_op_definition
class ConvOp(NnOp, FusedActivation):
    """2-D convolution, NCHW; weight [C_out, C_in/group, kh, kw]; pads (top, left, bottom, right)."""

    name = "nn.conv"
    input = operand_def(TensorType)
    weight = operand_def(TensorType)
    bias = opt_operand_def(TensorType)
    output = result_def(TensorType)
    kernel = prop_def(DenseArrayBase)
    strides = prop_def(DenseArrayBase)
    pads = prop_def(DenseArrayBase)
    dilations = prop_def(DenseArrayBase)
    group = prop_def(IntegerAttr)
    activation = opt_prop_def(StringAttr)
    act_params = opt_prop_def(DenseArrayBase)

    def window(self) -> tuple:
        """(kernel, strides, pads, dilations) as tuples; pads are (top, left, bottom, right)."""
        return _window_props(self)

    def check(self) -> None:
        kernel, strides, pads, dilations = _window_props(self)
        x, w = shape_of(self.input), shape_of(self.weight)
        g = self.prop_int("group", 1)
        if len(x) != 4 or len(w) != 4:
            raise VerifyException(f"nn.conv needs rank-4 input and weight, got {list(x)}, {list(w)}")
        if g < 1 or x[1] % g or w[0] % g:
            raise VerifyException(f"nn.conv: group {g} must divide input channels {x[1]} and output "
                                  f"channels {w[0]}")
        if w[1] * g != x[1]:
            raise VerifyException(f"nn.conv: weight {list(w)} expects {w[1] * g} input channels "
                                  f"with group {g}, input has {x[1]}")
        if tuple(w[2:]) != kernel:
            raise VerifyException(f"nn.conv: kernel {list(kernel)} differs from weight {list(w)}")
        if self.bias is not None and shape_of(self.bias) != (w[0],):
            raise VerifyException(f"nn.conv: bias must be [{w[0]}], got {list(shape_of(self.bias))}")
        self._verify_activation()
        self._expect_shape(shapes.conv_out_shape(x, w[0], kernel, strides, pads, dilations),
                           "conv output size formula")


POOL_KINDS = ("max", "avg", "global_max", "global_avg")


@irdl_op_definition
class PoolOp(NnOp, FusedActivation):
    """Max/average pooling (windowed or global). `count_include_pad` is ONNX's AveragePool flag."""

    name = "nn.pool"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    kind = prop_def(StringAttr)
    kernel = opt_prop_def(DenseArrayBase)
    strides = opt_prop_def(DenseArrayBase)
    pads = opt_prop_def(DenseArrayBase)
    dilations = opt_prop_def(DenseArrayBase)
    ceil_mode = opt_prop_def(IntegerAttr)
    count_include_pad = opt_prop_def(IntegerAttr)
    activation = opt_prop_def(StringAttr)
    act_params = opt_prop_def(DenseArrayBase)

    @property
    def is_global(self) -> bool:
        return self.kind.data.startswith("global")

    def window(self) -> tuple:
        """(kernel, strides, pads, dilations) of a windowed pool; pads are (top, left, bottom, right)."""
        return _window_props(self)

    def check(self) -> None:
        x = shape_of(self.input)
        if self.kind.data not in POOL_KINDS:
            raise VerifyException(f"nn.pool kind must be one of {', '.join(POOL_KINDS)}")
        if len(x) != 4:
            raise VerifyException(f"nn.pool needs a rank-4 input, got {list(x)}")
        self._verify_activation()
        if self.is_global:
            self._expect_shape((x[0], x[1], 1, 1), "global pooling")
            return
        kernel, strides, pads, dilations = _window_props(self)
        if max(pads[0], pads[2]) >= kernel[0] * dilations[0] or \
                max(pads[1], pads[3]) >= kernel[1] * dilations[1]:
            raise VerifyException("nn.pool: a pad must be smaller than the window")
        self._expect_shape(shapes.conv_out_shape(x, x[1], kernel, strides, pads, dilations,
                                                 bool(self.prop_int("ceil_mode"))),
                           "pool output size formula")


@irdl_op_definition
class DenseOp(NnOp, FusedActivation):
    """Fully connected: y[N, M] = x[N, K] @ weight[M, K]^T + bias[M]."""

    name = "nn.dense"
    input = operand_def(TensorType)
    weight = operand_def(TensorType)
    bias = opt_operand_def(TensorType)
    output = result_def(TensorType)
    activation = opt_prop_def(StringAttr)
    act_params = opt_prop_def(DenseArrayBase)

    def check(self) -> None:
        x, w = shape_of(self.input), shape_of(self.weight)
        if len(x) != 2 or len(w) != 2 or x[1] != w[1]:
            raise VerifyException(f"nn.dense: input {list(x)} and weight {list(w)} must be [N, K] "
                                  "and [M, K]")
        if self.bias is not None and shape_of(self.bias) != (w[0],):
            raise VerifyException(f"nn.dense: bias must be [{w[0]}], got {list(shape_of(self.bias))}")
        self._verify_activation()
        self._expect_shape((x[0], w[0]), "dense")


class _Binary(NnOp):
    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    output = result_def(TensorType)

    def check(self) -> None:
        self._expect_shape(shapes.broadcast(shape_of(self.lhs), shape_of(self.rhs)), "broadcast")


@irdl_op_definition
class AddOp(_Binary, FusedActivation):
    """Elementwise sum with numpy broadcasting (residual adds, bias adds)."""

    name = "nn.add"
    activation = opt_prop_def(StringAttr)
    act_params = opt_prop_def(DenseArrayBase)

    def check(self) -> None:
        super().check()
        self._verify_activation()


@irdl_op_definition
class MulOp(_Binary):
    """Elementwise product with numpy broadcasting (per-channel scales)."""

    name = "nn.mul"


@irdl_op_definition
class ConcatOp(NnOp):
    name = "nn.concat"
    inputs = var_operand_def(TensorType)
    output = result_def(TensorType)
    axis = prop_def(IntegerAttr)

    def check(self) -> None:
        ins = [shape_of(v) for v in self.inputs]
        if not ins:
            raise VerifyException("nn.concat needs at least one input")
        rank = len(ins[0])
        axis = self.prop_int("axis")
        if not 0 <= axis < rank:
            raise VerifyException(f"nn.concat axis {axis} out of range for rank {rank}")
        for s in ins:
            if len(s) != rank or any(a != b for i, (a, b) in enumerate(zip(s, ins[0])) if i != axis):
                raise VerifyException(f"nn.concat inputs {[list(s) for s in ins]} differ outside "
                                      f"axis {axis}")
        expected = list(ins[0])
        expected[axis] = sum(s[axis] for s in ins)
        self._expect_shape(expected, "concat")


@irdl_op_definition
class ActOp(NnOp):
    """Activation: relu, leaky_relu (params [alpha]), clip ([min, max]), sigmoid, tanh, softmax and
    log_softmax (axis)."""

    name = "nn.act"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    kind = prop_def(StringAttr)
    params = opt_prop_def(DenseArrayBase)
    axis = opt_prop_def(IntegerAttr)

    def check(self) -> None:
        if self.kind.data not in ACTIVATIONS:
            raise VerifyException(f"nn.act kind must be one of {', '.join(ACTIVATIONS)}, got "
                                  f"'{self.kind.data}'")
        need = {"leaky_relu": 1, "clip": 2}.get(self.kind.data, 0)
        if len(floats(self.params)) != need:
            raise VerifyException(f"nn.act {self.kind.data} takes {need} params")
        self._expect_shape(shape_of(self.input), "elementwise")


@irdl_op_definition
class LrnOp(NnOp):
    """Local response normalisation across channels (AlexNet, GoogLeNet)."""

    name = "nn.lrn"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    size = prop_def(IntegerAttr)
    alpha = prop_def(FloatAttr)
    beta = prop_def(FloatAttr)
    bias = prop_def(FloatAttr)

    def check(self) -> None:
        if self.prop_int("size") < 1:
            raise VerifyException("nn.lrn size must be >= 1")
        self._expect_shape(shape_of(self.input), "elementwise")


@irdl_op_definition
class BatchNormOp(NnOp, FusedActivation):
    """Per-channel affine on axis 1: operands (x, scale, bias[, mean, var]).

    With mean/var it is inference batch normalisation; canonicalize folds mean/var away (scale-shift
    form) when the BN cannot be folded into a producing conv.
    """

    name = "nn.batchnorm"
    input = operand_def(TensorType)
    params = var_operand_def(TensorType)
    output = result_def(TensorType)
    epsilon = prop_def(FloatAttr)
    activation = opt_prop_def(StringAttr)
    act_params = opt_prop_def(DenseArrayBase)

    def check(self) -> None:
        x = shape_of(self.input)
        if len(self.params) not in (2, 4):
            raise VerifyException("nn.batchnorm takes (scale, bias) or (scale, bias, mean, var)")
        if len(x) < 2:
            raise VerifyException("nn.batchnorm needs a channel axis")
        for p in self.params:
            if shape_of(p) != (x[1],):
                raise VerifyException(f"nn.batchnorm parameters must be [{x[1]}], got "
                                      f"{list(shape_of(p))}")
        self._verify_activation()
        self._expect_shape(x, "elementwise")


@irdl_op_definition
class ReshapeOp(NnOp):
    name = "nn.reshape"
    input = operand_def(TensorType)
    output = result_def(TensorType)

    def check(self) -> None:
        a, b = shape_of(self.input), self.out_shape()
        if shapes.numel(a) != shapes.numel(b):
            raise VerifyException(f"nn.reshape changes the element count: {list(a)} "
                                  f"({shapes.numel(a)}) -> {list(b)} ({shapes.numel(b)})")


@irdl_op_definition
class FlattenOp(NnOp):
    """[d0..dn] -> [prod(d0..d_axis-1), prod(d_axis..dn)]."""

    name = "nn.flatten"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    axis = prop_def(IntegerAttr)

    def check(self) -> None:
        x = shape_of(self.input)
        axis = self.prop_int("axis")
        if not 0 <= axis <= len(x):
            raise VerifyException(f"nn.flatten axis {axis} out of range for rank {len(x)}")
        self._expect_shape((shapes.numel(x[:axis]), shapes.numel(x[axis:])), "flatten")


@irdl_op_definition
class TransposeOp(NnOp):
    name = "nn.transpose"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    perm = prop_def(DenseArrayBase)

    def check(self) -> None:
        x = shape_of(self.input)
        perm = self.prop_ints("perm")
        if sorted(perm) != list(range(len(x))):
            raise VerifyException(f"nn.transpose perm {list(perm)} is not a permutation of rank "
                                  f"{len(x)}")
        self._expect_shape(tuple(x[p] for p in perm), "transpose")


@irdl_op_definition
class SliceOp(NnOp):
    """The elements [start, start + n) along `axis` (n the output's size there): ONNX Slice with
    step 1 and each output of Split."""

    name = "nn.slice"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    axis = prop_def(IntegerAttr)
    start = prop_def(IntegerAttr)

    def check(self) -> None:
        x = shape_of(self.input)
        axis, start = self.prop_int("axis"), self.prop_int("start")
        if not 0 <= axis < len(x):
            raise VerifyException(f"nn.slice axis {axis} out of range for rank {len(x)}")
        n = self.out_shape()[axis] if len(self.out_shape()) == len(x) else 0
        if start < 0 or n < 1 or start + n > x[axis]:
            raise VerifyException(f"nn.slice of {n} elements from {start} does not fit axis "
                                  f"{axis} of {list(x)}")
        self._expect_shape(tuple(n if i == axis else d for i, d in enumerate(x)), "slice")


@irdl_op_definition
class ChannelShuffleOp(NnOp):
    """ShuffleNet's channel shuffle: channels viewed as [groups, C/groups], transposed, flattened."""

    name = "nn.channel_shuffle"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    groups = prop_def(IntegerAttr)

    def check(self) -> None:
        x = shape_of(self.input)
        g = self.prop_int("groups")
        if len(x) != 4 or g < 1 or x[1] % g:
            raise VerifyException(f"nn.channel_shuffle: groups {g} must divide the channels of "
                                  f"{list(x)}")
        self._expect_shape(x, "elementwise")


@irdl_op_definition
class PadOp(NnOp):
    """Constant/reflect/edge padding; pads are ONNX order (all begins, then all ends)."""

    name = "nn.pad"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    pads = prop_def(DenseArrayBase)
    mode = prop_def(StringAttr)
    value = prop_def(FloatAttr)

    def check(self) -> None:
        x = shape_of(self.input)
        pads = self.prop_ints("pads")
        if len(pads) != 2 * len(x):
            raise VerifyException(f"nn.pad needs {2 * len(x)} pads, got {len(pads)}")
        if self.mode.data not in ("constant", "reflect", "edge"):
            raise VerifyException("nn.pad mode must be constant, reflect or edge")
        r = len(x)
        self._expect_shape(tuple(d + pads[i] + pads[i + r] for i, d in enumerate(x)), "pad")


RESIZE_MODES = ("nearest", "linear")


@irdl_op_definition
class ResizeOp(NnOp):
    """Nearest or (bi)linear resize of H and W, NCHW; `scales` (h, w) and the coordinate transform
    are ONNX Resize's (aloha_ir.shapes.resize_source)."""

    name = "nn.resize"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    mode = prop_def(StringAttr)
    scales = prop_def(DenseArrayBase)
    coord_mode = prop_def(StringAttr)
    nearest_mode = opt_prop_def(StringAttr)

    def check(self) -> None:
        x = shape_of(self.input)
        scales = floats(self.scales)
        if len(x) != 4 or len(scales) != 2 or min(scales) <= 0:
            raise VerifyException(f"nn.resize needs a rank-4 input and two positive scales (h, w), "
                                  f"got {list(x)} and {list(scales)}")
        if self.mode.data not in RESIZE_MODES:
            raise VerifyException(f"nn.resize mode must be one of {', '.join(RESIZE_MODES)}")
        if self.coord_mode.data not in shapes.RESIZE_COORD_MODES:
            raise VerifyException(f"nn.resize coord_mode must be one of "
                                  f"{', '.join(shapes.RESIZE_COORD_MODES)}")
        if self.nearest_mode is not None and \
                self.nearest_mode.data not in shapes.RESIZE_NEAREST_MODES:
            raise VerifyException(f"nn.resize nearest_mode must be one of "
                                  f"{', '.join(shapes.RESIZE_NEAREST_MODES)}")
        self._expect_shape((x[0], x[1], shapes.resize_out(x[2], scales[0]),
                            shapes.resize_out(x[3], scales[1])), "floor(size x scale)")

    def taps(self, axis: int) -> list[tuple[int, int]]:
        """Per output index along H (axis 2) or W (axis 3): the input indices it reads."""
        n_in, n_out = shape_of(self.input)[axis], self.out_shape()[axis]
        scale = floats(self.scales)[axis - 2]
        nearest = self.nearest_mode.data if self.nearest_mode is not None else "round_prefer_floor"
        return [shapes.resize_taps(i, n_in, n_out, scale, self.mode.data, self.coord_mode.data,
                                   nearest) for i in range(n_out)]


REDUCTIONS = ("mean", "sum", "max", "min", "prod", "argmax", "argmin")
# the reductions that give an index along their one axis (as a float: exact below 2^24)
ARG_REDUCTIONS = ("argmax", "argmin")


@irdl_op_definition
class ReduceOp(NnOp):
    """The mean, sum, maximum, minimum or product over `axes` (ONNX ReduceMean, ReduceSum,
    ReduceMax, ReduceMin, ReduceProd), or the index of the maximum or minimum along one axis
    (ArgMax, ArgMin: the first one, the last under `select_last_index`), a float like every
    tensor of the IR."""

    name = "nn.reduce"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    kind = prop_def(StringAttr)
    axes = prop_def(DenseArrayBase)
    keepdims = prop_def(IntegerAttr)
    select_last_index = opt_prop_def(IntegerAttr)

    def check(self) -> None:
        x = shape_of(self.input)
        if self.kind.data not in REDUCTIONS:
            raise VerifyException(f"nn.reduce kind must be one of {', '.join(REDUCTIONS)}, got "
                                  f"'{self.kind.data}'")
        axes = self.prop_ints("axes")
        if any(not 0 <= a < len(x) for a in axes):
            raise VerifyException(f"nn.reduce axes {list(axes)} out of range for rank {len(x)}")
        if self.kind.data in ARG_REDUCTIONS and len(axes) != 1:
            raise VerifyException(f"nn.reduce {self.kind.data} takes one axis, got {list(axes)}")
        if self.select_last_index is not None and self.kind.data not in ARG_REDUCTIONS:
            raise VerifyException(f"nn.reduce select_last_index is for argmax and argmin, not "
                                  f"{self.kind.data}")
        keep = self.prop_int("keepdims", 1)
        expected = [1 if i in axes else d for i, d in enumerate(x)] if keep else \
            [d for i, d in enumerate(x) if i not in axes]
        self._expect_shape(expected, "reduce")


@irdl_op_definition
class DropoutOp(NnOp):
    """Kept for training; canonicalize removes it for inference."""

    name = "nn.dropout"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    ratio = prop_def(FloatAttr)

    def check(self) -> None:
        if not 0.0 <= self.prop_float("ratio") < 1.0:
            raise VerifyException("nn.dropout ratio must be in [0, 1)")
        self._expect_shape(shape_of(self.input), "elementwise")


NN_OPS = [GraphOp, InputOp, OutputOp, ConstOp, ConvOp, PoolOp, DenseOp, AddOp, MulOp, ConcatOp, ActOp,
          LrnOp, BatchNormOp, ReshapeOp, FlattenOp, TransposeOp, SliceOp, ChannelShuffleOp, PadOp,
          ResizeOp, ReduceOp, DropoutOp]

NN = Dialect("nn", NN_OPS, [FixedPointType])

__all__ = [op.__name__ for op in NN_OPS] + [
    "NN", "FixedPointType", "NnOp", "FusedActivation", "element_bytes", "shape_of", "int_attr",
    "ints_attr", "float_attr", "floats_attr", "ints", "floats", "block_label", "op_label", "graph_of"]
