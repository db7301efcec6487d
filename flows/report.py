"""The target report: the seeds' Table 6 columns and DESIGN.md's JSON keys, as JSON, Markdown, a Gantt.

Keys (DESIGN.md "JSON outputs"): `latency_s` (one frame, empty pipeline), `throughput_fps` (periodic
regime), `gops_per_s` = 2 x MACs x throughput / 1e9, `energy_j` (per frame of the stream),
`processors`, `memory_bytes`, `per_pe`, `per_actor`; plus the figures behind them (period, GOps/s/W,
DARTS processors, peak activations, whether the model fits, the periodic regime's
`transient_frames` and `cycle_frames`: null with no bound on frames in flight), the pruned weights
and sparse MACs (`params_pruned`, `macs_sparse`) and, for a pruned model, `sparsity`: what the
platform makes of them.

Memory (passes/analyze_memory.py): `memory_bytes` = `parameter_bytes` + `buffer_bytes` +
`scratch_bytes`, exactly what the generated program allocates statically (its `ALOHA_MEMORY=1`
line prints the same parts); `memory` breaks it down (FIFO buffers by kind, windows, output
buffers, staging, input/output frames) and `memory_notes` says where it goes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TargetReport:
    """What a TargetFlow run found: the typed results of its analyses (`analyses` holds every
    pass's, the user's included), as the JSON contract (`to_json`), today's report.md target
    section (`markdown`) and a Gantt chart of the schedule (`gantt`, when the flow kept a
    timeline)."""

    cost: Any  # passes.analyze_cost's report
    schedule: Any  # passes.analyze_schedule's
    memory: Any  # passes.analyze_memory's
    energy: Any  # passes.analyze_energy's
    processors: Any  # passes.analyze_processors'
    mapping: Any  # passes.map.MappingReport
    analyses: dict

    @classmethod
    def from_analyses(cls, analyses: dict) -> "TargetReport":
        """The one place the report reads the analyses (name -> graph -> report; the module's
        one graph)."""
        from aloha_ir.analysis import report_of
        return cls(*(report_of(analyses, name) for name in (
            "analyze-cost", "analyze-schedule", "analyze-memory", "analyze-energy",
            "analyze-processors", "map")), dict(analyses))

    def report(self, name: str) -> Any:
        """Another pass's report of the graph (the user's passes included), None if none ran."""
        from aloha_ir.analysis import report_of
        return report_of(self.analyses, name) if self.analyses.get(name) else None

    def to_json(self) -> dict:
        """The JSON object of `alohac analyze --target --json` (DESIGN.md "Contracts"), with
        `buffers` when the pipeline ran analyze-buffers."""
        fig = target_figures(self.cost, self.schedule, self.memory, self.energy,
                             self.processors, self.mapping)
        buffers = self.report("analyze-buffers")
        if buffers is not None:
            fig["buffers"] = buffers.to_json()
        quantized = self.report("quantize-for-target")
        if quantized is not None and quantized.scale_mapping:
            fig["scale_mapping"] = quantized.scale_mapping  # a model imported from QDQ
        return fig

    def markdown(self, title: str) -> str:
        """The target section of report.md."""
        return markdown(self.to_json(), title)

    def gantt(self, path: str, title: str) -> str:
        """The schedule's timeline as a PNG at `path` (the flow needs `timeline=True`)."""
        return gantt(self.schedule, path, title)


