"""The xDSL context every ALOHA tool parses and runs passes in.

`AlohaContext` extends xDSL's Context with what a compilation scopes (TVM's PassContext idea): the
analysis results passes produce, and later the target platform. Passes receive it as `ctx`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xdsl.context import Context
from xdsl.dialects.builtin import Builtin


def _nn():
    from aloha_ir.dialects.nn import NN
    return NN


def _csdf():
    from aloha_ir.dialects.csdf import CSDF
    return CSDF


@dataclass
class AlohaContext(Context):
    analyses: dict[str, Any] = field(default_factory=dict)
    target: Any = None
    dataset: Any = None  # frontends.datasets.Splits from the driver's --data (passes that execute)


def make_context() -> AlohaContext:
    """A context that knows builtin and (lazily) the project's dialects."""
    ctx = AlohaContext()
    ctx.load_dialect(Builtin)
    ctx.register_dialect("nn", _nn)
    ctx.register_dialect("csdf", _csdf)
    return ctx


def record_analysis(ctx: Context, name: str, result: Any) -> None:
    """Store a pass's typed result where the PassManager returns it (ignored on a plain Context)."""
    if isinstance(ctx, AlohaContext):
        ctx.analyses[name] = result


def record_reports(ctx: Context, name: str, reports: list) -> None:
    """One report per graph: stored alone when the module has one graph (the usual case), else
    the list."""
    record_analysis(ctx, name, reports[0] if len(reports) == 1 else reports)
