"""A reject option under attack: the classifier abstains when its confidence (the largest softmax
probability) is at most a threshold t, as secml's CClassifierRejectThreshold does (a sample whose
top score is <= t gets the reject label -1), evaluated on the same security curve as the model.

Accounting (secml's security evaluation of a reject classifier: plain accuracy at epsilon 0,
CMetricAccuracyReject -- rejected samples count as correct -- at every epsilon > 0; e.g. Crecchi et
al., "FADER: Fast Adversarial Example Rejection", Neurocomputing 2022, and secml's reject-threshold
tutorial):

- epsilon 0 (clean inputs): accuracy = correct and accepted. A rejected clean sample is an error:
  the classifier declined a legitimate input.
- epsilon > 0 (every sample attacked): robust accuracy with rejection = correct and accepted +
  rejected. Rejection is what this defence does against an attack, so a rejected adversarial
  example is a success of the defence; the attacker wins only with a misclassified sample that is
  accepted.

So the curve can step up from epsilon 0 to the first epsilon > 0 by the share of clean samples that
were rejected; the clean cost of a threshold is read at epsilon 0 (and in the trade-off plot).

Adaptive attack. An attacker who ignores the threshold stops at the first misclassified iterate,
just past the decision boundary, where the confidence is low: rejection catches it and the defence
looks far stronger than it is (Carlini and Wagner, "Adversarial Examples Are Not Easily Detected",
AISec 2017; Tramer et al., "On Adaptive Attacks to Adversarial Example Defenses", NeurIPS 2020).
The adaptive attack knows t: it runs the same PGD on the scores

    s_j = log p_j (j != y),   s_y = max(log p_y, log t)

whose argmax differs from y exactly when some wrong class j has p_j > p_y and p_j > t, i.e. when
the sample is misclassified and accepted. Its cross-entropy raises the best wrong class until it is
confidently wrong, not merely wrong. Both curves are reported (`accuracy`: adaptive, what the
defence is worth; `naive_accuracy`: the threshold-unaware attack, an overestimate shown for
contrast); with t = 0 both are the model's plain curve.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from aloha_ir.errors import UsageError
from security.evaluate import CHUNK, SecurityConfig, curve_average, epsilon_axes, torch_model
from security.sampling import select_samples


def parse_thresholds(text: str) -> list[float]:
    """A comma-separated list of confidence thresholds in [0, 1); 0 (no rejection) is added."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"'{text}' is not a comma-separated list of numbers", where="reject",
                         hint="e.g. 0.5,0.9,0.99") from None
    bad = [v for v in values if not 0 <= v < 1]
    if not values or bad:
        raise UsageError(f"thresholds must lie in [0, 1), got {bad[0] if bad else text!r}",
                         where="reject", hint="a confidence threshold, e.g. 0.9")
    return sorted(set(values) | {0.0})