def target_figures(cost, sched, mem, energy, procs, mapping) -> dict:
    """The JSON contract from the analyses' typed results."""
    fps = sched.throughput_fps if sched.period_s > 0 else None  # JSON has no Infinity
    gops = 2 * cost.macs * fps / 1e9 if fps else None
    return {
        "platform": mapping.platform, "datatype": mapping.datatype,
        "operating_point": mapping.operating_point,
        "macs": cost.macs, "params": cost.params, "params_deployed": cost.params_deployed,
        "params_pruned": cost.params_pruned, "macs_sparse": cost.macs_sparse,
        "sparsity": sparsity(cost, sched, mapping.platform),
        "activation_bytes": cost.activation_bytes,
        "latency_s": sched.latency_s, "period_s": sched.period_s, "throughput_fps": fps,
        "transient_frames": sched.transient_frames, "cycle_frames": sched.cycle_frames,
        "gops_per_s": gops, "energy_j": energy.energy_j,
        "latency_energy_j": energy.latency_energy_j, "static_j": energy.static_j,
        "average_power_w": energy.average_power_w,
        "gops_per_w": 2 * cost.macs / energy.energy_j / 1e9 if energy.energy_j else None,
        "processors": procs.processors, "darts_processors": procs.darts_processors,
        "memory_bytes": mem.memory_bytes, "buffer_bytes": mem.buffer_bytes,
        "parameter_bytes": mem.parameter_bytes, "scratch_bytes": mem.scratch_bytes,
        "peak_activation_bytes": mem.peak_activation_bytes, "fits": mem.fits,
        "per_memory": mem.per_memory, "memory": mem.breakdown, "memory_notes": mem.notes,
        "per_pe": {u.unit: {"kind": u.kind, "busy_s": u.busy_s, "utilisation": u.utilisation,
                            "actors": len(u.actors), "energy_j": energy.per_pe_j.get(u.unit, 0.0)}
                   for u in sched.per_pe.values()},
        "per_actor": [{"actor": a.actor, "operator": a.operator, "pe": a.pe, "cost_s": a.cost_s,
                       "start_s": a.start_s, "end_s": a.end_s,
                       "note": mapping.notes.get(a.actor, "")}
                      for a in sched.per_actor.values()],
        "blocks": cost.to_json()["blocks"],
    }


def sparsity(cost, schedule, platform: str) -> dict | None:
    """What the pruned weights change on the target, None for an unpruned model.

    Nothing, on every platform here: no processing-element kind skips zero weights (archdesc's
    cost model charges every MAC: NEURAghe's and Orlando's engines multiply every weight of a
    kernel in their SoP grid, and the generated cpu kernels loop over all weights), and the
    generated code stores weights dense (backends/codegen/). So latency, energy and memory stay
    the dense model's, and the report says so. Kernels removed by activity pruning are not
    weights "pruned" here: they are gone from the shapes, which every figure follows."""
    if not cost.params_pruned:
        return None
    units: dict[str, list[str]] = {}
    for u in schedule.per_pe.values():
        units.setdefault(u.kind or "unknown", []).append(u.unit)
    where = "; ".join(f"{kind}: {', '.join(sorted(names))}"
                      for kind, names in sorted(units.items()))
    return {"params_pruned": cost.params_pruned, "macs_sparse": cost.macs_sparse,
            "exploited": False,
            "note": f"pruned weights are not exploited on {platform}: its units ({where}) "
                    f"multiply every weight, pruned or not, and the generated code stores them "
                    f"all, so latency, energy and memory are the dense model's ({cost.macs:,} "
                    f"MACs, not the {cost.macs_sparse:,} sparse ones)"}


def regime_markdown(fig: dict) -> list[str]:
    """Where the period comes from: the periodic regime the schedule reached."""
    if fig.get("cycle_frames") is None:
        return []
    cycle = fig["cycle_frames"]
    return [f"Steady state after {fig['transient_frames']} frame(s): the schedule repeats every "
            f"{cycle} frame{'s' if cycle > 1 else ''}, so the period is exact"
            + (" (the mean over the cycle: frames do not leave evenly)." if cycle > 1 else "."),
            ""]


