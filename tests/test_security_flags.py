"""Reliability flags (security/flags.py) and the Square attack: every flag has a model that raises
it, and a trained model raises none (issue 23 item 3)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from security.evaluate import SecurityConfig, evaluate
from security.flags import KINDS, NAMES, line, markdown
import test_security


trained = test_security.trained  # the module-scoped fixture: digits_cnn trained on digits


def _patched(monkeypatch, make):
    """security.evaluate.torch_model replaced by make(the real attack-space model)."""
    import security.evaluate as sec
    real = sec.torch_model
    monkeypatch.setattr(sec, "torch_model", lambda module, lo, hi: make(real(module, lo, hi)))


def _names(report) -> list[str]:
    return [f["flag"] for f in report.flags]


def test_every_flag_says_what_it_means_and_what_to_do():
    assert set(NAMES) == {"zero_gradients", "gradient_free_stronger", "non_monotone",
                          "above_chance_full_box", "eps0_mismatch", "pgd_weaker_than_fgsm"}
    for severity, meaning, action in KINDS.values():
        assert severity in ("warning", "error") and len(meaning) > 40 and len(action) > 20


def test_a_trained_model_raises_no_flag(trained):
    module, _, x, y = trained
    report, _ = evaluate(module, x, y, SecurityConfig(samples=80, noise=False),
                         input_range=(0.0, 1.0))
    assert report.flags == [] and report.warnings == []
    assert report.masking_check["accuracy"] <= report.masking_check["chance"] == 0.1
    # Square ran where PGD left samples, and found no more than the margin allows
    assert report.gradient_free_check["points"]
    assert not any(p["flagged"] for p in report.gradient_free_check["points"])
    assert "None raised" in markdown(report.flags)


def test_a_rounding_input_layer_raises_zero_gradients_and_above_chance(trained, monkeypatch):
    """round(4 x) / 4 before the network: the input gradient is exactly 0 everywhere, so PGD
    cannot move any sample (its curve stays at the clean accuracy) and the box-covering PGD-50
    leaves the clean accuracy, far above chance."""
    module, _, x, y = trained
    _patched(monkeypatch, lambda net: lambda z: net(torch.round(z * 4) / 4))
    report, _ = evaluate(module, x, y, SecurityConfig(samples=40, noise=False),
                         input_range=(0.0, 1.0))
    names = _names(report)
    assert "zero_gradients" in names and "above_chance_full_box" in names
    zero = report.flags[names.index("zero_gradients")]
    assert zero["evidence"] == {"samples": 40, "of": 40} and zero["severity"] == "warning"
    assert report.accuracy == [report.clean_accuracy] * len(report.eps)
    box = report.flags[names.index("above_chance_full_box")]
    assert box["severity"] == "error" and box["evidence"]["accuracy"] > 0.1
    assert "eps0_mismatch" not in names and "non_monotone" not in names
    assert "zero input gradient" in report.warnings[names.index("zero_gradients")]
    assert "gradient masking" in report.warnings[names.index("above_chance_full_box")]


def test_a_non_differentiable_step_raises_gradient_free_stronger(trained, monkeypatch):
    """Inputs binarised at 0.5 (a step: gradient 0): PGD cannot move a sample, while Square,
    reading only outputs, pushes pixels across the threshold and fools samples PGD left."""
    module, _, x, y = trained
    _patched(monkeypatch, lambda net: lambda z: net((z > 0.5).float() + 0 * z))
    report, _ = evaluate(module, x, y, SecurityConfig(samples=40, noise=False),
                         input_range=(0.0, 1.0))
    assert "gradient_free_stronger" in _names(report)
    flag = report.flags[_names(report).index("gradient_free_stronger")]
    won = [p for p in flag["evidence"]["points"] if p["flagged"]]
    assert won and all(p["square"] < p["pgd"] for p in won)
    # PGD did not move: its accuracy on the 40 checked samples is the clean accuracy
    assert all(p["pgd"] == pytest.approx(report.clean_accuracy) for p in won)


def test_pgd_with_tiny_steps_raises_pgd_weaker_than_fgsm(trained):
    """Two PGD steps of 1% of epsilon travel 2% of the way FGSM's single step goes."""
    module, _, x, y = trained
    report, _ = evaluate(module, x, y, SecurityConfig(samples=60, steps=2, step_size=0.01,
                                                      noise=False), input_range=(0.0, 1.0))
    assert "pgd_weaker_than_fgsm" in _names(report)
    flag = report.flags[_names(report).index("pgd_weaker_than_fgsm")]
    for p in flag["evidence"]["points"]:
        j = report.eps.index(p["eps"])
        assert p["pgd"] == report.accuracy[j] > p["fgsm"] == report.fgsm_accuracy[j]


