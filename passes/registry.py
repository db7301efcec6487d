"""Pass names -> their classes, imported on demand (listing passes imports nothing heavy)."""

from __future__ import annotations

import importlib

from aloha_ir.errors import UsageError, did_you_mean

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
    "analyze-energy": "passes.analyze_energy:AnalyzeEnergyPass",
    "analyze-processors": "passes.analyze_processors:AnalyzeProcessorsPass",
    "quantize": "passes.quantize:QuantizePass",
    "quantize-for-target": "passes.quantize_for_target:QuantizeForTargetPass",
    "prune": "passes.prune:PrunePass",
    "analyze-security": "passes.analyze_security:AnalyzeSecurityPass",
}


def pass_class(name: str):
    try:
        target = PASSES[name]
    except KeyError:
        raise UsageError(f"unknown pass '{name}'",
                         hint=did_you_mean(name, sorted(PASSES), "known passes") +
                         " (alohac list passes)") from None
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)


def describe_passes() -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(name, one-line summary, [(option, type)]) for `alohac list passes`."""
    import dataclasses
    rows = []
    for name in sorted(PASSES):
        cls = pass_class(name)
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        opts = [(f.name, getattr(f.type, "__name__", str(f.type))) for f in dataclasses.fields(cls)]
        rows.append((name, doc, opts))
    return rows
