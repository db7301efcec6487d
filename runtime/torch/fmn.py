"""Fast Minimum-Norm attack (FMN: Pintor, Roli, Brendel and Biggio, "Fast Minimum-norm Adversarial
Attacks through Adaptive Norm Constraints", NeurIPS 2021) under the L-inf, L2 and L1 norms: per
sample, the smallest perturbation it finds that makes the model misclassify, inside the box.

One run gives every sample's adversarial distance, so the security evaluation curve at any epsilon
is the fraction of samples whose distance exceeds it (foolbox's way; ART runs one attack per
epsilon). The algorithm, per sample, alternates two updates for `steps` iterations:

- the norm bound eps_k: while no adversarial point was found, the distance to the decision boundary
  of the model's linearisation, ||delta||_p + |m| / ||grad m||_q (m the logit margin, q the dual
  norm), enlarged by (1 + gamma_k): with the paper's estimate alone an iterate can land exactly on
  a linear model's boundary and stay there, never across; once found, it shrinks by (1 - gamma_k)
  at an adversarial iterate (never above the best distance so far) and grows by (1 + gamma_k) at
  a non-adversarial one;
- the perturbation: a step of L2 size alpha_k against the margin's gradient, then the exact
  Euclidean projection onto {||delta||_p <= eps_k} inside the box (`attacks.project`; the paper
  projects onto the ball and then clips).

alpha_k and gamma_k decay from their initial to their final values by cosine annealing. The
distance of a sample the model misclassifies already is 0; of one never fooled, inf.

`refine_on_grid` then checks the distances against a fixed-epsilon attack on the curve's grid,
where they matter: per sample, at the grid epsilon just below its distance, and further down only
where that attack wins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from aloha_ir.errors import UsageError
from runtime.torch.attacks import (check_norm, input_gradient_of, lp_norm, project,
                                   wrong_and_confidence)

DUAL = {"inf": "1", "2": "2", "1": "inf"}
# the initial L2 step, in units of the [0, 1] box (the paper's: 1 for L2 and L1, 10 for L-inf,
# where the projection onto the ball clips most of a long step: it acts as a sign step)
ALPHA_INIT = {"inf": 10.0, "2": 1.0, "1": 1.0}
ALPHA_DECAY = 100.0  # alpha_final = alpha_init / ALPHA_DECAY
GAMMA_INIT, GAMMA_FINAL = 0.05, 0.001


@dataclass(frozen=True)
class FMN:
    """The attack's settings; None takes the norm's default."""

    norm: str = "inf"
    steps: int = 100
    alpha_init: float | None = None
    gamma_init: float = GAMMA_INIT
    gamma_final: float = GAMMA_FINAL

    def __post_init__(self):
        object.__setattr__(self, "norm", check_norm(self.norm))
        if self.steps < 1:
            raise UsageError(f"FMN needs at least one step, got {self.steps}", where="steps")
        if self.alpha_init is not None and not self.alpha_init > 0:
            raise UsageError(f"the step size must be > 0, got {self.alpha_init}")
        if not 0 < self.gamma_final <= self.gamma_init < 1:
            raise UsageError("need 0 < gamma_final <= gamma_init < 1, got "
                             f"{self.gamma_final}, {self.gamma_init}")

    @property
    def label(self) -> str:
        return f"FMN-{self.steps}"


@dataclass
class MinNormResult:
    # float64 per sample: ||x_adv - x||_p; 0 when misclassified already, inf when never fooled
    distance: torch.Tensor
    x_adv: torch.Tensor  # the smallest adversarial input found (x itself where none was)
    confidence: torch.Tensor  # softmax probability of the predicted class at x_adv (nan: none)
    clean_correct: torch.Tensor
    zero_gradient: torch.Tensor  # per sample: the margin's input gradient was exactly zero at x
    forward_passes: int  # per sample (a gradient pass counts one forward and one backward)
    backward_passes: int


def _cosine(start: float, end: float, k: int, steps: int) -> float:
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * k / steps))


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per sample: z_y - max_{j != y} z_j (negative when another class wins)."""
    flat = logits.reshape(len(y), -1)
    true = flat.gather(1, y[:, None]).squeeze(1)
    others = flat.masked_fill(torch.nn.functional.one_hot(y, flat.shape[1]).bool(),
                              -torch.inf).amax(1)
    return true - others


