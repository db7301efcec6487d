"""Attacks and noise: every perturbation respects its norm bound and the box (all three norms), the
projections are the nearest feasible points (checked by the projection's variational inequality
and against a brute-force search), and the attacks match hand computations on a linear model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aloha_ir.errors import PassError, UsageError
from runtime.torch.attacks import (Attack, direction, l1_step, lp_norm, perturb_noise, project,
                                    run_attack, sample_ball)

NORMS = ["inf", "2", "1"]
TOL = 1e-6


def _within(z, x, eps, norm, lo=0.0, hi=1.0):
    d = (z.double() - x.double())
    assert float(lp_norm(d, norm).max()) <= eps * (1 + TOL) + TOL
    assert float(z.min()) >= lo and float(z.max()) <= hi


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("eps", [0.0, 0.05, 0.3, 2.0])
def test_projection_is_feasible_and_the_nearest_point(norm, eps):
    """The projection p of y onto the convex set C satisfies <y - p, z - p> <= 0 for every z in C;
    random feasible points z (noise samples, box corners moved into the ball) never violate it."""
    g = torch.Generator().manual_seed(1)
    x = torch.rand(16, 3, 5, 5, generator=g, dtype=torch.float64)
    y = x + torch.randn(x.shape, generator=g, dtype=torch.float64) * 0.7
    p = project(y, x, eps, norm)
    _within(p, x, eps, norm)
    for _ in range(20):
        z = perturb_noise(x, eps, norm, "uniform", generator=g)
        _within(z, x, eps, norm)
        inner = ((y - p) * (z - p)).reshape(len(x), -1).sum(1)
        assert float(inner.max()) <= 1e-9


@pytest.mark.parametrize("norm", ["2", "1"])
def test_projection_beats_ball_then_clip_and_a_brute_force_search(norm):
    """In 2-D the exact projection onto ball and box is found by a dense grid search; the common
    ball-then-clip shortcut is feasible but farther away."""
    x = torch.tensor([[0.9, 0.5]], dtype=torch.float64)
    y = torch.tensor([[1.6, 1.3]], dtype=torch.float64)
    eps = 0.6
    p = project(y, x, eps, norm)
    grid = torch.stack(torch.meshgrid(torch.linspace(0, 1, 801, dtype=torch.float64),
                                      torch.linspace(0, 1, 801, dtype=torch.float64),
                                      indexing="ij"), -1).reshape(-1, 2)
    ok = lp_norm(grid - x, norm) <= eps
    best = ((grid[ok] - y) ** 2).sum(1).min().sqrt()
    got = float(((p - y) ** 2).sum().sqrt())
    assert got <= float(best) + 1e-9 and got >= float(best) - 2e-3
    d = y - x
    ball = x + d * min(1.0, eps / float(lp_norm(d, norm))) if norm == "2" else None
    if ball is not None:
        naive = ball.clamp(0, 1)
        assert float(((naive - y) ** 2).sum().sqrt()) > got + 1e-3


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("kind", ["uniform", "gaussian"])
def test_noise_stays_in_the_ball_and_the_box(norm, kind):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 8, 8, generator=g)
    for eps in (0.0, 0.1, 1.5):
        z = perturb_noise(x, eps, norm, kind, generator=g)
        _within(z, x, eps, norm)
        assert z.dtype == x.dtype


def test_uniform_l1_and_l2_noise_fill_their_balls():
    """Uniform in a d-ball: P(||delta|| <= r eps) = r^d; in 2-D the median radius is eps/sqrt(2)."""
    g = torch.Generator().manual_seed(0)
    for norm in ("2", "1"):
        d = sample_ball((20000, 2), 1.0, norm, generator=g, dtype=torch.float64)
        r = lp_norm(d, norm)
        assert abs(float(r.median()) - 1 / math.sqrt(2)) < 0.02, norm
        assert float(r.max()) <= 1.0


def test_steps_have_their_size_and_ascend():
    g = torch.tensor([[3.0, -4.0, 0.0, 0.0] + [0.0] * 196])
    assert torch.equal(direction(g, "inf")[0, :4], torch.tensor([1.0, -1.0, 0.0, 0.0]))
    assert torch.allclose(direction(g, "2")[0, :2], torch.tensor([0.6, -0.8]))
    assert torch.equal(direction(torch.zeros(2, 5), "2"), torch.zeros(2, 5))


def test_the_l1_step_is_the_box_constrained_knapsack_by_hand():
    """g = (3, -4, 1, 0) at 0.5 each, budget 0.8: coordinate 1 (|g| 4) takes its whole room down
    to 0 (0.5), coordinate 0 (|g| 3) the remaining 0.3 upwards; a coordinate at its bound in the
    ascent direction gets nothing, and the result is the LP optimum (checked against scipy)."""
    from scipy.optimize import linprog
    g = torch.tensor([[3.0, -4.0, 1.0, 0.0]])
    cur = torch.full((1, 4), 0.5)
    assert torch.allclose(l1_step(g, cur, 0.8), torch.tensor([[0.3, -0.5, 0.0, 0.0]]))
    at_bound = torch.tensor([[1.0, 0.5, 0.5, 0.5]])
    assert torch.allclose(l1_step(g, at_bound, 0.8), torch.tensor([[0.0, -0.5, 0.3, 0.0]]))
    rng = np.random.default_rng(0)
    for _ in range(20):
        gg, cc = rng.normal(size=6), rng.uniform(size=6)
        step = l1_step(torch.tensor(gg[None]), torch.tensor(cc[None]), 0.9)[0].numpy()
        # delta = u - v, u, v >= 0, sum(u + v) <= 0.9, 0 <= c + u - v <= 1
        res = linprog(np.concatenate([-gg, gg]), A_ub=np.ones((1, 12)), b_ub=[0.9],
                      bounds=[(0, 1 - c) for c in cc] + [(0, c) for c in cc])
        assert float(gg @ step) == pytest.approx(-res.fun, abs=1e-9)
        assert np.abs(step).sum() <= 0.9 + 1e-12 and np.all(cc + step >= -1e-12)


class _Linear(torch.nn.Module):
    """Two-class logits (0, w . x + b): the loss gradient w.r.t. x is a multiple of w."""

    def __init__(self, w, b=0.0):
        super().__init__()
        self.w, self.b = torch.as_tensor(w, dtype=torch.float32), b

    def forward(self, x):
        s = x.reshape(len(x), -1) @ self.w + self.b
        return torch.stack([torch.zeros_like(s), s], 1)


def test_fgsm_on_a_linear_model_is_the_hand_computed_step():
    """Label 1, logit w.x + b (correct, and still so after the step): the loss falls as w.x
    grows, so FGSM moves x by -eps sign(w) (L-inf), clipped to [0, 1] where a coordinate sits
    near a bound; for L2 by -eps w/|w| when no bound is in the way."""
    w = torch.tensor([1.0, -2.0, 0.5, 0.0])
    y = torch.tensor([1])
    model = _Linear(w, b=3.0)
    x = torch.tensor([[0.05, 0.97, 0.98, 0.5]])
    r = run_attack(model, x, y, 0.1, Attack("fgsm", "inf"))
    assert torch.allclose(r.x_adv, torch.tensor([[0.0, 1.0, 0.88, 0.5]]), atol=1e-6)
    x = torch.tensor([[0.5, 0.5, 0.5, 0.5]])
    r = run_attack(_Linear(w, b=2.0), x, y, 0.3, Attack("fgsm", "2"))
    assert torch.allclose(r.x_adv, x - 0.3 * w / w.norm(), atol=1e-6)


def test_a_sample_keeps_its_first_fooling_iterate_and_check_false_returns_the_last():
    """Label 1 iff x > 0.6, x = 0.9: PGD-3 with steps of 0.2 (eps 0.6) visits 0.7, 0.5 and 0.3.
    0.5 is the first iterate that fools and is kept; keep_success=False ends on 0.3; a model that
    is never fooled gets the last iterate, 0.3, with and without the final check."""
    x, y = torch.tensor([[0.9]]), torch.tensor([1])
    atk = Attack("pgd", "inf", steps=3, step_size=1 / 3)
    fooled_at = _Linear([1.0], b=-0.6)
    r = run_attack(fooled_at, x, y, 0.6, atk)
    assert torch.allclose(r.x_adv, torch.tensor([[0.5]])) and not bool(r.correct[0])
    never = _Linear([1.0], b=5.0)
    for check in (True, False):
        r = run_attack(never, x, y, 0.6, atk, check=check)
        assert torch.allclose(r.x_adv, torch.tensor([[0.3]])) and bool(r.correct[0])
    r = run_attack(fooled_at, x, y, 0.6, atk, keep_success=False)
    assert torch.allclose(r.x_adv, torch.tensor([[0.3]])) and not bool(r.correct[0])


def test_pgd_fools_a_linear_model_exactly_when_the_budget_allows():
    """w.x + b with w = (1, 1), b = -1, x = (0.7, 0.7): the margin 0.4 is crossed by an L-inf
    step of 0.2 per coordinate, an L2 step of 0.4/sqrt(2) or an L1 step of 0.4."""
    model = _Linear([1.0, 1.0], b=-1.0)
    x, y = torch.tensor([[0.7, 0.7]]), torch.tensor([1])
    for norm, need in (("inf", 0.2), ("2", 0.4 / math.sqrt(2)), ("1", 0.4)):
        for eps, fooled in ((need * 0.9, False), (need * 1.1, True)):
            r = run_attack(model, x, y, eps, Attack("pgd", norm, steps=20))
            assert bool(r.correct[0]) is not fooled, (norm, eps)
            _within(r.x_adv, x, eps, norm)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("name", ["fgsm", "pgd"])
def test_attacks_on_a_cnn_respect_the_bound_and_the_box(norm, name):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 6 * 6, 10))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(32, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (32,), generator=g)
    eps = {"inf": 0.1, "2": 1.0, "1": 4.0}[norm]
    atk = Attack(name, norm, steps=5, random_start=True)
    r = run_attack(net, x, y, eps, atk, generator=g)
    _within(r.x_adv, x, eps, norm)
    warm = run_attack(net, x, y, 2 * eps, atk, init=r.x_adv)
    _within(warm.x_adv, x, 2 * eps, norm)
    assert not bool(r.zero_gradient.any())
    clean = net(x).argmax(1) == y
    assert int(r.correct.sum()) <= int(clean.sum())


def test_zero_gradients_are_reported_and_a_constant_model_is_refused():
    relu_dead = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    with torch.no_grad():
        relu_dead[1].weight.zero_()
    x, y = torch.rand(3, 1, 2, 2), torch.tensor([0, 1, 0])
    r = run_attack(relu_dead, x, y, 0.1, Attack("pgd", "inf", steps=2))
    assert bool(r.zero_gradient.all())

    class Constant(torch.nn.Module):
        def forward(self, x):
            return torch.zeros(len(x), 2)
    with pytest.raises(PassError, match="no gradient path"):
        run_attack(Constant(), x, y, 0.1, Attack("fgsm", "inf"))


def test_bad_parameters_are_refused():
    x = torch.rand(2, 4)
    with pytest.raises(UsageError, match="epsilon"):
        project(x, x, -0.1, "inf")
    with pytest.raises(UsageError, match="norm"):
        Attack("pgd", "3")
    with pytest.raises(UsageError, match="attack"):
        Attack("cw", "inf")
    with pytest.raises(UsageError, match="noise"):
        perturb_noise(x, 0.1, "2", "salt")
    assert np.isclose(Attack("pgd", "inf", steps=10).alpha, 0.25)


def test_a_saturated_softmax_falls_back_to_the_margin_loss():
    """Logits scaled by 1000 saturate the float32 softmax: the cross-entropy and its gradient are
    exactly 0 for confident samples, which would mask them; the attack loss switches to the logit
    margin there, so FGSM still moves every sample."""
    from runtime.torch.attacks import attack_loss, input_gradient
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x = torch.rand(8, 1, 4, 4)
    y = net(x).argmax(1).detach()
    hot = lambda z: 1000 * net(z)  # noqa: E731
    logits = hot(x)
    assert (torch.nn.functional.cross_entropy(logits, y, reduction="none") == 0).any()
    g, _ = input_gradient(hot, x, y)
    assert bool((g.reshape(8, -1).abs().amax(1) > 0).all())
    margin = attack_loss(torch.tensor([[5000.0, 0.0, 3.0]]), torch.tensor([0]))
    assert float(margin) == -4997.0
    moved = run_attack(hot, x, y, 0.05, Attack("fgsm", "inf")).x_adv - x
    assert bool((moved.reshape(8, -1).abs().amax(1) > 0.04).all())


def test_wrong_and_confidence_by_hand():
    """The verdict PGD and FMN both judge their iterates by: the predicted class against the
    label, and the softmax probability of the predicted class, here from the formula."""
    from runtime.torch.attacks import wrong_and_confidence
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 3.0, 0.0], [1.0, 1.0, 0.0]])
    wrong, conf = wrong_and_confidence(logits, torch.tensor([0, 2, 1]))
    assert wrong.tolist() == [False, True, True]  # the tie [1, 1, 0] predicts class 0
    top = [math.exp(2) / (math.exp(2) + 1 + math.exp(-1)),
           math.exp(3) / (math.exp(0.5) + math.exp(3) + 1), math.e / (2 * math.e + 1)]
    assert conf.dtype == torch.float64 and conf.tolist() == pytest.approx(top, rel=1e-12)


@pytest.mark.parametrize("eps,name,check,passes", [(0.0, "pgd", True, (1, 0)),
                                                    (0.1, "fgsm", True, (2, 1)),
                                                    (0.1, "pgd", True, (6, 5)),
                                                    (0.1, "pgd", False, (5, 5))])
def test_run_attack_reports_the_passes_the_model_made(eps, name, check, passes):
    """The forward and backward passes run_attack reports are the ones the model saw (counted by
    the model itself: calls, and gradients flowing back into its output)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    seen = {"forward": 0, "backward": 0}

    def model(z):
        seen["forward"] += 1
        out = net(z)
        if out.requires_grad:
            out.register_hook(lambda g: seen.__setitem__("backward", seen["backward"] + 1))
        return out
    x = torch.rand(4, 1, 4, 4)
    r = run_attack(model, x, net(x).argmax(1).detach(), eps, Attack(name, "inf", steps=5),
                   check=check)
    assert (r.forward_passes, r.backward_passes) == passes == (seen["forward"], seen["backward"])
