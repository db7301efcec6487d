"""What the target-aware passes share: finding the platform, the data type, and each actor's `Layer`.

The data type a graph is deployed at comes from its IR types when it is quantized (`Precision`:
fixed8 when every weight and activation has at most 8 bits, else fixed16), else from the `bits`
option or the platform's default; a `bits` that contradicts the types is an error.

A pass takes the platform from its own `target` option (so `alohac opt -p 'map{target=orlando}'`
works) or from the context the driver filled from `--target`. An actor's Layer comes from the nn
block it was lowered from (the csdf.graph refers to its source nn.graph, an actor to its block),
sliced when `partition` split the actor along output channels.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from xdsl.ir import Operation

from aloha_ir import fixedpoint as fp
from aloha_ir.context import AlohaContext
from aloha_ir.cost import block_macs
from aloha_ir.dialects import csdf, nn
from aloha_ir.errors import MissingSetting, PassError, UnsupportedError
from aloha_ir.optable import registrar
from archdesc.costmodel import Layer
from archdesc.model import DATATYPE_BITS, Platform

# actors that stand for the graph's boundary or a view of buffers: no processing element runs them
ZERO_COST_KINDS = ("input", "output", "gather")
BITS_TO_DATATYPE = {bits: name for name, bits in DATATYPE_BITS.items()}


def platform_of(ctx, target: str, pass_name: str) -> Platform:
    """The pass's `target` option, else the context's platform. A pass that needs one declares it
    (`requirements()`: the PassManager checks before the pass runs); the error here is for a pass
    applied directly, outside a PassManager."""
    from archdesc.loader import load_platform
    if target:
        return load_platform(target)
    if isinstance(ctx, AlohaContext) and ctx.target is not None:
        return ctx.target
    raise MissingSetting(f"{pass_name} needs a target platform", setting="target",
                         how="set the context's target",
                         otherwise=f"write {pass_name}{{target=NAME}}")


def mapped_platform(ctx, graph: csdf.GraphOp, target: str, pass_name: str) -> Platform:
    """The platform `graph` was mapped to: the pass's target or the context's, which must be the one
    `map` recorded on the graph (analyses of a graph mapped elsewhere would mix two platforms)."""
    recorded = graph.platform
    if recorded is None:
        raise PassError(f"{pass_name} needs a mapped graph", where=f"csdf.graph @{graph.sym_name.data}",
                        hint="run map first")
    platform = platform_of(ctx, target, pass_name) if target or (
        isinstance(ctx, AlohaContext) and ctx.target is not None) else None
    if platform is None:
        from archdesc.loader import load_platform
        platform = load_platform(recorded)
    if platform.name != recorded:
        raise PassError(f"{pass_name}: the graph is mapped to {recorded}, the target is "
                        f"{platform.name}", where=f"csdf.graph @{graph.sym_name.data}",
                        hint="map again for this target")
    return platform


def mapped_datatype(graph: csdf.GraphOp, platform: Platform) -> str:
    return graph.datatype or platform.default_datatype


@dataclass(frozen=True)
class Precision:
    """The widest fixed-point weights and activations of a quantized graph (biases, kept in the
    accumulator's 32-bit format, do not count)."""

    weight_bits: int
    activation_bits: int

    @property
    def bits(self) -> int:
        return max(self.weight_bits, self.activation_bits)

    @property
    def datatype(self) -> str:
        """The platform data type that runs it: fixed8 when every weight and activation has at
        most 8 bits, else fixed16 (a mixed W8/A16 model runs in the 16-bit mode; its tensors are
        stored at their own widths)."""
        for dt in ("fixed8", "fixed16"):
            if self.bits <= DATATYPE_BITS[dt]:
                return dt
        raise UnsupportedError(f"a {self.bits}-bit fixed-point model has no platform data type",
                               hint="quantize to 16 bits or fewer")

    def __str__(self) -> str:
        return (f"{self.bits}-bit" if self.weight_bits == self.activation_bits
                else f"W{self.weight_bits}/A{self.activation_bits}")


def _widest(bits: list[int]) -> int:
    return max(bits, default=0)


def nn_precision(graph: nn.GraphOp) -> Precision | None:
    """The precision of an nn graph from its types (None: float)."""
    acts, weights = [], []
    for op in graph.ops:
        if isinstance(op, nn.ConstOp) or not op.results:
            continue
        fmt = fp.format_of(op.results[0])
        if fmt is not None:
            acts.append(fmt.bits)
        bias = {op.operands[2]} if isinstance(op, (nn.ConvOp, nn.DenseOp)) and \
            len(op.operands) > 2 else {op.params[1]} if isinstance(op, nn.BatchNormOp) and \
            len(op.params) == 2 else set()
        for v in op.operands:
            if isinstance(v.owner, nn.ConstOp) and v not in bias and fp.format_of(v):
                weights.append(fp.format_of(v).bits)
    if not acts and not weights:
        return None
    return Precision(_widest(weights), _widest(acts))


def csdf_precision(graph: csdf.GraphOp) -> Precision | None:
    """The precision of a csdf graph from its channels' token types and its actors' weights."""
    acts = [t.bits.data for c in graph.channels() if isinstance(t := c.token, nn.FixedPointType)]
    weights = [t.element_type.bits.data for a in graph.actors()
               for name, t in a.memory_units().items()
               if name != "bias" and isinstance(t.element_type, nn.FixedPointType)]
    if not acts and not weights:
        return None
    return Precision(_widest(weights), _widest(acts))


def datatype_of(platform: Platform, bits: int, precision: Precision | None = None) -> str:
    """The data type `platform` runs a graph of `precision` (None: float) at: the graph's own
    precision when it is quantized -- `bits`, if given, must agree -- else `bits`' data type or
    the platform's default."""
    supported = ", ".join(f"{DATATYPE_BITS[d]} ({d})" for d in platform.datatypes)
    if precision is not None:
        dt = precision.datatype
        if bits and BITS_TO_DATATYPE.get(bits) != dt:
            raise PassError(f"bits={bits} contradicts the model's {precision} fixed-point types "
                            f"({dt})", hint="drop bits: a quantized model's precision comes from "
                            "its types")
        if dt not in platform.datatypes:
            raise PassError(f"{platform.name} has no {dt} data type for the model's {precision} "
                            "types", hint=f"supported bits: {supported}")
        return dt
    if not bits:
        return platform.default_datatype
    dt = BITS_TO_DATATYPE.get(bits)
    if dt is None or dt not in platform.datatypes:
        raise PassError(f"{platform.name} has no {bits}-bit data type",
                        hint=f"supported bits: {supported}")
    return dt


def opp_of(platform: Platform, opp: str) -> str | None:
    if opp and opp not in platform.operating_points:
        raise PassError(f"{platform.name} has no operating point '{opp}'",
                        hint="declared: " + (", ".join(platform.operating_points) or "none"))
    return opp or platform.default_operating_point


def nn_blocks(module, graph: csdf.GraphOp) -> dict[str, Operation]:
    """Block symbol -> nn op of the nn.graph `graph` was lowered from (empty if it is not in
    `module`); an actor's block is `actor.block_in(nn_blocks(...))`."""
    source = csdf.source_graph(module, graph)
    return source.blocks() if source is not None else {}


def _elems(v) -> int:
    return math.prod(nn.shape_of(v))


def _nchw(shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) == 4:
        return shape[1], shape[2], shape[3]
    return (shape[-1] if shape else 1), 1, 1


# (kernel, strides, pads, dilations, group) of a Layer: a block without a window reads 1x1
Window = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...], int]
NO_WINDOW: Window = ((1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1)

# nn op class -> the window of its Layer; the ops without a rule (element-wise, layout, dense) have
# none (NO_WINDOW)
LAYER_WINDOWS: dict[type[Operation], Callable[[Operation], Window]] = {}

# `@layer_window(nn.ConvOp)`: the decorated function gives the Layer window of the op classes named
layer_window = registrar(LAYER_WINDOWS, "layer window")


@layer_window(nn.ConvOp)
def conv_window(block: nn.ConvOp) -> Window:
    return (*block.window(), block.prop_int("group", 1))


@layer_window(nn.PoolOp)
def pool_window(block: nn.PoolOp) -> Window:
    """A windowed pool's window; a global one (no kernel) has none."""
    return (*block.window(), 1) if block.kernel is not None else NO_WINDOW


def layer_of(actor: csdf.ActorOp, block: Operation | None) -> Layer:
    """The actor's Layer: the nn block's shapes and window, scaled to the actor's output slice."""
    from aloha_ir import rle
    work = rle.total(actor.work_runs)
    phases = actor.phase_count
    if block is None:
        return Layer(actor.kind.data, work=work, firings=phases)
    family = block.name.split(".")[1]
    ins = [v for v in block.operands if not isinstance(v.owner, nn.ConstOp)]
    params = sum(_elems(v) for v in block.operands if isinstance(v.owner, nn.ConstOp))
    cin, hin, win = _nchw(nn.shape_of(ins[0])) if ins else (1, 1, 1)
    cout, hout, wout = _nchw(nn.shape_of(block.results[0]))
    rule = LAYER_WINDOWS.get(type(block))
    kernel, stride, pads, dil, group = rule(block) if rule is not None else NO_WINDOW
    out_shape = nn.shape_of(block.results[0])
    layer = Layer(family, cin, hin, win, cout, hout, wout, tuple(kernel), tuple(stride),
                  tuple(pads), tuple(dil), group, block_macs(block), work, params,
                  sum(_elems(v) for v in ins), _elems(block.results[0]), phases,
                  batch=out_shape[0] if len(out_shape) >= 2 else 1)
    if actor.split is not None:  # [lo, hi) of the output channels
        lo, hi = actor.split
        layer = slice_layer(layer, lo, hi, work)
    return layer


def slice_layer(layer: Layer, lo: int, hi: int, work: int) -> Layer:
    """Output channels [lo, hi) of `layer` (a partition sub-actor doing `work` operations)."""
    share = (hi - lo) / layer.cout
    return Layer(layer.op, layer.cin, layer.hin, layer.win, hi - lo, layer.hout, layer.wout,
                 layer.kernel, layer.stride, layer.pads, layer.dilation, layer.group,
                 round(layer.macs * share), work, round(layer.params * share), layer.in_elems,
                 round(layer.out_elems * share), layer.firings, batch=layer.batch)


def actor_layers(module, graph: csdf.GraphOp) -> dict[str, Layer]:
    blocks = nn_blocks(module, graph)
    return {a.sym_name.data: layer_of(a, a.block_in(blocks)) for a in graph.actors()}

