"""`analyze-memory`: what the deployed program holds, part by part, and whether it fits.

The figures are the data the generated program allocates statically (backends/codegen/
allocates exactly these; `ALOHA_MEMORY=1` makes the program print its own sizeof of each part;
the runtime's descriptors -- FIFO and actor structs, timing samples -- and the stack are not
counted):

- `parameter_bytes`: every constant the kernels read, in its storage type (aloha_ir.fixedpoint
  `storage_of`: int8/int16 weights of a quantized model, int32 biases and per-channel shifts in
  the accumulator's format, float32 for a float deployment);
- `buffer_bytes`: the FIFO buffers, each channel's size on the IR (analyze-schedule's largest
  occupancy over the stream and the one-frame run, or size-buffers' least capacities for the
  program's threads) times its token's storage; a channel into a
  NEURAghe merge carries one token per output element holding all its partial sums (int32 where
  `accumulator_of` proves it enough, else int64);
- `scratch_bytes`: each actor's input row windows (the rows one firing reads), its output buffer
  (one firing's production), whole-tensor layout staging (global pooling, reshape), and the input
  and output frames; at batch N > 1 a kernel that mixes one item's channels runs once per item
  on copies of that item's slice of its windows into a one-item output buffer, which count as
  windows and output buffers;
- `memory_bytes` = parameters + buffers + scratch.

A float graph mapped on a platform whose data type is fixed point is counted as it will be
deployed (the driver quantizes it before generating code): activations and weights at the data
type's width, biases at 32 bits.

`peak_activation_bytes` is the largest total FIFO occupancy at one instant of the stream schedule.
The report breaks the buffers down (between actors, reuse self-loops, copies of a split actor's
input, parts waiting for their gather, partial sums) and says why they exceed the peak. Each
platform memory that `holds` weights and/or activations must fit what it holds (weights:
parameters; activations: buffers and scratch); if not, the pass fails naming the memory and the
shortfall, or with `allow_overflow` records `fits = false` and warns.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation

from aloha_ir import fixedpoint as fp
from aloha_ir import rle, rowflow
from aloha_ir.analysis import CSDF_MAPPED, Requires
from aloha_ir.context import record_reports
from aloha_ir.dialects import csdf, nn
from aloha_ir.diagnostics import warn
from aloha_ir.errors import MissingSetting, PassError
from aloha_ir.optable import registrar
from aloha_ir.passmanager import AnalysisPass
from archdesc.model import DATATYPE_BITS
from passes.analyze_schedule import schedule_of
from passes.target import mapped_datatype, mapped_platform, nn_blocks

# actors without a block computation of their own: their windows hold one firing's tokens
BOUNDARY_KINDS = ("input", "output", "gather", "merge")
FIFO_KINDS = ("between_actors", "reuse", "split_copies", "to_gather", "partial_sums")


@dataclass
class MemoryReport:
    graph: str
    platform: str
    buffer_bytes: int
    parameter_bytes: int
    scratch_bytes: int
    memory_bytes: int
    peak_activation_bytes: int
    fits: bool
    per_memory: dict[str, dict] = field(default_factory=dict)  # name -> need, size, holds
    buffers: dict[str, int] = field(default_factory=dict)  # channel -> bytes
    breakdown: dict[str, int] = field(default_factory=dict)  # part -> bytes
    notes: list[str] = field(default_factory=list)  # where the memory goes, in words

    def to_json(self) -> dict:
        return asdict(self)


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


# ---------------------------------------------------------------------------------------------------
# storage rules (the generated program follows them; backends/codegen/ imports these)


class Deployment:
    """How one graph's values are stored: from their fixed-point types, or, for a float graph, from
    the mapped data type (f32, or the fixed-point width the driver will quantize it to)."""

    def __init__(self, datatype: str, fixed: bool):
        self.datatype = datatype
        self.fixed = fixed
        self.bits = DATATYPE_BITS[datatype]

    def value(self, v) -> fp.Storage:
        return self.of_format(fp.format_of(v))

    def of_format(self, fmt: fp.Fixed | None) -> fp.Storage:
        if fmt is not None or self.datatype == "f32":
            return fp.storage_of(fmt)
        return fp.storage_of(fp.Fixed(self.bits, 0))  # a float graph deployed at this width

    def token(self, channel: csdf.ChannelOp) -> fp.Storage:
        t = channel.token
        return self.of_format(fp.Fixed.of(t) if isinstance(t, nn.FixedPointType) else None)

    def bias(self) -> fp.Storage:
        return fp.FLOAT32 if not self.fixed and self.datatype == "f32" else fp.INT32

    def partial(self, conv: nn.ConvOp) -> fp.Storage:
        """The accumulator of one partial sum of `conv` (a NEURAghe split kernel's job)."""
        if not self.fixed:
            if self.datatype == "f32":
                return fp.FLOAT32
            x, w = fp.Fixed(self.bits, 0, signed=False), fp.Fixed(self.bits, 0)
        else:
            x, w = fp.format_of(conv.input), fp.format_of(conv.weight)
        kernel = conv.window()[0]
        fan_in = nn.shape_of(conv.input)[1] // conv.prop_int("group", 1) * kernel[0] * kernel[1]
        return fp.accumulator_of(fan_in, x, w)


def channel_storage(channel: csdf.ChannelOp, actors: dict[str, csdf.ActorOp], blocks: dict,
                    dep: Deployment) -> tuple[fp.Storage, int]:
    """(element type, elements per token) of a FIFO: the tensor's storage, or for a channel into a
    merge the partial sums' accumulator, `merges` of them per token."""
    dst = actors[channel.dst_name]
    if dst.kind.data == "merge":
        return dep.partial(dst.block_in(blocks)), dst.merges
    return dep.token(channel), 1


# blocks whose kernels mix the channels of one item: at batch N > 1 the generated program runs
# them (and the gathers of split actors) once per item of a batch (backends/codegen/)
PER_ITEM_BLOCKS = (nn.ConvOp, nn.DenseOp, nn.AddOp, nn.MulOp, nn.BatchNormOp, nn.ConcatOp,
                   nn.LrnOp, nn.ChannelShuffleOp)


def batch_items(kind: str, block) -> int:
    """N when the program runs the kernel of an actor of `kind` computing `block` once per item of
    a batch of N (a merge computes its conv's block), else 1."""
    if block is None or kind in ("input", "output"):
        return 1
    shape = nn.shape_of(block.results[0])
    n = shape[0] if shape else 1
    return n if n > 1 and (kind == "gather" or isinstance(block, PER_ITEM_BLOCKS)) else 1


def item_sliced(shape, out_shape, items: int) -> bool:
    """Whether an input port of a per-item kernel holds `items` item slices it takes apart:
    `shape` is the tensor the port reads (empty for a merge's or gather's port, which reads its
    parts' rows); a tensor of one item is broadcast to every item and read whole."""
    return not shape or (len(shape) == len(out_shape) and shape[0] == items)


def fan_out_port(channel: csdf.ChannelOp) -> str | None:
    """The producer port a partition fan-out copy duplicates (`out0` of `out0_p3`), else None."""
    m = re.fullmatch(r"(.+)_p\d+", channel.src_port.data)
    return m.group(1) if m else None


def fifo_kind(channel: csdf.ChannelOp, actors: dict[str, csdf.ActorOp]) -> str:
    dst = actors[channel.dst_name].kind.data
    if channel.is_self_loop:
        return "reuse"
    if dst == "merge":
        return "partial_sums"
    if fan_out_port(channel) is not None:
        return "split_copies"
    if dst == "gather":
        return "to_gather"
    return "between_actors"


ConstantRule = Callable[[Operation, Deployment, dict], None]

# nn op class -> the constants the program stores for a block of it: the rule adds key -> bytes to
# the dict it is given (the keys dedupe a constant several actors or blocks read); an op without a
# rule stores none (tests/test_op_coverage.py lists those with why)
STORED_CONSTANTS: dict[type[Operation], ConstantRule] = {}

# `@stored_constants(nn.ConvOp)`: the decorated function adds the constants of the op classes named
stored_constants = registrar(STORED_CONSTANTS, "stored-constants rule")


def _const(v, dep: Deployment, out: dict) -> None:
    out[v] = math.prod(nn.shape_of(v)) * dep.value(v).nbytes


def _shifts(v, channels: int, label: str, dep: Deployment, out: dict) -> None:
    """The per-channel shifts of a constant quantized per channel (distinct fracs)."""
    fracs = v.owner.fracs if dep.fixed and isinstance(v.owner, nn.ConstOp) else None
    if fracs is not None and len(set(fracs)) > 1:
        out[("shift", label)] = channels * fp.INT32.nbytes


@stored_constants(nn.ConvOp, nn.DenseOp)
def weighted_constants(block: Operation, dep: Deployment, out: dict) -> None:
    """The weights, the bias in the accumulator's type, per-channel shifts."""
    _const(block.weight, dep, out)
    if len(block.operands) > 2:
        b = block.operands[2]
        out[(b, "acc")] = math.prod(nn.shape_of(b)) * dep.bias().nbytes
    _shifts(block.weight, nn.shape_of(block.results[0])[1], nn.block_label(block), dep, out)


@stored_constants(nn.BatchNormOp)
def batchnorm_constants(block: nn.BatchNormOp, dep: Deployment, out: dict) -> None:
    """Scale-shift form: the scale, the bias in the accumulator's type, per-channel shifts (with
    statistics it has none of its own: canonicalize folds them before code generation)."""
    if len(block.params) != 2:
        return
    shape = nn.shape_of(block.results[0])
    c = shape[1] if len(shape) == 4 else shape[-1]
    s, b = block.params[0], block.params[1]
    out[(s, "bn")] = c * dep.value(s).nbytes
    out[(b, "bn")] = c * dep.bias().nbytes
    _shifts(s, c, nn.block_label(block), dep, out)


@stored_constants(nn.AddOp, nn.MulOp)
def operand_constants(block: Operation, dep: Deployment, out: dict) -> None:
    """Its constant operands, in their own types."""
    for v in (block.lhs, block.rhs):
        if isinstance(v.owner, nn.ConstOp):
            _const(v, dep, out)


def _constant_tensors(block, dep: Deployment) -> dict:
    """key -> bytes of the constants the program stores for `block`, by its STORED_CONSTANTS
    rule."""
    out: dict = {}
    rule = STORED_CONSTANTS.get(type(block))
    if rule is not None:
        rule(block, dep, out)
    return out


# nn op class -> elements of the whole-tensor layout buffer (input type) an actor of a block of it
# keeps (backends/codegen/kernels/ sets the same `staging`); an op without a rule keeps none
STAGING: dict[type[Operation], Callable[[Operation], int]] = {}

# `@staging_rule(nn.ReshapeOp)`: the decorated function sizes the staging of the op classes named
staging_rule = registrar(STAGING, "staging rule")


@staging_rule(nn.PoolOp)
def pool_staging(block: nn.PoolOp) -> int:
    """A global pool stages its whole input; a windowed one reads rows."""
    return math.prod(nn.shape_of(block.input)) if block.is_global else 0


@staging_rule(nn.ReshapeOp, nn.FlattenOp, nn.DropoutOp)
def copy_staging(block: Operation) -> int:
    """A layout copy stages its whole input."""
    return math.prod(nn.shape_of(block.operands[0]))


def _staging(block) -> int:
    """Elements of a whole-tensor layout buffer (input type) an actor of `block` keeps."""
    rule = STAGING.get(type(block))
    return rule(block) if rule is not None else 0


def _actor_scratch(actor: csdf.ActorOp, block, ins: list[csdf.ChannelOp],
                   loops: dict[str, csdf.ChannelOp], outs: list[csdf.ChannelOp],
                   token_bytes: dict[str, int]) -> dict[str, int]:
    """An actor's windows (per input port: the most tokens one firing holds -- new rows plus
    reused ones -- or the whole frame for ops that need their whole input), output buffer (one
    firing's production) and staging, in bytes; a kernel that runs once per item of a batch of N
    adds its one-item copies: of each sliced window (1/N of it) and of its output buffer (1/N).
    `ins` are its input channels in port order, `loops` its reuse self-loops by port, `outs` its
    output channels. The row sizes and whether it reads whole are the lowering's records on the IR
    (`reads` on the actor, `shape` on its input channels)."""
    planned = block is not None and actor.kind.data not in BOUNDARY_KINDS
    if planned and (actor.reads is None or any(ch.shape is None for ch in ins)):
        raise PassError(f"analyze-memory: csdf.actor @{actor.sym_name.data} has no row plan (how "
                        "it reads its inputs: csdf.reads, and csdf.rows/csdf.shape on its input "
                        "channels)", hint="lower the nn graph again with convert-nn-to-csdf")
    whole = planned and actor.reads == "whole"
    items = batch_items(actor.kind.data, block)
    out_shape = tuple(nn.shape_of(block.results[0])) if block is not None else ()
    window = 0
    for ch in ins:
        cons = rle.expand(ch.cons_runs)
        loop = loops.get(f"reuse_{ch.dst_port.data}")
        reuse = rle.expand(loop.cons_runs) if loop is not None else [0] * len(cons)
        shape = tuple(ch.shape) if planned else ()
        row = rowflow.rows_of(shape)[1] if planned else (max(cons) or 1)
        tokens = sum(cons) if whole else max(a + b for a, b in zip(cons, reuse))
        port = max(row, tokens) * token_bytes[ch.sym_name.data]
        window += port
        if items > 1 and item_sliced(shape, out_shape, items):
            window += port // items
    rows = max((max(rle.expand(c.prod_runs)) * token_bytes[c.sym_name.data] for c in outs),
               default=0)
    if items > 1:
        rows += rows // items
    staging = _staging(block) * token_bytes[ins[0].sym_name.data] if planned and ins else 0
    return {"window_bytes": window, "row_bytes": rows, "staging_bytes": staging}


def deployed_memory(module, graph: csdf.GraphOp, datatype: str, buffers: dict[str, int]
                    ) -> tuple[dict[str, int], dict[str, int]]:
    """(parts, per-channel FIFO bytes) of the program generated for `graph` with FIFO sizes
    `buffers` (tokens): the figures of the module docstring."""
    blocks = nn_blocks(module, graph)
    nn_graph = next(iter(blocks.values())).parent_op() if blocks else None
    fixed = nn_graph is not None and any(
        fp.format_of(op.results[0]) is not None for op in nn_graph.ops
        if op.results and not isinstance(op, nn.ConstOp))
    dep = Deployment(datatype, fixed)
    actors = graph.actor_map()
    token_bytes, per_channel = {}, {}
    parts = {k: 0 for k in FIFO_KINDS}
    for c in graph.channels():
        st, n = channel_storage(c, actors, blocks, dep)
        name = c.sym_name.data
        token_bytes[name] = st.nbytes * n
        per_channel[name] = max(1, buffers[name]) * token_bytes[name]
        parts[fifo_kind(c, actors)] += per_channel[name]
    ins: dict[str, list[csdf.ChannelOp]] = {}
    outs: dict[str, list[csdf.ChannelOp]] = {}
    loops: dict[str, dict[str, csdf.ChannelOp]] = {}
    for c in graph.channels():
        if c.is_self_loop:
            loops.setdefault(c.dst_name, {})[c.dst_port.data] = c
        else:
            ins.setdefault(c.dst_name, []).append(c)
            outs.setdefault(c.src_name, []).append(c)
    constants: dict = {}
    scratch = {"window_bytes": 0, "row_bytes": 0, "staging_bytes": 0}
    for a in graph.actors():
        name = a.sym_name.data
        block = a.block_in(blocks)
        if block is not None and a.kind.data not in ("input", "output", "gather"):
            constants.update(_constant_tensors(block, dep))
        ports = sorted(ins.get(name, []), key=lambda c: tuple(
            int(x) for x in re.findall(r"\d+", c.dst_port.data)))
        for k, v in _actor_scratch(a, block, ports, loops.get(name, {}), outs.get(name, []),
                                   token_bytes).items():
            scratch[k] += v
    io = 0
    if nn_graph is not None:
        ends = [op.output for op in nn_graph.ops if isinstance(op, nn.InputOp)]
        ends += list(nn_graph.ops.last.operands)  # the program holds a frame of each
        io = sum(math.prod(nn.shape_of(v)) * dep.value(v).nbytes for v in ends)
    parts.update(scratch, io_bytes=io, parameter_bytes=sum(constants.values()),
                 buffer_bytes=sum(per_channel.values()))
    parts["scratch_bytes"] = sum(scratch.values()) + io
    parts["memory_bytes"] = parts["parameter_bytes"] + parts["buffer_bytes"] + \
        parts["scratch_bytes"]
    # what the split actors' input copies would need as one buffer per producer port (multicast)
    shared: dict[tuple[str, str], int] = {}
    for c in graph.channels():
        port = fan_out_port(c)
        if port is not None:
            key = (c.src_name, port)
            shared[key] = max(shared.get(key, 0), per_channel[c.sym_name.data])
    parts["split_copies_shared_bytes"] = sum(shared.values())
    parts["split_copies_producers"] = len(shared)
    return parts, per_channel


def _notes(parts: dict[str, int], peak: int) -> list[str]:
    """Where the memory goes, in sentences the report prints."""
    notes = []
    buffers = parts["buffer_bytes"]
    if buffers > peak:
        notes.append(
            f"FIFO buffers ({human(buffers)}) exceed the peak activation ({human(peak)}): every "
            "FIFO is a static buffer sized to its own largest occupancy over the schedule (a "
            "stream of overlapping frames, and the one-frame run), and those largest occupancies "
            "happen at different times, so they add up beyond any one instant's live data.")
    copies = parts["split_copies"]
    if copies:
        notes.append(
            f"{human(copies)} of the buffers are copies of split actors' inputs: every part of a "
            "layer partitioned over several units reads the whole input from a FIFO of its own; "
            f"one buffer per producer shared by the parts (a multicast) would hold "
            f"{human(parts['split_copies_shared_bytes'])} for the "
            f"{parts['split_copies_producers']} producer(s).")
    if parts["to_gather"]:
        notes.append(f"{human(parts['to_gather'])} hold the parts' outputs until their gather "
                     "joins them.")
    if parts["partial_sums"]:
        notes.append(f"{human(parts['partial_sums'])} carry partial sums of split kernels to "
                     "their merge (one accumulator per partial job and output element).")
    notes.append(
        "Minimal buffer sizing (sharing memory between FIFOs whose peaks do not overlap) is not "
        "done; these are the sizes the generated program allocates.")
    return notes


def analyze(ctx, graph: csdf.GraphOp, target: str, allow_overflow: bool, name: str,
            module=None) -> MemoryReport:
    platform = mapped_platform(ctx, graph, target, name)
    datatype = mapped_datatype(graph, platform)
    sched = schedule_of(ctx, graph)
    # the capacities on the IR (analyze-schedule's, or size-buffers' after it), which the
    # generated program allocates
    capacities = {c.sym_name.data: c.buffer for c in graph.channels()}
    if None in capacities.values():
        capacities = sched.buffers
    parts, buffers = deployed_memory(module, graph, datatype, capacities)
    # the schedule weighs tokens at the IR's element size; a float graph deployed narrower
    # holds its tokens at the data type's width
    token_bytes = max((c.token_bytes for c in graph.channels()), default=4) or 4
    nbytes = DATATYPE_BITS[datatype] // 8
    peak = sched.peak_tokens_bytes * nbytes // token_bytes if token_bytes > nbytes \
        else sched.peak_tokens_bytes
    params, buffer_bytes = parts["parameter_bytes"], parts["buffer_bytes"]
    report = MemoryReport(graph.sym_name.data, platform.name, buffer_bytes, params,
                          parts["scratch_bytes"], parts["memory_bytes"], peak, True,
                          buffers=buffers, breakdown=parts,
                          notes=_notes(parts, peak))
    activations = buffer_bytes + parts["scratch_bytes"]
    for mem in platform.memories:
        if not mem.holds:
            continue
        need = (params if "weights" in mem.holds else 0) + \
            (activations if "activations" in mem.holds else 0)
        report.per_memory[mem.name] = {"need_bytes": need, "size_bytes": int(mem.size_bytes),
                                       "holds": list(mem.holds)}
        if need > mem.size_bytes:
            report.fits = False
            what = " and ".join(mem.holds)
            message = (f"{graph.sym_name.data} needs {human(need)} of {what} in {mem.name}, which "
                       f"has {human(mem.size_bytes)} on {platform.name}")
            if "activations" in mem.holds:
                message += (f" (FIFO buffers {human(buffer_bytes)}, of which split-input copies "
                            f"{human(parts['split_copies'])}; scratch "
                            f"{human(parts['scratch_bytes'])}; peak activation {human(peak)})")
            if not allow_overflow:
                raise MissingSetting(message, setting="allow_overflow",
                                     how="set allow_overflow to report it anyway",
                                     otherwise="prune or quantize the model, pick a bigger "
                                               "platform")
            warn(ctx, message)
    graph.memory_bytes = report.memory_bytes
    return report


@dataclass(frozen=True)
class AnalyzeMemoryPass(AnalysisPass):
    """What the deployed program holds (parameters, FIFOs, scratch); checks the memories."""

    name = "analyze-memory"
    requires = Requires(level=CSDF_MAPPED)
    annotates = frozenset({"csdf.memory_bytes"})  # csdf annotations' keys

    target: str = ""
    allow_overflow: bool = False

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        reports = {g.sym_name.data: analyze(ctx, g, self.target, self.allow_overflow,
                                            self.name, op) for g in csdf.csdf_graphs(op)}
        record_reports(ctx, self.name, reports)
