"""Security evaluation: the security evaluation curve (accuracy under attack vs. the perturbation
bound epsilon), for an attack and for random noise, with the sanity checks that catch a broken
evaluation, in a fast and a slow mode (the seeds' SEC engine, deliverable section 2.3).

Attack space. Attacks run on inputs scaled to [0, 1], whatever the model takes: the model is
wrapped to map [0, 1] onto the range it expects (its `nn.input` range, `input_scale`, or the data's
recorded normalisation), so epsilon means the same on mnist-8 (0..255 inputs) as on a model that
takes [0, 1]. Epsilon is in the norm's own units.

Modes (overridable): `slow` = 1000 samples, 16 epsilon points, PGD-20 from the clean input at
every epsilon; `fast` = 100 samples, 6 points, PGD-10 warm-started from the previous epsilon's
adversarial examples (as secml does: the smaller ball lies inside the larger one, so the previous
optimum is a good, feasible start). Default epsilon ranges start at 0 and stop at 0.3 (L-inf),
3 (L2) or 30 (L1) for inputs in [0, 1]. The samples are a seeded draw stratified by class
(security/sampling.py), not the first N. `fmn` is the minimum-norm attack: one run per sample
gives the whole curve (security/min_norm.py), FMN-30 (fast) or FMN-50 (slow), with a PGD-10 /
PGD-20 check from the clean input at the grid epsilon just below each sample's distance (and
further down where it wins).

Attack-effectiveness metrics per epsilon (`SecurityReport.metrics`): the success rate (of the
samples classified correctly when clean, the fraction the attack fools), the mean softmax
confidence of the adversarial class on the fooled samples, the model's forward and backward
passes per sample, and the attack's time (summed over chunks).

Level. `curve_average` is the area under the curve divided by the epsilon range (the mean
accuracy under attack). The level compares it with the clean accuracy -- how much accuracy the
model keeps as epsilon grows: `high` when it keeps at least 75%, `medium` at least 40%, else
`low`. Levels are comparable between models evaluated over the same epsilon range.

Reliability flags (security/flags.py, as AutoAttack and ART check): the accuracy at epsilon 0
must equal the clean accuracy; a strong attack (PGD-50, random start) at an epsilon that reaches
every point of the input box must bring the accuracy to chance or below, else the gradients are
probably masked; samples whose input gradient is exactly zero are counted; PGD must never be weaker
than FGSM at the same epsilon; the curve must not rise; a gradient-free attack (Square) must not
beat PGD. Each raised flag is in `flags` (what it means, what to do, the evidence) and, as one
line, in `warnings`.

Evaluations split into chunks of samples, run in worker processes when `workers` > 1.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from aloha_ir import events
from aloha_ir import fixedpoint as fp
from aloha_ir.dialects import nn
from aloha_ir.errors import UsageError

# fmn: FMN's steps and the PGD check's, the mode's own PGD steps (measured on the MNIST CNN,
# benchmarks/security.py part 4: FMN-50 with a PGD-20 check matches PGD-100 x 5)
MODES = {"fast": {"samples": 100, "points": 6, "steps": 10, "warm_start": True,
                  "fmn_steps": 30, "check_steps": 10},
         "slow": {"samples": 1000, "points": 16, "steps": 20, "warm_start": False,
                  "fmn_steps": 50, "check_steps": 20}}
ATTACKS = ("fgsm", "pgd", "fmn")
DEFAULT_EPS_STOP = {"inf": 0.3, "2": 3.0, "1": 30.0}
LEVELS = (("high", 0.75), ("medium", 0.40), ("low", 0.0))  # kept fraction of clean accuracy
CHUNK = 50


def parse_eps(text: str) -> list[float]:
    """`START:STOP:STEP` (STOP included) or a comma-separated list; every value >= 0."""
    text = text.strip()
    try:
        if ":" in text:
            parts = [float(p) for p in text.split(":")]
            if len(parts) != 3:
                raise ValueError
            start, stop, step = parts
            if step <= 0 or stop < start:
                raise UsageError(f"{text}: need STEP > 0 and STOP >= START", where="eps")
            n = int(math.floor((stop - start) / step + 1e-9)) + 1
            values = [start + i * step for i in range(n)]
            if stop - values[-1] > 1e-9 * max(1.0, abs(stop)):
                values.append(stop)
            values = [round(v, 12) for v in values]
        else:
            values = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise UsageError(f"'{text}' is not START:STOP:STEP or a list of numbers", where="eps",
                         hint="e.g. 0:0.3:0.01") from None
    if not values:
        raise UsageError(f"'{text}' gives no epsilon", where="eps")
    bad = [v for v in values if not v >= 0 or not math.isfinite(v)]
    if bad:
        raise UsageError(f"epsilon must be >= 0 and finite, got {bad[0]}")
    return sorted(set(values))


@dataclass(frozen=True)
class SecurityConfig:
    """What to evaluate; None fields take the mode's defaults."""

    attack: str = "pgd"
    norm: str = "inf"
    eps: tuple[float, ...] | None = None
    samples: int | None = None
    mode: str = "fast"
    steps: int | None = None
    step_size: float | None = None
    random_start: bool = False
    warm_start: bool | None = None
    noise: bool = True
    sanity: bool = True
    workers: int = 1
    seed: int = 0
    batch_size: int = 256
    check_steps: int | None = None  # fmn: PGD steps of the check at each epsilon (0: none)
    sampling: str = "stratified"  # or "first": the first N test samples

    def __post_init__(self):
        from runtime.torch.attacks import Attack, check_norm
        from security.sampling import check_sampling
        if self.mode not in MODES:
            raise UsageError(f"unknown mode '{self.mode}'", hint="use fast or slow")
        if self.attack not in ATTACKS:
            raise UsageError(f"unknown attack '{self.attack}'", where="attack",
                             hint="use " + ", ".join(ATTACKS))
        check_sampling(self.sampling)
        object.__setattr__(self, "norm", check_norm(self.norm))
        if self.attack != "fmn":
            Attack(self.attack, self.norm, self.steps or 1, self.step_size)  # validates
        if self.check_steps is not None and self.check_steps < 0:
            raise UsageError(f"must be >= 0, got {self.check_steps}", where="check_steps")
        if self.samples is not None and self.samples < 1:
            raise UsageError(f"must be >= 1, got {self.samples}", where="samples")
        if self.steps is not None and self.steps < 1:
            raise UsageError(f"must be >= 1, got {self.steps}", where="steps")
        if self.workers < 1:
            raise UsageError(f"must be >= 1, got {self.workers}", where="workers")
        if self.eps is not None:
            if not self.eps or any(not e >= 0 or not math.isfinite(e) for e in self.eps):
                raise UsageError(f"epsilon must be >= 0 and finite, got {list(self.eps)}")
            object.__setattr__(self, "eps", tuple(sorted(set(float(e) for e in self.eps))))

    def resolved(self) -> "SecurityConfig":
        """The mode's defaults filled in."""
        m = MODES[self.mode]
        eps = self.eps or tuple(float(v) for v in np.linspace(0.0, DEFAULT_EPS_STOP[self.norm],
                                                               m["points"]))
        steps = m["fmn_steps"] if self.attack == "fmn" else m["steps"]
        return replace(self, eps=eps, samples=self.samples or m["samples"],
                       steps=self.steps or steps,
                       check_steps=m["check_steps"] if self.check_steps is None else
                       self.check_steps,
                       warm_start=m["warm_start"] if self.warm_start is None else self.warm_start)

    def attack_spec(self):
        from runtime.torch.attacks import Attack
        return Attack(self.attack, self.norm, self.steps or 1, self.step_size, self.random_start)


