"""Defences on the security curve: the reject option under the adaptive and the threshold-unaware
attack (accounting by hand, the linear case by hand, the CNN case), the input-gradient penalty
(by hand, and its effect), the prospective actions and their --apply path."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aloha_ir.errors import UsageError
from runtime.torch.attacks import Attack, run_attack
from security.evaluate import SecurityConfig, evaluate
from security.reject import (best_threshold, evaluate_reject, parse_thresholds,
                             reject_accounting, reject_aware_scores)
from test_security import trained  # noqa: F401  (the trained digits CNN fixture)


def test_reject_accounting_by_hand():
    """Three classes, labels 0: confidences 0.7 (right), 0.5 (right), 0.6 (wrong), 0.4 (wrong).
    Threshold 0.55 rejects the 0.5 and the 0.4 samples. Clean: correct and accepted = 1 of 4.
    Attacked: that one + the 2 rejected = 3 of 4."""
    probs = np.array([[0.7, 0.2, 0.1], [0.5, 0.3, 0.2], [0.2, 0.6, 0.2], [0.3, 0.4, 0.3]])
    y = np.zeros(4, np.int64)
    ok, rej = reject_accounting(probs, y, 0.55, attacked=False)
    assert ok.tolist() == [True, False, False, False]
    assert rej.tolist() == [False, True, False, True]
    ok, _ = reject_accounting(probs, y, 0.55, attacked=True)
    assert ok.tolist() == [True, True, False, True]
    ok, rej = reject_accounting(probs, y, 0.0, attacked=True)  # no rejection: plain accuracy
    assert ok.tolist() == [True, True, False, False] and not rej.any()


def test_thresholds_parse_with_the_baseline_added_and_bad_ones_refused():
    assert parse_thresholds("0.9, 0.5") == [0.0, 0.5, 0.9]
    for bad in ("1", "-0.1", "x", ""):
        with pytest.raises(UsageError):
            parse_thresholds(bad)


class _Linear(torch.nn.Module):
    """Two-class logits (0, w . x + b)."""

    def __init__(self, w, b):
        super().__init__()
        self.w, self.b = torch.as_tensor(w, dtype=torch.float32), b

    def forward(self, x):
        s = x.reshape(len(x), -1) @ self.w + self.b
        return torch.stack([torch.zeros_like(s), s], 1)


def test_the_adaptive_attack_beats_rejection_exactly_when_the_budget_allows():
    """Logits (0, 4 x1 + 4 x2 - 5), x = (0.7, 0.7), label 1 (s = 0.6). Misclassified and accepted
    at threshold 0.9 needs p0 = sigmoid(-s) > 0.9, i.e. s < -ln 9: an L-inf move of
    (0.6 + ln 9) / 8 = 0.3497 per coordinate. The threshold-unaware PGD-20 at eps 0.4 (steps of
    0.05: s = 0.6, 0.2, -0.2) stops at s = -0.2, p0 = 0.55: rejected, the defence 'wins'. The
    adaptive attack wins at eps 0.36 and loses (rejected at best, s = -1.8) at eps 0.34."""
    model = _Linear([4.0, 4.0], -5.0)
    x, y = torch.tensor([[0.7, 0.7]]), torch.tensor([1])
    need = (0.6 + math.log(9)) / 8
    atk = Attack("pgd", "inf", steps=20)

    def verdict(x_adv):
        p = torch.softmax(model(x_adv).double(), 1).numpy()
        return reject_accounting(p, y.numpy(), 0.9, attacked=True)
    naive = run_attack(model, x, y, 0.4, atk)
    assert float(model(naive.x_adv)[0, 1]) == pytest.approx(-0.2, abs=1e-5)
    ok, rej = verdict(naive.x_adv)
    assert ok[0] and rej[0]
    for eps, wins in ((need * 1.03, True), (need * 0.97, False)):
        r = run_attack(reject_aware_scores(model, y, 0.9), x, y, eps, atk)
        ok, _ = verdict(r.x_adv)
        assert bool(ok[0]) is not wins, eps
        assert bool(r.correct[0]) is not wins  # the attack's own verdict agrees
        assert float((r.x_adv - x).abs().max()) <= eps + 1e-6


def test_reject_option_on_a_cnn_adaptive_below_naive_and_baseline_is_the_plain_curve(trained):
    """On the trained digits CNN: the threshold-0 curve is the model's plain PGD curve (same
    attack, same samples); the clean rejection rate is the share of samples whose softmax maximum
    is <= t, computed here from the plain model; the adaptive attack is never weaker than the
    threshold-unaware one and at t = 0.9 takes off a good part of what the naive one credits."""
    from security.evaluate import torch_model
    module, _, x, y = trained
    cfg = SecurityConfig(samples=60, noise=False, sanity=False, warm_start=False,
                         eps=(0.0, 0.05, 0.1, 0.2))
    rep = evaluate_reject(module, x, y, [0.5, 0.9], cfg, input_range=(0.0, 1.0))
    plain, _ = evaluate(module, x, y, cfg, input_range=(0.0, 1.0))
    base = rep.curve(0.0)
    assert base.accuracy == pytest.approx(plain.accuracy)
    assert rep.clean_accuracy == pytest.approx(plain.clean_accuracy)
    x, y = x[plain.sample_indices], y[plain.sample_indices]  # the samples both evaluations drew
    with torch.no_grad():
        p = torch.softmax(torch_model(module, 0.0, 1.0)(torch.from_numpy(x)).double(), 1)
    conf, pred = p.max(1)
    for t in (0.5, 0.9):
        c = rep.curve(t)
        assert c.rejected[0] == pytest.approx(float((conf <= t).double().mean()))
        right = ((pred.numpy() == y) & (conf > t).numpy()).mean()
        assert c.accuracy[0] == pytest.approx(right)
        assert all(a <= n + 1e-12 for a, n in zip(c.accuracy, c.naive_accuracy))
    strict = rep.curve(0.9)
    assert strict.naive_curve_average - strict.curve_average > 0.1, strict
    assert strict.curve_average >= base.curve_average - 1e-12  # rejection never hurts past eps 0
    assert best_threshold(rep, max_clean_loss=1.0) is not None


def test_the_input_gradient_penalty_by_hand_on_a_linear_model():
    """Logits W x: the cross-entropy's input gradient is W^T (softmax(W x) - onehot(y)); in
    attack space for inputs taking [lo, hi] = [0, 255] it is 255 times that."""
    from runtime.torch.regularize import InputGradientPenalty
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 4))
    xs = rng.uniform(0, 255, size=(5, 4))
    ys = np.array([0, 1, 2, 1, 0])
    z = xs @ w.T / 100
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    g = (p - np.eye(3)[ys]) @ w / 100
    want = 0.3 * np.mean(np.sum((255 * g) ** 2, axis=1))
    x = torch.tensor(xs, requires_grad=True)
    logits = x @ torch.tensor(w).T / 100
    got = InputGradientPenalty(0.3, lo=0.0, hi=255.0)(x, logits, torch.tensor(ys))
    assert float(got.detach()) == pytest.approx(want, rel=1e-10)
    assert got.requires_grad  # it trains: the double backward reaches the weights
    with pytest.raises(UsageError):
        InputGradientPenalty(0.0)


def test_training_with_the_penalty_flattens_the_input_gradients():
    """The same MLP trained on digits with and without the penalty (same seed): the mean squared
    input-gradient norm on the test split is clearly smaller with it (about half at weight 1)."""
    from frontends.datasets import load
    from runtime.torch.regularize import InputGradientPenalty
    from runtime.torch.train import TrainConfig, train
    splits = load("digits").to_range(0.0, 1.0)
    x, y = torch.from_numpy(splits.test.x), torch.from_numpy(splits.test.y)

    def fit(penalty):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(),
                                  torch.nn.Linear(32, 10))
        res = train(net, splits, TrainConfig(epochs=5, progress=False, seed=0), penalty=penalty)
        xg = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(torch.nn.functional.cross_entropy(net(xg), y, reduction="sum"),
                                   xg)
        return float(g.pow(2).reshape(len(x), -1).sum(1).mean()), res.val.accuracy
    plain, plain_acc = fit(None)
    flat, flat_acc = fit(InputGradientPenalty(1.0))
    assert flat < plain / 1.5, (flat, plain)  # measured: about half
    assert flat_acc > 0.8 and plain_acc > 0.8


def _result(acc, eps=(0.0, 0.1, 0.2, 0.3), clean=None, **extra):
    """A security.json by hand (curve average and level computed as the report does)."""
    from security.evaluate import curve_average, level_of
    clean = acc[0] if clean is None else clean
    avg = curve_average(list(eps), list(acc))
    level, kept = level_of(avg, clean)
    return {"eps": list(eps), "accuracy": list(acc), "clean_accuracy": clean, "samples": 100,
            "curve_average": avg, "level": level, "kept": kept, "norm": "inf", "steps": 10,
            "zero_gradient_samples": 0, "fgsm_accuracy": None, "masking_check": None} | extra


def test_the_report_s_flags_put_a_stronger_evaluation_first():
    """Five flags of security/flags.py on a report whose PGD ran 10 steps: one stronger
    evaluation with 50 steps (2 x 10 < 50) and a random start, before the training measures,
    its reason naming every flag; a report without flags (written before they existed) has
    none and gets the training measures."""
    from security.flags import make_flag
    from security.recommend import flags_of, recommend
    names = ["eps0_mismatch", "zero_gradients", "pgd_weaker_than_fgsm", "non_monotone",
             "above_chance_full_box"]
    given = [make_flag(n, {}) for n in names]
    r = _result([0.8, 0.5, 0.1, 0.2], clean=0.9, flags=given)
    assert flags_of(r) == given
    recs = recommend(r)
    assert recs[0].measure == "stronger_evaluation" and recs[0].applicable
    assert recs[0].params == {"steps": 50, "random_start": True}
    assert all(name in recs[0].reason for name in names)
    assert flags_of(_result([0.9, 0.4, 0.1, 0.0])) == []
    assert recommend(_result([0.9, 0.4, 0.1, 0.0]))[0].measure == "adversarial_training"


def test_training_measures_take_twice_the_half_accuracy_epsilon_and_a_safe_model_gets_none():
    """Clean 0.9: half is 0.45. Falling to 0.4 at eps 0.1: train at 0.2. Falling to 0.45 only
    at 0.2: train at min(0.3, 0.4) = 0.3. Never below half (a medium level): the largest eps."""
    from security.recommend import recommend
    recs = recommend(_result([0.9, 0.4, 0.1, 0.0]))
    assert [r.measure for r in recs] == ["adversarial_training", "input_gradient_penalty"]
    assert recs[0].params["eps"] == pytest.approx(0.2) and recs[0].params["norm"] == "inf"
    assert recommend(_result([0.9, 0.6, 0.45, 0.1]))[0].params["eps"] == pytest.approx(0.3)
    medium = _result([0.9, 0.6, 0.5, 0.46])
    assert medium["level"] == "medium"
    assert recommend(medium)[0].params["eps"] == pytest.approx(0.3)
    safe = recommend(_result([0.9, 0.88, 0.85, 0.8]))
    assert [r.measure for r in safe] == ["none"] and not safe[0].applicable


def test_rejection_is_recommended_at_the_best_affordable_threshold_and_more_bits_on_a_gap():
    """No rejection: average 0.3, clean 0.9. t = 0.5: 0.35 for 1 point of clean accuracy.
    t = 0.9: 0.6 but 10 points: too dear (at most 2). So t = 0.5, not applied by the tool."""
    from security.recommend import recommend

    def curve(t, clean, avg):
        return {"threshold": t, "accuracy": [clean, 0.3, 0.3, 0.3], "rejected": [0.0] * 4,
                "naive_accuracy": [clean] * 4, "naive_rejected": [0.0] * 4,
                "curve_average": avg, "naive_curve_average": 0.9, "selective_accuracy": 1.0}
    reject = {"eps": [0.0, 0.1, 0.2, 0.3], "curves": [curve(0.0, 0.9, 0.3),
                                                      curve(0.5, 0.89, 0.35),
                                                      curve(0.9, 0.8, 0.6)]}
    safe = _result([0.9, 0.88, 0.85, 0.8])
    recs = recommend(safe, reject=reject)
    assert [r.measure for r in recs] == ["rejection"]
    assert recs[0].params == {"threshold": 0.5} and not recs[0].applicable
    reject["curves"][1]["curve_average"] = 0.305  # gains less than a point: not worth it
    assert [r.measure for r in recommend(safe, reject=reject)] == ["none"]
    fixed = _result([0.9, 0.85, 0.8, 0.7])
    float_ = _result([0.9, 0.9, 0.85, 0.8])
    recs = recommend(fixed, float_result=float_, bits=4)
    assert [r.measure for r in recs] == ["more_bits"] and recs[0].params == {"bits": 8}


def test_apply_refuses_what_the_tool_cannot_carry_out(trained):
    from aloha_ir.context import make_context
    from aloha_ir.errors import UnsupportedError
    from aloha_ir.passmanager import PassManager
    from aloha_ir.weights import clone_with_weights
    from security.recommend import Recommendation, apply
    module, _, x, y = trained
    cfg = SecurityConfig(samples=10, noise=False, sanity=False)
    before, _ = evaluate(module, x, y, cfg, input_range=(0.0, 1.0))
    with pytest.raises(UsageError, match="cannot be applied"):
        apply(Recommendation("rejection", {"threshold": 0.5}, "r", False), module, before, x, y,
              cfg, input_range=(0.0, 1.0))
    q = clone_with_weights(module)
    PassManager.parse("canonicalize,quantize{bits=8 data=digits samples=64}").run(
        q, make_context())
    with pytest.raises(UnsupportedError, match="fixed point"):
        apply(Recommendation("input_gradient_penalty", {"weight": 1.0}, "r", True), q, before, x,
              y, cfg, input_range=(0.0, 1.0))


def test_secure_cli_rejects_recommends_and_applies(trained, tmp_path, capsys):
    """`alohac secure --reject --apply` on the trained digits CNN: security.json holds the reject
    curves, the recommendations (low security and no flag: adversarial training first) and the
    applied measure; the written model, loaded and evaluated afresh on the same samples, has the
    reported 'after' curve; the reported 'before' is the report's own curve."""
    import json

    from alohac.main import main
    from frontends.loader import load_model
    module, path, x, y = trained
    out = tmp_path / "out"
    assert main(["secure", path, "--samples", "40", "--no-noise", "--no-sanity", "--examples",
                 "0", "--reject", "0.9", "--apply", "--apply-epochs", "2", "--json", "-o",
                 str(out)]) == 0
    captured = capsys.readouterr()
    res = json.loads(captured.out.strip().splitlines()[-1])
    saved = json.loads((out / "security.json").read_text())
    assert saved["recommendations"] == res["recommendations"]
    assert [c["threshold"] for c in res["reject"]["curves"]] == [0.0, 0.9]
    assert res["recommendations"][0]["measure"] == "adversarial_training"
    applied = res["applied"]
    assert applied["measure"] == "adversarial_training"
    assert applied["before"]["curve_average"] == res["curve_average"]
    for f in ("reject.png", "applied.png", "applied.mlir"):
        assert (out / f).exists(), f
    again, _ = evaluate(load_model(str(out / "applied.mlir")), x, y,
                        SecurityConfig(samples=40, noise=False, sanity=False),
                        input_range=(0.0, 1.0))
    assert again.curve_average == pytest.approx(applied["after"]["curve_average"])
    assert "recommendations:" in captured.err and "applied adversarial_training" in captured.err
    with pytest.raises(SystemExit) as e:  # refused while parsing, before any attack
        main(["secure", path, "--reject", "1.5", "-o", str(out)])
    assert e.value.code == 2
    assert "--reject: thresholds must lie in [0, 1), got 1.5" in capsys.readouterr().err


