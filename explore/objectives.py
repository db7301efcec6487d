"""Evaluating one design point: the satellites' figures for a genotype.

`evaluate_point(settings, genotype_json)` is what an executor runs (a top-level function, so local
worker processes and Dask workers can import it): it decodes the genotype, runs the target
analyses (latency, energy, memory, processors: the same pipeline as `alohac analyze --target`),
trains a proxy when accuracy or security is asked for, and returns a JSON-able dict. The proxy is
the training engine's successive halving over learning rates (the seeds' training engine picks
hyper-parameters by non-stochastic best-arm identification, D2.2 section 2.2.2): every rate trains
briefly on a seeded subset, the better half trains longer, and the point's accuracy is the best
arm's validation accuracy. Security is the curve average of the fast-mode PGD curve of that model.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass, field

import onnx

from aloha_ir.errors import UsageError

# name -> (direction, what it is); accuracy and security are maximised, the rest minimised
OBJECTIVES = {
    "accuracy": ("max", "validation accuracy after proxy training"),
    "security": ("max", "curve average of the fast PGD security curve"),
    "latency_s": ("min", "one frame on an empty pipeline (s)"),
    "energy_j": ("min", "energy per frame (J)"),
    "memory_bytes": ("min", "parameters + FIFO buffers + scratch: what the program holds (B)"),
    "processors": ("min", "processing units used"),
    "params": ("min", "parameters"),
    "macs": ("min", "multiply-accumulates"),
    "dp_difference": ("min", "demographic-parity difference of the proxy's test predictions "
                             "(tabular data, first sensitive attribute)"),
    "eo_difference": ("min", "equalized-odds difference of the proxy's test predictions"),
}
ALIASES = {"latency": "latency_s", "energy": "energy_j", "memory": "memory_bytes",
           "acc": "accuracy", "parameters": "params", "fairness": "dp_difference"}
TARGET_FIGURES = ("latency_s", "energy_j", "memory_bytes", "processors")
FAIRNESS = ("dp_difference", "eo_difference")
TRAINED = ("accuracy", "security", *FAIRNESS)


def objective_name(text: str) -> str:
    name = ALIASES.get(text.strip(), text.strip())
    if name not in OBJECTIVES:
        raise UsageError(f"unknown objective '{text}'",
                         hint="objectives: " + ", ".join(list(OBJECTIVES) + list(ALIASES)))
    return name


def parse_objectives(text: str) -> list[str]:
    names = [objective_name(t) for t in text.split(",") if t.strip()]
    if len(names) < 2 or len(set(names)) != len(names):
        raise UsageError(f"'{text}' must name at least two distinct objectives",
                         where="objectives", hint="e.g. accuracy,latency,energy")
    return names


@dataclass(frozen=True)
class EvalSettings:
    """Everything besides the genotype that decides a design point's figures. `figures` adds the
    figures constraints read to the objectives (they must be computed too); `seed` seeds the data
    split and the proxy's initial weights (not the search, so changing the search's seed keeps
    the cache)."""

    input_shape: tuple[int, int, int]
    classes: int
    objectives: tuple[str, ...]
    target: str | None = None
    bits: int = 0
    data: str | None = None
    lrs: tuple[float, ...] = (3e-3, 1e-3, 3e-4, 1e-4)
    proxy_epochs: int = 16  # successive-halving budget over all arms
    proxy_subset: int = 1024
    batch_size: int = 64
    seed: int = 0
    security_attack: str = "pgd"
    security_norm: str = "inf"
    security_eps: str = ""
    figures: tuple[str, ...] = ()
    models_dir: str | None = field(default=None, compare=False)
    threads: int = field(default=0, compare=False)

    def __post_init__(self):
        if len(set(self.lrs)) != len(self.lrs) or not self.lrs or min(self.lrs) <= 0:
            raise UsageError(f"learning rates {list(self.lrs)} must be distinct and positive")
        fair = self.wanted() & set(FAIRNESS)
        if fair and not (self.data or "").startswith("tabular:"):
            raise UsageError(f"{sorted(fair)[0]} needs data with sensitive groups",
                             where="data", hint="tabular:NAME:ATTR (adult, compas or german, "
                                                "e.g. tabular:adult:sex)")
        if not self.needs_training():
            return
        rounds = len(halving_rounds(len(self.lrs)))
        if self.proxy_epochs < len(self.lrs) * rounds:
            raise UsageError(f"a proxy budget of {self.proxy_epochs} epochs cannot give "
                             f"{len(self.lrs)} learning rates one epoch each in {rounds} rounds",
                             where="proxy_epochs", hint=f"give {len(self.lrs) * rounds} or more, "
                                                        "or fewer learning rates (lrs)")

    def wanted(self) -> set[str]:
        return set(self.objectives) | set(self.figures)

    def needs_target(self) -> bool:
        return bool(self.wanted() & set(TARGET_FIGURES))

    def needs_training(self) -> bool:
        return bool(self.wanted() & set(TRAINED))

    def context(self) -> dict:
        """What the computed figures depend on (the cache separates results by it): the
        analyses' inputs when a target figure is wanted (with a digest of an .arch file's text),
        the training's when accuracy or security is, the attack's when security is. Every
        computed figure is stored, so the objectives themselves are not part of it."""
        d = {"input_shape": list(self.input_shape), "classes": self.classes}
        if self.needs_target():
            d.update(target=self.target, bits=self.bits, arch_sha256=_file_digest(self.target))
        if self.needs_training():
            d.update(data=self.data, lrs=list(self.lrs), proxy_epochs=self.proxy_epochs,
                     proxy_subset=self.proxy_subset, batch_size=self.batch_size, seed=self.seed)
        if "security" in self.wanted():
            d.update(security_attack=self.security_attack, security_norm=self.security_norm,
                     security_eps=self.security_eps)
        return d

    def key(self) -> str:
        """The cache context: the digest of `context()`."""
        from explore.cache import context_key
        return context_key(self.context())


def halving_rounds(n: int) -> list[int]:
    from runtime.torch.train import halving_rounds as rounds
    return rounds(n, 2)


def _file_digest(path: str | None) -> str | None:
    if not path or not os.path.isfile(path):
        return None
    import hashlib
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@functools.lru_cache(maxsize=4)
def dataset_splits(spec: str, seed: int):
    """The DATA spec's splits, loaded once per process (a worker's evaluations reuse them)."""
    from frontends.datasets import load
    return load(spec, seed=seed)


@functools.lru_cache(maxsize=8)
def _platform(name: str):
    from archdesc.loader import load_platform
    return load_platform(name)


def evaluate_point(settings: EvalSettings, genotype_json: dict) -> dict:
    """The figures of one genotype: `objectives` (every figure computed, not only the searched
    ones), `onnx` (its model file, when settings.models_dir is set), `seconds`."""
    from frontends.genotype import Genotype, to_onnx
    from frontends.onnx import import_model
    start = time.perf_counter()
    if settings.threads:
        import torch
        torch.set_num_threads(settings.threads)
    genotype = Genotype.from_json(genotype_json)
    model = to_onnx(genotype, settings.input_shape, settings.classes)
    module = import_model(model, source=f"genotype:{genotype.describe()}",
                          name=model.graph.name)
    figures = _analyses(module, settings)
    trained = False
    if settings.needs_training():
        figures.update(_proxy_train(module, settings))
        trained = True
    onnx_path = None
    if settings.models_dir:
        onnx_path = _save_model(module if trained else model, genotype, settings)
    return {"objectives": figures, "onnx": onnx_path, "seconds": time.perf_counter() - start}


def _analyses(module, settings: EvalSettings) -> dict:
    from aloha_ir.passmanager import PassManager
    if settings.needs_target():
        from flows.target import TargetFlow
        probe = module.clone()  # the target flow rewrites the IR; training needs the graph
        flow = TargetFlow(_platform(settings.target), settings.bits, allow_overflow=True)
        fig = flow.run(probe, flow.context(quiet=True)).to_json()  # overflow: fits = false
        return {"params": fig["params"], "macs": fig["macs"], "latency_s": fig["latency_s"],
                "energy_j": fig["energy_j"], "memory_bytes": fig["memory_bytes"],
                "processors": fig["processors"], "fits": bool(fig["fits"]),
                "throughput_fps": fig["throughput_fps"]}
    from passes.analyze_cost import AnalyzeCostPass
    result = PassManager([AnalyzeCostPass()]).run(module)  # an analysis: IR unchanged
    cost = result.report("analyze-cost")
    return {"params": cost.params, "macs": cost.macs}


def proxy_config(settings: EvalSettings):
    from runtime.torch.train import TrainConfig, fast
    base = TrainConfig(batch_size=settings.batch_size, seed=settings.seed, progress=False)
    return fast(base, subset=settings.proxy_subset, epochs=1)


def _proxy_train(module, settings: EvalSettings) -> dict:
    """Successive halving over the learning rates; the best arm's figures (its weights are
    written back into `module`)."""
    from dataclasses import replace
    from aloha_ir.dialects.nn import graph_of
    from runtime.torch.module import build
    from runtime.torch.train import evaluate, successive_halving
    from passes.execution import data_for_model
    graph = graph_of(module)
    splits = data_for_model(dataset_splits(settings.data, settings.seed), graph)
    base = proxy_config(settings)
    arms = [(f"lr={lr:g}", functools.partial(build, module, logits=True), replace(base, lr=lr))
            for lr in settings.lrs]
    result = successive_halving(arms, settings.proxy_epochs, splits=splits)
    best = result.ranking[0]
    model = result.models[best]
    # the winner is alive in the last round; its score is its best validation accuracy
    figures = {"accuracy": float(result.rounds[-1]["scores"][best]),
               "best_lr": float(best.split("=")[1]), "proxy_epochs": result.epochs_spent,
               "test_accuracy": float(evaluate(model, splits.test).accuracy)}
    model.write_back(module)
    if settings.wanted() & set(FAIRNESS):
        figures.update(_fairness(model, splits.test))
    if "security" in settings.wanted():
        figures.update(_security(module, graph, splits, settings))
    return figures


def _fairness(model, test) -> dict:
    """The proxy's test predictions' disparities across the first sensitive attribute (fairlearn's
    definitions)."""
    import numpy as np
    import torch
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference
    attr, groups = next(iter(test.sensitive.items()))
    model.eval()
    with torch.no_grad():
        p = np.concatenate([model(torch.from_numpy(x)).argmax(1).numpy()
                            for x, _ in test.batches(1024)])
    return {"dp_difference": float(demographic_parity_difference(test.y, p,
                                                                 sensitive_features=groups)),
            "eo_difference": float(equalized_odds_difference(test.y, p,
                                                             sensitive_features=groups)),
            "fairness_attribute": attr}


def _security(module, graph, splits, settings: EvalSettings) -> dict:
    from security.evaluate import SecurityConfig, attack_data, evaluate, parse_eps
    x01, y, rng = attack_data(graph, splits.test, None)
    config = SecurityConfig(attack=settings.security_attack, norm=settings.security_norm,
                            eps=tuple(parse_eps(settings.security_eps))
                            if settings.security_eps else None, mode="fast",
                            seed=settings.seed, sanity=False)
    report, _ = evaluate(module, x01, y, config, input_range=rng, name=graph.sym_name.data)
    return {"security": float(report.curve_average), "security_level": report.level}


def _save_model(model, genotype, settings: EvalSettings) -> str:
    """The point's ONNX (an nn module holding the trained weights, or the decoded ONNX model),
    written atomically under a folder of its settings' context, so runs with other settings that
    share the cache never hand out each other's models."""
    from aloha_ir.outputs import write_bytes
    from backends.onnx.export import save_onnx
    folder = os.path.join(settings.models_dir, settings.key()[:16])
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{genotype.key()[:16]}.onnx")
    if isinstance(model, onnx.ModelProto):
        return write_bytes(path, model.SerializeToString())
    save_onnx(model, path)
    return path
