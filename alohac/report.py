"""The target report: the seeds' Table 6 columns and DESIGN.md's JSON keys, as JSON, Markdown, a Gantt.

Keys (DESIGN.md "JSON outputs"): `latency_s` (one frame, empty pipeline), `throughput_fps` (periodic
regime), `gops_per_s` = 2 x MACs x throughput / 1e9, `energy_j` (per frame of the stream),
`processors`, `memory_bytes` (buffers + parameters), `per_pe`, `per_actor`; plus the figures behind
them (period, GOps/s/W, DARTS processors, peak activations, whether the model fits), the pruned
weights and sparse MACs (`params_pruned`, `macs_sparse`) and, for a pruned model, `sparsity`: what
the platform makes of them.
"""

from __future__ import annotations


def target_pipeline(bits: int = 0, opp: str = "", allow_overflow: bool = False,
                    timeline: bool = False, partition: str = "", map_options: str = "") -> str:
    """The driver's --target pipeline; `partition`/`map_options` are extra option text for those
    two passes (a saved mapping: explore.system.Mapping.stages)."""
    opts = " ".join(x for x in (f"bits={bits}" if bits else "", f"opp={opp}" if opp else "") if x)

    def wrap(extra: str = "") -> str:
        text = " ".join(x for x in (extra, opts) if x)
        return f"{{{text}}}" if text else ""
    return ",".join([
        "canonicalize", "analyze-cost", "convert-nn-to-csdf", f"partition{wrap(partition)}",
        f"map{wrap(map_options)}",
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
        "params_pruned": cost.params_pruned, "macs_sparse": cost.macs_sparse,
        "sparsity": sparsity(cost, sched, mapping.platform),
        "activation_bytes": cost.activation_bytes,
        "latency_s": sched.latency_s, "period_s": sched.period_s, "throughput_fps": fps,
        "gops_per_s": gops, "energy_j": energy.energy_j,
        "latency_energy_j": energy.latency_energy_j, "static_j": energy.static_j,
        "average_power_w": energy.average_power_w,
        "gops_per_w": 2 * cost.macs / energy.energy_j / 1e9 if energy.energy_j else None,
        "processors": procs.processors, "darts_processors": procs.darts_processors,
        "memory_bytes": mem.memory_bytes, "buffer_bytes": mem.buffer_bytes,
        "parameter_bytes": mem.parameter_bytes,
        "peak_activation_bytes": mem.peak_activation_bytes, "fits": mem.fits,
        "per_memory": mem.per_memory,
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
    generated code stores weights dense (backends/codegen.py). So latency, energy and memory stay
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
             "", f"Peak activation memory "
             f"{show('peak_activation_bytes', fig['peak_activation_bytes'])}, buffers "
             f"{show('buffer_bytes', fig['buffer_bytes'])}, parameters "
             f"{show('parameter_bytes', fig['parameter_bytes'])}"
             + ("" if fig["fits"] else " (**does not fit**)") + ".", "",
             *([f"Pruned: {fig['params_pruned']:,} weights (params deployed "
                f"{fig['params_deployed']:,}), sparse MACs {fig['macs_sparse']:,} of "
                f"{fig['macs']:,}; {fig['sparsity']['note']}.", ""] if fig["sparsity"] else []),
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
