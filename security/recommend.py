"""Prospective actions (the seeds' SEC engine, deliverable section 2.3.2: "a prospective action,
among a set of pre-defined measures, that may be used to improve its security level"): from an
evaluation's figures and reliability flags, the measures of `MEASURES` that apply, best first, each
with its reason, and `apply` for the ones the tool can carry out.

The rules, in order of priority:

1. `stronger_evaluation` when a reliability flag is raised: the figures below it may be an
   overestimate, so no measure can be judged on them. Parameters: PGD with at least 50 steps
   (twice the evaluation's), a random start. Applied: the same samples evaluated again.
2. `adversarial_training` when the level is not `high`: PGD-7 (random start, half of each batch;
   Madry et al. 2018) at twice the epsilon where the curve falls to half the clean accuracy,
   capped at the largest evaluated epsilon (the threat model's epsilon, with a margin beyond where
   the model collapses). Applied: fine-tuning with the training engine.
3. `input_gradient_penalty` when the level is not `high`: the cheaper mitigation (one extra
   backward pass per step against eight for PGD-7; Ross and Doshi-Velez 2018,
   runtime.torch.regularize). Applied: fine-tuning with the training engine.
4. `rejection` at the threshold with the best curve average under the adaptive attack among those
   costing at most 2 points of clean accuracy, when it gains at least a point over no rejection
   (security.reject). Not applied: it is a decision rule for the application around the deployed
   model (the generated code returns the scores); the evaluation measured it already.
5. `more_bits` when a fixed-point model's curve average is more than 2 points below its float
   version's (`alohac secure MODEL --deployed BITS|FILE`): twice the bits, at most 16. Applied
   when the tool quantized the deployed model itself (`--deployed BITS`): the float model
   quantized again the same way (PTQ on the same data) at the recommended bits, and the deployed
   curve evaluated again on the same samples. A deployed model quantized elsewhere (`--deployed
   FILE`) is not: the tool cannot redo another method.

When the evaluated model is the deployed one (`float_result` given), the training measures are
listed but not applied: the tool trains float models (apply them to MODEL without `--deployed`,
then quantize again).

With no flag and a `high` level the list is the single measure `none`.

Flags are read from the report's `flags` (security/flags.py) when it has them; otherwise they
are derived here from its figures, with the same names and fields.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from aloha_ir.errors import UnsupportedError, UsageError
from aloha_ir.fixedpoint import MAX_BITS
from security.evaluate import SecurityConfig, SecurityReport, evaluate

MEASURES = {
    "stronger_evaluation": "evaluate again with a stronger attack (more PGD steps, random start)",
    "adversarial_training": "fine-tune on PGD adversarial examples (Madry et al. 2018)",
    "input_gradient_penalty": "fine-tune with an input-gradient penalty (Ross and Doshi-Velez "
                              "2018)",
    "rejection": "reject inputs whose confidence is at most a threshold (secml's reject option)",
    "more_bits": "quantize with more bits",
    "none": "no measure needed",
}
APPLICABLE = ("stronger_evaluation", "adversarial_training", "input_gradient_penalty",
              "more_bits")
TRAINING = ("adversarial_training", "input_gradient_penalty")
FLAG_NAMES = ("zero_gradients", "gradient_free_stronger", "non_monotone", "above_chance_full_box",
              "eps0_mismatch", "pgd_weaker_than_fgsm")
TRAIN_STEPS = 7
TRAIN_FRACTION = 0.5
PENALTY_WEIGHT = 10.0
MAX_CLEAN_LOSS = 0.02  # a rejection threshold may cost at most this much clean accuracy
MIN_GAIN = 0.01  # a measured measure must gain at least this much curve average
BITS_GAP = 0.02  # float vs fixed point curve averages


@dataclass(frozen=True)
class Recommendation:
    measure: str
    params: dict
    reason: str
    applicable: bool

    def to_json(self) -> dict:
        return asdict(self) | {"what": MEASURES[self.measure]}

    def describe(self) -> str:
        """One line: the measure, its parameters, and why."""
        args = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                         for k, v in self.params.items())
        return f"{MEASURES[self.measure]}{f' ({args})' if args else ''}: {self.reason}"


def flags_of(result: dict) -> list[dict]:
    """The report's reliability flags (security/flags.py); a security.json written before
    evaluations carried flags has none."""
    return list(result.get("flags") or [])


def _eps_half(result: dict) -> float | None:
    """The smallest evaluated epsilon at which the accuracy is at most half the clean accuracy."""
    half = 0.5 * result["clean_accuracy"]
    return next((e for e, a in zip(result["eps"], result["accuracy"]) if e > 0 and a <= half),
                None)


def recommend(result: dict, *, reject: dict | None = None, float_result: dict | None = None,
              bits: int | None = None, requantize: bool = False) -> list[Recommendation]:
    """The measures for an evaluation (`SecurityReport.to_json()`, security.json), best first.
    `reject`: a reject-option evaluation (`RejectReport.to_json()`); `float_result`: the float
    model's evaluation over the same epsilons when `result` is of its fixed-point version with
    `bits` bits (its narrowest format); `requantize`: the tool quantized that version itself, so it can
    quantize the float model again with more bits."""
    recs: list[Recommendation] = []
    flags = [f for f in flags_of(result) if f["flag"] in FLAG_NAMES]
    if flags:
        steps = int(result.get("steps") or 1)
        recs.append(Recommendation(
            "stronger_evaluation", {"steps": max(50, 2 * steps), "random_start": True},
            "the evaluation is unreliable (" + "; ".join(
                f"{f['flag']}: {f['meaning']}" for f in flags) + "); every figure below may "
            "overestimate the security", True))
    clean, avg, eps_max = result["clean_accuracy"], result["curve_average"], max(result["eps"])
    kept = f"keeps {100 * result['kept']:.0f}% of its clean accuracy {clean:.3f}"
    deployed = float_result is not None
    not_here = ("; --apply trains float models only: apply it to the float model (alohac secure "
                "MODEL --apply, without --deployed), then quantize again") if deployed else ""
    if result["level"] != "high" and eps_max > 0:
        half = _eps_half(result)
        train_eps = round(min(eps_max, 2 * half), 6) if half is not None else eps_max
        where = (f"the accuracy falls to half the clean accuracy at eps {half:g}" if half else
                 f"the accuracy stays above half the clean accuracy up to eps {eps_max:g}")
        recs.append(Recommendation(
            "adversarial_training", {"eps": train_eps, "steps": TRAIN_STEPS,
                                     "fraction": TRAIN_FRACTION, "norm": result["norm"]},
            f"{result['level']} security: the curve average {avg:.3f} {kept}; {where}, so train "
            f"on PGD-{TRAIN_STEPS} examples at eps {train_eps:g}{not_here}", not deployed))
        recs.append(Recommendation(
            "input_gradient_penalty", {"weight": PENALTY_WEIGHT},
            f"{result['level']} security (curve average {avg:.3f}): a cheaper alternative to "
            "adversarial training that flattens the loss around the data (about 2 passes per "
            f"step against {TRAIN_STEPS + 1}){not_here}", not deployed))
    if reject is not None:
        rec = _rejection(reject)
        if rec is not None:
            recs.append(rec)
    if deployed and float_result["curve_average"] - avg > BITS_GAP and \
            (bits is None or bits < MAX_BITS):
        gap = float_result["curve_average"] - avg
        more = min(MAX_BITS, 2 * bits) if bits else None
        how = (f"quantize again at {more} bits" if more else "quantize again with more bits")
        how += (" (--apply does: PTQ on the same data, and the deployed curve again)"
                if requantize and more else
                " (alohac quantize --bits; --apply cannot: the deployed model was quantized "
                "elsewhere, redo that method with more bits and pass it as --deployed FILE)")
        recs.append(Recommendation(
            "more_bits", {"bits": more} if more else {},
            f"the fixed-point model's curve average {avg:.3f} is {100 * gap:.1f} points below "
            f"its float version's {float_result['curve_average']:.3f}: {how}",
            bool(requantize and more)))
    if not recs:
        recs.append(Recommendation("none", {}, f"high security: the curve average {avg:.3f} "
                                   f"{kept}, and no reliability flag", False))
    return recs


def _rejection(reject: dict) -> Recommendation | None:
    eps = reject["eps"]
    if 0.0 not in eps:
        return None
    at0 = eps.index(0.0)
    curves = {c["threshold"]: c for c in reject["curves"]}
    base = curves.get(0.0)
    if base is None:
        return None
    ok = [c for t, c in curves.items()
          if t > 0 and base["accuracy"][at0] - c["accuracy"][at0] <= MAX_CLEAN_LOSS]
    best = max(ok, key=lambda c: c["curve_average"], default=None)
    if best is None or best["curve_average"] < base["curve_average"] + MIN_GAIN:
        return None
    cost = base["accuracy"][at0] - best["accuracy"][at0]
    return Recommendation(
        "rejection", {"threshold": best["threshold"]},
        f"under an attack that knows the threshold the curve average rises from "
        f"{base['curve_average']:.3f} to {best['curve_average']:.3f} for {100 * cost:.1f} points "
        f"of clean accuracy ({100 * best['rejected'][at0]:.1f}% of clean inputs rejected; an "
        f"attack unaware of it would claim {best['naive_curve_average']:.3f}); applied by the "
        "application, outside the generated code", False)


@dataclass
class Applied:
    """A measure carried out: the model before and after (the same one for an evaluation-only
    measure), their evaluations on the same samples, and the new module (None if unchanged)."""

    measure: str
    params: dict
    before: SecurityReport
    after: SecurityReport
    module: object | None = None
    seconds: float = 0.0
    training: dict = field(default_factory=dict)

    @property
    def change(self) -> float:
        """The change of the curve average (after - before)."""
        return self.after.curve_average - self.before.curve_average

    def to_json(self) -> dict:
        def summary(r: SecurityReport) -> dict:
            return {"clean_accuracy": r.clean_accuracy, "curve_average": r.curve_average,
                    "level": r.level, "accuracy": r.accuracy, "eps": r.eps, "steps": r.steps}
        return {"measure": self.measure, "params": self.params, "before": summary(self.before),
                "after": summary(self.after), "curve_average_change": self.change,
                "clean_accuracy_change": self.after.clean_accuracy - self.before.clean_accuracy,
                "seconds": self.seconds, "training": self.training}


def apply(rec: Recommendation, module, before: SecurityReport, x01: np.ndarray, y: np.ndarray,
          config: SecurityConfig, *, input_range: tuple[float, float], splits=None,
          epochs: int = 5, seed: int = 0, progress: bool = False, float_module=None,
          data: str | None = None) -> Applied:
    """Carry out `rec` on `module` and evaluate again on the samples `before` was computed on
    (x01, y, config): a stronger evaluation re-attacks the same model; a training measure
    fine-tunes a copy of it on `splits` (in the model's input range) with the training engine.
    With `float_module`, `module` is its deployment quantized with PTQ on `data` (`alohac secure
    --deployed BITS`) and every curve is the program's (security.deployed.evaluate_program):
    `more_bits` quantizes float_module again at the recommended bits. Refuses measures the tool
    cannot carry out, and training a fixed-point model (train the float model, then quantize it
    again)."""
    from security.evaluate import is_quantized
    if rec.measure not in APPLICABLE:
        raise UsageError(f"'{rec.measure}' cannot be applied by the tool: {rec.reason}",
                         hint="apply it by hand, or apply one of " + ", ".join(APPLICABLE))
    t0 = time.perf_counter()

    def again(model, cfg) -> SecurityReport:
        if float_module is None:
            return evaluate(model, x01, y, cfg, input_range=input_range, name=before.model)[0]
        from security.deployed import evaluate_program
        return evaluate_program(model, x01, y, cfg, input_range=input_range,
                                name=before.model)[0]
    if rec.measure == "stronger_evaluation":
        stronger = replace(config, steps=rec.params["steps"],
                           random_start=rec.params["random_start"], warm_start=False)
        return Applied(rec.measure, rec.params, before, again(module, stronger), None,
                       time.perf_counter() - t0)
    if rec.measure == "more_bits":
        if float_module is None or data is None or not rec.params.get("bits"):
            raise UnsupportedError(
                "more_bits quantizes the float model again, and the tool has not got it (or the "
                "data it was calibrated on, or the bits)",
                hint="alohac secure MODEL --deployed BITS --apply quantizes MODEL itself; "
                     "otherwise quantize again with more bits by hand")
        from security.deployed import quantize_ptq
        new = quantize_ptq(float_module, rec.params["bits"], data, seed)
        return Applied(rec.measure, rec.params, before, again(new, config), new,
                       time.perf_counter() - t0)
    from aloha_ir.dialects.nn import graph_of
    if is_quantized(graph_of(module)):
        raise UnsupportedError(f"{rec.measure} retrains the model, and this one is fixed point",
                               hint="apply it to the float model, then quantize it again")
    if splits is None:
        raise UsageError(f"{rec.measure} needs training data", hint="pass --data")
    from aloha_ir.weights import clone_with_weights
    from runtime.torch.module import build
    from runtime.torch.train import TrainConfig, train
    lo, hi = input_range
    new = clone_with_weights(module)
    model = build(new, logits=True)
    cfg = TrainConfig(epochs=epochs, seed=seed, progress=progress,
                      label=f"secure: {rec.measure.replace('_', ' ')}")
    if rec.measure == "adversarial_training":
        from runtime.torch.attacks import AdversarialAugment, Attack
        aug = AdversarialAugment(Attack("pgd", rec.params["norm"], rec.params["steps"],
                                        random_start=True), rec.params["eps"], lo=lo, hi=hi,
                                 fraction=rec.params["fraction"])
        result = train(model, splits, cfg, augment=aug)
    else:
        from runtime.torch.regularize import InputGradientPenalty
        result = train(model, splits, cfg,
                       penalty=InputGradientPenalty(rec.params["weight"], lo=lo, hi=hi))
    model.write_back(new)
    after = again(new, config)
    training = {"epochs": epochs, "best_epoch": result.best_epoch,
                "val_accuracy": result.val.accuracy}
    return Applied(rec.measure, rec.params, before, after, new, time.perf_counter() - t0,
                   training)


def top_applicable(recs: list[Recommendation]) -> Recommendation | None:
    """The first measure the tool can carry out."""
    return next((r for r in recs if r.applicable), None)


def describe_change(applied: Applied) -> str:
    """One line: before -> after, curve average and clean accuracy."""
    b, a = applied.before, applied.after
    sign = "+" if applied.change >= 0 else ""
    return (f"{applied.measure}: curve average {b.curve_average:.4f} -> {a.curve_average:.4f} "
            f"({sign}{100 * applied.change:.1f} points), clean accuracy {b.clean_accuracy:.4f} -> "
            f"{a.clean_accuracy:.4f}, level {b.level} -> {a.level}")

