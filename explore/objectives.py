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
from dataclasses import asdict, dataclass, field

from aloha_ir.errors import UsageError

# name -> (direction, what it is); accuracy and security are maximised, the rest minimised
OBJECTIVES = {
    "accuracy": ("max", "validation accuracy after proxy training"),
    "security": ("max", "curve average of the fast PGD security curve"),
    "latency_s": ("min", "one frame on an empty pipeline (s)"),
    "energy_j": ("min", "energy per frame (J)"),
    "memory_bytes": ("min", "buffers + parameters (B)"),
    "processors": ("min", "processing units used"),
    "params": ("min", "parameters"),
    "macs": ("min", "multiply-accumulates"),
}
ALIASES = {"latency": "latency_s", "energy": "energy_j", "memory": "memory_bytes",
           "acc": "accuracy", "parameters": "params"}
TARGET_FIGURES = ("latency_s", "energy_j", "memory_bytes", "processors")
TRAINED = ("accuracy", "security")


def objective_name(text: str) -> str:
    name = ALIASES.get(text.strip(), text.strip())
    if name not in OBJECTIVES:
        raise UsageError(f"unknown objective '{text}'",
                         hint="objectives: " + ", ".join(list(OBJECTIVES) + list(ALIASES)))
    return name


def parse_objectives(text: str) -> list[str]:
    names = [objective_name(t) for t in text.split(",") if t.strip()]
    if len(names) < 2 or len(set(names)) != len(names):
        raise UsageError(f"--objectives '{text}' must name at least two distinct objectives",
                         hint="e.g. accuracy,latency,energy")
    return names


@dataclass(frozen=True)
class EvalSettings:
    """Everything besides the genotype that decides a design point's figures (the cache context)."""

    input_shape: tuple[int, int, int]
    classes: int
    objectives: tuple[str, ...]
    target: str | None = None
    bits: int = 0
    data: str | None = None
    lrs: tuple[float, ...] = (3e-3, 1e-3, 3e-4, 1e-4)
    proxy_epochs: int = 12  # successive-halving budget over all arms
    proxy_subset: int = 1024
    batch_size: int = 64
    seed: int = 0
    security_attack: str = "pgd"
    security_norm: str = "inf"
    security_eps: str = ""
    models_dir: str | None = field(default=None, compare=False)
    threads: int = field(default=0, compare=False)

    def needs_target(self) -> bool:
        return any(o in TARGET_FIGURES for o in self.objectives)

    def needs_training(self) -> bool:
        return any(o in TRAINED for o in self.objectives)

    def context(self) -> dict:
        """The fields the figures depend on (the cache separates results by them)."""
        d = asdict(self)
        for k in ("models_dir", "threads"):
            d.pop(k)
        if not self.needs_training():
            for k in ("data", "lrs", "proxy_epochs", "proxy_subset", "batch_size",
                      "security_attack", "security_norm", "security_eps"):
                d.pop(k)
        if "security" not in self.objectives:
            for k in ("security_attack", "security_norm", "security_eps"):
                d.pop(k, None)
        d["objectives"] = sorted(d["objectives"])
        return d

    def key(self) -> str:
        """The cache context: the digest of `context()`."""
        from explore.cache import context_key
        return context_key(self.context())


@functools.lru_cache(maxsize=4)
def _splits(spec: str, seed: int):
    from frontends.datasets import load
    return load(spec, seed=seed)


@functools.lru_cache(maxsize=8)
def _platform(name: str):
    from archdesc.loader import load_platform
    return load_platform(name)


def evaluate_point(settings: EvalSettings, genotype_json: dict) -> dict:
    """The figures of one genotype: `objectives` (every figure computed, not only the searched
    ones), `onnx` (its model file, when settings.models_dir is set), `seconds`."""
    from frontends.genotype import Genotype, to_module
    start = time.perf_counter()
    if settings.threads:
        import torch
        torch.set_num_threads(settings.threads)
    genotype = Genotype.from_json(genotype_json)
    module = to_module(genotype, settings.input_shape, settings.classes)
    figures = _analyses(module, settings)
    trained = None
    if settings.needs_training():
        trained, train_figures = _proxy_train(module, settings)
        figures.update(train_figures)
    onnx_path = None
    if settings.models_dir:
        onnx_path = _save_model(module, genotype, settings, trained)
    return {"objectives": figures, "onnx": onnx_path,
            "seconds": time.perf_counter() - start}


