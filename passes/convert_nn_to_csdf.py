"""`convert-nn-to-csdf`: the seeds' DNN-to-CSDF conversion (deliverable 2.5.4, DESIGN.md).

- topology: every nn block becomes an actor (one sink actor per network output), every edge a FIFO
  channel between an output port of the producer and an input port of the consumer;
- parameters: the actor inherits the operator (`conv3x3`, `maxpool2x2`, `dense`, ...), runs it `times`
  per firing for `work` elementary operations (MACs for conv/dense), and lists the block's constant
  operands as memory units;
- data flow: aloha_ir.rowflow's row calculus gives the rates: one firing per output row for windowed
  and row-aligned ops, with reuse self-loops where windows overlap; ops that need the whole input
  read it row by row and produce at their last firing; a rank-2 tensor is one row;
- records: the row plan behind those rates, for the stages that need more than rates (code
  generation's windows and reuse loops, analyze-memory's windows) to read instead of planning the
  block again. It is the reader's, so it lives on the channel that feeds the reading port: the
  tensor's shape (`shape`: its rows and row size) and per phase of the reader the rows (lo, hi) it
  reads (`rows`); on the actor, whether it reads its inputs row by row or whole (`reads`). They are
  typed annotations rather than properties: what the actor and channel *are* is the rates, which
  the records explain; a graph written by hand may omit them (then nothing needs them but code
  generation and analyze-memory, which refuse it), and the SDF3 export ignores them. The csdf
  verifier checks a recorded plan against the channel's and the reuse loop's rates. Boundary
  actors (input, output, and partition's gather and map's merge later) read one row per firing
  and carry none.

The nn.graph stays in the module (it holds the weights and the blocks' full semantics); the new
`csdf.graph @NAME_csdf from @NAME` follows it, and each actor refers to its block by symbol
(`block @NAME::@conv1`; an output actor names its port). A block's symbol is its `name` (an input's
port): the one change the lowering makes to its source is to name the blocks that have none
(`relu3`: the op family and the block's index). Running the pass again replaces the csdf graph.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.rewriter import InsertPoint, Rewriter

from aloha_ir import rle, rowflow
from aloha_ir.analysis import CSDF, NN, NN_ANY, Requires, preserves_level
from aloha_ir.dialects import csdf
from aloha_ir.dialects import nn
from aloha_ir.errors import UnsupportedError
from aloha_ir.optable import registrar
from aloha_ir.passmanager import TransformPass

# elementary operations per output element of elementwise operators (an estimate the cost models
# of later passes may refine per platform)
ELEMENT_OPS = {"relu": 1, "leaky_relu": 2, "clip": 2, "sigmoid": 4, "tanh": 4, "softmax": 3,
               "log_softmax": 4,
               "add": 1, "mul": 1, "batchnorm": 2, "concat": 0, "channel_shuffle": 0,
               "dropout": 0}
PARAM_NAMES = {"nn.conv": ("weights", "bias"), "nn.dense": ("weights", "bias"),
               "nn.batchnorm": ("scale", "bias", "mean", "var")}


@dataclass
class _Plan:
    """What the lowering decides for one block, before any IR is built."""

    kind: str
    phases: int
    inputs: list[tuple[SSAValue, list[rowflow.Range]]]
    produce_per_row: bool  # True: one output row per firing; False: everything at the last firing
    times: rle.Runs
    work: rle.Runs


@dataclass
class _Producer:
    actor: str
    prod: rle.Runs
    ports: int = 0


@dataclass
class _Builder:
    ops: list[Operation] = field(default_factory=list)
    producers: dict[SSAValue, _Producer] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)
    channels: int = 0

    def unique(self, label: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_]", "_", label) or "block"
        if not (base[0].isalpha() or base[0] == "_"):
            base = "a_" + base
        name, k = base, 1
        while name in self.names:
            k += 1
            name = f"{base}_{k}"
        self.names.add(name)
        return name

    def connect(self, value: SSAValue, actor: str, port: int, ranges: list[rowflow.Range],
                record: bool = True) -> None:
        """A channel from `value`'s producer to port `port` of `actor`, which reads rows `ranges`
        (per phase); `record` writes that row plan on the channel (`rows`, `shape`)."""
        producer = self.producers[value]
        shape = nn.shape_of(value)
        rows, row_tokens = rowflow.rows_of(shape)
        rates = rowflow.input_rates(ranges, rows)
        token = value.type.element_type  # type: ignore[attr-defined]
        channel = csdf.ChannelOp.build(
            self.unique(f"c{self.channels}"), producer.actor, f"out{producer.ports}", actor, f"in{port}",
            producer.prod, rle.encode(n * row_tokens for n in rates.new), token)
        if record:
            channel.shape = tuple(shape)
            channel.rows = tuple(x for r in ranges for x in r)
        self.ops.append(channel)
        self.channels += 1
        producer.ports += 1
        if rates.has_reuse:
            self.ops.append(csdf.ChannelOp.build(
                self.unique(f"{actor}_reuse{port}"), actor, f"reuse_out{port}", actor, f"reuse_in{port}",
                rle.encode(n * row_tokens for n in rates.reuse_out),
                rle.encode(n * row_tokens for n in rates.reuse_in), token))


def _activation_inputs(op: Operation) -> list[SSAValue]:
    return [v for v in op.operands if not isinstance(v.owner, nn.ConstOp)]


def _memory_units(op: Operation) -> dict[str, Attribute]:
    names = PARAM_NAMES.get(op.name, ())
    units: dict[str, Attribute] = {}
    params = 0
    for i, v in enumerate(op.operands):
        if isinstance(v.owner, nn.ConstOp):
            key = names[i - 1] if 0 < i <= len(names) else f"param{params}"
            units[key] = v.type
            params += 1
    return units


def _per_row(phases: int, tokens: int, ops_per_token: int) -> tuple[rle.Runs, rle.Runs]:
    return ((phases, tokens),), ((phases, tokens * ops_per_token),)


def _whole(ins: list[SSAValue], kind: str, ops_per_input: int,
           final: tuple[int, int] | None = None) -> _Plan:
    """Read the inputs row by row (firing j: row j of the first input), produce at the last firing.
    `final` = (times, work) done at the last firing (a dense layer's neurons and MACs)."""
    rows_in = [rowflow.rows_of(nn.shape_of(v)) for v in ins]
    phases = rows_in[0][0] if rows_in else 1
    inputs = [(v, rowflow.spread_ranges(r, phases)) for v, (r, _) in zip(ins, rows_in)]
    per_firing = [0] * phases
    for r, t in rows_in:
        for j, (lo, hi) in enumerate(rowflow.spread_ranges(r, phases)):
            per_firing[j] += (hi - lo + 1) * t
    times = list(per_firing)
    work = [n * ops_per_input for n in per_firing]
    if final is not None:
        times[-1], work[-1] = final
    return _Plan(kind, phases, inputs, False, rle.encode(times), rle.encode(work))


def _elementwise(op: Operation, ins: list[SSAValue], kind: str, ops: int) -> _Plan:
    rows_out, t_out = rowflow.rows_of(nn.shape_of(op.results[0]))
    inputs = []
    for v in ins:
        rows_in = rowflow.rows_of(nn.shape_of(v))[0]
        if rows_in not in (rows_out, 1):
            return _whole(ins, kind, ops)
        inputs.append((v, rowflow.aligned_ranges(rows_in, rows_out)))
    times, work = _per_row(rows_out, t_out, ops)
    return _Plan(kind, rows_out, inputs, True, times, work)


def _window(op: Operation, x: SSAValue, kind: str, kernel, strides, pads, dilations,
            ops_per_output: int) -> _Plan:
    h_in = nn.shape_of(x)[2]
    rows_out, t_out = rowflow.rows_of(nn.shape_of(op.results[0]))
    ranges = rowflow.window_ranges(h_in, rows_out, kernel[0], strides[0], pads[0], dilations[0])
    times, work = _per_row(rows_out, t_out, ops_per_output)
    return _Plan(kind, rows_out, [(x, ranges)], True, times, work)


def _pad_ranges(mode: str, h_in: int, h_out: int, top: int) -> list[rowflow.Range]:
    if mode == "constant":
        return rowflow.shifted_ranges(h_in, h_out, top)
    out = []
    for j in range(h_out):
        i = j - top
        if mode == "edge":
            i = min(max(i, 0), h_in - 1)
        else:  # reflect (needs h_in >= 2 for a non-zero pad; ONNX's rule)
            period = 2 * (h_in - 1) or 1
            i = abs(i) % period
            i = period - i if i >= h_in else i
        out.append((i, i))
    return out


# (the block, its activation inputs, its output shape) -> its plan
RowPlanRule = Callable[[Operation, list[SSAValue], tuple[int, ...]], _Plan]

ROW_PLANS: dict[type[nn.NnOp], RowPlanRule] = {}

# `@row_plan(nn.ConvOp)`: the decorated function plans the nn op classes named
row_plan = registrar(ROW_PLANS, "row plan")


def plan_block(op: Operation) -> _Plan:
    """Which input rows each firing of `op`'s actor reads, and its rates, by its rule in
    ROW_PLANS."""
    rule = ROW_PLANS.get(type(op))
    if rule is None:
        raise UnsupportedError(f"convert-nn-to-csdf has no rule for {op.name}",
                               where=nn.block_label(op) or op.name)
    out_shape = nn.shape_of(op.results[0]) if op.results else ()
    return rule(op, _activation_inputs(op), out_shape)


@row_plan(nn.InputOp)
def input_plan(op: nn.InputOp, ins: list[SSAValue], out_shape) -> _Plan:
    rows, t = rowflow.rows_of(out_shape)
    return _Plan("input", rows, [], True, ((rows, t),), ((rows, 0),))


@row_plan(nn.ConvOp)
def conv_plan(op: nn.ConvOp, ins: list[SSAValue], out_shape) -> _Plan:
    kernel, strides, pads, dilations = op.window()
    w = nn.shape_of(op.weight)
    return _window(op, op.input, f"conv{kernel[0]}x{kernel[1]}", kernel, strides, pads,
                   dilations, w[1] * w[2] * w[3])


@row_plan(nn.PoolOp)
def pool_plan(op: nn.PoolOp, ins: list[SSAValue], out_shape) -> _Plan:
    kind = op.kind.data
    if op.is_global:
        return _whole(ins, f"{kind}pool", 1)
    kernel, strides, pads, dilations = op.window()
    return _window(op, op.input, f"{kind}pool{kernel[0]}x{kernel[1]}", kernel, strides, pads,
                   dilations, kernel[0] * kernel[1])


@row_plan(nn.DenseOp)
def dense_plan(op: nn.DenseOp, ins: list[SSAValue], out_shape) -> _Plan:
    n, m = out_shape
    k = nn.shape_of(op.weight)[1]
    return _whole(ins, "dense", 0, final=(n * m, n * m * k))


@row_plan(nn.ActOp)
def act_plan(op: nn.ActOp, ins: list[SSAValue], out_shape) -> _Plan:
    """Row by row, but a softmax or log-softmax along any axis other than a 4-d tensor's channels
    reads it whole."""
    kind = op.kind.data
    axis = op.prop_int("axis", 1)
    if kind in nn.SOFTMAXES and (len(out_shape) != 4 or axis != 1):
        return _whole(ins, kind, ELEMENT_OPS[kind])
    return _elementwise(op, ins, kind, ELEMENT_OPS[kind])


@row_plan(nn.LrnOp)
def lrn_plan(op: nn.LrnOp, ins: list[SSAValue], out_shape) -> _Plan:
    return _elementwise(op, ins, "lrn", op.prop_int("size") + 2)


@row_plan(nn.AddOp, nn.MulOp, nn.BatchNormOp, nn.ChannelShuffleOp, nn.DropoutOp)
def elementwise_plan(op: Operation, ins: list[SSAValue], out_shape) -> _Plan:
    kind = op.name.split(".")[1]
    return _elementwise(op, ins, kind, ELEMENT_OPS[kind])


@row_plan(nn.ConcatOp)
def concat_plan(op: nn.ConcatOp, ins: list[SSAValue], out_shape) -> _Plan:
    """Along the rows (axis 2 of a 4-d tensor) each input fills its own band of output rows;
    along any other axis the inputs are read row by row together."""
    if len(out_shape) == 4 and op.prop_int("axis") == 2:
        rows_out, t_out = rowflow.rows_of(out_shape)
        inputs, offset = [], 0
        for v in op.inputs:
            h = nn.shape_of(v)[2]
            inputs.append((v, rowflow.shifted_ranges(h, rows_out, offset)))
            offset += h
        times, work = _per_row(rows_out, t_out, 0)
        return _Plan("concat", rows_out, inputs, True, times, work)
    return _elementwise(op, ins, "concat", 0)


@row_plan(nn.ReduceOp)
def reduce_plan(op: nn.ReduceOp, ins: list[SSAValue], out_shape) -> _Plan:
    """Row by row when the rows stay (a 4-d tensor kept, not reduced along them), else whole; the
    actor's kind is reduce_mean, reduce_sum or reduce_max."""
    axes, kind = set(op.prop_ints("axes")), f"reduce_{op.kind.data}"
    if len(out_shape) == 4 and op.prop_int("keepdims", 1) and 2 not in axes:
        rows_out, t_out = rowflow.rows_of(out_shape)
        t_in = rowflow.rows_of(nn.shape_of(op.input))[1]
        return _Plan(kind, rows_out, [(op.input, rowflow.aligned_ranges(
            rows_out, rows_out))], True, ((rows_out, t_out),), ((rows_out, t_in),))
    return _whole(ins, kind, 1)


@row_plan(nn.PadOp)
def pad_plan(op: nn.PadOp, ins: list[SSAValue], out_shape) -> _Plan:
    x = nn.shape_of(op.input)
    if len(x) == 4:
        pads = op.prop_ints("pads")
        rows_out, t_out = rowflow.rows_of(out_shape)
        ranges = _pad_ranges(op.mode.data, x[2], rows_out, pads[2])
        times, work = _per_row(rows_out, t_out, 0)
        return _Plan("pad", rows_out, [(op.input, ranges)], True, times, work)
    return _whole(ins, "pad", 0)


@row_plan(nn.ResizeOp)
def resize_plan(op: nn.ResizeOp, ins: list[SSAValue], out_shape) -> _Plan:
    rows_out, t_out = rowflow.rows_of(out_shape)
    times, work = _per_row(rows_out, t_out, 1 if op.mode.data == "nearest" else 4)
    return _Plan(f"resize_{op.mode.data}", rows_out, [(op.input, op.taps(2))], True, times, work)


@row_plan(nn.FlattenOp, nn.ReshapeOp, nn.TransposeOp, nn.SliceOp)
def layout_plan(op: Operation, ins: list[SSAValue], out_shape) -> _Plan:
    """A layout change reads the whole input before it produces."""
    return _whole(ins, op.name.split(".")[1], 0)


def _block_names(graph: nn.GraphOp) -> dict[Operation, str]:
    """Each block's symbol; a block without a name gets one (its `name` attribute is set: the only
    change the lowering makes to its source)."""
    taken = set(graph.blocks())
    names: dict[Operation, str] = {}
    for i, op in enumerate(graph.ops):
        if isinstance(op, (nn.ConstOp, nn.OutputOp)):
            continue
        label = nn.block_label(op)
        if not label:
            label = csdf.unique_name(f"{op.name.split('.')[1]}{i}", taken)
            op.attributes["name"] = StringAttr(label)
        names[op] = label
    return names


def lower_graph(graph: nn.GraphOp) -> csdf.GraphOp:
    b = _Builder()
    block_names = _block_names(graph)
    source = graph.sym_name.data
    for op in graph.ops:
        if isinstance(op, nn.ConstOp):
            continue
        if isinstance(op, nn.OutputOp):
            for port_name, v in zip(op.ports.data, op.inputs):
                rows, t = rowflow.rows_of(nn.shape_of(v))
                actor = b.unique(f"output_{port_name.data}")
                b.ops.append(csdf.ActorOp.build(actor, "output", None, rows, ((rows, t),),
                                                ((rows, 0),), port=port_name.data))
                b.connect(v, actor, 0, rowflow.aligned_ranges(rows, rows), record=False)
            continue
        plan = plan_block(op)
        block = block_names[op]
        actor = b.unique(block)
        node = csdf.ActorOp.build(actor, plan.kind, csdf.block_ref(source, block), plan.phases,
                                  plan.times, plan.work, _memory_units(op))
        if not isinstance(op, nn.InputOp):  # the input actor reads no channel
            node.reads = "rows" if plan.produce_per_row else "whole"
        b.ops.append(node)
        for port, (v, ranges) in enumerate(plan.inputs):
            b.connect(v, actor, port, ranges)
        rows, t = rowflow.rows_of(nn.shape_of(op.results[0]))
        if plan.produce_per_row:
            prod: rle.Runs = ((plan.phases, t),)
        else:
            prod = rle.normalize(((plan.phases - 1, 0), (1, rows * t)))
        b.producers[op.results[0]] = _Producer(actor, prod)
    # actors first, then channels: a reader sees the nodes before the edges
    ordered = [o for o in b.ops if isinstance(o, csdf.ActorOp)] + \
        [o for o in b.ops if isinstance(o, csdf.ChannelOp)]
    return csdf.GraphOp.build_graph(f"{source}_csdf", ordered, source)


@dataclass(frozen=True)
class ConvertNnToCsdfPass(TransformPass):
    """Lower each nn.graph to a csdf.graph (actors, FIFO channels, row-granular rates)."""

    name = "convert-nn-to-csdf"
    requires = Requires(level=NN_ANY)  # a lowered graph is lowered again, replacing its csdf graph
    preserves = preserves_level(NN)  # block names it gives nn ops change no nn analysis
    provides = CSDF

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        existing = {g.source_name: g for g in csdf.csdf_graphs(op) if g.source is not None}
        for graph in [g for g in op.ops if isinstance(g, nn.GraphOp)]:
            lowered = lower_graph(graph)
            old = existing.get(graph.sym_name.data)
            if old is not None:
                Rewriter.replace_op(old, lowered)
            else:
                Rewriter.insert_op(lowered, InsertPoint.after(graph))

