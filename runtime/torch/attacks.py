"""Evasion attacks (FGSM, iterative FGSM / PGD) and random-noise perturbations under the L-inf, L2
and L1 norms, for any torch model mapping a float batch to logits.

Inputs live in a box [lo, hi] (the attack space; the caller maps it to what the model expects). A
perturbed x' satisfies ||x' - x||_p <= eps (up to float32 rounding, ~1e-7 relative) and
lo <= x' <= hi exactly: after every step it is put
back by the exact Euclidean projection onto the intersection of the ball and the box. For L-inf
that is a clip. For L2 and L1 the KKT conditions make it separable per coordinate once the ball's
multiplier is known: z_i = clip(x_i + d_i / (1 + mu), lo, hi) for L2 and z_i = clip(x_i +
soft_threshold(d_i, tau), lo, hi) for L1 (d = y - x); the norm of z - x is monotone in the
multiplier, so bisection finds it, ending on the feasible side. Projecting onto the ball and then
clipping, which most toolkits do, is feasible but not the nearest point.

Steps follow the steepest ascent of the loss's linearisation under each norm: alpha sign(g) for
L-inf, alpha g / ||g||_2 for L2. For L1 the steepest step of L1 size alpha is one coordinate, which
the box then clips, so L1 steps solve the box-constrained problem exactly instead: maximise
<g, delta> with ||delta||_1 <= alpha inside the box is a fractional knapsack, filled greedily in
decreasing |g_i| up to each coordinate's room to its bound (the saturation-aware idea of sparse
L1 descent, Tramer and Boneh 2019, made exact). PGD keeps, per sample, the first iterate that is
misclassified, so a success is never undone by a later step. The loss is the cross-entropy, with
the logit margin where the softmax saturates (`attack_loss`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from aloha_ir.errors import PassError, UsageError

NORMS = ("inf", "2", "1")
ATTACKS = ("fgsm", "pgd")
NOISES = ("uniform", "gaussian")
_BISECT = 60


def check_norm(norm: str) -> str:
    norm = {"linf": "inf", "l2": "2", "l1": "1", "Linf": "inf", "L2": "2", "L1": "1"}.get(
        str(norm), str(norm))
    if norm not in NORMS:
        raise UsageError(f"unknown norm '{norm}'", hint="use inf, 2 or 1")
    return norm


def lp_norm(d: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample norm of a batch [N, ...]."""
    flat = d.reshape(len(d), -1)
    if norm == "inf":
        return flat.abs().amax(1)
    return flat.norm(p=float(norm), dim=1)


def _per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape([len(like)] + [1] * (like.dim() - 1))


