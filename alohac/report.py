"""The target report: the seeds' Table 6 columns and DESIGN.md's JSON keys, as JSON, Markdown, a Gantt.

Keys (DESIGN.md "JSON outputs"): `latency_s` (one frame, empty pipeline), `throughput_fps` (periodic
regime), `gops_per_s` = 2 x MACs x throughput / 1e9, `energy_j` (per frame of the stream),
`processors`, `memory_bytes`, `per_pe`, `per_actor`; plus the figures behind them (period, GOps/s/W,
DARTS processors, peak activations, whether the model fits).

Memory (passes/analyze_memory.py): `memory_bytes` = `parameter_bytes` + `buffer_bytes` +
`scratch_bytes`, exactly what the generated program allocates statically (its `ALOHA_MEMORY=1`
line prints the same parts); `memory` breaks it down (FIFO buffers by kind, windows, output
buffers, staging, input/output frames) and `memory_notes` says where it goes.
"""

from __future__ import annotations

import json


def target_pipeline(bits: int = 0, opp: str = "", allow_overflow: bool = False,
                    timeline: bool = False, partition: str = "", map_options: str = "",
                    deploy: bool = False, data: str = "") -> str:
    """The driver's --target pipeline; `partition`/`map_options` are extra option text for those
    two passes (a saved mapping: explore.system.Mapping.stages). `deploy` adds
    quantize-for-target (a float model bound for a fixed-point platform is quantized, calibrated
    on `data` if given) for commands that generate code."""
    opts = " ".join(x for x in (f"bits={bits}" if bits else "", f"opp={opp}" if opp else "") if x)

    def wrap(extra: str = "") -> str:
        text = " ".join(x for x in (extra, opts) if x)
        return f"{{{text}}}" if text else ""
    quantize = []
    if deploy:
        q = " ".join(x for x in (f"bits={bits}" if bits else "",
                                 f"data={json.dumps(data)}" if data else "") if x)
        quantize = [f"quantize-for-target{{{q}}}" if q else "quantize-for-target"]
    return ",".join([
        "canonicalize", *quantize, "analyze-cost", "convert-nn-to-csdf",
        f"partition{wrap(partition)}", f"map{wrap(map_options)}",
        "analyze-schedule{timeline=true}" if timeline else "analyze-schedule",
        "analyze-memory{allow_overflow=true}" if allow_overflow else "analyze-memory",
        "analyze-energy", "analyze-processors"])


def _one(x):
    return x[0] if isinstance(x, list) else x


def target_figures(analyses: dict) -> dict:
    """The JSON object of `alohac analyze --target` from the pipeline's analyses."""
    cost = _one(analyses["analyze-cost"])
    sched = _one(analyses["analyze-schedule"])
    mem = _one(analyses["analyze-memory"])
    energy = _one(analyses["analyze-energy"])
    procs = _one(analyses["analyze-processors"])
    mapping = _one(analyses["map"])
    fps = sched.throughput_fps if sched.period_s > 0 else None  # JSON has no Infinity
    gops = 2 * cost.macs * fps / 1e9 if fps else None
    return {
        "platform": mapping.platform, "datatype": mapping.datatype,
        "operating_point": mapping.operating_point,
        "macs": cost.macs, "params": cost.params, "params_deployed": cost.params_deployed,
        "activation_bytes": cost.activation_bytes,
        "latency_s": sched.latency_s, "period_s": sched.period_s, "throughput_fps": fps,
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


def _si(x: float, unit: str) -> str:
    scale, prefix = next(((s, p) for s, p in ((1, ""), (1e-3, "m"), (1e-6, "u"))
                          if abs(x) >= s), (1e-9, "n"))
    return f"{x / scale:.3g} {prefix}{unit}"


def _g(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def markdown(fig: dict, title: str) -> str:
    lines = [f"# {title}", "",
             f"Platform {fig['platform']}, {fig['datatype']}" +
             (f", operating point {fig['operating_point']}" if fig["operating_point"] else "") + ".",
             "", "| Performance (s) | Throughput (fps) | GOps/s | Energy (J/frame) | GOps/s/W | "
             "Processors | Memory (B) |", "|---:|---:|---:|---:|---:|---:|---:|",
             f"| {fig['latency_s']:.4g} | {_g(fig['throughput_fps'])} | {_g(fig['gops_per_s'])} | "
             f"{fig['energy_j']:.4g} | {_g(fig['gops_per_w'])} | {fig['processors']} "
             f"(DARTS {fig['darts_processors']}) | {fig['memory_bytes']:,} |", "",
             *memory_markdown(fig), "",
             "| unit | kind | busy per frame | utilisation | actors |", "|---|---|---:|---:|---:|"]
    for unit, u in fig["per_pe"].items():
        lines.append(f"| {unit} | {u['kind']} | {_si(u['busy_s'], 's')} | "
                     f"{100 * u['utilisation']:.1f}% | {u['actors']} |")
    lines += ["", "| actor | operator | unit | cost per frame | start | end | how |",
              "|---|---|---|---:|---:|---:|---|"]
    for a in fig["per_actor"]:
        lines.append(f"| {a['actor']} | {a['operator']} | {a['pe'] or '-'} | "
                     f"{_si(a['cost_s'], 's')} | {_si(a['start_s'], 's')} | "
                     f"{_si(a['end_s'], 's')} | {a['note']} |")
    return "\n".join(lines) + "\n"


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


def memory_markdown(fig: dict) -> list[str]:
    """The memory section: the parts of memory_bytes, the memories, and where it goes."""
    m = fig["memory"]
    lines = [f"Memory {fig['memory_bytes']:,} B = parameters {fig['parameter_bytes']:,} B + FIFO "
             f"buffers {fig['buffer_bytes']:,} B + scratch {fig['scratch_bytes']:,} B: the data "
             "the generated program allocates (`ALOHA_MEMORY=1` makes it print the same; its "
             "runtime descriptors and stack come on top). Peak activation (the largest FIFO "
             f"contents at one instant) {fig['peak_activation_bytes']:,} B"
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


def gantt(schedule, path: str, title: str) -> str:
    """Per-unit timeline of the stream run as a PNG (one colour per frame)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from aloha_ir.textio import write_bytes
    units = sorted({f.unit for f in schedule.timeline if not f.unit.startswith("@")})
    row = {u: i for i, u in enumerate(units)}
    fig, ax = plt.subplots(figsize=(12, 1 + 0.5 * max(1, len(units))))
    colours = plt.get_cmap("tab10")
    for f in schedule.timeline:
        if f.unit in row and f.end > f.start:
            ax.barh(row[f.unit], f.end - f.start, left=f.start, height=0.8,
                    color=colours(f.frame % 10), linewidth=0)
    ax.set_yticks(range(len(units)), units)
    ax.set_xlabel("time (s)")
    ax.set_title(f"{title}: latency {schedule.latency_s:.4g} s, period {schedule.period_s:.4g} s "
                 "(colour = frame)")
    ax.invert_yaxis()
    fig.tight_layout()
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    try:
        return write_bytes(path, buf.getvalue())
    except OSError as e:
        from aloha_ir.errors import UsageError
        raise UsageError(f"--gantt {path}: cannot write: {e.strerror or e}") from None
