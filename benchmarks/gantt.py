"""`--gantt` drawing time: one collection per unit (alohac/report.py) beside one bar per firing
(the method before issue 18, drawn here the way it did), same schedule, same figure size and dpi,
matplotlib already imported. Prints firings, artists and the median of a few runs for each.

    python benchmarks/gantt.py [--model zoo:vgg16] [--target neuraghe-losa] [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from timing import median_ms  # noqa: E402


def per_firing(schedule, title: str) -> int:
    """The old drawing: one barh per firing; returns the artists drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    units = sorted({f.unit for f in schedule.timeline if not f.unit.startswith("@")})
    row = {u: i for i, u in enumerate(units)}
    fig = Figure(figsize=(12, 1 + 0.5 * max(1, len(units))))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for f in schedule.timeline:
        if f.unit in row and f.end > f.start:
            ax.barh(row[f.unit], f.end - f.start, left=f.start, height=0.8,
                    color=f"C{f.frame % 10}", linewidth=0)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(io.BytesIO(), format="png", dpi=110)
    return len(ax.patches)


def per_unit(schedule, title: str) -> int:
    from alohac.report import gantt_figure
    fig = gantt_figure(schedule, title)
    fig.savefig(io.BytesIO(), format="png", dpi=110)
    ax = fig.axes[0]
    return len(ax.collections) + len(ax.patches)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="zoo:vgg16")
    ap.add_argument("--target", default="neuraghe-losa")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    import matplotlib
    matplotlib.use("Agg")
    from aloha_ir.context import make_context
    from aloha_ir.passmanager import PassManager
    from alohac.report import target_pipeline
    from archdesc.loader import load_platform
    from frontends.loader import load_model
    ctx = make_context()
    ctx.target = load_platform(a.target)
    result = PassManager.parse(target_pipeline(timeline=True)).run(load_model(a.model), ctx)
    schedule = result.report("analyze-schedule")
    title = f"{a.model} on {a.target}"
    old_artists, new_artists = per_firing(schedule, title), per_unit(schedule, title)
    old = median_ms(lambda _: per_firing(schedule, title), a.repeat)
    new = median_ms(lambda _: per_unit(schedule, title), a.repeat)
    print(f"{title}: {len(schedule.timeline):,} firings")
    print(f"  one bar per firing   {old_artists:>6,} artists  {old / 1e3:7.2f} s")
    print(f"  one collection/unit  {new_artists:>6,} artists  {new / 1e3:7.2f} s  "
          f"({old / new:.1f}x faster)")


if __name__ == "__main__":
    main()