@dataclass
class SecurityReport:
    model: str
    attack: str
    norm: str
    mode: str
    steps: int
    samples: int
    eps: list[float]
    accuracy: list[float]
    clean_accuracy: float
    curve_average: float
    level: str
    kept: float  # curve_average / clean_accuracy
    input_range: tuple[float, float]
    noise: dict[str, list[float]] = field(default_factory=dict)
    fgsm_accuracy: list[float] | None = None
    zero_gradient_samples: int = 0
    masking_check: dict | None = None
    warnings: list[str] = field(default_factory=list)
    flags: list[dict] = field(default_factory=list)  # security/flags.py
    gradient_free_check: dict | None = None
    seconds: float = 0.0
    warm_start: bool = False
    workers: int = 1
    # per epsilon: success_rate, adversarial_confidence, forward/backward passes per sample,
    # seconds (see the module's docstring)
    metrics: list[dict] = field(default_factory=list)
    sampling: str = "stratified"
    sample_indices: list[int] = field(default_factory=list)  # into the test split
    # fmn: per-sample smallest adversarial distances (inf: never fooled), their median, and the
    # PGD check ({"attack", "tests": samples attacked per epsilon, "found": those fooled,
    # "samples": samples whose distance it lowered})
    distances: list[float] | None = None
    median_distance: float | None = None
    pgd_check: dict | None = None

    def to_json(self) -> dict:
        d = asdict(self)
        d["input_range"] = list(self.input_range)
        # JSON has no infinity: a sample never fooled has distance null
        if self.distances is not None:
            d["distances"] = [v if math.isfinite(v) else None for v in self.distances]
        if self.median_distance is not None and not math.isfinite(self.median_distance):
            d["median_distance"] = None
        return d


