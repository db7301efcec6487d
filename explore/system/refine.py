"""The refinement of a design point (see the package docstring): the whole target flow on a copy
of the model, with the design's partition plan, pins and units."""

from __future__ import annotations

from dataclasses import dataclass

from explore.system.estimate import Estimate, estimate_design
from explore.system.space import Design, SystemSpace
from flows.target import Placement, TargetFlow


@dataclass
class Point:
    """A refined design point: its estimate and the real pipeline's figures."""

    design: Design
    estimate: Estimate
    figures: dict  # latency_s, period_s, energy_j, processors, memory_bytes, fits, ...
    assignment: dict[str, str]  # actor -> unit, as map assigned them (zero-cost actors left out)
    label: str = ""

    def __getitem__(self, key: str):
        return self.figures[key]

    def to_json(self) -> dict:
        return {"label": self.label, **{k: self.figures[k] for k in FIGURE_KEYS},
                "estimate": self.estimate.to_json(), "design": self.design.to_json()}


FIGURE_KEYS = ("latency_s", "period_s", "throughput_fps", "energy_j", "processors",
               "memory_bytes", "fits")


def design_flow(space: SystemSpace, design: Design) -> TargetFlow:
    """The target flow that realises `design` (what `alohac analyze --target` runs, with the
    design's partition plan, pins and units, reporting a design that overflows)."""
    from aloha_ir.context import make_context
    from passes.partition import PartitionPass
    # a pin names an actor before partition: it applies to each part partition makes of it
    ctx = make_context()
    ctx.target = space.platform
    PartitionPass.parts(dict(design.plan), bits=space.bits, opp=design.opp or "").apply(
        ctx, space.module.clone())
    subs = ctx.report("partition")
    assign = tuple((s, pe) for a, pe in design.pe for s in subs.get(a, [a]))
    units = () if len(design.units) == len(space.platform.units()) else design.units
    return TargetFlow(space.platform, space.bits, design.opp or "",
                      Placement(design.plan, assign, units), allow_overflow=True)


def refine_design(space: SystemSpace, design: Design, estimate: Estimate | None = None,
                  label: str = "") -> Point:
    """The refined point of `design` (its estimate computed when not given)."""
    from aloha_ir.weights import clone_with_weights
    # quiet: analyze-memory{allow_overflow} warns of a design that overflows, here `fits = false`
    flow = design_flow(space, design)
    report = flow.run(clone_with_weights(space.source), flow.context(quiet=True))
    assignment = {a: u for a, u in report.mapping.assignment.items() if u}
    return Point(design, estimate or estimate_design(space, design), report.to_json(), assignment,
                 label)
