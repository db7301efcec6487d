"""`analyze-energy`: joules per frame from the schedule and the platform's power figures.

energy per frame = static (board) power x period
                 + per processing unit: active power x busy time + idle power x (period - busy)
                 + bytes moved over links that give an energy per byte x that energy,
with powers at the operating point the graph was mapped at. `energy_j` is per frame of the stream
(the periodic regime, where GOps/s/W = 2 x MACs / energy_j / 1e9 is measured); `latency_energy_j`
is one frame on an empty pipeline (the same sum over the latency). Units that run nothing count as
idle. NEURAghe's measured efficiency implies its board power dominates (hardware.md): the model keeps
that explicit as `static_j` next to `dynamic_j`. The formula is `span_energy` and
`transfer_energy_j`, which the system-level estimate (explore/system/estimate.py) calls too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp

from aloha_ir import rle
from aloha_ir.analysis import CSDF_MAPPED, RepetitionAnalysis, Requires, analysis_of
from aloha_ir.context import record_reports
from aloha_ir.dialects import csdf
from aloha_ir.passmanager import AnalysisPass
from archdesc.model import DATATYPE_BITS, Link, Platform
from passes.analyze_schedule import schedule_of
from aloha_ir.errors import PassError
from passes.target import mapped_datatype, mapped_platform


@dataclass
class EnergyReport:
    graph: str
    platform: str
    operating_point: str | None
    energy_j: float  # per frame, periodic regime
    latency_energy_j: float  # one frame, empty pipeline
    static_j: float
    dynamic_j: float
    transfer_j: float
    average_power_w: float
    per_pe_j: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class SpanEnergy:
    """Joules over a span of the stream: the board's static power, the units' active and idle
    power, the link transfers."""

    static_j: float
    dynamic_j: float
    transfer_j: float
    per_pe_j: dict[str, float]  # unit -> joules (active x busy + idle x the rest of the span)

    @property
    def energy_j(self) -> float:
        return self.static_j + self.dynamic_j + self.transfer_j


def span_energy(platform: Platform, opp: str | None, span_s: float,
                busy_s: Mapping[str, float], transfer_j: float) -> SpanEnergy:
    """The energy formula (module docstring) over `span_s` seconds, each unit busy `busy_s[unit]`
    seconds of it (absent: idle), powers at operating point `opp`, plus `transfer_j`."""
    per_pe: dict[str, float] = {}
    dynamic = 0.0
    for unit, pe in platform.units():
        active, idle = platform.power(pe, opp)
        busy = busy_s.get(unit, 0.0)
        e = active * busy + idle * max(0.0, span_s - busy)
        per_pe[unit] = e
        dynamic += e
    return SpanEnergy(platform.static_w * span_s, dynamic, transfer_j, per_pe)


def transfer_energy_j(transfers: Iterable[tuple[Link | None, int]], datatype: str) -> float:
    """Joules to move each (link, tokens) of `transfers` (None: no link, nothing spent), tokens of
    `datatype`, at the link's energy per byte."""
    nbytes = DATATYPE_BITS[datatype] // 8
    out = 0.0
    for link, tokens in transfers:
        if link is not None and link.energy_per_byte_j:
            out += tokens * nbytes * link.energy_per_byte_j
    return out


def analyze(ctx, graph: csdf.GraphOp, target: str, name: str) -> EnergyReport:
    platform = mapped_platform(ctx, graph, target, name)
    opp = graph.operating_point or platform.default_operating_point
    sched = schedule_of(ctx, graph)
    if not sched.mapped:
        raise PassError(f"{name} needs a mapped graph (its times are work units, not seconds)",
                        where=f"csdf.graph @{graph.sym_name.data}", hint="run map first")
    period, latency = sched.period_s, sched.latency_s
    busy = {unit: usage.busy_s for unit, usage in sched.per_pe.items()}
    phases = {a.sym_name.data: a.phase_count for a in graph.actors()}
    q = analysis_of(ctx, RepetitionAnalysis, graph).firings
    transfer = transfer_energy_j(
        ((platform.link(c.link), rle.total(c.prod_runs) * q[c.src_name] // phases[c.src_name])
         for c in graph.channels() if c.link is not None and c.link != "local"),
        mapped_datatype(graph, platform))
    frame = span_energy(platform, opp, period, busy, transfer)
    energy = frame.energy_j
    latency_energy = span_energy(platform, opp, latency, busy, transfer).energy_j
    graph.energy_j = energy
    return EnergyReport(graph.sym_name.data, platform.name, opp, energy, latency_energy,
                        frame.static_j, frame.dynamic_j, transfer,
                        energy / period if period > 0 else 0.0, frame.per_pe_j)


@dataclass(frozen=True)
class AnalyzeEnergyPass(AnalysisPass):
    """Energy per frame: static power x period + per-PE active/idle power x time + transfers."""

    name = "analyze-energy"
    requires = Requires(level=CSDF_MAPPED)
    annotates = frozenset({"csdf.energy_j"})  # csdf annotations' keys

    target: str = ""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        reports = {g.sym_name.data: analyze(ctx, g, self.target, self.name)
                   for g in csdf.csdf_graphs(op)}
        record_reports(ctx, self.name, reports)