class _Shell(torch.nn.Module):
    """Two classes; class 1 only where the input's mean lies within 0.01 of 0.6."""

    def forward(self, z):
        m = z.reshape(len(z), -1).mean(1)
        return torch.stack([torch.zeros_like(m), 1 - 1e4 * (m - 0.6) ** 2], 1)


def test_a_thin_shell_of_adversarial_inputs_raises_non_monotone(trained, monkeypatch):
    """Grey images (0.5) of class 0. By hand: PGD-10 with steps of 0.25 eps moves every pixel
    up together; at eps 0.1 (steps 0.025) the mean reaches 0.6 on the 4th step (fooled); at eps
    0.3 (steps 0.075) it oscillates 0.575 <-> 0.65 and never enters the shell: accuracy 1, 0, 1."""
    module = trained[0]
    _patched(monkeypatch, lambda net: _Shell())
    x = np.full((8, 1, 8, 8), 0.5, np.float32)
    y = np.zeros(8, np.int64)
    report, _ = evaluate(module, x, y, SecurityConfig(eps=(0.0, 0.1, 0.3), steps=10,
                                                      step_size=0.25, warm_start=False,
                                                      noise=False), input_range=(0.0, 1.0))
    assert report.accuracy == [1.0, 0.0, 1.0]
    flag = report.flags[_names(report).index("non_monotone")]
    assert flag["evidence"]["points"] == [{"eps": 0.3, "before": 0.0, "accuracy": 1.0}]
    assert "eps0_mismatch" not in _names(report)


def test_a_model_that_changes_between_calls_raises_eps0_mismatch(trained, monkeypatch):
    """Dropout left on at inference (half the input pixels dropped at random in every call): the
    clean pass and the epsilon-0 pass disagree."""
    module, _, x, y = trained
    torch.manual_seed(0)
    _patched(monkeypatch, lambda net: lambda z: net(torch.nn.functional.dropout(z, 0.5)))
    report, _ = evaluate(module, x, y, SecurityConfig(samples=60, noise=False, sampling="first"),
                         input_range=(0.0, 1.0))
    flag = report.flags[_names(report).index("eps0_mismatch")]
    assert flag["severity"] == "error"
    assert flag["evidence"]["accuracy_eps0"] != flag["evidence"]["clean_accuracy"]


def test_square_finds_misclassified_points_in_the_ball_and_the_box(trained):
    """Checked by an independent forward pass and the norms, in L-inf and L2."""
    from runtime.torch.attacks import lp_norm
    from runtime.torch.square import square_attack, window_fraction
    from security.evaluate import torch_model
    assert window_fraction(0.1, 0, 1000) == 0.1 and window_fraction(0.1, 30, 1000) == 0.0125
    module, _, x, y = trained
    model = torch_model(module, 0.0, 1.0)
    xt, yt = torch.from_numpy(x[:30]), torch.from_numpy(y[:30])
    for norm, eps in (("inf", 0.3), ("2", 3.0)):
        r = square_attack(model, xt, yt, eps, norm, queries=300,
                          generator=torch.Generator().manual_seed(0))
        d = lp_norm(r.x_adv.double() - xt.double(), norm)
        assert float(d.max()) <= eps * (1 + 1e-6) and 0 <= float(r.x_adv.min())
        assert float(r.x_adv.max()) <= 1
        with torch.no_grad():
            right = model(r.x_adv).argmax(1) == yt
        assert torch.equal(right, r.correct)
        assert float(right.float().mean()) < 0.5, norm  # a working black-box attack
        assert int(r.queries.max()) <= 300


def test_flags_reach_security_json_the_console_and_security_md(trained, tmp_path, monkeypatch,
                                                                capsys):
    """alohac secure on a model with a rounding input layer: the flags are in security.json,
    one line each on stderr, and a table in security.md."""
    from alohac.main import main
    module, path, _, _ = trained
    _patched(monkeypatch, lambda net: lambda z: net(torch.round(z * 4) / 4))
    out = tmp_path / "sec"
    assert main(["secure", path, "--data", "digits", "--samples", "30", "--eps", "0,0.2",
                 "--examples", "0", "--json", "-o", str(out)]) == 0
    res = json.loads((out / "security.json").read_text())
    assert {f["flag"] for f in res["flags"]} >= {"zero_gradients", "above_chance_full_box"}
    for f in res["flags"]:
        assert set(f) == {"flag", "severity", "meaning", "action", "evidence"}
    err = capsys.readouterr().err
    assert "warning: zero_gradients (warning): 30 of 30 samples" in err
    md = (out / "security.md").read_text()
    assert "| `zero_gradients` | warning |" in md and "What to do" in md
    assert line(res["flags"][0]) in err
