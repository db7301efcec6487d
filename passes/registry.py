"""The bundled passes: names -> their classes, imported on demand (listing passes imports nothing
heavy). Installed as the `aloha.passes` entry point (pyproject.toml), which is how
aloha_ir.passmanager finds them without importing this package."""

from __future__ import annotations

import dataclasses

from aloha_ir.analysis import PRESERVE_NONE, Preserves, Requires
from aloha_ir.passmanager import PassRegistry

# kebab-case name -> "module:Class"; one pass per module.
PASSES: dict[str, str] = {
    "canonicalize": "passes.canonicalize:CanonicalizePass",
    "analyze-cost": "passes.analyze_cost:AnalyzeCostPass",
    "convert-nn-to-csdf": "passes.convert_nn_to_csdf:ConvertNnToCsdfPass",
    "analyze-repetition": "passes.analyze_repetition:AnalyzeRepetitionPass",
    "map": "passes.map:MapPass",
    "align-to-arch": "passes.align_to_arch:AlignToArchPass",
    "partition": "passes.partition:PartitionPass",
    "analyze-schedule": "passes.analyze_schedule:AnalyzeSchedulePass",
    "analyze-memory": "passes.analyze_memory:AnalyzeMemoryPass",
    "analyze-buffers": "passes.analyze_buffers:AnalyzeBuffersPass",
    "size-buffers": "passes.size_buffers:SizeBuffersPass",
    "analyze-energy": "passes.analyze_energy:AnalyzeEnergyPass",
    "analyze-processors": "passes.analyze_processors:AnalyzeProcessorsPass",
    "quantize": "passes.quantize:QuantizePass",
    "quantize-for-target": "passes.quantize_for_target:QuantizeForTargetPass",
    "prune": "passes.prune:PrunePass",
}

REGISTRY = PassRegistry(PASSES)


@dataclasses.dataclass(frozen=True)
class PassInfo:
    """What `alohac list passes` shows of a pass."""

    name: str
    summary: str
    options: list[tuple[str, str]]  # (option, type)
    requires: Requires  # the most it can need
    preserves: Preserves
    conditional: bool  # some of `requires` only with some options

    def to_json(self) -> dict:
        return {"summary": self.summary, "options": dict(self.options),
                "requires": dataclasses.asdict(self.requires),
                "requires_depend_on_options": self.conditional,
                "preserves": self.preserves.describe()}

    def describe_requires(self) -> str:
        return self.requires.describe() + (" (depending on options)" if self.conditional
                                           else "")


def describe_passes(registry: PassRegistry = REGISTRY) -> list[PassInfo]:
    """Each pass of `registry`: summary, options, what it requires and what it preserves."""
    rows = []
    for name in registry.names():
        cls = registry.pass_class(name)
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        opts = [(f.name, getattr(f.type, "__name__", str(f.type))) for f in dataclasses.fields(cls)]
        rows.append(PassInfo(name, doc, opts, getattr(cls, "requires", Requires()),
                             getattr(cls, "preserves", PRESERVE_NONE),
                             "requirements" in vars(cls)))
    return rows