def curve_average(eps: list[float], accuracy: list[float]) -> float:
    """Area under the curve over the epsilon range, divided by the range (one point: itself)."""
    if len(eps) == 1:
        return float(accuracy[0])
    return float(np.trapezoid(accuracy, eps) / (eps[-1] - eps[0]))


def level_of(average: float, clean: float) -> tuple[str, float]:
    kept = average / clean if clean > 0 else 0.0
    return next(name for name, floor in LEVELS if kept >= floor), kept


# ---------------------------------------------------------------------------------------------------
# the model in attack space


def parse_range(text: str | None) -> tuple[float, float] | None:
    """`LO:HI` (an input scale) -> (lo, hi) with lo < hi; None or "" -> None."""
    if not text:
        return None
    try:
        lo, hi = (float(v) for v in text.split(":"))
    except ValueError:
        raise UsageError(f"input scale '{text}' is not LO:HI", hint="e.g. 0:255") from None
    if not hi > lo:
        raise UsageError(f"input scale {text}: need LO < HI")
    return lo, hi


def model_range(graph: nn.GraphOp, input_scale: tuple[float, float] | None,
                data_range: tuple[float, float]) -> tuple[float, float]:
    """The value range the model's input expects: the input scale given, else the range nn.input
    declares, else the data's recorded range."""
    if input_scale is not None:
        return float(input_scale[0]), float(input_scale[1])
    inp = next(op for op in graph.ops if isinstance(op, nn.InputOp))
    if inp.value_range is not None:
        lo, hi = nn.floats(inp.value_range)[:2]
        return float(lo), float(hi)
    return tuple(float(v) for v in data_range)  # type: ignore[return-value]


def attack_data(graph: nn.GraphOp, test, input_scale: tuple[float, float] | None):
    """(inputs in [0, 1], labels, the model's input range) from a test split, refusing data
    outside its recorded range."""
    test.check()
    rng = model_range(graph, input_scale, test.value_range)
    x01 = test.to_range(0.0, 1.0)
    return np.clip(x01.x, 0.0, 1.0), x01.y, rng


def is_quantized(graph: nn.GraphOp) -> bool:
    return any(fp.format_of(o.results[0]) for o in graph.ops if o.results)


def torch_model(module, lo: float, hi: float):
    """The module as a torch callable on [0, 1] inputs giving logits: float, or the bit-exact
    fixed-point simulation (differentiable through its straight-through estimators)."""
    import torch

    from aloha_ir.dialects.nn import graph_of
    graph = graph_of(module)
    if is_quantized(graph):
        from runtime.torch.fixed import build_fixed
        net = build_fixed(module, logits=True)
    else:
        from runtime.torch.module import build
        net = build(module, logits=True)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)

    class InAttackSpace(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x.float() * (hi - lo) + lo).float()

    return InAttackSpace().eval()


# ---------------------------------------------------------------------------------------------------
# one chunk of samples over the whole epsilon grid (in this process or a worker)