def run_fmn(model, x: torch.Tensor, y: torch.Tensor, attack: FMN, *, lo: float = 0.0,
            hi: float = 1.0) -> MinNormResult:
    """The minimum-norm attack on a batch: each sample's smallest adversarial distance found."""
    norm, n = attack.norm, len(x)
    alpha0 = attack.alpha_init if attack.alpha_init is not None else ALPHA_INIT[norm]
    x = x.detach()
    delta = torch.zeros_like(x)
    eps = torch.full((n,), math.inf, dtype=torch.float64)
    best = torch.full((n,), math.inf, dtype=torch.float64)
    best_adv, best_conf = x.clone(), torch.full((n,), math.nan, dtype=torch.float64)
    clean_correct = zero = None
    for k in range(attack.steps + 1):
        cur = x + delta
        if k < attack.steps:
            g, logits = input_gradient_of(model, cur, lambda z: margin(z, y))
        else:  # judge the last iterate
            with torch.no_grad():
                logits = model(cur)
        wrong, conf = wrong_and_confidence(logits, y)
        if clean_correct is None:
            clean_correct = ~wrong
            zero = g.reshape(n, -1).abs().amax(1) == 0
        d = lp_norm((cur.double() - x.double()), norm)
        better = wrong & (d < best)
        best = torch.where(better, d, best)
        best_adv[better] = cur[better]
        best_conf = torch.where(better, conf, best_conf)
        if k == attack.steps:
            break
        gamma = _cosine(attack.gamma_init, attack.gamma_final, k, attack.steps)
        found = torch.isfinite(best)
        m = margin(logits, y).double()
        dual = lp_norm(g.double(), DUAL[norm]).clamp_min(1e-30)
        boundary = (d + m.abs() / dual) * (1 + gamma)
        eps = torch.where(wrong, torch.minimum(eps * (1 - gamma), best),
                          torch.where(found, eps * (1 + gamma), boundary))
        alpha = _cosine(alpha0, alpha0 / ALPHA_DECAY, k, attack.steps)
        gn = g.reshape(n, -1).norm(dim=1).clamp_min(1e-30)
        step = g / gn.reshape([n] + [1] * (x.dim() - 1))
        cur = project(cur - alpha * step, x, eps, norm, lo, hi)
        delta = cur - x
    return MinNormResult(best, best_adv, best_conf, clean_correct, zero, attack.steps + 1,
                         attack.steps)


@dataclass
class GridRefinement:
    """The minimum-norm result after the grid search (`refine_on_grid`)."""

    distance: torch.Tensor  # float64 per sample, never above FMN's
    x_adv: torch.Tensor
    confidence: torch.Tensor
    lowered: torch.Tensor  # per sample: a PGD run found an input closer than FMN's
    tests: list[int]  # per grid epsilon: the samples PGD attacked there
    found: list[int]  # per grid epsilon: those it fooled (their distance fell to at most it)
    seconds: list[float]  # per grid epsilon: the time of its share of the PGD runs
    # per grid epsilon: the model's forward and backward passes over the samples attacked there
    forward: list[int]
    backward: list[int]


