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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from aloha_ir.errors import UsageError
from runtime.torch.attacks import check_norm, input_gradient_of, lp_norm, project

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


def _wrong_and_confidence(logits: torch.Tensor, y: torch.Tensor):
    flat = logits.reshape(len(y), -1).double()
    prob = torch.softmax(flat, 1)
    pred = flat.argmax(1)
    return pred != y, prob.gather(1, pred[:, None]).squeeze(1)


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
        wrong, conf = _wrong_and_confidence(logits, y)
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