@pytest.mark.slow
def test_applying_the_top_recommendation_raises_the_curve_average(tmp_path):
    """Measured, not asserted: benchmarks/security_defences.py's measurement on the digits CNN
    and (with ALOHA_DATA) the MNIST CNN: the top applicable recommendation, carried out, raises
    the PGD curve average on the same held-out samples (the figures are printed: -s)."""
    import importlib.util
    import os
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "benchmarks", "security_defences.py")
    spec = importlib.util.spec_from_file_location("bench_security_defences", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for name, zoo, data, epochs, fine in bench.models(mnist_epochs=1):
        r = bench.measure(name, zoo, data, epochs, fine, 200, str(tmp_path))
        a = r["applied"]
        assert a is not None, [rec.describe() for rec in r["recommendations"]]
        strict = r["reject"].curve(0.9)
        print(f"{name}: {a.measure} {a.params}: curve average {a.before.curve_average:.3f} -> "
              f"{a.after.curve_average:.3f} ({100 * a.change:+.1f} points), clean accuracy "
              f"{a.before.clean_accuracy:.3f} -> {a.after.clean_accuracy:.3f}; reject t = 0.9: "
              f"{strict.curve_average:.3f} adaptive, {strict.naive_curve_average:.3f} unaware, "
              f"{100 * strict.rejected[0]:.1f}% of clean inputs rejected; no rejection "
              f"{r['reject'].curve(0.0).curve_average:.3f}")
        assert a.change > 0, (name, a.to_json())


def test_alohac_train_refuses_a_penalty_weight_of_zero(tmp_path, capsys):
    from alohac.main import main
    assert main(["train", "zoo:digits_cnn", "--data", "digits", "--input-gradient-penalty", "0",
                 "-o", str(tmp_path / "bad.onnx")]) == 2
    assert "--input-gradient-penalty: the input-gradient penalty weight must be > 0" in \
        capsys.readouterr().err
    assert not (tmp_path / "bad.onnx").exists()


@pytest.mark.slow
def test_alohac_train_takes_the_input_gradient_penalty(tmp_path, capsys):
    """`alohac train --input-gradient-penalty 10`: the same seed and data as a plain run, and a
    trained model whose mean squared input gradient on the test split is smaller."""
    import json

    from alohac.main import main
    from frontends.datasets import load
    from frontends.loader import load_model
    from runtime.torch.module import build
    test = load("digits").test.to_range(0.0, 1.0)
    x, y = torch.from_numpy(test.x), torch.from_numpy(test.y)

    def grad_norm(extra):
        out = str(tmp_path / f"m{len(extra)}.onnx")
        assert main(["train", "zoo:digits_cnn", "--data", "digits", "--epochs", "3",
                     "--json", "-o", out, *extra]) == 0
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        net = build(load_model(out), logits=True).eval()
        xg = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(torch.nn.functional.cross_entropy(net(xg), y,
                                                                      reduction="sum"), xg)
        return float(g.pow(2).reshape(len(x), -1).sum(1).mean()), summary
    plain, _ = grad_norm([])
    flat, summary = grad_norm(["--input-gradient-penalty", "10"])
    assert summary["input_gradient_penalty"] == 10.0
    assert flat < plain / 1.5, (flat, plain)