def markdown(fig: dict, title: str) -> str:
    from aloha_ir.figures import quantity, show
    lines = [f"# {title}", "",
             f"Platform {fig['platform']}, {fig['datatype']}" +
             (f", operating point {fig['operating_point']}" if fig["operating_point"] else "") + ".",
             "", "| Latency | Period | Throughput (frames/s) | GOps/s | Energy per frame | "
             "GOps/s/W | Processors | Memory |", "|---:|---:|---:|---:|---:|---:|---:|---:|",
             f"| {show('latency_s', fig['latency_s'])} | {show('period_s', fig['period_s'])} | "
             f"{show('throughput_fps', fig['throughput_fps'])} | "
             f"{show('gops_per_s', fig['gops_per_s'])} | {show('energy_j', fig['energy_j'])} | "
             f"{show('gops_per_w', fig['gops_per_w'])} | {fig['processors']} "
             f"(DARTS {fig['darts_processors']}) | {show('memory_bytes', fig['memory_bytes'])} |",
             "", *regime_markdown(fig), *memory_markdown(fig), "", *buffers_markdown(fig),
             *([f"Pruned: {fig['params_pruned']:,} weights (params deployed "
                f"{fig['params_deployed']:,}), sparse MACs {fig['macs_sparse']:,} of "
                f"{fig['macs']:,}; {fig['sparsity']['note']}.", ""] if fig["sparsity"] else []),
             *scale_mapping_markdown(fig),
             "| unit | kind | busy per frame | utilisation | actors |", "|---|---|---:|---:|---:|"]
    for unit, u in fig["per_pe"].items():
        lines.append(f"| {unit} | {u['kind']} | {quantity(u['busy_s'], 's')} | "
                     f"{100 * u['utilisation']:.1f}% | {u['actors']} |")
    lines += ["", "| actor | operator | unit | cost per frame | start | end | how |",
              "|---|---|---|---:|---:|---:|---|"]
    for a in fig["per_actor"]:
        lines.append(f"| {a['actor']} | {a['operator']} | {a['pe'] or '-'} | "
                     f"{quantity(a['cost_s'], 's')} | {quantity(a['start_s'], 's')} | "
                     f"{quantity(a['end_s'], 's')} | {a['note']} |")
    return "\n".join(lines) + "\n"


def scale_mapping_markdown(fig: dict) -> list[str]:
    """A QDQ model's scales and the power-of-two steps its formats use, per block."""
    rows = fig.get("scale_mapping")
    if not rows:
        return []
    lines = ["QDQ scales mapped to power-of-two fixed-point steps (error = step / scale - 1; a "
             "weight's is its worst channel's):", "", "| block | tensor | scale | step | error |",
             "|---|---|---:|---:|---:|"]
    for block, roles in rows.items():
        lines += [f"| {block} | {role} | {r['scale']:.6g} | {r['step']:.6g} | {r['error']:+.1%} |"
                  for role, r in roles.items()]
    return lines + [""]


MEMORY_ROWS = (  # (breakdown key, what it is)
    ("parameter_bytes", "parameters (weights, biases, per-channel shifts, in their storage types)"),
    ("between_actors", "FIFO buffers between actors"),
    ("reuse", "FIFO buffers of reuse self-loops (rows a window keeps for the next firing)"),
    ("split_copies", "FIFO buffers holding each split part's copy of its input"),
    ("to_gather", "FIFO buffers from split parts to their gather"),
    ("partial_sums", "FIFO buffers of partial sums to a merge"),
    ("window_bytes", "actors' input row windows"),
    ("row_bytes", "actors' output buffers (one firing)"),
    ("staging_bytes", "whole-tensor layout staging (global pooling, reshape)"),
    ("io_bytes", "the input and output frames"),
)


def buffers_markdown(fig: dict) -> list[str]:
    """analyze-buffers' figures, when it ran: FIFO memory at the maximal throughput and within a
    budget, against the sizes the generated code uses."""
    from aloha_ir.figures import quantity, show
    b = fig.get("buffers")
    if b is None:
        return []
    used, least = b["schedule"]["fifo_bytes"], b["minimal"]["fifo_bytes"]
    lines = [f"FIFOs at this throughput: {quantity(least, 'B')} would do "
             f"({100 * least / used:.0f}% of the {quantity(used, 'B')} the generated code "
             "allocates, which keeps analyze-schedule's sizes)."]
    if b["budget_bytes"] is not None:
        fit = b["within_budget"]
        lines.append(f"Within {quantity(b['budget_bytes'], 'B')}: " + (
            f"{quantity(fit['fifo_bytes'], 'B')} at a period of "
            f"{show('period_s', fit['period_s'])}." if fit else "no point of the trade-off fits."))
    return lines + [""]


