"""A gradient-free attack: the Square attack (Andriushchenko, Croce, Flammarion and Hein, "Square
Attack: a query-efficient black-box adversarial attack via random search", ECCV 2020), the
reliability check that AutoAttack runs beside its gradient attacks.

Random search on the margin loss z_y - max_{j != y} z_j (the sample is fooled when it is < 0):
every iteration changes the perturbation on one square window of side s (the same position for
the batch, a random sign per sample and channel) and keeps the change where the margin falls. The
window's area is a fraction p of the image, halved on the paper's schedule (iterations 10, 50, 200,
500, 1000, 2000, 4000, 6000, 8000 of 10,000, scaled to the query budget).

- L-inf: the paper's Algorithm 1 with its vertical-stripe initialisation: the window takes the
  values x +- eps per channel, so every iterate sits on a vertex of the ball (clipped to the box).
- L2 and L1: a simpler random search in the same windows (not the paper's L2 proposal): the
  window gets a bump of +-v per channel whose own norm is eps, added to the current perturbation,
  which is then projected onto the ball and the box (runtime.torch.attacks.project).

Only forward passes: no gradient is read, so rounding, steps or any masking of the gradient do not
stop it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from aloha_ir.errors import UsageError
from runtime.torch.attacks import check_norm, project

P_INIT = 0.1  # the window's first share of the image (the paper: 0.05 on ImageNet, 0.3 on MNIST)
_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


@dataclass
class SquareResult:
    x_adv: torch.Tensor
    correct: torch.Tensor  # per sample: still classified correctly
    queries: torch.Tensor  # per sample: forward evaluations of the search (start included)


def window_fraction(p_init: float, it: int, queries: int) -> float:
    """The paper's schedule: p_init halved at each of its iteration marks (of 10,000) passed."""
    at = int(it / queries * 10000)
    return p_init / 2 ** sum(at > mark for mark in _HALVINGS)


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """z_y - max_{j != y} z_j per sample (< 0: fooled, up to ties)."""
    z = logits.reshape(len(y), -1).double()
    true = z.gather(1, y[:, None]).squeeze(1)
    others = z.scatter(1, y[:, None], -math.inf).amax(1)
    return true - others


def _as_images(x: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] view: images as they are, a flat input [N, D] as one row of D pixels."""
    if x.dim() == 4:
        return x
    if x.dim() == 2:
        return x.reshape(len(x), 1, 1, -1)
    if x.dim() == 3:
        return x.reshape(len(x), 1, *x.shape[1:])
    return x.reshape(len(x), 1, 1, -1)


def square_attack(model, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str = "inf", *,
                  queries: int = 300, p_init: float | None = None, lo: float = 0.0,
                  hi: float = 1.0, generator: torch.Generator | None = None) -> SquareResult:
    """Untargeted Square attack on a batch within the eps-ball and the box [lo, hi]; a sample
    stops once fooled. `queries` bounds the forward evaluations per sample."""
    norm = check_norm(norm)
    if eps < 0:
        raise UsageError(f"epsilon must be >= 0, got {eps}")
    if queries < 1:
        raise UsageError(f"the Square attack needs at least one query, got {queries}")
    p_init = P_INIT if p_init is None else p_init
    gen = generator

    def predict(z):
        with torch.no_grad():
            return model(z.reshape((len(z),) + tuple(x.shape[1:])).to(x.dtype))

    img = _as_images(x.detach()).double()
    n, c, h, w = img.shape
    used = torch.ones(n, dtype=torch.long)
    if eps == 0:
        right = predict(img).reshape(n, -1).argmax(1) == y
        return SquareResult(x.detach().clone(), right, used)
    if norm == "inf":  # vertical stripes of +-eps, one sign per channel and column
        signs = torch.where(torch.rand(n, c, 1, w, generator=gen) < 0.5, -1.0, 1.0).double()
        best = torch.clamp(img + eps * signs, lo, hi)
    else:
        best = img.clone()
    best_margin = margin(predict(best), y)
    for it in range(queries - 1):
        active = best_margin > 0
        if not bool(active.any()):
            break
        idx = active.nonzero().squeeze(1)
        p = window_fraction(p_init, it, queries)
        s = max(1, min(int(round(math.sqrt(p * h * w))), h, w))
        r = int(torch.randint(0, h - s + 1, (1,), generator=gen))
        q = int(torch.randint(0, w - s + 1, (1,), generator=gen))
        k = len(idx)
        sign = torch.where(torch.rand(k, c, 1, 1, generator=gen) < 0.5, -1.0, 1.0).double()
        cand = best[idx].clone()
        if norm == "inf":
            cand[:, :, r:r + s, q:q + s] = img[idx, :, r:r + s, q:q + s] + eps * sign
            cand = torch.clamp(cand, lo, hi)
        else:
            v = eps / (s * math.sqrt(c)) if norm == "2" else eps / (s * s * c)
            cand[:, :, r:r + s, q:q + s] += v * sign
            cand = project(cand, img[idx], eps, norm, lo, hi)
        cand_margin = margin(predict(cand), y[idx])
        used[idx] += 1
        better = cand_margin < best_margin[idx]
        best[idx[better]] = cand[better]
        best_margin[idx[better]] = cand_margin[better]
    x_adv = best.reshape(x.shape).to(x.dtype)
    # the decision as every other attack reads it (argmax, first index on ties), not the margin
    right = predict(x_adv).reshape(n, -1).argmax(1) == y
    return SquareResult(x_adv, right, used)
