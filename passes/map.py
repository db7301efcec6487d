"""`map`: assign every actor to a processing unit of the target, and every channel to a link.

Strategies (`map{strategy=...}`):
- `greedy` (default): list scheduling by earliest finish. Actors are visited in dependency order; an
  actor goes to the unit (of a PE that supports its operator) where it would finish first, given
  when that unit is free, when its producers finish, and the link transfer from their units;
- `fastest`: every actor on the first unit of the PE that runs it fastest, ignoring load.
A conv the engine runs by a kernel rule with a merge (NEURAghe's 7x7 as four 5x5 jobs) gets a
`<actor>_merge` actor after it, mapped to the merge PE. Results on the IR: actor attributes `pe`
(unit), `pe_kind`, `cost_s` and `exec_times` (nanoseconds per phase, the actor's per-iteration cost
shared out over its firings in proportion to their work; what the SDF3 export writes); channel
attribute `link`. An operator no PE runs is an error naming the actor and the platform.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xdsl.context import Context
from xdsl.dialects.builtin import FloatAttr, ModuleOp, StringAttr, f64
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from aloha_ir import rle
from aloha_ir.context import record_reports
from aloha_ir.dialects import csdf
from aloha_ir.dialects.nn import int_attr
from aloha_ir.errors import PassError, UnsupportedError
from archdesc import costmodel
from archdesc.costmodel import Layer, Unsupported
from archdesc.model import DATATYPE_BITS, Platform
from passes.target import (
    ZERO_COST_KINDS,
    actor_layers,
    datatype_of,
    mapped_graphs,
    opp_of,
    platform_of,
)

STRATEGIES = ("greedy", "fastest")


@dataclass
class MappingReport:
    graph: str
    platform: str
    datatype: str
    operating_point: str | None
    assignment: dict[str, str] = field(default_factory=dict)  # actor -> unit ("" = none)
    cost_s: dict[str, float] = field(default_factory=dict)  # actor -> seconds per iteration
    notes: dict[str, str] = field(default_factory=dict)


def share_out(total_ns: int, work: rle.Runs, phases: int) -> rle.Runs:
    """`total_ns` over the phases in proportion to their work (evenly if there is none); exact sum."""
    weights = rle.expand(work) if rle.total(work) else [1] * phases
    whole = sum(weights)
    out, acc, given = [], 0, 0
    for w in weights:
        acc += w
        upto = total_ns * acc // whole
        out.append(upto - given)
        given = upto
    return rle.encode(out)


def candidates(platform: Platform, layer: Layer, datatype: str, opp: str | None
               ) -> list[tuple[str, str, costmodel.Cost]]:
    """(unit, PE name, cost) for every unit able to run `layer`."""
    out = []
    for pe in platform.pes:
        try:
            c = costmodel.cost(platform, pe, layer, datatype, opp)
        except Unsupported:
            continue
        out.extend((u, pe.name, c) for u in pe.units())
    return out


def transfer_s(platform: Platform, pe_of: dict[str, str], a: str, b: str, nbytes: int) -> float:
    """Delay of `nbytes` from unit a to unit b (0 on one unit; a conv engine's DMA is in its cost)."""
    if not a or not b or a == b:
        return 0.0
    pa, pb = pe_of[a], pe_of[b]
    link = platform.link_between(pa, pb)
    if link is None:
        return 0.0
    engine = any(platform.pe(p).kind == "conv-engine" for p in (pa, pb))
    return link.latency_s + (0.0 if engine else nbytes / link.bandwidth_bps)


def _insert_merge(graph: csdf.GraphOp, actor: csdf.ActorOp, jobs: int) -> csdf.ActorOp:
    """Route `actor`'s outputs through a new merge actor (same phases, row-aligned)."""
    name = actor.sym_name.data
    taken = set(graph.actor_map()) | {c.sym_name.data for c in graph.channels()}
    merge_name = csdf.unique_name(f"{name}_merge", taken)
    outs = [c for c in graph.channels() if c.src_name == name and not c.is_self_loop]
    merge = csdf.ActorOp.build(merge_name, "merge", actor.block.data, actor.phase_count,
                               actor.times_runs, rle.normalize((c, v * jobs) for c, v in
                                                               actor.times_runs))
    merge.attributes["merges"] = int_attr(jobs)
    Rewriter.insert_op(merge, InsertPoint.after(actor))
    if outs:
        first = outs[0]
        for c in outs:
            c.properties["src"] = csdf.symref(merge_name)
        link = csdf.ChannelOp.build(csdf.unique_name(f"{name}_to_merge", taken), name,
                                    "out_merge", merge_name, "in0",
                                    first.prod_runs, first.prod_runs, first.token)
        Rewriter.insert_op(link, InsertPoint.after(outs[-1]))
    return merge


@dataclass(frozen=True)
class MapPass(ModulePass):
    """Map actors to processing units and channels to links (greedy earliest finish)."""

    name = "map"

    target: str = ""
    strategy: str = "greedy"
    bits: int = 0
    opp: str = ""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.strategy not in STRATEGIES:
            raise PassError(f"map: unknown strategy '{self.strategy}'",
                            hint="strategies: " + ", ".join(STRATEGIES))
        platform = platform_of(ctx, self.target, self.name)
        datatype = datatype_of(platform, self.bits)
        opp = opp_of(platform, self.opp)
        reports = [self._map(op, g, platform, datatype, opp)
                   for g in mapped_graphs(op, self.name)]
        record_reports(ctx, self.name, reports)

    def _map(self, module, graph: csdf.GraphOp, platform: Platform, datatype: str,
             opp: str | None) -> MappingReport:
        if any(a.kind.data == "merge" for a in graph.actors()):
            raise PassError("map: the graph is mapped already (it has merge actors)",
                            where=f"csdf.graph @{graph.sym_name.data}",
                            hint="run convert-nn-to-csdf again before mapping anew")
        report = MappingReport(graph.sym_name.data, platform.name, datatype, opp)
        layers = actor_layers(module, graph)
        pe_of = {u: p.name for u, p in platform.units()}
        pe_of[""] = ""
        ready = {u: 0.0 for u in pe_of}
        finish: dict[str, float] = {}
        load: dict[str, float] = {}  # seconds already assigned to each unit
        preds: dict[str, list[tuple[str, int]]] = {}
        for c in graph.channels():
            if not c.is_self_loop:
                preds.setdefault(c.dst_name, []).append(
                    (c.src_name, rle.total(c.prod_runs) * c.token_bytes))
        for actor in list(graph.actors()):
            name = actor.sym_name.data
            layer = layers.get(name)
            if actor.kind.data in ZERO_COST_KINDS or layer is None:
                report.assignment[name], report.cost_s[name] = "", 0.0
                finish[name] = max((finish.get(p, 0.0) for p, _ in preds.get(name, [])),
                                   default=0.0)
                self._annotate(actor, "", "", 0.0)
                continue
            options = candidates(platform, layer, datatype, opp)
            if not options:
                runs = [pe.name for pe in platform.pes if pe.supports(layer.op)]
                raise UnsupportedError(
                    f"actor @{name} ({actor.kind.data}, operator '{layer.op}') cannot run on "
                    f"{platform.name}: " + ("no PE lists the operator" if not runs else
                                            f"{', '.join(runs)} cannot run this instance"),
                    where=f"csdf.graph @{graph.sym_name.data}",
                    hint="pick another --target, or change the layer (kernel, groups)")
            unit, pe_name, c = self._choose(options, name, preds, finish, ready, load)
            start = max([ready[unit]] + [finish.get(p, 0.0) + transfer_s(
                platform, pe_of, report.assignment.get(p, ""), unit, nbytes)
                for p, nbytes in preds.get(name, [])])
            finish[name] = ready[unit] = start + c.seconds
            report.assignment[name], report.cost_s[name], report.notes[name] = unit, c.seconds, c.note
            self._annotate(actor, unit, platform.pe(pe_name).kind, c.seconds)
            load[unit] = load.get(unit, 0.0) + c.seconds
            rule = costmodel.native_kernel(platform.pe(pe_name), _kernel(layer)) \
                if platform.pe(pe_name).kind == "conv-engine" else None
            if rule is not None and rule.merge_on:
                merge = _insert_merge(graph, actor, rule.jobs)
                mlayer = costmodel.merge_layer(layer, rule.jobs)
                m_opts = [o for o in candidates(platform, mlayer, datatype, opp)
                          if o[1] == rule.merge_on]
                munit, _, mc = self._choose(m_opts, merge.sym_name.data, {merge.sym_name.data: [
                    (name, 0)]}, finish, ready, load)
                mname = merge.sym_name.data
                mstart = max(ready[munit], finish[name])
                finish[mname] = ready[munit] = mstart + mc.seconds
                report.assignment[mname], report.cost_s[mname] = munit, mc.seconds
                report.notes[mname] = f"merge of {rule.jobs} partial outputs"
                self._annotate(merge, munit, platform.pe(rule.merge_on).kind, mc.seconds)
                load[munit] = load.get(munit, 0.0) + mc.seconds
        for ch in graph.channels():
            a = report.assignment.get(ch.src_name, "")
            b = report.assignment.get(ch.dst_name, "")
            link = platform.link_between(pe_of[a], pe_of[b]) if a and b and a != b else None
            ch.attributes["link"] = StringAttr(link.name if link else "local")
            row_bytes = max((v for _, v in ch.prod_runs), default=0) * ch.token_bytes
            ch.attributes["delay_ns"] = int_attr(round(1e9 * transfer_s(
                platform, pe_of, a, b, row_bytes * DATATYPE_BITS[datatype] // 8 // max(
                    1, ch.token_bytes))))
        graph.attributes["datatype"] = StringAttr(datatype)
        graph.attributes["platform"] = StringAttr(platform.name)
        if opp:
            graph.attributes["operating_point"] = StringAttr(opp)
        return report

    def _choose(self, options, name, preds, finish, ready, load):
        """The (unit, PE, cost) option the strategy picks for actor `name`."""
        def finish_on(opt):
            unit, _, c = opt
            start = max([ready[unit]] + [finish.get(p, 0.0) for p, _ in preds.get(name, [])])
            return start + c.seconds
        if self.strategy == "fastest":
            return min(options, key=lambda o: o[2].seconds)
        # ties (a chain leaves several units equally early) go to the least loaded unit
        return min(options, key=lambda o: (round(finish_on(o), 12), load.get(o[0], 0.0),
                                           o[2].seconds))

    @staticmethod
    def _annotate(actor: csdf.ActorOp, unit: str, kind: str, seconds: float) -> None:
        actor.attributes["pe"] = StringAttr(unit)
        actor.attributes["pe_kind"] = StringAttr(kind)
        actor.attributes["cost_s"] = FloatAttr(seconds, f64)
        total = round(seconds * 1e9)
        actor.attributes["exec_times"] = csdf.runs_attr(
            share_out(total, actor.work_runs, actor.phase_count))


def _kernel(layer: Layer) -> tuple[int, int]:
    return ((layer.kernel[0] - 1) * layer.dilation[0] + 1,
            (layer.kernel[1] - 1) * layer.dilation[1] + 1)