def refine_on_grid(model, x: torch.Tensor, y: torch.Tensor, result: MinNormResult,
                   grid, attack, *, lo: float = 0.0, hi: float = 1.0) -> GridRefinement:
    """Lower FMN's distances to what a fixed-epsilon attack (`attack`, an attacks.Attack) finds
    on a grid of epsilons, attacking each sample only where its place on the curve is in doubt.

    A sample with distance d counts as fooled at every grid epsilon >= d; the doubt is the grid
    epsilon just below d. Per sample, the attack runs there from the clean input, not from FMN's
    point: FMN follows the runner-up class's margin and can settle on a farther class's boundary
    (on the MNIST CNN, 5 of 100 samples: PGD-20 from FMN's point stays there, from the clean
    input finds the nearer class). Where it fools the model, the distance falls to that
    adversarial input's, and the search goes on downwards, galloping (1, 2, 4, ... grid points below) until a run fails, then
    bisecting between the lowest success and the highest failure. A sample FMN placed right costs
    one run, one it placed k points too high about 2 log2(k): against a run at every grid epsilon
    (20 for a 20-point curve), a handful. Grid epsilons below a failed run are not attacked (an
    attack that fails at epsilon is taken to fail below it: the curve stays monotone). Every
    round attacks its samples in one batch, each at its own epsilon."""
    from runtime.torch.attacks import lp_norm, run_attack
    import time
    n = len(x)
    points = [float(e) for e in grid]
    positive = sorted({e for e in points if e > 0})
    g = torch.tensor(positive, dtype=torch.float64)
    m = len(positive)
    dist, adv = result.distance.clone(), result.x_adv.clone()
    conf = result.confidence.clone()
    lowered = torch.zeros(n, dtype=torch.bool)
    tests, found, seconds = [0] * m, [0] * m, [0.0] * m
    forward, backward = [0] * m, [0] * m
    fooled_at = torch.searchsorted(g, dist)  # the lowest grid index known fooled (m: none)
    robust_at = torch.full((n,), -1, dtype=torch.long)  # the highest index a run failed at
    stride = torch.ones(n, dtype=torch.long)
    failed = torch.zeros(n, dtype=torch.bool)
    target = fooled_at - 1
    active = result.clean_correct & (fooled_at > 0)
    while bool(active.any()):
        idx = torch.nonzero(active).squeeze(1)
        at = target[idx]
        t = time.perf_counter()
        r = run_attack(model, x[idx], y[idx], g[at], attack, lo=lo, hi=hi)
        spent = time.perf_counter() - t
        for k, c in zip(*torch.unique(at, return_counts=True)):
            tests[int(k)] += int(c)
            seconds[int(k)] += spent * int(c) / len(idx)
            forward[int(k)] += r.forward_passes * int(c)
            backward[int(k)] += r.backward_passes * int(c)
        ok = ~r.correct
        for k in at[ok].tolist():
            found[k] += 1
        hit, at_hit = idx[ok], at[ok]
        if len(hit):
            # inside the ball at g[at_hit] up to the float32 rounding of the input (~1e-7
            # relative): counted there, so the success is not lost to an ulp
            d = torch.minimum(lp_norm(r.x_adv[ok].double() - x[hit].double(), attack.norm),
                              g[at_hit])
            dist[hit] = d  # g[at] < dist: always closer
            adv[hit] = r.x_adv[ok]
            conf[hit] = r.confidence[ok]
            lowered[hit] = True
            fooled_at[hit] = torch.searchsorted(g, d)
        miss = idx[~ok]
        robust_at[miss] = at[~ok]
        failed[miss] = True
        gallop = ~failed
        stride = torch.where(gallop, stride * 2, stride)
        target = torch.where(gallop, (fooled_at - stride).clamp_min(robust_at + 1),
                             (robust_at + fooled_at) // 2)
        active = result.clean_correct & (fooled_at - robust_at > 1)
    index = {e: i for i, e in enumerate(positive)}
    per_point = [(tests[index[e]], found[index[e]], seconds[index[e]], forward[index[e]],
                  backward[index[e]]) if e > 0 else (0, 0, 0.0, 0, 0) for e in points]
    tests, found, seconds, forward, backward = ([p[k] for p in per_point] for k in range(5))
    return GridRefinement(dist, adv, conf, lowered, tests, found, seconds, forward, backward)
