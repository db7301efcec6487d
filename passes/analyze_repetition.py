"""`analyze-repetition`: the repetition vector of every csdf.graph, with consistency and liveness.

Each actor gets `repetition` (cycles of its phases per graph iteration, r_i) and `firings`
(q_i = P_i * r_i) attributes; the graph gets `iteration_firings`. An inconsistent or deadlocking graph
is a PassError naming the channel and the actors. Results: one `RepetitionReport` per graph.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from aloha_ir import dataflow
from aloha_ir.context import record_reports
from aloha_ir.dialects import csdf
from aloha_ir.errors import PassError


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


def analyze(graph: csdf.GraphOp, annotate: bool = True) -> RepetitionReport:
    phases, edges = graph.dataflow_graph()
    name = graph.sym_name.data
    try:
        r = dataflow.repetition_vector(phases, edges)
        dataflow.check_live(phases, edges, r)
    except dataflow.DataflowError as e:
        raise PassError(str(e), where=f"csdf.graph @{name}" + (
            f", channel @{e.channel}" if e.channel else "")) from None
    report = RepetitionReport(name, r, dataflow.firings(phases, r))
    if annotate:
        for actor in graph.actors():
            a = actor.sym_name.data
            actor.repetition = r[a]
            actor.firings = report.firings[a]
        graph.iteration_firings = report.iteration_firings
    return report


@dataclass(frozen=True)
class AnalyzeRepetitionPass(ModulePass):
    """Repetition vector, consistency and liveness of each csdf.graph."""

    name = "analyze-repetition"

    annotate: bool = True

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        graphs = csdf.csdf_graphs(op)
        if not graphs:
            raise PassError("no csdf.graph to analyse", hint="run convert-nn-to-csdf first")
        reports = [analyze(g, self.annotate) for g in graphs]
        record_reports(ctx, self.name, reports)
