"""Reliability flags of a security evaluation: the signs that a curve overestimates the security
(AutoAttack's and ART's checks: Croce and Hein 2020; Carlini et al. 2019, "On evaluating
adversarial robustness"), each with what it means and what to do.

A flag is a dict in `SecurityReport.flags`:
`{"flag": NAME, "severity": "warning"|"error", "meaning": str, "action": str, "evidence": {...}}`.
`error`: the curve is not a valid measure as it stands; `warning`: it may overestimate security.

- eps0_mismatch: the accuracy at epsilon 0 differs from the clean accuracy.
- zero_gradients: samples whose input gradient at the attack's start is exactly zero.
- pgd_weaker_than_fgsm: PGD leaves more accuracy than FGSM at some epsilon.
- non_monotone: the curve rises with epsilon (a larger ball holds the smaller one's examples).
- above_chance_full_box: PGD-50 with a random start at an epsilon whose ball covers the whole
  input box (every input is reachable) leaves accuracy above chance (1 / classes).
- gradient_free_stronger: the Square attack (forward passes only, runtime/torch/square.py) fools
  samples PGD did not, on more than GRADIENT_FREE_MARGIN of the checked samples, at some epsilon
  (the samples of the full-box check, at up to 2 (fast) or 3 (slow) epsilons).
"""

from __future__ import annotations

import math

import numpy as np

FULL_BOX_SAMPLES = 64  # samples of the box-covering PGD-50 and of the Square attack
# the Square attack's budget by mode: (forward evaluations per sample and epsilon, epsilons
# checked, spread over the curve). A masked gradient leaves PGD stuck where even a short random
# search moves, so fast mode's budget is small: the check must not dominate a fast evaluation.
SQUARE_BUDGET = {"fast": (100, 2), "slow": (500, 3)}
GRADIENT_FREE_MARGIN = 0.03  # share of checked samples Square must win beyond PGD to flag

KINDS: dict[str, tuple[str, str, str]] = {
    "eps0_mismatch": (
        "error",
        "the accuracy at epsilon 0 is not the clean accuracy: the attack changes inputs it "
        "must leave alone, or the model is not deterministic; the evaluation is broken",
        "make the model deterministic (eval mode, no dropout or noise at inference) and check "
        "the input scaling (--input-scale)"),
    "zero_gradients": (
        "warning",
        "some samples have an exactly zero input gradient: a gradient attack cannot move them "
        "(saturated or masked gradients, e.g. an input quantizer), so their accuracy under "
        "attack is an overestimate",
        "attack through a differentiable surrogate of the non-differentiable layer (BPDA), use "
        "the margin loss, and trust the gradient-free (Square) check"),
    "pgd_weaker_than_fgsm": (
        "warning",
        "PGD leaves more accuracy than FGSM, a single step of it: the optimisation is failing",
        "raise --steps or --step-size, or add --random-start"),
    "non_monotone": (
        "warning",
        "accuracy rises with epsilon although a larger ball holds every example of a smaller "
        "one: the attack misses examples it found at a smaller epsilon",
        "use more steps or random restarts, or the warm start of fast mode; read the running "
        "minimum of the curve as the bound"),
    "above_chance_full_box": (
        "error",
        "a strong attack that can reach every input of the box (PGD-50, random start) leaves "
        "accuracy above chance: gradient masking is likely, and the curve overestimates the "
        "security",
        "look for non-differentiable or saturating layers (rounding, steps, a saturated "
        "softmax), attack through a surrogate (BPDA), and compare with the Square attack"),
    "gradient_free_stronger": (
        "error",
        "a gradient-free attack (Square, forward passes only) fools samples PGD did not: the "
        "gradients mislead PGD (gradient masking), so the PGD curve overestimates the security",
        "read the lower of the two accuracies, and attack through a differentiable surrogate "
        "of the masking layers (BPDA) or with more restarts"),
}
NAMES = tuple(KINDS)


def make_flag(name: str, evidence: dict) -> dict:
    severity, meaning, action = KINDS[name]
    return {"flag": name, "severity": severity, "meaning": meaning, "action": action,
            "evidence": evidence}


def summary(flag: dict) -> str:
    """The evidence in a few words."""
    e, name = flag["evidence"], flag["flag"]
    if name == "eps0_mismatch":
        return (f"accuracy at epsilon 0 {e['accuracy_eps0']:.4f}, clean "
                f"{e['clean_accuracy']:.4f}")
    if name == "zero_gradients":
        return f"{e['samples']} of {e['of']} samples have an exactly zero input gradient"
    if name == "pgd_weaker_than_fgsm":
        return "PGD is weaker than FGSM at epsilon " + ", ".join(
            f"{p['eps']:g} ({p['pgd']:.3f} vs {p['fgsm']:.3f})" for p in e["points"])
    if name == "non_monotone":
        return "accuracy rises at epsilon " + ", ".join(
            f"{p['eps']:g} ({p['before']:.3f} -> {p['accuracy']:.3f})" for p in e["points"])
    if name == "above_chance_full_box":
        return (f"{e['attack']} at epsilon {e['eps']:g} (the whole input box is reachable) "
                f"leaves {100 * e['accuracy']:.1f}% accuracy (chance {100 * e['chance']:.1f}%)")
    return "Square fools samples PGD did not at epsilon " + ", ".join(
        f"{p['eps']:g} ({p['square']:.3f} vs PGD {p['pgd']:.3f} on {p['samples']})"
        for p in e["points"] if p["flagged"])


