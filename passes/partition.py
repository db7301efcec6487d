"""`partition`: split actors into sub-actors along output channels, and merge their outputs back.

Sub-actor k of an actor computes output channels [lo_k, hi_k): it reads the whole input (each
producer gets one more output port per sub-actor, producing the same tokens), keeps its own copy of
the reuse self-loops, and produces its share of every output row. A `gather` actor (zero cost: the
sub-actors write disjoint channel slices of one buffer) collects the slices and feeds the original
consumers. The graph stays consistent: every sub-actor has the original's phases, and carries the
lowering's records of the original (`reads`; its input copies the row plan `rows`, `shape`); the
gather, like every boundary actor, reads one row per firing and has none.

Which actors: `actors="conv1:2,fc6:4"` names them; otherwise (`auto`, the default) every conv and dense
actor whose fastest PE on the target has several units is split into that many parts (a dense layer
on cores into `grain` times as many: it fires once per frame, and pieces let a core interleave other
work), never below the PE's output-channel granularity (grid rows). Sub-actors carry `split = [lo, hi]`, the gather
`parts`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, TensorType
from xdsl.rewriter import InsertPoint, Rewriter

from aloha_ir import rle
from aloha_ir.analysis import CSDF, NN, Requires, preserves_level
from aloha_ir.context import record_reports
from aloha_ir.dialects import csdf
from aloha_ir.errors import PassError, PlacementError
from aloha_ir.passmanager import TransformPass
from archdesc import costmodel
from archdesc.costmodel import Unsupported
from passes.target import (
    ZERO_COST_KINDS,
    actor_layers,
    csdf_precision,
    datatype_of,
    opp_of,
    platform_of,
)

SPLITTABLE = ("conv", "dense")


def splittable(actor: csdf.ActorOp, layer, resplit: bool = False) -> bool:
    """Whether `actor` computes an ungrouped conv/dense block (or, with `resplit`, a slice of one).
    The actor's own kind decides, not only its block's: an output actor is named after its port,
    which may be the label of the conv it reads (`y`), and splitting it would end the graph in two
    output actors; a gather is a view of its parts."""
    return (actor.kind.data not in ZERO_COST_KINDS and layer.op in SPLITTABLE
            and layer.group == 1 and (resplit or actor.split is None))


def _scale(runs: rle.Runs, part: int, whole: int) -> rle.Runs:
    return rle.normalize((c, v * part // whole) for c, v in runs)


def channel_bounds(channels: int, parts: int) -> list[tuple[int, int]]:
    step, extra = divmod(channels, parts)
    out, lo = [], 0
    for k in range(parts):
        hi = lo + step + (1 if k < extra else 0)
        out.append((lo, hi))
        lo = hi
    return out


def split_actor(graph: csdf.GraphOp, name: str, channels: int, parts: int) -> list[str]:
    """Split actor `name` (with `channels` output channels) into `parts`; returns the new names."""
    actors = graph.actor_map()
    actor = actors[name]
    taken = set(actors) | {c.sym_name.data for c in graph.channels()}

    def fresh(base: str) -> str:
        return csdf.unique_name(base, taken)

    base = actor.split[0] if actor.split is not None else 0
    bounds = channel_bounds(channels, parts)
    ins = [c for c in graph.channels() if c.dst_name == name and not c.is_self_loop]
    loops = [c for c in graph.channels() if c.is_self_loop and c.src_name == name]
    outs = [c for c in graph.channels() if c.src_name == name and not c.is_self_loop]
    subs = []
    anchor = actor
    for k, (lo, hi) in enumerate(bounds):
        width = hi - lo
        memory = {}
        for key, t in actor.memory_units().items():
            shape = list(t.get_shape())
            if shape and shape[0] == channels:
                shape[0] = width
            memory[key] = TensorType(t.get_element_type(), shape)
        sub = csdf.ActorOp.build(fresh(f"{name}_p{k}"), actor.kind.data, actor.block,
                                 actor.phase_count, _scale(actor.times_runs, width, channels),
                                 _scale(actor.work_runs, width, channels), memory)
        sub.split = (base + lo, base + hi)
        sub.reads = actor.reads
        Rewriter.insert_op(sub, InsertPoint.after(anchor))
        anchor = sub
        subs.append(sub.sym_name.data)
    gather = csdf.ActorOp.build(fresh(f"{name}_gather"), "gather", actor.block,
                                actor.phase_count, actor.times_runs, ((actor.phase_count, 0),))
    gather.parts = parts
    Rewriter.insert_op(gather, InsertPoint.after(anchor))
    last = graph.channels()[-1]
    new_channels = []
    for c in ins:
        for k, sub in enumerate(subs):
            copy = csdf.ChannelOp.build(
                fresh(f"{c.sym_name.data}_p{k}"), c.src_name, f"{c.src_port.data}_p{k}", sub,
                c.dst_port.data, c.prod_runs, c.cons_runs, c.token, c.initial_tokens)
            copy.rows, copy.shape = c.rows, c.shape  # every part reads the whole input alike
            new_channels.append(copy)
    for c in loops:
        for k, sub in enumerate(subs):
            new_channels.append(csdf.ChannelOp.build(
                fresh(f"{c.sym_name.data}_p{k}"), sub, c.src_port.data, sub, c.dst_port.data,
                c.prod_runs, c.cons_runs, c.token, c.initial_tokens))
    for port, c in enumerate(outs):
        for k, (sub, (lo, hi)) in enumerate(zip(subs, bounds)):
            slice_runs = _scale(c.prod_runs, hi - lo, channels)
            new_channels.append(csdf.ChannelOp.build(
                fresh(f"{c.sym_name.data}_p{k}"), sub, c.src_port.data, gather.sym_name.data,
                f"in{port}_{k}", slice_runs, slice_runs, c.token))
        c.properties["src"] = csdf.symref(gather.sym_name.data)
    for ch in new_channels:
        Rewriter.insert_op(ch, InsertPoint.after(last))
        last = ch
    for c in ins + loops:
        Rewriter.erase_op(c)
    Rewriter.erase_op(actor)
    return subs


def _requested(spec: str) -> dict[str, int]:
    out = {}
    for item in filter(None, (s.strip() for s in spec.split(";" if ";" in spec else ","))):
        name, _, n = item.rpartition(":")
        if not name or not n.isdigit() or int(n) < 1:
            raise PlacementError(f"partition: '{item}' must be ACTOR:PARTS with PARTS >= 1")
        out[name] = int(n)
    return out


def auto_plan(graph: csdf.GraphOp, layers: dict, platform, bits: int = 0, opp: str = "",
              grain: int = 16) -> dict[str, int]:
    """The `auto` rule's parts per actor (only actors it splits): the fastest PE's unit count."""
    datatype = datatype_of(platform, bits, csdf_precision(graph))
    point = opp_of(platform, opp)
    actors = graph.actor_map()
    plan = {}
    for name, layer in layers.items():
        if not splittable(actors[name], layer):
            continue
        best = None
        for pe in platform.pes:
            try:
                c = costmodel.cost(platform, pe, layer, datatype, point)
            except Unsupported:
                continue
            if best is None or c.seconds < best[1]:
                best = (pe, c.seconds)
        if best is None or (best[0].count < 2 and best[0].kind == "conv-engine"):
            continue
        engine = best[0].kind == "conv-engine"
        granule = best[0].grid[0] if engine else 1
        # a dense layer is one long firing: cut it finer so that a core running it
        # can take other work (the next frame's pooling) between the pieces
        wanted = best[0].count * (grain if layer.op == "dense" and not engine else 1)
        parts = min(wanted, max(1, layer.cout // granule))
        if parts > 1:
            plan[name] = parts
    return plan


@dataclass(frozen=True)
class PartitionPass(TransformPass):
    """Split actors along output channels into sub-actors, gathered back (auto: per PE count)."""

    name = "partition"
    requires = Requires(level=CSDF, target=True)
    preserves = preserves_level(NN)

    target: str = ""
    actors: str = ""
    auto: bool = True
    grain: int = 16
    bits: int = 0
    opp: str = ""

    @classmethod
    def parts(cls, plan: Mapping[str, int], *, bits: int = 0, opp: str = "") -> "PartitionPass":
        """The pass splitting exactly the actors of `plan` into that many parts (the auto rule
        off: an actor left out, or given 1 part, stays whole): the typed form of `actors=`."""
        bad = [f"{a}: {n!r}" for a, n in plan.items()
               if not a or any(c in a for c in ";:,") or not isinstance(n, int) or n < 1]
        if bad:
            raise PlacementError(f"partition: bad plan entry {bad[0]}",
                                 hint="ACTOR -> parts >= 1; actor names hold no ';', ':' or ','")
        return cls(actors=";".join(f"{a}:{n}" for a, n in plan.items()), auto=False, bits=bits,
                   opp=opp)

    def requirements(self) -> Requires:
        """A target only to plan the parts automatically (auto, no actors=)."""
        return Requires(level=CSDF, target=self.auto and not self.actors)

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.grain < 1:
            raise PassError("partition: grain must be >= 1")
        reports: dict[str, dict[str, list[str]]] = {}  # graph -> actor -> its parts
        requested = _requested(self.actors)
        for graph in csdf.csdf_graphs(op):
            done = reports.setdefault(graph.sym_name.data, {})
            layers = actor_layers(op, graph)
            plan = {}
            if requested:
                for name, n in requested.items():
                    if name not in layers:
                        raise PlacementError(f"partition: no actor @{name}",
                                        where=f"csdf.graph @{graph.sym_name.data}")
                    actor = graph.actor_map()[name]
                    if not splittable(actor, layers[name], resplit=True):
                        raise PlacementError(f"partition: @{name} is a {actor.kind.data} actor; only "
                                        f"{', '.join(SPLITTABLE)} actors (ungrouped) split along "
                                        "channels")
                    if n > layers[name].cout:
                        raise PlacementError(f"partition: @{name} has {layers[name].cout} output "
                                        f"channels; it cannot split into {n} parts",
                                        where=f"csdf.graph @{graph.sym_name.data}")
                    plan[name] = n
            elif self.auto:
                plan = auto_plan(graph, layers, platform_of(ctx, self.target, self.name),
                                 self.bits, self.opp, self.grain)
            for name, parts in plan.items():
                if parts > 1:
                    done[name] = split_actor(graph, name, layers[name].cout, parts)
        record_reports(ctx, self.name, reports)