def _chunk(model, x: np.ndarray, y: np.ndarray, cfg: SecurityConfig, seed: int,
           on_eps: Callable[[int, np.ndarray], None] | None = None) -> dict:
    """Attack samples x at every epsilon; `on_eps(j, correct)` after the j-th (in-process runs:
    a supervising process sees the curve draw itself point by point)."""
    import torch

    from runtime.torch.attacks import Attack, perturb_noise, run_attack
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(seed)
    fgsm = Attack("fgsm", cfg.norm) if cfg.attack == "pgd" else None
    out = {"attack": [], "fgsm": [], "uniform": [], "gaussian": [], "adv": [], "metrics": []}
    with torch.no_grad():
        out["clean"] = (model(xt).reshape(len(x), -1).argmax(1) == yt).numpy()
    if cfg.attack == "fmn":
        from security.min_norm import min_norm_chunk
        out.update(min_norm_chunk(model, xt, yt, cfg))
        atk = None
    else:
        atk = cfg.attack_spec()
    prev, zero = None, None
    warm = cfg.warm_start and cfg.attack == "pgd"  # FGSM is one step from x by definition
    for j, eps in enumerate(cfg.eps):
        if atk is not None:
            t = time.perf_counter()
            r = run_attack(model, xt, yt, eps, atk, init=prev if warm else None, generator=gen)
            if eps > 0:
                prev = r.x_adv  # the next epsilon starts here (the first from x, or a random start)
                if zero is None:  # the gradient at the start: x (or a random point near it)
                    zero = r.zero_gradient.numpy()
            out["attack"].append(r.correct.numpy())
            out["adv"].append(r.x_adv.numpy())
            broken = torch.from_numpy(out["clean"]) & ~r.correct
            out["metrics"].append({
                "fooled": int(broken.sum()), "clean_correct": int(out["clean"].sum()),
                "confidence_sum": float(r.confidence[broken].sum()),
                "forward": r.forward_passes * len(x), "backward": r.backward_passes * len(x),
                "seconds": time.perf_counter() - t})
        if fgsm is not None:
            out["fgsm"].append(run_attack(model, xt, yt, eps, fgsm).correct.numpy())
        if cfg.noise:
            for kind in ("uniform", "gaussian"):
                z = perturb_noise(xt, eps, cfg.norm, kind, generator=gen)
                with torch.no_grad():
                    out[kind].append((model(z).reshape(len(x), -1).argmax(1) == yt).numpy())
        if on_eps is not None:
            on_eps(j, out["attack"][j])
    if "zero" not in out:
        out["zero"] = zero if zero is not None else np.zeros(len(x), bool)
    return out


class _RunningCurve:
    """The curve over the samples attacked so far, reported as `point` events: a point per
    epsilon as each is done (in-process), or per epsilon after each chunk (worker processes)."""

    def __init__(self, eps: tuple[float, ...], total: int):
        self.eps, self.total = eps, total
        self.correct = np.zeros(len(eps), np.int64)
        self.samples = 0

    def _emit(self, j: int, correct: int, samples: int) -> None:
        events.emit("point", eps=self.eps[j], accuracy=correct / samples, samples=samples,
                    of=self.total)

    def partial(self, j: int, chunk_correct: np.ndarray) -> None:
        """Epsilon j is done on the chunk being attacked."""
        self._emit(j, int(self.correct[j] + chunk_correct.sum()), self.samples + len(chunk_correct))

    def add(self, attack: list[np.ndarray], emit: bool = True) -> None:
        """A chunk is done: its correct flags per epsilon join the totals."""
        self.correct += [int(c.sum()) for c in attack]
        self.samples += len(attack[0])
        if emit and events.enabled():
            for j in range(len(self.eps)):
                self._emit(j, int(self.correct[j]), self.samples)


def _ignore_sigint() -> None:
    """Worker initializer: Ctrl-C is the main process's to handle (it stops the workers)."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _kill_workers(pool) -> None:
    """Stop a ProcessPoolExecutor's workers now, not after their chunks (Python 3.14 has
    kill_workers; before it, the pool's own process table)."""
    kill = getattr(pool, "kill_workers", None)
    if kill is not None:
        kill()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.kill()
    pool.shutdown(wait=False, cancel_futures=True)


