"""Benchmarks report their timing budgets and never fail on them: a loaded machine is slow, not
broken, and `make bench` must run every benchmark (it stopped at the first exit 1)."""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


def _load(name: str):
    sys.path.insert(0, BENCH)  # the scripts import their sibling timing.py, as when run
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}",
                                                      os.path.join(BENCH, f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        if BENCH in sys.path:  # a script may take itself off the path (no package shadowing)
            sys.path.remove(BENCH)


@pytest.mark.parametrize("name,budgets", [("import", "BUDGET_MS"), ("conversion", "SEEDS_MS")])
def test_a_timing_over_budget_is_reported_not_failed(name, budgets, monkeypatch, capsys):
    bench = _load(name)
    # budgets no machine can meet: every model is over
    monkeypatch.setattr(bench, budgets, {k: 1e-9 for k in getattr(bench, budgets)})
    monkeypatch.setattr(sys, "argv", [f"{name}.py", "--repeat", "1"])
    monkeypatch.delenv("ALOHA_DATA", raising=False)
    assert bench.main() == 0
    out = capsys.readouterr().out
    assert "OVER" in out and "over budget on this machine now" in out


def test_no_benchmark_shadows_a_package():
    """A script runs with benchmarks/ first on sys.path: benchmarks/explore.py was imported as the
    `explore` package by explore_system.py, which then could not start."""
    import subprocess
    packages = {"aloha_ir", "frontends", "passes", "backends", "archdesc", "explore", "alohac"}
    scripts = {f[:-3] for f in os.listdir(BENCH) if f.endswith(".py")}
    assert not scripts & packages
    r = subprocess.run([sys.executable, os.path.join(BENCH, "explore_system.py"), "--help"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "usage:" in r.stdout, r.stderr


def test_conv_kernels_agree_with_onnxruntime(monkeypatch, capsys):
    """The per-layer kernel benchmark runs, and its float kernel's output agrees with
    onnxruntime's Conv + Relu on the layer (it exits 1 otherwise)."""
    import shutil
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    bench = _load("conv_kernels")
    monkeypatch.setattr(sys, "argv", ["conv_kernels.py", "--layers", "mnist_cnn.conv2",
                                      "--repeat", "1"])
    assert bench.main() == 0
    assert "mnist_cnn.conv2" in capsys.readouterr().out
