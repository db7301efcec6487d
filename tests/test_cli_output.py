"""What `alohac` prints, for people and for logs: one vocabulary with auto-scaled units, tables whole
when piped, a progress line per epoch/point/stage in a log, one exit code per kind of mistake,
--version, --json for every list, defaults in every help."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import subprocess
import sys

import pytest

from alohac.main import build_parser, main

ALOHAC = [sys.executable, "-m", "alohac.main"]


def run(*args, timeout=300):
    return subprocess.run(ALOHAC + list(args), capture_output=True, text=True, timeout=timeout)


def in_process(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


SCALE = {"ns": 1e-9, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "nJ": 1e-9, "µJ": 1e-6, "mJ": 1e-3,
         "J": 1.0, "B": 1.0, "KiB": 1024.0, "MiB": 1024.0 ** 2, "GiB": 1024.0 ** 3}


def parse(text: str) -> float:
    number, unit = text.split()
    return float(number.replace(",", "")) * SCALE[unit]


def test_units_are_scaled_by_hand():
    from aloha_ir.figures import axis, label, quantity, show
    assert quantity(0.0036, "s") == "3.6 ms"
    assert quantity(152.1e-6, "s") == "152.1 µs"
    assert quantity(0.00099996, "s") == "1 ms"  # rounds up into the next unit, not "1000 µs"
    assert quantity(1.439e-3, "J") == "1.439 mJ"
    assert quantity(218312, "B") == "213.2 KiB"  # 218312 / 1024 = 213.195
    assert quantity(4 * 1024 ** 2, "B") == "4 MiB" and quantity(100, "B") == "100 B"
    assert quantity(12345.0, "s") == "12,345 s" and quantity(0, "s") == "0 s"
    assert show("params", 61708) == "61,708" and show("latency_s", None) == "-"
    assert label("energy_j") == "energy per frame" and label("memory_bytes") == "memory"
    assert axis("latency_s", [1e-4, 3e-3]) == (1e-3, "latency (ms)")
    assert axis("memory_bytes", [3 * 1024 ** 2]) == (1024.0 ** 2, "memory (MiB)")


def test_piped_tables_are_whole_and_say_the_json_figures():
    data = json.loads(run("analyze", "zoo:lenet5", "--target", "neuraghe-losa", "--json")
                      .stdout.strip().splitlines()[-1])
    r = run("analyze", "zoo:lenet5", "--target", "neuraghe-losa")  # stdout is a pipe
    assert r.returncode == 0, r.stderr
    assert "…" not in r.stdout
    lines = r.stdout.splitlines()
    for actor in data["per_actor"]:  # every actor on one line of its own, name not cut
        assert any(line.startswith(f"| {actor['actor']} | {actor['operator']} |")
                   for line in lines), actor["actor"]
    header = next(i for i, line in enumerate(lines) if line.startswith("| Latency |"))
    names = [c.strip() for c in lines[header].strip("|").split("|")]
    cells = dict(zip(names, [c.strip() for c in lines[header + 2].strip("|").split("|")]))
    assert parse(cells["Latency"]) == pytest.approx(data["latency_s"], rel=1e-3)
    assert parse(cells["Energy per frame"]) == pytest.approx(data["energy_j"], rel=1e-3)
    assert parse(cells["Memory"]) == pytest.approx(data["memory_bytes"], rel=1e-3)
    # a rich table (no target) in a pipe: as wide as it needs, every block's MACs in full
    cost = json.loads(run("analyze", "zoo:resnet18", "--json").stdout.strip().splitlines()[-1])
    r = run("analyze", "zoo:resnet18")
    assert r.returncode == 0 and "…" not in r.stdout
    for block in cost["blocks"]:
        assert any(f" {block['name']} " in line and f" {block['macs']:,} " in line
                   for line in r.stdout.splitlines()), block["name"]


def test_a_log_gets_a_line_per_epoch_while_training_runs(tmp_path):
    proc = subprocess.Popen(ALOHAC + ["train", "zoo:digits_cnn", "--data", "digits", "--epochs",
                                      "3", "--subset", "300", "-o", str(tmp_path / "m.onnx")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stderr.readline()  # blocks until the first epoch is logged
        running = proc.poll() is None
        rest = proc.stderr.read()
    finally:
        proc.wait(timeout=300)
    assert re.match(r"train: epoch 1/3: train loss [\d.]+, validation loss [\d.]+, accuracy "
                    r"[\d.]+ \[[\d.]+ s\]$", first.strip()), first
    assert running, "the first epoch's line came only when the run had ended"
    assert "epoch 2/3" in rest and "epoch 3/3" in rest and proc.returncode == 0


def test_explore_mapping_logs_its_stages(tmp_path):
    """(train, secure, explore and prune --sparsify are checked the same way by the README test.)"""
    code, _, err = in_process("explore-mapping", "zoo:lenet5", "--target", "neuraghe-losa",
                              "--budget", "40", "--refine", "1", "-o", str(tmp_path / "m"))
    assert code == 0 and re.search(r"^explore-mapping: estimated \d+/40 design points", err, re.M)
    assert re.search(r"^explore-mapping: refined 1/2 \(greedy\): latency [\d.]+ µs", err, re.M)
    assert re.search(r"^explore-mapping: refined 2/2 ", err, re.M)


def test_version_and_json_lists():
    from importlib.metadata import version

    from passes.registry import PASSES
    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"alohac {version('aloha')}"
    zoo = json.loads(in_process("list", "zoo", "--json")[1].strip().splitlines()[-1])
    plain = [line.split()[0] for line in in_process("list", "zoo")[1].splitlines()]
    assert list(zoo) == plain and zoo["zoo:bvlc_alexnet"]["aliases"] == ["zoo:alexnet"]
    passes = json.loads(in_process("list", "passes", "--json")[1].strip().splitlines()[-1])
    from fairness.analyze_pass import PASSES as FAIRNESS_PASSES  # other packages' entry points
    from security.analyze_pass import PASSES as SECURITY_PASSES
    assert set(passes) == set(PASSES) | set(FAIRNESS_PASSES) | set(SECURITY_PASSES)
    assert "strategy" in passes["map"]["options"]


@pytest.mark.parametrize("argv,needle", [
    (["analyze", "zoo:lenet"], "did you mean 'lenet5'?"),
    (["analyze", "zoo:lenet5", "--target", "neuraghe-lose"], "did you mean 'neuraghe-losa'?"),
    (["analyze", "zoo:lenet5", "-p", "canonicalise"], "did you mean 'canonicalize'?"),
    (["analyze", "zoo:lenet5", "-p", "map{stratgy=fastest}"], "did you mean 'strategy'?"),
    (["analyze", "zoo:lenet5", "--target", "orlando", "--opp", "hihg"], "did you mean 'high'?"),
    (["analyze", "zoo:lenet5", "--target", "neuraghe-losa", "--opp", "high"], "declares none"),
    (["analyze", "zoo:lenet5", "--opp", "high"], "--opp needs --target"),
])
def test_one_exit_code_for_one_kind_of_mistake(argv, needle):
    code, _, err = in_process(*argv)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err


def test_a_valid_opp_still_runs_and_a_missing_arch_file_is_an_input_error(tmp_path):
    code, out, _ = in_process("analyze", "zoo:lenet5", "--target", "orlando", "--opp", "high",
                              "--json")
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["operating_point"] == "high"
    code, _, err = in_process("analyze", "zoo:lenet5", "--target", str(tmp_path / "my.arch"))
    assert code == 3 and "no such file" in err


def test_every_option_has_help_showing_its_default():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        text = " ".join(p.format_help().split())
        for a in p._actions:
            if not a.option_strings or argparse.SUPPRESS in (a.help, a.default):
                continue
            assert a.help, f"{name} {a.option_strings[0]} has no help"
            if a.default not in (None, False, []) and not isinstance(a.default, bool):
                shown = ",".join(map(str, a.default)) if isinstance(a.default, (list, tuple)) \
                    else str(a.default)
                assert f"default: {shown})" in text or "default" in a.help, \
                    f"{name} {a.option_strings[0]}: default {shown} not in the help"


def test_security_titles_name_the_precision(tmp_path):
    from aloha_ir.textio import load_module
    from alohac.secure import precision_of
    from frontends.loader import load_model
    code, _, err = in_process("quantize", "zoo:digits_cnn", "--bits", "8", "--samples", "64",
                              "-o", str(tmp_path / "q8"))
    assert code == 0, err
    assert precision_of(load_module(str(tmp_path / "q8" / "digits_cnn.mlir"))) == \
        "fixed point W8/A8"
    assert precision_of(load_model("zoo:digits_cnn")) == "float"