def _analyses(module, settings: EvalSettings) -> dict:
    from aloha_ir.context import make_context
    from aloha_ir.passmanager import PassManager
    ctx = make_context()
    probe = module.clone()  # the analyses rewrite the IR; training needs the plain graph
    if settings.needs_target():
        from alohac.report import target_figures, target_pipeline
        ctx.target = _platform(settings.target)
        result = PassManager.parse(target_pipeline(settings.bits, allow_overflow=True)).run(
            probe, ctx)
        fig = target_figures(result.analyses)
        return {"params": fig["params"], "macs": fig["macs"], "latency_s": fig["latency_s"],
                "energy_j": fig["energy_j"], "memory_bytes": fig["memory_bytes"],
                "processors": fig["processors"], "fits": bool(fig["fits"]),
                "throughput_fps": fig["throughput_fps"]}
    result = PassManager.parse("analyze-cost").run(probe, ctx)
    cost = result.analyses["analyze-cost"]
    return {"params": cost.params, "macs": cost.macs}


def proxy_config(settings: EvalSettings):
    from backends.torch.train import TrainConfig, fast
    base = TrainConfig(batch_size=settings.batch_size, seed=settings.seed, progress=False)
    return fast(base, subset=settings.proxy_subset, epochs=1)


def _proxy_train(module, settings: EvalSettings):
    """Successive halving over the learning rates; the best arm's model and figures."""
    from dataclasses import replace
    from backends.reference import graph_of
    from backends.torch.module import build
    from backends.torch.train import evaluate, successive_halving
    from passes.execution import data_for_model
    if not settings.data:
        raise UsageError("accuracy and security objectives need --data")
    graph = graph_of(module)
    splits = data_for_model(_splits(settings.data, settings.seed), graph)
    base = proxy_config(settings)
    arms = [(f"lr={lr:g}", functools.partial(build, module, logits=True), replace(base, lr=lr))
            for lr in settings.lrs]
    budget = max(settings.proxy_epochs, len(arms) * len(_rounds(len(arms))))
    result = successive_halving(arms, budget, splits=splits)
    best = result.ranking[0]
    model = result.models[best]
    # the winner is alive in the last round; its score is its best validation accuracy
    figures = {"accuracy": float(result.rounds[-1]["scores"][best]),
               "best_lr": float(best.split("=")[1]), "proxy_epochs": result.epochs_spent,
               "test_accuracy": float(evaluate(model, splits.test).accuracy)}
    model.write_back(module)
    if "security" in settings.objectives:
        figures.update(_security(module, splits, settings))
    return model, figures


def _rounds(n: int) -> list[int]:
    from backends.torch.train import halving_rounds
    return halving_rounds(n, 2)


def _security(module, splits, settings: EvalSettings) -> dict:
    from backends.reference import graph_of
    from passes.security import SecurityConfig, attack_data, evaluate, parse_eps
    graph = graph_of(module)
    x01, y, rng = attack_data(graph, splits.test, None)
    config = SecurityConfig(attack=settings.security_attack, norm=settings.security_norm,
                            eps=tuple(parse_eps(settings.security_eps))
                            if settings.security_eps else None, mode="fast",
                            seed=settings.seed, sanity=False)
    report, _ = evaluate(module, x01, y, config, input_range=rng, name=graph.sym_name.data)
    return {"security": float(report.curve_average), "security_level": report.level}


def _save_model(module, genotype, settings: EvalSettings, trained) -> str:
    """The point's ONNX (trained weights when it was trained), written atomically."""
    from backends.onnx.export import save_onnx
    os.makedirs(settings.models_dir, exist_ok=True)
    path = os.path.join(settings.models_dir, f"{genotype.key()[:16]}.onnx")
    tmp = f"{path}.{os.getpid()}.tmp"
    if trained is None:
        from frontends.genotype import to_onnx
        import onnx
        onnx.save(to_onnx(genotype, settings.input_shape, settings.classes), tmp)
    else:
        save_onnx(module, tmp)
    os.replace(tmp, path)
    return path