def _worker(job: dict) -> dict:
    """A worker process: load the saved module, evaluate one chunk."""
    import torch

    from aloha_ir.textio import load_module
    torch.set_num_threads(1)
    model = torch_model(load_module(job["path"]), *job["range"])
    return _chunk(model, job["x"], job["y"], job["cfg"], job["seed"])


# ---------------------------------------------------------------------------------------------------
# the evaluation


def evaluate(module, x01: np.ndarray, y: np.ndarray, config: SecurityConfig, *,
             input_range: tuple[float, float], name: str = "model",
             progress: Callable[[int, int], None] | None = None,
             keep_adversarial: bool = False) -> tuple[SecurityReport, np.ndarray | None]:
    """The security evaluation curve of `module` on samples x01 (inputs in [0, 1]) with labels y.
    Returns the report and, with keep_adversarial, the adversarial inputs [eps, N, ...]."""
    cfg = config.resolved()
    n = min(cfg.samples, len(x01))
    if n < 1:
        raise UsageError("no test samples to evaluate")
    from security.sampling import select_samples
    picked = select_samples(y, n, cfg.seed, cfg.sampling)
    x01 = np.ascontiguousarray(x01[picked], dtype=np.float32)
    y = np.ascontiguousarray(y[picked], dtype=np.int64)
    if x01.min() < 0 or x01.max() > 1:
        raise UsageError("attack-space inputs must lie in [0, 1]",
                         hint="the data was not rescaled from its recorded range")
    t0 = time.perf_counter()
    starts = list(range(0, n, CHUNK))
    parts: list[dict] = [None] * len(starts)  # type: ignore[list-item]
    curve_so_far = _RunningCurve(cfg.eps, n)
    if cfg.workers > 1 and len(starts) > 1:
        import concurrent.futures as cf
        import multiprocessing as mp

        from aloha_ir.textio import save_module
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.mlir")
            save_module(module, path)
            jobs = [{"path": path, "range": input_range, "x": x01[s:s + CHUNK],
                     "y": y[s:s + CHUNK], "cfg": cfg, "seed": cfg.seed + i}
                    for i, s in enumerate(starts)]
            with cf.ProcessPoolExecutor(min(cfg.workers, len(jobs)), initializer=_ignore_sigint,
                                        mp_context=mp.get_context("spawn")) as pool:
                try:
                    futures = {pool.submit(_worker, job): i for i, job in enumerate(jobs)}
                    for done, fut in enumerate(cf.as_completed(futures), 1):
                        parts[futures[fut]] = fut.result()
                        curve_so_far.add(parts[futures[fut]]["attack"])
                        if progress:
                            progress(done, len(jobs))
                except BaseException:  # Ctrl-C or a failed chunk: the others are not awaited
                    _kill_workers(pool)
                    raise
    else:
        model = torch_model(module, *input_range)
        for i, s in enumerate(starts):
            parts[i] = _chunk(model, x01[s:s + CHUNK], y[s:s + CHUNK], cfg, cfg.seed + i,
                              on_eps=curve_so_far.partial if events.enabled() else None)
            curve_so_far.add(parts[i]["attack"], emit=False)
            if progress:
                progress(i + 1, len(starts))

    def curve(key: str) -> list[float]:
        return [float(np.concatenate([p[key][j] for p in parts]).mean())
                for j in range(len(cfg.eps))]

    clean = float(np.concatenate([p["clean"] for p in parts]).mean())
    accuracy = curve("attack")
    avg = curve_average(list(cfg.eps), accuracy)
    level, kept = level_of(avg, clean)
    report = SecurityReport(
        name, cfg.attack, cfg.norm, cfg.mode, cfg.steps if cfg.attack != "fgsm" else 1, n,
        list(cfg.eps), accuracy, clean, avg, level, kept, input_range,
        noise={k: curve(k) for k in ("uniform", "gaussian")} if cfg.noise else {},
        fgsm_accuracy=curve("fgsm") if cfg.attack == "pgd" else None,
        zero_gradient_samples=int(sum(p["zero"].sum() for p in parts)),
        warm_start=bool(cfg.warm_start and cfg.attack == "pgd"), workers=cfg.workers,
        metrics=effectiveness(cfg.eps, [p["metrics"] for p in parts], n),
        sampling=cfg.sampling, sample_indices=picked.tolist())
    if cfg.attack == "fmn":
        from security.min_norm import median_distance
        dist = np.concatenate([p["distance"] for p in parts])
        report.distances = [float(v) for v in dist]
        report.median_distance = median_distance(dist)
        report.pgd_check = {"attack": f"PGD-{cfg.check_steps}" if cfg.check_steps else None,
                            "tests": [int(sum(p["check_tests"][j] for p in parts))
                                      for j in range(len(cfg.eps))],
                            "found": [int(sum(p["check_found"][j] for p in parts))
                                      for j in range(len(cfg.eps))],
                            "samples": int(sum(p["lowered"].sum() for p in parts))}
    if cfg.sanity:
        from security.flags import line, reliability_flags
        correct = np.stack([np.concatenate([p["attack"][j] for p in parts])
                            for j in range(len(cfg.eps))])
        report.flags = reliability_flags(report, torch_model(module, *input_range), x01, y, cfg,
                                         correct)
        report.warnings += [line(f) for f in report.flags]
    report.seconds = time.perf_counter() - t0
    adv = np.concatenate([np.stack(p["adv"]) for p in parts], axis=1) if keep_adversarial \
        else None
    return report, adv


