"""The xDSL context every ALOHA tool parses and runs passes in.

`AlohaContext` extends xDSL's Context with what a compilation scopes (TVM's PassContext idea): the
analysis manager and the reports passes produce, the target platform, the data, where the passes'
warnings go (`diagnostics`: stderr, or collected quietly). Passes receive it as `ctx`. Reports are keyed by graph, always: `ctx.analyses[pass name][graph symbol]`; `ctx.report(name)`
is the one of a single-graph module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xdsl.context import Context
from xdsl.dialects.builtin import Builtin

from aloha_ir.analysis import AnalysisManager, report_of
from aloha_ir.diagnostics import Diagnostics


def _nn():
    from aloha_ir.dialects.nn import NN
    return NN


def _csdf():
    from aloha_ir.dialects.csdf import CSDF
    return CSDF


@dataclass
class AlohaContext(Context):
    analyses: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> graph -> report
    target: Any = None
    dataset: Any = None  # frontends.datasets.Splits from the driver's --data (passes that execute)
    am: AnalysisManager = field(default_factory=AnalysisManager)
    diagnostics: Diagnostics = field(default_factory=Diagnostics)

    def report(self, name: str, graph: str | None = None) -> Any:
        """The report `name` of `graph`, or of the only graph it describes."""
        return report_of(self.analyses, name, graph)


def make_context() -> AlohaContext:
    """A context that knows builtin and (lazily) the project's dialects."""
    ctx = AlohaContext()
    ctx.load_dialect(Builtin)
    ctx.register_dialect("nn", _nn)
    ctx.register_dialect("csdf", _csdf)
    return ctx


def record_reports(ctx: Context, name: str, reports: dict[str, Any]) -> None:
    """Store a pass's typed results, one per graph symbol, where the PassManager returns them
    (ignored on a plain Context). A pass run again replaces its reports."""
    if isinstance(ctx, AlohaContext):
        ctx.analyses[name] = dict(reports)