def reject_accounting(probs: np.ndarray, y: np.ndarray, threshold: float,
                      attacked: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: (counts as correct, rejected). A sample is rejected when its largest
    probability is <= threshold; it counts as correct when accepted and right, or (attacked)
    when rejected."""
    rejected = probs.max(1) <= threshold
    right = (probs.argmax(1) == y) & ~rejected
    return (right | rejected) if attacked else right, rejected


def reject_aware_scores(model, y, threshold: float):
    """The scores s of the module docstring for the batch with labels y: argmax s != y exactly
    when the model misclassifies the sample with a confidence above the threshold."""
    import torch
    floor = math.log(threshold) if threshold > 0 else -math.inf

    def scores(x):
        logp = torch.log_softmax(model(x).reshape(len(x), -1).double(), 1)
        true = logp.gather(1, y[:, None]).clamp(min=floor)
        return logp.scatter(1, y[:, None], true)
    return scores


@dataclass
class RejectCurve:
    """One threshold's curves over the report's epsilons (accuracy with rejection, see above)."""

    threshold: float
    accuracy: list[float]  # adaptive attack
    rejected: list[float]  # rejection rate of the adaptive attack's inputs
    naive_accuracy: list[float]  # the threshold-unaware attack's examples, then rejection
    naive_rejected: list[float]
    curve_average: float
    naive_curve_average: float
    selective_accuracy: float  # accuracy among the accepted clean samples (1.0 if none)


@dataclass
class RejectReport:
    eps: list[float]
    norm: str
    attack: str
    samples: int
    clean_accuracy: float  # without rejection
    curves: list[RejectCurve] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)

    def curve(self, threshold: float) -> RejectCurve:
        """The curves at an evaluated threshold (KeyError for another)."""
        return {c.threshold: c for c in self.curves}[threshold]


def evaluate_reject(module, x01: np.ndarray, y: np.ndarray, thresholds: list[float],
                    config: SecurityConfig, *,
                    input_range: tuple[float, float]) -> RejectReport:
    """The security curves of `module` with a reject option at each threshold (and 0, no
    rejection, the baseline), under the
    adaptive attack and under the threshold-unaware one (config's attack, norm, epsilons, steps,
    samples and seed; PGD starts from the clean input or, with random_start, a random point)."""
    import torch

    from runtime.torch.attacks import run_attack
    cfg = config.resolved()
    if not thresholds or any(not 0 <= t < 1 for t in thresholds):
        raise UsageError(f"thresholds must lie in [0, 1), got {list(thresholds)}", where="reject")
    thresholds = sorted(set(float(t) for t in thresholds) | {0.0})  # 0: the baseline
    n = min(cfg.samples, len(x01))
    if n < 1:
        raise UsageError("no test samples to evaluate")
    t0 = time.perf_counter()
    picked = select_samples(y, n, cfg.seed, cfg.sampling)  # the samples evaluate() draws
    x01 = np.ascontiguousarray(x01[picked], dtype=np.float32)
    y = np.ascontiguousarray(y[picked], dtype=np.int64)
    model = torch_model(module, *input_range)
    atk = cfg.attack_spec()

    def probs(x):
        with torch.no_grad():
            return torch.softmax(model(x).reshape(len(x), -1).double(), 1).numpy()
    # [threshold, eps] -> per-sample (correct, rejected) flags, for both attacks
    parts = {(kind, t, j): [] for kind in ("adaptive", "naive") for t in thresholds
             for j in range(len(cfg.eps))}
    clean = []
    for i, s in enumerate(range(0, n, CHUNK)):
        xt, yt = torch.from_numpy(x01[s:s + CHUNK]), torch.from_numpy(y[s:s + CHUNK])
        clean.append(probs(xt).argmax(1) == y[s:s + CHUNK])
        gen = torch.Generator().manual_seed(cfg.seed + i)
        for j, eps in enumerate(cfg.eps):
            naive = probs(run_attack(model, xt, yt, eps, atk, generator=gen).x_adv)
            for t in thresholds:
                parts["naive", t, j].append(reject_accounting(naive, y[s:s + CHUNK], t, eps > 0))
                adv = run_attack(reject_aware_scores(model, yt, t), xt, yt, eps, atk,
                                 generator=gen).x_adv if t > 0 else None
                p = naive if adv is None else probs(adv)
                parts["adaptive", t, j].append(reject_accounting(p, y[s:s + CHUNK], t, eps > 0))

    def rates(kind, t):
        flags = [[np.concatenate([f[k] for f in parts[kind, t, j]]) for j in
                  range(len(cfg.eps))] for k in (0, 1)]
        return [float(f.mean()) for f in flags[0]], [float(f.mean()) for f in flags[1]]
    report = RejectReport(list(cfg.eps), cfg.norm, atk.label, n,
                          float(np.concatenate(clean).mean()))
    at0 = cfg.eps.index(0.0) if 0.0 in cfg.eps else None
    for t in thresholds:
        acc, rej = rates("adaptive", t)
        nacc, nrej = rates("naive", t)
        accepted = 1.0 - rej[at0] if at0 is not None else 1.0
        selective = acc[at0] / accepted if at0 is not None and accepted > 0 else 1.0
        report.curves.append(RejectCurve(t, acc, rej, nacc, nrej,
                                         curve_average(list(cfg.eps), acc),
                                         curve_average(list(cfg.eps), nacc), selective))
    report.seconds = time.perf_counter() - t0
    return report


def best_threshold(report: RejectReport, max_clean_loss: float = 0.02) -> RejectCurve | None:
    """The threshold > 0 with the largest adaptive curve average among those costing at most
    `max_clean_loss` of accuracy at epsilon 0 against no rejection (None if no such threshold,
    or if epsilon 0 was not evaluated)."""
    if 0.0 not in report.eps:
        return None
    at0 = report.eps.index(0.0)
    base = report.curve(0.0).accuracy[at0]
    ok = [c for c in report.curves if c.threshold > 0 and base - c.accuracy[at0] <= max_clean_loss]
    return max(ok, key=lambda c: c.curve_average, default=None)


def plot_reject(report: RejectReport, path: str, title: str = "") -> str:
    """Left: accuracy with rejection vs epsilon per threshold (adaptive attack solid, the
    threshold-unaware attack dashed). Right: the trade-off vs the threshold: clean accuracy
    (correct and accepted) and clean rejection rate at epsilon 0, and at the middle epsilon the
    robust accuracy with rejection (both attacks) and the rejection rate under attack."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for k, c in enumerate(report.curves):
        color = f"C{k}"
        name = "no rejection" if c.threshold == 0 else f"t = {c.threshold:g}"
        left.plot(report.eps, c.accuracy, "-o", ms=3, color=color,
                  label=f"{name} (avg {c.curve_average:.3f})")
        if c.threshold > 0:
            left.plot(report.eps, c.naive_accuracy, "--", color=color, alpha=0.7,
                      label=f"{name}, threshold-unaware attack (avg {c.naive_curve_average:.3f})")
    epsilon_axes(left, report.norm, "accuracy with rejection")
    left.legend(fontsize=6, loc="lower left")
    left.set_title(f"{report.attack} vs a reject option, {report.samples} samples", fontsize=9)
    ts = [c.threshold for c in report.curves]
    at0 = report.eps.index(0.0) if 0.0 in report.eps else 0
    mid = len(report.eps) // 2
    series = [("clean accuracy (correct and accepted)", [c.accuracy[at0] for c in report.curves],
               "-o"),
              ("clean rejection rate", [c.rejected[at0] for c in report.curves], ":o"),
              (f"robust accuracy with rejection at eps {report.eps[mid]:g} (adaptive)",
               [c.accuracy[mid] for c in report.curves], "-s"),
              ("same, threshold-unaware attack", [c.naive_accuracy[mid] for c in report.curves],
               "--s"),
              (f"rejection rate under attack at eps {report.eps[mid]:g} (adaptive)",
               [c.rejected[mid] for c in report.curves], ":s")]
    for k, (label, values, style) in enumerate(series):
        right.plot(ts, values, style, ms=4, color=f"C{k}", label=label)
    right.set_xlabel("rejection threshold on the confidence (largest softmax probability)")
    right.set_ylabel("fraction of samples")
    right.set_ylim(-0.02, 1.02)
    right.grid(alpha=0.3)
    right.legend(fontsize=6, loc="best")
    right.set_title("accuracy/rejection trade-off", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
