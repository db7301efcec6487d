"""`analyze-repetition`: the repetition vector of every csdf.graph, with consistency and liveness.

Each actor gets `repetition` (cycles of its phases per graph iteration, r_i) and `firings`
(q_i = P_i * r_i) attributes; the graph gets `iteration_firings`. An inconsistent or deadlocking graph
is a PassError naming the channel and the actors. Results: one `RepetitionReport` per graph.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp

from aloha_ir import dataflow
from aloha_ir.analysis import CSDF, AnalysisManager, RepetitionAnalysis, Requires, manager_of
from aloha_ir.context import record_reports
from aloha_ir.dialects import csdf
from aloha_ir.errors import PassError
from aloha_ir.passmanager import AnalysisPass


@dataclass
class RepetitionReport:
    graph: str
    repetition: dict[str, int] = field(default_factory=dict)  # r_i
    firings: dict[str, int] = field(default_factory=dict)  # q_i
    consistent: bool = True
    live: bool = True

    @property
    def iteration_firings(self) -> int:
        return sum(self.firings.values())

    def to_json(self) -> dict:
        return {**asdict(self), "iteration_firings": self.iteration_firings}


def analyze(graph: csdf.GraphOp, annotate: bool = True, am: AnalysisManager | None = None
            ) -> RepetitionReport:
    """The repetition vector of `graph` (from `am`'s cache, if given) as a report."""
    name = graph.sym_name.data
    try:
        rep = (am or AnalysisManager()).get(RepetitionAnalysis, graph)
    except dataflow.DataflowError as e:
        raise PassError(str(e), where=f"csdf.graph @{name}" + (
            f", channel @{e.channel}" if e.channel else "")) from None
    r = rep.repetition
    report = RepetitionReport(name, dict(r), dict(rep.firings))
    if annotate:
        for actor in graph.actors():
            a = actor.sym_name.data
            actor.repetition = r[a]
            actor.firings = report.firings[a]
        graph.iteration_firings = report.iteration_firings
    return report


@dataclass(frozen=True)
class AnalyzeRepetitionPass(AnalysisPass):
    """Repetition vector, consistency and liveness of each csdf.graph."""

    name = "analyze-repetition"
    requires = Requires(level=CSDF)
    annotates = frozenset({"csdf.repetition", "csdf.firings",  # csdf annotations' keys
                           "csdf.iteration_firings"})

    annotate: bool = True

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        am = manager_of(ctx)
        reports = {g.sym_name.data: analyze(g, self.annotate, am) for g in csdf.csdf_graphs(op)}
        record_reports(ctx, self.name, reports)
