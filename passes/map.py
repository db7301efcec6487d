"""`map`: assign every actor to a processing unit of the target, and every channel to a link.

Strategies (`map{strategy=...}`):
- `greedy` (default): list scheduling by earliest finish. Actors are visited in dependency order; an
  actor goes to the unit (of a PE that supports its operator) where it would finish first, given
  when that unit is free, when its producers finish, and the link transfer from their units;
- `fastest`: every actor on the first unit of the PE that runs it fastest, ignoring load.
An explicit mapping (what explore/system's search decides, and what `--mapping FILE` replays):
`assign="actor:unit;actor:pe"` pins the named actors (a merge actor by its `<actor>_merge` name)
to a unit, or to a PE whose units the strategy chooses among; `units="ce0,arm0"` limits the units
the strategy may choose (an allocation: fewer processors; a pin to a unit wins). Unknown actors,
units or PEs, and a unit whose PE cannot run the actor, are errors; with both options empty
nothing changes.
A conv the engine runs by a kernel rule with a merge (NEURAghe's 7x7 as four 5x5 jobs) gets a
`<actor>_merge` actor after it, mapped to the merge PE (a boundary actor: one row per firing, no
row plan; the channels it takes over from its actor keep the consumers' row plans). Results on
the IR: actor attributes `pe` (unit), `pe_kind`, `cost_s` and `exec_times` (nanoseconds per
phase, the actor's per-iteration cost shared out over its firings in proportion to their work;
what the SDF3 export writes); channel attribute `link`. An operator no PE runs is an error naming
the actor and the platform.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.rewriter import InsertPoint, Rewriter

from aloha_ir import rle
from aloha_ir.analysis import CSDF, CSDF_MAPPED, NN, Requires, preserves_level
from aloha_ir.context import record_reports
from aloha_ir.dialects import csdf
from aloha_ir.errors import PassError, PlacementError, UnsupportedError
from aloha_ir.passmanager import TransformPass
from archdesc import costmodel
from archdesc.costmodel import Layer, Unsupported
from archdesc.model import DATATYPE_BITS, Link, Platform
from passes.target import (
    ZERO_COST_KINDS,
    actor_layers,
    csdf_precision,
    datatype_of,
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
    makespan_s: float = 0.0  # the list schedule's end of one frame (an estimate, not the latency)


# the schedule's clock is an i64 count of nanoseconds: 2**63 ns is 292 years
MAX_NS = 2 ** 63 - 1


def nanoseconds(seconds: float, what: str, platform: Platform) -> int:
    """`seconds` as the IR's integer nanoseconds; a time no i64 holds is the platform's numbers'
    fault (a clock of 1e-30 MHz, say), said as such rather than an overflow inside the IR."""
    ns = seconds * 1e9
    if not ns < MAX_NS:  # NaN too
        raise PassError(f"{what} would take {seconds:.3g} s, more than the schedule can count "
                        f"(2^63 ns, 292 years)", where=f"platform {platform.name}",
                        hint="check the platform's clocks, rates and bandwidths")
    return round(ns)


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


def link_of(platform: Platform, pe_of: dict[str, str], a: str, b: str) -> Link | None:
    """The link data takes from unit a to unit b (None: one unit, an actor on no unit, or no
    link between their PEs)."""
    if not a or not b or a == b:
        return None
    return platform.link_between(pe_of[a], pe_of[b])


def transfer_s(platform: Platform, pe_of: dict[str, str], a: str, b: str, nbytes: int) -> float:
    """Delay of `nbytes` from unit a to unit b (0 on one unit; a conv engine's DMA is in its cost)."""
    link = link_of(platform, pe_of, a, b)
    if link is None:
        return 0.0
    engine = any(platform.pe(pe_of[u]).kind == "conv-engine" for u in (a, b))
    return link.latency_s + (0.0 if engine else nbytes / link.bandwidth_bps)


def predecessors(graph: csdf.GraphOp) -> dict[str, list[tuple[str, int]]]:
    """Each actor's producers and the bytes each sends it per iteration (self-loops left out):
    what the list schedule waits for."""
    preds: dict[str, list[tuple[str, int]]] = {}
    for c in graph.channels():
        if not c.is_self_loop:
            preds.setdefault(c.dst_name, []).append(
                (c.src_name, rle.total(c.prod_runs) * c.token_bytes))
    return preds


def _insert_merge(graph: csdf.GraphOp, actor: csdf.ActorOp, jobs: int, merge_name: str,
                  taken: set[str]) -> csdf.ActorOp:
    """Route `actor`'s outputs through a new merge actor `merge_name` (same phases, row-aligned);
    `taken` holds the graph's symbol names."""
    name = actor.sym_name.data
    outs = [c for c in graph.channels() if c.src_name == name and not c.is_self_loop]
    merge = csdf.ActorOp.build(merge_name, "merge", actor.block, actor.phase_count,
                               actor.times_runs, rle.normalize((c, v * jobs) for c, v in
                                                               actor.times_runs))
    merge.merges = jobs
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


class ListSchedule:
    """Greedy list scheduling's state: when each unit is free, when each placed actor finishes and
    on which unit, the seconds already on each unit. `map` decides with it on the IR; the
    system-level search (explore/system/estimate.py) replays it on a plain task list as its
    closed-form estimate; both place every actor with `place_actor`."""

    def __init__(self, platform: Platform, strategy: str = "greedy"):
        self.platform = platform
        self.strategy = strategy
        self.pe_of = {u: p.name for u, p in platform.units()}
        self.pe_of[""] = ""
        self.ready = {u: 0.0 for u in self.pe_of}
        self.finish: dict[str, float] = {}
        self.unit: dict[str, str] = {}  # actor -> unit ("" = none)
        self.load: dict[str, float] = {}  # seconds already assigned to each unit

    def skip(self, name: str, preds: list[tuple[str, int]]) -> None:
        """A zero-cost actor: on no unit, done when its producers are."""
        self.unit[name] = ""
        self.finish[name] = max((self.finish.get(p, 0.0) for p, _ in preds), default=0.0)

    def place(self, name: str, options, preds: list[tuple[str, int]], transfers: bool = True):
        """Put `name` on the option the strategy picks; returns that (unit, PE name, cost)."""
        unit, pe_name, c = self.choose(options, preds)
        start = max([self.ready[unit]] + [self.finish.get(p, 0.0) + (transfer_s(
            self.platform, self.pe_of, self.unit.get(p, ""), unit, nbytes) if transfers else 0.0)
            for p, nbytes in preds])
        self.finish[name] = self.ready[unit] = start + c.seconds
        self.unit[name] = unit
        self.load[unit] = self.load.get(unit, 0.0) + c.seconds
        return unit, pe_name, c

    def choose(self, options, preds: list[tuple[str, int]]):
        """The (unit, PE, cost) option the strategy picks for an actor with producers `preds`."""
        def finish_on(opt):
            unit, _, c = opt
            start = max([self.ready[unit]] + [self.finish.get(p, 0.0) for p, _ in preds])
            return start + c.seconds
        if self.strategy == "fastest":
            return min(options, key=lambda o: o[2].seconds)
        # ties (a chain leaves several units equally early) go to the least loaded unit
        return min(options, key=lambda o: (round(finish_on(o), 12), self.load.get(o[0], 0.0),
                                           o[2].seconds))

    @property
    def makespan_s(self) -> float:
        return max(self.finish.values(), default=0.0)


def parse_assign(text: str, platform: Platform) -> dict[str, str]:
    """`actor:unit;actor:pe` (or comma-separated) -> {actor: unit or PE name}, names checked."""
    out: dict[str, str] = {}
    known = [u for u, _ in platform.units()] + [p.name for p in platform.pes]
    for item in filter(None, (s.strip() for s in text.split(";" if ";" in text else ","))):
        name, _, where = item.rpartition(":")
        name, where = name.strip(), where.strip()
        if not name or not where:
            raise PlacementError(f"map: '{item}' must be ACTOR:UNIT or ACTOR:PE",
                            hint="e.g. assign=\"conv1:ce0;fc6:arm\"")
        if where not in known:
            raise PlacementError(f"map: {platform.name} has no unit or PE '{where}' (for @{name})",
                            hint="units and PEs: " + ", ".join(dict.fromkeys(known)))
        if out.get(name, where) != where:
            raise PlacementError(f"map: @{name} is assigned twice ({out[name]}, {where})")
        out[name] = where
    return out


def parse_units(text: str, platform: Platform) -> set[str] | None:
    """`ce0,arm0` -> the units the strategy may use (None: all)."""
    names = [u.strip() for u in text.replace(";", ",").split(",") if u.strip()]
    if not names:
        return None
    known = [u for u, _ in platform.units()]
    bad = [u for u in names if u not in known]
    if bad:
        raise PlacementError(f"map: {platform.name} has no unit {', '.join(bad)}",
                        hint="units: " + ", ".join(known))
    return set(names)


def restrict(options, name: str, pinned: str | None, allowed: set[str] | None, platform: Platform,
             where: str):
    """The options left for actor `name`: its unit if pinned to one; else the allowed units (of
    its PE if pinned to a PE)."""
    if pinned is not None:
        kept = [o for o in options if pinned in (o[0], o[1])]
        is_unit = pinned in {u for u, _ in platform.units()}
        if not kept:
            able = ", ".join(dict.fromkeys(o[0] for o in options)) or "none"
            raise PlacementError(f"map: @{name} cannot run on {'unit' if is_unit else 'PE'} {pinned}",
                            where=where, hint=f"units that run it: {able}")
        if is_unit:
            return kept  # what the assignment says, allowed or not
        options = kept
    if allowed is None:
        return options
    kept = [o for o in options if o[0] in allowed]
    if not kept:
        able = ", ".join(dict.fromkeys(o[0] for o in options))
        raise PlacementError(f"map: no allowed unit runs @{name}" + (f" on {pinned}" if pinned else ""),
                        where=where, hint=f"units that run it: {able}; add one to units=")
    return kept


@dataclass(frozen=True)
class Placed:
    """Where `place_actor` put an actor: its unit, PE and cost; `merges` > 0 for the merge actor
    a conv engine's kernel rule adds after the actor (it sums that many partial outputs)."""

    actor: str
    unit: str
    pe: str
    cost: costmodel.Cost
    merges: int = 0


def place_actor(sched: ListSchedule, name: str, layer: Layer, preds: list[tuple[str, int]],
                options: Callable[[Layer], list], pins: Mapping[str, str],
                allowed: set[str] | None, *, where: str = "", kind: str = "",
                merge_name: Callable[[str], str] = lambda name: f"{name}_merge") -> list[Placed]:
    """Place actor `name` (running `layer`, after its producers `preds`) on the unit the schedule's
    strategy picks among `options(layer)` (unit, PE, cost) as its pin in `pins` and the `allowed`
    units restrict them; then, when the unit is a conv engine whose kernel rule needs a merge, the
    merge actor `merge_name(name)` on the rule's merge PE. Returns the actor's placement, then the
    merge's. An actor no unit runs is an UnsupportedError (naming the actor's `kind` when given);
    a pin or allocation that leaves no unit is a PlacementError."""
    platform = sched.platform
    found = options(layer)
    if not found:
        runs = [pe.name for pe in platform.pes if pe.supports(layer.op)]
        raise UnsupportedError(
            f"actor @{name} ({kind + ', ' if kind else ''}operator '{layer.op}') cannot run on "
            f"{platform.name}: " +
            ("no PE lists the operator" if not runs else
             f"{', '.join(runs)} cannot run this instance"),
            where=where, hint="pick another platform, or change the layer (kernel, groups)")
    found = restrict(found, name, pins.get(name), allowed, platform, where)
    unit, pe_name, c = sched.place(name, found, preds)
    out = [Placed(name, unit, pe_name, c)]
    pe = platform.pe(pe_name)
    rule = costmodel.native_kernel(pe, kernel_extent(layer)) if pe.kind == "conv-engine" else None
    if rule is not None and rule.merge_on:
        mname = merge_name(name)
        m_opts = [o for o in options(costmodel.merge_layer(layer, rule.jobs))
                  if o[1] == rule.merge_on]
        m_opts = restrict(m_opts, mname, pins.get(mname), allowed, platform, where)
        munit, mpe, mc = sched.place(mname, m_opts, [(name, 0)], transfers=False)
        out.append(Placed(mname, munit, mpe, mc, rule.jobs))
    return out


@dataclass(frozen=True)
class MapPass(TransformPass):
    """Map actors to processing units and channels to links (greedy earliest finish)."""

    name = "map"
    requires = Requires(level=CSDF, target=True)
    preserves = preserves_level(NN)
    provides = CSDF_MAPPED

    target: str = ""
    strategy: str = "greedy"
    bits: int = 0
    opp: str = ""
    assign: str = ""
    units: str = ""

    @classmethod
    def pinned(cls, assign: Mapping[str, str], units: Sequence[str] = (), *, bits: int = 0,
               opp: str = "", strategy: str = "greedy") -> "MapPass":
        """The pass pinning each actor of `assign` to a unit or PE name, the strategy choosing
        among `units` (empty: all) for the others: the typed form of `assign=`/`units=`."""
        bad = [n for n in [*assign, *assign.values(), *units] if not n or any(c in n for c in ";:,")]
        if bad:
            raise PlacementError(f"map: name {bad[0]!r} cannot be pinned",
                                 hint="actor, unit and PE names hold no ';', ':' or ','")
        return cls(strategy=strategy, bits=bits, opp=opp,
                   assign=";".join(f"{a}:{u}" for a, u in assign.items()), units=",".join(units))

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.strategy not in STRATEGIES:
            raise PassError(f"map: unknown strategy '{self.strategy}'",
                            hint="strategies: " + ", ".join(STRATEGIES))
        platform = platform_of(ctx, self.target, self.name)
        opp = opp_of(platform, self.opp)
        pins = parse_assign(self.assign, platform)
        allowed = parse_units(self.units, platform)
        used: set[str] = set()
        reports = {g.sym_name.data: self._map(op, g, platform, datatype_of(
                       platform, self.bits, csdf_precision(g)), opp, pins, allowed, used)
                   for g in csdf.csdf_graphs(op)}
        unknown = [n for n in pins if n not in used]
        if unknown:
            raise PlacementError(f"map: assign names no actor {', '.join('@' + n for n in unknown)}",
                            hint="actor names are the csdf graph's after partition (alohac "
                                 "compile --emit csdf shows them)")
        record_reports(ctx, self.name, reports)

    def _map(self, module, graph: csdf.GraphOp, platform: Platform, datatype: str,
             opp: str | None, pins: dict[str, str] | None = None, allowed: set[str] | None = None,
             used: set[str] | None = None) -> MappingReport:
        if any(a.kind.data == "merge" for a in graph.actors()):
            raise PassError("map: the graph is mapped already (it has merge actors)",
                            where=f"csdf.graph @{graph.sym_name.data}",
                            hint="run convert-nn-to-csdf again before mapping anew")
        pins = pins or {}
        used = used if used is not None else set()
        where = f"csdf.graph @{graph.sym_name.data}"
        report = MappingReport(graph.sym_name.data, platform.name, datatype, opp)
        layers = actor_layers(module, graph)
        sched = ListSchedule(platform, self.strategy)
        pe_of = sched.pe_of
        preds = predecessors(graph)
        taken = set(graph.actor_map()) | {c.sym_name.data for c in graph.channels()}

        def options(layer: Layer) -> list:
            return candidates(platform, layer, datatype, opp)
        for actor in list(graph.actors()):
            name = actor.sym_name.data
            layer = layers.get(name)
            if actor.kind.data in ZERO_COST_KINDS or layer is None:
                if name in pins:
                    raise PlacementError(f"map: @{name} is a {actor.kind.data}: no unit runs it",
                                    where=where, hint="drop it from assign")
                sched.skip(name, preds.get(name, []))
                report.assignment[name], report.cost_s[name] = "", 0.0
                self._annotate(actor, "", "", 0.0, platform)
                continue
            placed = place_actor(sched, name, layer, preds.get(name, []), options, pins, allowed,
                                 where=where, kind=actor.kind.data,
                                 merge_name=lambda n: csdf.unique_name(f"{n}_merge", taken))
            used.update(p.actor for p in placed if p.actor in pins)
            for p in placed:
                report.assignment[p.actor], report.cost_s[p.actor] = p.unit, p.cost.seconds
                report.notes[p.actor] = (f"merge of {p.merges} partial outputs" if p.merges
                                         else p.cost.note)
                node = _insert_merge(graph, actor, p.merges, p.actor, taken) if p.merges else actor
                self._annotate(node, p.unit, platform.pe(p.pe).kind, p.cost.seconds, platform)
        report.makespan_s = sched.makespan_s
        for ch in graph.channels():
            a = report.assignment.get(ch.src_name, "")
            b = report.assignment.get(ch.dst_name, "")
            link = link_of(platform, pe_of, a, b)
            ch.link = link.name if link else "local"
            row_bytes = max((v for _, v in ch.prod_runs), default=0) * ch.token_bytes
            ch.delay_ns = nanoseconds(transfer_s(
                platform, pe_of, a, b, row_bytes * DATATYPE_BITS[datatype] // 8 // max(
                    1, ch.token_bytes)), f"a row over link {ch.link} (channel @{ch.sym_name.data})",
                platform)
        graph.datatype = datatype
        graph.platform = platform.name
        if opp:
            graph.operating_point = opp
        return report

    def _annotate(self, actor: csdf.ActorOp, unit: str, kind: str, seconds: float,
                  platform: Platform) -> None:
        actor.pe = unit
        actor.pe_kind = kind
        actor.cost_s = seconds
        ns = nanoseconds(seconds, f"actor @{actor.sym_name.data} on {unit}", platform)
        actor.exec_times = share_out(ns, actor.work_runs, actor.phase_count)


def kernel_extent(layer: Layer) -> tuple[int, int]:
    return ((layer.kernel[0] - 1) * layer.dilation[0] + 1,
            (layer.kernel[1] - 1) * layer.dilation[1] + 1)