def effectiveness(eps, chunks: list[list[dict]], n: int) -> list[dict]:
    """Per epsilon, over the chunks' raw counts: the success rate on the samples classified
    correctly when clean, the mean softmax confidence of the adversarial class on the samples
    fooled (None: none fooled), forward and backward passes per sample, and seconds."""
    rows = []
    for j, e in enumerate(eps):
        c = [chunk[j] for chunk in chunks]
        fooled, right = sum(m["fooled"] for m in c), sum(m["clean_correct"] for m in c)
        rows.append({"eps": float(e), "success_rate": fooled / right if right else 0.0,
                     "adversarial_confidence": sum(m["confidence_sum"] for m in c) / fooled
                     if fooled else None,
                     "forward_per_sample": sum(m["forward"] for m in c) / n,
                     "backward_per_sample": sum(m["backward"] for m in c) / n,
                     "seconds": sum(m["seconds"] for m in c)})
    return rows


# ---------------------------------------------------------------------------------------------------
# plots


def epsilon_axes(ax, norm: str, ylabel: str) -> str:
    """The axes every security plot shares (epsilon in the norm's units on [0, 1] inputs, a
    fraction of samples from 0 to 1); returns the norm's label for titles."""
    label = {"inf": r"$L_\infty$", "2": "$L_2$", "1": "$L_1$"}[norm]
    ax.set_xlabel(f"epsilon ({label}, inputs in [0, 1])")
    ax.set_ylabel(ylabel)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    return label


def attack_label(report: SecurityReport) -> str:
    """The attack as plots name it: FGSM, PGD-20, FMN-50."""
    return "FGSM" if report.attack == "fgsm" else f"{report.attack.upper()}-{report.steps}"


def plot_curves(reports: list[SecurityReport], path: str, title: str | None = None) -> str:
    """The security evaluation curves (attack solid, FGSM dashed, noise dotted) as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for k, r in enumerate(reports):
        color = f"C{k}"
        tag = f"{r.model}: " if len(reports) > 1 else ""
        label = attack_label(r)
        ax.plot(r.eps, r.accuracy, "-o", color=color, ms=3,
                label=f"{tag}{label} (avg {r.curve_average:.3f}, {r.level})")
        if r.fgsm_accuracy is not None:
            ax.plot(r.eps, r.fgsm_accuracy, "--", color=color, alpha=0.7, label=f"{tag}FGSM")
        for style, (kind, acc) in zip((":", "-."), r.noise.items()):
            ax.plot(r.eps, acc, style, color=color, alpha=0.6, label=f"{tag}{kind} noise")
    r0 = reports[0]
    epsilon_axes(ax, r0.norm, "accuracy")
    ax.set_title(title or f"security evaluation: {r0.model}, {r0.samples} samples, {r0.mode} mode")
    ax.legend(fontsize=7, loc="lower left")  # curves fall from the upper left
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