def line(flag: dict) -> str:
    """One console line: name, severity, evidence, meaning, what to do."""
    return (f"{flag['flag']} ({flag['severity']}): {summary(flag)}; {flag['meaning']}. "
            f"What to do: {flag['action']}")


def markdown(flags: list[dict]) -> str:
    """The flags as a Markdown section (a table, then what each means and what to do)."""
    out = ["## Reliability flags", ""]
    if not flags:
        return "\n".join(out + ["None raised: no sign that the curve overestimates the "
                                "security.", ""])
    out += ["| flag | severity | evidence |", "| --- | --- | --- |"]
    out += [f"| `{f['flag']}` | {f['severity']} | {summary(f)} |" for f in flags]
    out.append("")
    for f in flags:
        out += [f"- **{f['flag']}**: {f['meaning']}. *What to do:* {f['action']}."]
    return "\n".join(out + [""])


def chance_of(model, x) -> float:
    """1 / the number of classes of the model's output."""
    import torch
    with torch.no_grad():
        return 1.0 / model(torch.from_numpy(np.ascontiguousarray(x[:1]))).reshape(1, -1).shape[1]


def reliability_flags(report, model, x01: np.ndarray, y: np.ndarray, cfg,
                      attack_correct: np.ndarray) -> list[dict]:
    """Every flag the evaluation raises. `report`: the SecurityReport (its curves); `model`: the
    attacked model on [0, 1] inputs; `attack_correct` [eps, N]: per sample and epsilon, still
    classified correctly after the attack. Fills `report.masking_check` and
    `report.gradient_free_check` with the figures of the two extra attacks."""
    import torch

    from runtime.torch.attacks import Attack, run_attack
    flags = []
    eps = list(report.eps)
    if 0.0 in eps:
        at0 = report.accuracy[eps.index(0.0)]
        if abs(at0 - report.clean_accuracy) > 1e-12:
            flags.append(make_flag("eps0_mismatch", {"accuracy_eps0": at0,
                                                     "clean_accuracy": report.clean_accuracy}))
    if report.zero_gradient_samples:
        flags.append(make_flag("zero_gradients", {"samples": report.zero_gradient_samples,
                                                  "of": report.samples}))
    if report.fgsm_accuracy is not None:
        weaker = [{"eps": e, "pgd": a, "fgsm": f}
                  for e, a, f in zip(eps, report.accuracy, report.fgsm_accuracy) if a > f + 1e-12]
        if weaker:
            flags.append(make_flag("pgd_weaker_than_fgsm", {"points": weaker}))
    rises = [{"eps": eps[j], "before": report.accuracy[j - 1], "accuracy": report.accuracy[j]}
             for j in range(1, len(eps)) if report.accuracy[j] > report.accuracy[j - 1] + 1e-12]
    if rises:
        flags.append(make_flag("non_monotone", {"points": rises}))

    # a box-covering ball: every input is reachable, so a working attack leaves ~0 accuracy
    k = min(FULL_BOX_SAMPLES, len(x01))
    xs, ys = torch.from_numpy(x01[:k]), torch.from_numpy(y[:k])
    dims = int(np.prod(x01.shape[1:]))
    big = {"inf": 1.0, "2": math.sqrt(dims), "1": float(dims)}[cfg.norm]
    gen = torch.Generator().manual_seed(cfg.seed)
    r = run_attack(model, xs, ys, big, Attack("pgd", cfg.norm, 50, random_start=True),
                   generator=gen)
    chance = chance_of(model, x01)
    acc = float(r.correct.float().mean())
    report.masking_check = {"attack": "PGD-50", "eps": big, "samples": k, "accuracy": acc,
                            "chance": chance}
    if acc > chance + 1e-12:
        flags.append(make_flag("above_chance_full_box", dict(report.masking_check)))

    queries, most = SQUARE_BUDGET[cfg.mode]
    checked = [_square_at(model, xs, ys, eps[j], cfg.norm, queries, attack_correct[j, :k], gen)
               for j in _square_points(eps, attack_correct[:, :k], most)]
    report.gradient_free_check = {"attack": f"Square ({queries} queries)", "points": checked}
    if any(p["flagged"] for p in checked):
        flags.append(make_flag("gradient_free_stronger", dict(report.gradient_free_check)))
    return flags


def _square_points(eps: list[float], correct, most: int) -> list[int]:
    """Up to `most` nonzero epsilons where PGD left some checked sample correct (Square has
    something to beat there), spread over the curve."""
    live = [j for j, e in enumerate(eps) if e > 0 and correct[j].any()]
    if len(live) <= most:
        return live
    return sorted({live[round(i * (len(live) - 1) / (most - 1))] for i in range(most)})


def _square_at(model, xs, ys, eps: float, norm: str, queries: int, pgd_correct: np.ndarray,
               gen) -> dict:
    """Square on the samples PGD left correct at eps (the only ones it can beat PGD on)."""
    from runtime.torch.square import square_attack
    idx = np.flatnonzero(pgd_correct)
    res = square_attack(model, xs[idx], ys[idx], eps, norm, queries=queries, generator=gen)
    won, n = int((~res.correct).sum()), len(xs)
    pgd = float(pgd_correct.mean())
    return {"eps": eps, "samples": n, "pgd": pgd, "square": pgd - won / n, "square_wins": won,
            "flagged": won / n > GRADIENT_FREE_MARGIN}