def project(y: torch.Tensor, x: torch.Tensor, eps: float | torch.Tensor, norm: str,
            lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    """The nearest point (Euclidean) to y in {z : ||z - x||_p <= eps, lo <= z <= hi}; x must lie in
    the box. eps is one bound or one per sample (a tensor [N], inf allowed). Computed in float64,
    returned in y's dtype."""
    eps = torch.as_tensor(eps, dtype=torch.float64)
    if bool((eps < 0).any()):
        raise UsageError(f"epsilon must be >= 0, got {float(eps.min())}")
    dtype = y.dtype
    y64, x64 = y.detach().double(), x.detach().double()
    if norm == "inf":
        e = _per_sample(eps, x64) if eps.dim() else eps
        z = torch.minimum(torch.maximum(y64, torch.clamp(x64 - e, min=lo)),
                          torch.clamp(x64 + e, max=hi))
        return z.to(dtype)
    d = y64 - x64
    box_lo, box_hi = lo - x64, hi - x64  # the box, relative to x: contains 0

    if norm == "2":
        def step(t):  # t = 1 / (1 + mu) in [0, 1]
            return torch.minimum(torch.maximum(_per_sample(t, d) * d, box_lo), box_hi)
        a, b = torch.zeros(len(d), dtype=d.dtype), torch.ones(len(d), dtype=d.dtype)
        inside = lp_norm(step(b), "2") <= eps
        for _ in range(_BISECT):
            mid = 0.5 * (a + b)
            ok = lp_norm(step(mid), "2") <= eps
            a, b = torch.where(ok, mid, a), torch.where(ok, b, mid)
        t = torch.where(inside, torch.ones_like(a), a)  # a: the feasible end
    elif norm == "1":
        def step(t):  # t = the soft threshold tau >= 0
            shrunk = torch.sign(d) * torch.clamp(d.abs() - _per_sample(t, d), min=0.0)
            return torch.minimum(torch.maximum(shrunk, box_lo), box_hi)
        a = torch.zeros(len(d), dtype=d.dtype)
        b = d.reshape(len(d), -1).abs().amax(1)
        inside = lp_norm(step(a), "1") <= eps
        for _ in range(_BISECT):
            mid = 0.5 * (a + b)
            ok = lp_norm(step(mid), "1") <= eps
            a, b = torch.where(ok, a, mid), torch.where(ok, mid, b)
        t = torch.where(inside, torch.zeros_like(b), b)  # b: the feasible end
    else:
        raise UsageError(f"unknown norm '{norm}'", hint="use inf, 2 or 1")
    z = x64 + step(t)
    # float64 -> dtype rounding may push a coordinate past the bound by an ulp: clip the box again
    return torch.clamp(z, lo, hi).to(dtype)


def direction(g: torch.Tensor, norm: str) -> torch.Tensor:
    """The unit-norm steepest-ascent direction for a gradient batch under L-inf or L2 (zero where
    g is zero). L1 steps depend on the box: see `l1_step`."""
    if norm == "inf":
        return torch.sign(g)
    if norm != "2":
        raise UsageError(f"direction() is for inf and 2, not '{norm}'", hint="use l1_step")
    n = g.reshape(len(g), -1).norm(dim=1).clamp_min(1e-30)
    return g / _per_sample(n, g) * _per_sample((n > 1e-30).to(g.dtype), g)


def l1_step(g: torch.Tensor, cur: torch.Tensor, alpha: float | torch.Tensor, lo: float = 0.0,
            hi: float = 1.0) -> torch.Tensor:
    """argmax <g, delta> s.t. ||delta||_1 <= alpha and lo <= cur + delta <= hi, per sample (alpha:
    one budget, or one per sample, a tensor [N]): the budget goes to the coordinates of largest
    |g| first, each up to its room to the bound."""
    n = len(g)
    if isinstance(alpha, torch.Tensor):
        alpha = alpha.reshape(n, 1).to(g.dtype)
    gf, cf = g.reshape(n, -1), cur.reshape(n, -1).to(g.dtype)
    room = torch.where(gf > 0, hi - cf, cf - lo).clamp_min(0) * (gf != 0)
    order = gf.abs().argsort(dim=1, descending=True, stable=True)
    room_sorted = room.gather(1, order)
    before = room_sorted.cumsum(1) - room_sorted  # budget used by the coordinates ahead
    amount = torch.minimum(room_sorted, (alpha - before).clamp_min(0))
    delta = torch.zeros_like(gf).scatter(1, order, amount) * torch.sign(gf)
    return delta.reshape(g.shape)


def ascent_step(g: torch.Tensor, cur: torch.Tensor, alpha: float | torch.Tensor, norm: str,
                lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    """The step of size alpha (in the norm; one, or one per sample) that most increases the loss's
    linearisation."""
    if norm == "1":
        return l1_step(g, cur, alpha, lo, hi)
    if isinstance(alpha, torch.Tensor):
        alpha = _per_sample(alpha.to(g.dtype), g)
    return alpha * direction(g, norm)


def sample_ball(shape, eps: float, norm: str, kind: str = "uniform", *,
                generator: torch.Generator | None = None, dtype=torch.float32) -> torch.Tensor:
    """Random perturbations in the norm ball of radius eps: `uniform` is uniform in the ball;
    `gaussian` is N(0, sigma^2) with sigma set so that E|delta| matches the ball's scale (inf:
    eps / 3; 2: eps / sqrt(d); 1: eps / (d sqrt(2 / pi))), then projected onto the ball."""
    n, dims = shape[0], math.prod(shape[1:])
    gen = dict(generator=generator, dtype=torch.float64)
    if kind not in NOISES:
        raise UsageError(f"unknown noise '{kind}'", hint="use uniform or gaussian")
    if eps == 0:
        return torch.zeros(shape, dtype=dtype)
    if kind == "uniform":
        if norm == "inf":
            flat = (torch.rand(n, dims, **gen) * 2 - 1) * eps
        elif norm == "2":
            v = torch.randn(n, dims, **gen)
            v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-30)
            flat = v * (torch.rand(n, 1, **gen) ** (1.0 / dims)) * eps
        else:  # d + 1 exponentials, normalised: uniform in the simplex, then random signs
            e = -torch.log(torch.rand(n, dims + 1, **gen).clamp_min(1e-300))
            signs = torch.where(torch.rand(n, dims, **gen) < 0.5, -1.0, 1.0).double()
            flat = signs * e[:, :dims] / e.sum(1, keepdim=True) * eps
    else:
        sigma = {"inf": eps / 3.0, "2": eps / math.sqrt(dims),
                 "1": eps / (dims * math.sqrt(2.0 / math.pi))}[norm]
        flat = torch.randn(n, dims, **gen) * sigma
        norms = lp_norm(flat, norm)
        flat = flat * (eps / norms.clamp_min(eps)).unsqueeze(1) if norm != "inf" else \
            flat.clamp(-eps, eps)
    return flat.reshape(shape).to(dtype)


def perturb_noise(x: torch.Tensor, eps: float, norm: str, kind: str = "uniform", *,
                  lo: float = 0.0, hi: float = 1.0,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """x plus random noise in the ball, kept in the box (clipping only shrinks each coordinate's
    change, so the result stays in the ball)."""
    delta = sample_ball(x.shape, eps, norm, kind, generator=generator, dtype=torch.float64)
    return torch.clamp(x.double() + delta, lo, hi).to(x.dtype)


@dataclass(frozen=True)
class Attack:
    """`fgsm`: one step of size eps. `pgd`: `steps` steps of size `step_size` x eps (default
    2.5 / steps, Madry et al.), from x, a random point of the ball (`random_start`), or a given
    starting point (warm start)."""

    name: str = "pgd"
    norm: str = "inf"
    steps: int = 10
    step_size: float | None = None
    random_start: bool = False

    def __post_init__(self):
        if self.name not in ATTACKS:
            raise UsageError(f"unknown attack '{self.name}'", hint="use fgsm or pgd")
        object.__setattr__(self, "norm", check_norm(self.norm))
        if self.name == "pgd" and self.steps < 1:
            raise UsageError(f"PGD needs at least one step, got {self.steps}")
        if self.step_size is not None and self.step_size <= 0:
            raise UsageError(f"the step size must be > 0, got {self.step_size}")

    @property
    def alpha(self) -> float:
        """The step, as a multiple of eps."""
        if self.name == "fgsm":
            return 1.0
        return self.step_size if self.step_size is not None else 2.5 / self.steps

    @property
    def label(self) -> str:
        return "FGSM" if self.name == "fgsm" else f"PGD-{self.steps}"


@dataclass
class AttackResult:
    x_adv: torch.Tensor
    correct: torch.Tensor  # per sample: still classified correctly
    zero_gradient: torch.Tensor  # per sample: the input gradient was exactly zero at the start
    # per sample: the softmax probability of the predicted (wrong) class at the first fooling
    # iterate; nan where the sample was not fooled
    confidence: torch.Tensor | None = None
    # the model's passes over each sample (a gradient pass counts one forward and one backward)
    forward_passes: int = 0
    backward_passes: int = 0


def wrong_and_confidence(logits: torch.Tensor, y: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample: whether the predicted class is not y, and the softmax probability (in float64)
    of the predicted class."""
    flat = logits.reshape(len(y), -1)
    return flat.argmax(1) != y, torch.softmax(flat.double(), 1).amax(1)


def attack_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per sample: the cross-entropy, or where it is exactly 0 (a softmax saturated in float32,
    whose gradient vanishes: a model taking 0..255 inputs has logit margins in the hundreds) the
    margin max_{j != y} z_j - z_y, whose gradient never vanishes. Both grow as the sample moves
    towards misclassification."""
    ce = F.cross_entropy(logits, y, reduction="none")
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), -torch.inf).amax(1)
    return torch.where(ce.detach() == 0, others - true, ce)


def input_gradient(model, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(gradient of the summed cross-entropy w.r.t. x, logits). Raises when the output does not
    depend on the input differentiably."""
    return input_gradient_of(model, x, lambda logits: attack_loss(logits, y))


def input_gradient_of(model, x: torch.Tensor, loss) -> tuple[torch.Tensor, torch.Tensor]:
    """(gradient of sum(loss(logits [N, classes])) w.r.t. x, logits), for a per-sample loss."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        if not isinstance(logits, torch.Tensor) or not logits.requires_grad:
            raise PassError("the model's output has no gradient path to its input",
                            hint="attacks need a differentiable model (a fixed-point model is "
                                 "differentiated through its straight-through estimators)")
        loss = loss(logits.reshape(len(x), -1)).sum()
        (g,) = torch.autograd.grad(loss, x, allow_unused=True)
    if g is None:
        raise PassError("the model's output has no gradient path to its input")
    return g.detach(), logits.detach()


def run_attack(model, x: torch.Tensor, y: torch.Tensor, eps: float | torch.Tensor,
               attack: Attack, *, lo: float = 0.0, hi: float = 1.0,
               init: torch.Tensor | None = None, generator: torch.Generator | None = None,
               keep_success: bool = True, check: bool = True) -> AttackResult:
    """Untargeted attack on a batch: maximise the cross-entropy within the ball and the box.

    eps is one bound, or one per sample (a float64 tensor [N]; no random start: the steps and
    the projection scale with each sample's bound). With keep_success a sample keeps the first iterate that fools the model (evaluation); without,
    every sample ends on the last iterate (the largest loss: adversarial training). Whether an
    iterate fools the model is read off the logits of the next step's gradient pass, so PGD-k
    costs k forward+backward passes and one forward; check=False skips that last forward (the
    last iterate is then returned unjudged: `correct` covers the iterates before it)."""
    if isinstance(eps, torch.Tensor):
        if eps.shape != (len(x),):
            raise UsageError(f"one epsilon per sample: got {tuple(eps.shape)} for {len(x)} samples")
        if attack.random_start and init is None:
            raise UsageError("a random start needs one epsilon for the batch",
                             hint="give a starting point (init) or a float epsilon")
        eps = eps.to(torch.float64)
        low, moves = float(eps.min()), bool((eps > 0).any())
    else:
        low, moves = eps, eps > 0
    if low < 0:
        raise UsageError(f"epsilon must be >= 0, got {low}")
    norm = attack.norm
    if init is not None:
        cur = project(init, x, eps, norm, lo, hi)
    elif attack.random_start and attack.name == "pgd" and moves:
        cur = perturb_noise(x, eps, norm, "uniform", lo=lo, hi=hi, generator=generator)
    else:
        cur = x.clone()
    steps = 0 if not moves else 1 if attack.name == "fgsm" else attack.steps
    alpha = attack.alpha * eps
    correct = zero = fooled = first = conf = None
    forward = backward = 0
    for i in range(steps + 1):
        if i < steps:
            g, logits = input_gradient(model, cur, y)
            backward += 1
        elif check or i == 0:
            with torch.no_grad():
                logits = model(cur)
        else:
            break
        forward += 1
        wrong, top = wrong_and_confidence(logits, y)  # at cur
        if i == 0:
            correct = ~wrong
            zero = g.reshape(len(g), -1).abs().amax(1) == 0 if steps else \
                torch.zeros(len(x), dtype=torch.bool)
            fooled, first = wrong.clone(), cur.clone()
            conf = torch.where(wrong, top, torch.nan)
        else:
            new = wrong & ~fooled
            first[new] = cur[new]
            conf = torch.where(new, top, conf)
            fooled |= wrong
            correct = ~fooled if keep_success else ~wrong
        if i < steps:
            cur = project(cur + ascent_step(g, cur, alpha, norm, lo, hi), x, eps, norm, lo, hi)
    if keep_success:  # the first fooling iterate, else the last one
        cur = torch.where(fooled.reshape([-1] + [1] * (x.dim() - 1)), first, cur)
    return AttackResult(cur, correct, zero, conf, forward, backward)


class AdversarialAugment:
    """Adversarial training (Goodfellow et al. 2015; Madry et al. 2018) as a training-engine batch
    transform: a `fraction` of every batch is replaced by its adversarial version, crafted
    against the current model (in eval mode) in [0, 1] attack space; the model takes inputs in
    [lo, hi]."""

    def __init__(self, attack: Attack, eps: float, *, lo: float = 0.0, hi: float = 1.0,
                 fraction: float = 0.5):
        if eps <= 0:
            raise UsageError(f"adversarial training needs epsilon > 0, got {eps}")
        if not 0 < fraction <= 1:
            raise UsageError(f"the adversarial fraction must be in (0, 1], got {fraction}")
        self.attack, self.eps, self.lo, self.hi, self.fraction = attack, eps, lo, hi, fraction

    def __call__(self, model, x: torch.Tensor, y: torch.Tensor):
        k = max(1, int(round(self.fraction * len(x))))
        scale = self.hi - self.lo
        was_training = model.training
        model.eval()
        params = [p for p in model.parameters() if p.requires_grad]
        for p in params:
            p.requires_grad_(False)
        try:
            x01 = ((x[:k] - self.lo) / scale).clamp(0, 1)
            adv = run_attack(lambda z: model(z * scale + self.lo), x01, y[:k], self.eps,
                             self.attack, keep_success=False, check=False).x_adv
        finally:
            for p in params:
                p.requires_grad_(True)
            model.train(was_training)
        return torch.cat([adv * scale + self.lo, x[k:]]), y
