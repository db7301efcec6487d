"""`analyze-memory`: FIFO buffers, parameters, peak activation memory, and whether it all fits.

Buffers are each channel's maximum occupancy in the stream schedule (analyze-schedule), in the
deployment data type. `memory_bytes` = buffers + parameters (the seeds' Table 6 "Memory"); the
peak activation memory with buffer reuse is the largest total occupancy at one instant of that
schedule. Each platform memory that `holds` weights and/or activations must fit what it holds; if
not, the pass fails naming the memory and the shortfall, or with `allow_overflow` records
`fits = false` and warns.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from aloha_ir.context import record_reports
from aloha_ir.dialects import csdf
from aloha_ir.dialects.nn import int_attr
from aloha_ir.errors import PassError
from archdesc.model import DATATYPE_BITS
from passes.analyze_schedule import schedule_of
from passes.target import mapped_datatype, mapped_graphs, mapped_platform


@dataclass
class MemoryReport:
    graph: str
    platform: str
    buffer_bytes: int
    parameter_bytes: int
    memory_bytes: int
    peak_activation_bytes: int
    fits: bool
    per_memory: dict[str, dict] = field(default_factory=dict)  # name -> need, size, holds
    buffers: dict[str, int] = field(default_factory=dict)  # channel -> bytes


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def analyze(ctx, graph: csdf.GraphOp, target: str, allow_overflow: bool, name: str
            ) -> MemoryReport:
    platform = mapped_platform(ctx, graph, target, name)
    nbytes = DATATYPE_BITS[mapped_datatype(graph, platform)] // 8
    sched = schedule_of(ctx, graph)
    buffers = {c: t * nbytes for c, t in sched.buffers.items()}
    params = sum(math.prod(t.get_shape()) for a in graph.actors()
                 for t in a.memory_units().values()) * nbytes
    buffer_bytes = sum(buffers.values())
    token_bytes = max((c.token_bytes for c in graph.channels()), default=nbytes) or nbytes
    peak = sched.peak_tokens_bytes * nbytes // token_bytes
    report = MemoryReport(graph.sym_name.data, platform.name, buffer_bytes, params,
                          buffer_bytes + params, peak, True, buffers=buffers)
    for mem in platform.memories:
        need = (params if "weights" in mem.holds else 0) + \
            (buffer_bytes if "activations" in mem.holds else 0)
        if not mem.holds:
            continue
        report.per_memory[mem.name] = {"need_bytes": need, "size_bytes": int(mem.size_bytes),
                                       "holds": list(mem.holds)}
        if need > mem.size_bytes:
            report.fits = False
            message = (f"{graph.sym_name.data} needs {human(need)} of "
                       f"{' and '.join(mem.holds)} in {mem.name}, which has {human(mem.size_bytes)}"
                       f" on {platform.name}")
            if not allow_overflow:
                raise PassError(message, hint="prune or quantize the model, pick a bigger "
                                "platform, or pass --allow-overflow to report it anyway")
            print(f"warning: {message}", file=sys.stderr)
    graph.attributes["memory_bytes"] = int_attr(report.memory_bytes)
    return report


@dataclass(frozen=True)
class AnalyzeMemoryPass(ModulePass):
    """Buffer sizes, parameter memory, peak activations; checks the platform's memories."""

    name = "analyze-memory"

    target: str = ""
    allow_overflow: bool = False

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        reports = [analyze(ctx, g, self.target, self.allow_overflow, self.name)
                   for g in mapped_graphs(op, self.name)]
        record_reports(ctx, self.name, reports)
