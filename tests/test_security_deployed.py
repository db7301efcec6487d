"""The deployed model's security (security/deployed.py, `alohac secure --deployed`): the float and
the 8-bit curves side by side, the float's examples transferred, and the final adversarial check
bit-exact with the host C program alohac compiles (issue 23 item 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import test_security
from codegen_helpers import build, have_gcc, run
from security.deployed import evaluate_deployed, program_outputs, quantize_ptq, to_model_range
from security.evaluate import SecurityConfig

trained = test_security.trained  # the module-scoped fixture: digits_cnn trained on digits
needs_gcc = pytest.mark.skipif(not have_gcc(), reason="gcc and make are needed to build code")
EPS = (0.0, 0.05, 0.1, 0.2, 0.3)


def _compile_host(module, tmp_path) -> str:
    """The deployed module saved, compiled by `alohac compile --target host-cpu`, built."""
    from aloha_ir.textio import save_module
    path = str(tmp_path / "deployed.mlir")
    save_module(module, path)
    out = tmp_path / "host"
    r = subprocess.run([sys.executable, "-m", "alohac.main", "compile", path, "--target",
                        "host-cpu", "-o", str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    code = str(out / "code")
    build(code)
    return code


def _program_agrees(code, deployed, report, fadv, dadv, x, y, rng) -> None:
    """Every example through the C program's input file: its outputs equal the executor's bit
    for bit, and its decisions give the reported deployed curve and transfer curve; every example
    reported adversarial is misclassified by the program."""
    lo, hi = rng
    dr = report.deployed_report
    n = dr.samples
    x, y = x[dr.sample_indices], y[dr.sample_indices]  # the samples the evaluation drew
    for adv, curve in ((dadv, dr.accuracy), (fadv, report.transfer_accuracy)):
        frames = to_model_range(adv.reshape((-1,) + adv.shape[2:]), lo, hi)
        r, out = run(code, frames)
        assert r.returncode == 0, r.stderr
        np.testing.assert_array_equal(out, program_outputs(deployed, adv.reshape(frames.shape),
                                                           lo, hi))
        right = (out.argmax(1) == np.tile(y[:n], len(adv))).reshape(len(adv), n)
        assert [float(c.mean()) for c in right] == curve
    r, clean = run(code, to_model_range(x[:n], lo, hi))
    assert float((clean.argmax(1) == y[:n]).mean()) == dr.clean_accuracy
    # not vacuous: the attack found adversarial examples on samples the program got right
    assert dr.accuracy[-1] < dr.clean_accuracy


def _deployed_case(module, data, x, y, rng, tmp_path, samples=6):
    deployed = quantize_ptq(module, 8, data)
    cfg = SecurityConfig(eps=EPS, samples=samples, noise=False, sanity=False)
    report, fadv, dadv = evaluate_deployed(module, deployed, x, y, cfg, input_range=rng,
                                           precision="fixed point W8/A8")
    code = _compile_host(deployed, tmp_path)
    _program_agrees(code, deployed, report, fadv, dadv, x, y, rng)
    return report


@needs_gcc
def test_digits_cnn_at_8_bits_every_reported_adversarial_example_fools_the_c_program(
        trained, tmp_path):
    module, _, x, y = trained
    report = _deployed_case(module, "digits", x, y, (0.0, 1.0), tmp_path)
    fr, dr = report.float_report, report.deployed_report
    assert fr.eps == dr.eps == list(EPS) and fr.samples == dr.samples == 6
    assert fr.accuracy[0] == fr.clean_accuracy and report.transfer_accuracy[0] == \
        dr.clean_accuracy


def _mnist():
    data = os.environ.get("ALOHA_DATA")
    if not data:
        pytest.skip("ALOHA_DATA is not set (mnist-8 and MNIST live in ../shared/data)")
    return f"mnist:{os.path.join(data, 'mnist')}"


@needs_gcc
@pytest.mark.slow
def test_mnist8_at_8_bits_every_reported_adversarial_example_fools_the_c_program(tmp_path):
    """mnist-8 takes 0..255: the examples reach the program in that range."""
    from alohac.secure import prepare
    mnist = _mnist()
    module, _, x, y, rng = prepare("zoo:mnist-8", mnist, None)
    assert rng == (0.0, 255.0)
    _deployed_case(module, mnist, x, y, rng, tmp_path)


@needs_gcc
@pytest.mark.slow
def test_mnist_cnn_at_8_bits_every_reported_adversarial_example_fools_the_c_program(tmp_path):
    """The MNIST CNN, trained one epoch on 4,000 images (enough for ~95%)."""
    from aloha_ir.dialects.nn import graph_of
    from frontends.datasets import load
    from frontends.loader import load_model
    from passes.execution import data_for_model
    from runtime.torch.module import build as build_torch
    from runtime.torch.train import TrainConfig, train
    from security.evaluate import attack_data
    mnist = _mnist()
    module = load_model("zoo:mnist_cnn")
    splits = data_for_model(load(mnist), graph_of(module))
    model = build_torch(module, logits=True)
    train(model, splits, TrainConfig(epochs=1, subset=4000, progress=False, seed=0))
    model.write_back(module)
    x, y, rng = attack_data(graph_of(module), splits.test, None)
    _deployed_case(module, mnist, x, y, rng, tmp_path)


@pytest.mark.slow
def test_the_cli_writes_both_curves_the_transfer_and_a_compilable_deployed_model(trained,
                                                                                 tmp_path):
    """`--deployed 8` on the ONNX file; the deployed.mlir it writes, given back as
    `--deployed FILE`, gives the same deployed curve (the same model, the same attack)."""
    _, path, _, _ = trained
    args = ["--data", "digits", "--eps", "0,0.1,0.2", "--samples", "20", "--no-noise", "--json"]
    r = subprocess.run([sys.executable, "-m", "alohac.main", "secure", path, "--deployed", "8",
                        *args, "-o", str(tmp_path / "a")], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["precision"] == "fixed point W8/A8" and res["eps"] == [0.0, 0.1, 0.2]
    for key in ("float", "deployed"):
        assert len(res[key]["accuracy"]) == 3 and "flags" in res[key]
    assert len(res["transfer"]["accuracy"]) == 3
    for f in ("deployed.json", "deployed.png", "deployed.mlir", "security.json", "security.md"):
        assert (tmp_path / "a" / f).stat().st_size > 0, f
    again = subprocess.run([sys.executable, "-m", "alohac.main", "secure", path, "--deployed",
                            str(tmp_path / "a" / "deployed.mlir"), *args, "-o",
                            str(tmp_path / "b")], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    res2 = json.loads(again.stdout.strip().splitlines()[-1])
    assert res2["deployed"]["accuracy"] == res["deployed"]["accuracy"]
    assert not (tmp_path / "b" / "deployed.mlir").exists()


@pytest.mark.slow
def test_bad_deployed_arguments_are_usage_or_input_errors(trained, tmp_path):
    _, path, _, _ = trained
    cases = ((["--deployed", "nothere.mlir"], 2, "neither a number of bits nor a file"),
             (["--deployed", path], 3, "not a fixed-point model"),
             (["--deployed", "1"], 2, "bits"),
             (["--deployed", "8", "--transfer", "x.npz"], 2, "give one of them"),
             (["--deployed", "8", "--reject", "0.5"], 2, "--deployed has no reject option"))
    for extra, code, text in cases:
        r = subprocess.run([sys.executable, "-m", "alohac.main", "secure", path, "--data",
                            "digits", "--samples", "5", *extra, "-o", str(tmp_path / "x")],
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == code and text in r.stderr, (extra, r.returncode, r.stderr)


def test_more_bits_is_recommended_and_applied_from_the_cli_and_refused_for_a_file(
        trained, tmp_path, capsys):
    """`--deployed 3 --apply` on the trained digits CNN: the 3-bit deployment loses far more than
    2 points of curve average against the float model, so `more_bits` (6 bits) is recommended,
    its reason giving the gap computed here from the two reported curves; the training measures
    are listed but not applied (the model evaluated is fixed point); --apply quantizes again at
    6 bits and evaluates the deployed curve again. The 'after' curve equals a fresh pipeline's:
    `alohac quantize --bits 6`, then `alohac secure --deployed FILE` on the same samples. The
    3-bit deployed.mlir given back as FILE gets `more_bits` too, but --apply refuses it (the
    tool cannot redo a quantization made elsewhere) and says why."""
    from alohac.main import main
    from security.evaluate import curve_average
    _, path, _, _ = trained
    common = ["--data", "digits", "--eps", "0,0.1,0.2", "--samples", "20", "--no-noise",
              "--no-sanity", "--examples", "0", "--json"]

    def secure(deployed, out, *extra):
        assert main(["secure", path, "--deployed", deployed, *common, *extra, "-o",
                     str(tmp_path / out)]) == 0
        captured = capsys.readouterr()
        return json.loads(captured.out.strip().splitlines()[-1]), captured.err
    res, err = secure("3", "q3", "--apply")
    f, d = res["float"], res["deployed"]
    gap = curve_average(f["eps"], f["accuracy"]) - curve_average(d["eps"], d["accuracy"])
    assert gap > 0.02, (f["accuracy"], d["accuracy"])
    recs = {r["measure"]: r for r in res["recommendations"]}
    more = recs["more_bits"]
    assert more["params"] == {"bits": 6} and more["applicable"]
    assert f"{100 * gap:.1f} points below" in more["reason"]
    assert not recs["adversarial_training"]["applicable"]
    assert json.loads((tmp_path / "q3" / "deployed.json").read_text())["recommendations"] == \
        res["recommendations"]
    applied = res["applied"]
    assert applied["measure"] == "more_bits"
    assert applied["before"]["accuracy"] == d["accuracy"]
    assert "applied more_bits" in err and (tmp_path / "q3" / "applied.mlir").exists()
    assert (tmp_path / "q3" / "applied.png").exists()

    assert main(["quantize", path, "--data", "digits", "--bits", "6", "-o",
                 str(tmp_path / "q6")]) == 0
    capsys.readouterr()
    fresh, _ = secure(str(tmp_path / "q6" / "digits.mlir"), "fresh")
    assert fresh["deployed"]["accuracy"] == applied["after"]["accuracy"]
    assert fresh["deployed"]["curve_average"] == pytest.approx(
        applied["after"]["curve_average"])

    res, err = secure(str(tmp_path / "q3" / "deployed.mlir"), "file", "--apply")
    more = next(r for r in res["recommendations"] if r["measure"] == "more_bits")
    assert more["params"] == {"bits": 6}  # the file's narrowest format is 3 bits
    assert not more["applicable"] and "--apply cannot" in more["reason"]
    assert res["applied"] is None and "no recommendation the tool can carry out" in err