def memory_markdown(fig: dict) -> list[str]:
    """The memory section: the parts of memory_bytes, the memories, and where it goes."""
    from aloha_ir.figures import quantity, show
    m = fig["memory"]
    lines = [f"Memory {show('memory_bytes', fig['memory_bytes'])} = parameters "
             f"{show('parameter_bytes', fig['parameter_bytes'])} + FIFO buffers "
             f"{show('buffer_bytes', fig['buffer_bytes'])} + scratch "
             f"{quantity(fig['scratch_bytes'], 'B')}: the data the generated program allocates "
             "(`ALOHA_MEMORY=1` makes it print the same, in bytes, as the table below; its "
             "runtime descriptors and stack come on top). Peak activation (the largest FIFO "
             "contents at one instant) "
             f"{show('peak_activation_bytes', fig['peak_activation_bytes'])}"
             + ("" if fig["fits"] else "; it **does not fit**") + ".", "",
             "| part | bytes | share |", "|---|---:|---:|"]
    total = max(1, fig["memory_bytes"])
    for key, what in MEMORY_ROWS:
        if m.get(key):
            lines.append(f"| {what} | {m[key]:,} | {100 * m[key] / total:.1f}% |")
    for name, need in fig["per_memory"].items():
        lines.append(f"| needed in {name} ({' and '.join(need['holds'])}; it has "
                     f"{need['size_bytes']:,} B) | {need['need_bytes']:,} | "
                     f"{'fits' if need['need_bytes'] <= need['size_bytes'] else '**over**'} |")
    return lines + [""] + [f"- {n}" for n in fig["memory_notes"]]


def gantt_figure(schedule, title: str):
    """Per-unit timeline of the stream run (one colour per frame) as a matplotlib Figure.

    One collection per unit, not one artist per firing (VGG-16 fires 11,778 times on LOSA): a
    unit's consecutive firings of one frame closer than half a pixel are one bar, so the picture
    is the same. Time is shown in s, ms, us or ns, whichever suits the run's length, and the axis
    ends after the last firing."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    firings = [f for f in schedule.timeline if not f.unit.startswith("@") and f.end > f.start]
    units = sorted({f.unit for f in firings})
    end_s = max((f.end for f in firings), default=0.0)
    from aloha_ir.figures import scale as unit_scale
    scale, unit_label = unit_scale("s", end_s or schedule.latency_s or 1.0)
    fig = Figure(figsize=(12, 1.2 + 0.5 * max(1, len(units))))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colours = [f"C{i}" for i in range(10)]
    merge_s = end_s * 1e-12  # touching (up to rounding): the picture stays the same
    frames = set()
    for row, unit in enumerate(units):
        bars, faces = [], []
        for f in sorted((f for f in firings if f.unit == unit), key=lambda f: f.start):
            if bars and faces[-1] == f.frame and f.start - bars[-1][1] <= merge_s:
                bars[-1][1] = max(bars[-1][1], f.end)
            else:
                bars.append([f.start, f.end])
                faces.append(f.frame)
        frames.update(faces)
        ax.broken_barh([(a / scale, (b - a) / scale) for a, b in bars], (row - 0.4, 0.8),
                       facecolors=[colours[k % 10] for k in faces], linewidth=0)
    ax.set_yticks(range(len(units)), units)
    ax.set_ylim(len(units) - 0.5, -0.5)
    ax.set_xlim(0, 1.02 * end_s / scale if end_s else 1.0)
    ax.set_xlabel(f"time ({unit_label})")
    ax.set_title(f"{title}: latency {schedule.latency_s / scale:.4g} {unit_label}, period "
                 f"{schedule.period_s / scale:.4g} {unit_label}, {len(frames)} frames")
    if frames:
        ax.legend(handles=[Patch(color=colours[k % 10], label=f"frame {k + 1}")
                           for k in sorted(frames)], loc="upper left", bbox_to_anchor=(1.0, 1.0),
                  fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def gantt(schedule, path: str, title: str) -> str:
    """`gantt_figure` as a PNG at `path`, written whole."""
    import io

    from aloha_ir.outputs import write_bytes
    buf = io.BytesIO()
    gantt_figure(schedule, title).savefig(buf, format="png", dpi=110)
    return write_bytes(path, buf.getvalue())
