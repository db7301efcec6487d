"""`alohac` end to end, as a user runs it: outputs, JSON contract, one-line errors, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest

from model_helpers import light_path

ALOHAC = [sys.executable, "-m", "alohac.main"]


def run(*args, cwd=None):
    env = dict(os.environ)
    return subprocess.run(ALOHAC + list(args), capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


def test_compile_writes_ir_weights_onnx_and_report(tmp_path):
    out = tmp_path / "out"
    r = run("compile", "zoo:squeezenet", "-o", str(out), "--emit", "nn,onnx", "--time-passes")
    assert r.returncode == 0, r.stderr
    assert "Pass execution timing report" in r.stderr
    assert (out / "squeezenet.mlir").exists() and (out / "squeezenet.onnx").exists()
    report = (out / "report.md").read_text()
    assert "349,151,936" in report  # SqueezeNet 1.1 MACs (equal to the builder's, see frontend tests)
    onnx.checker.check_model(onnx.load(str(out / "squeezenet.onnx")))
    # the written IR is valid input to `alohac opt`
    r = run("opt", str(out / "squeezenet.mlir"), "-p", "analyze-cost")
    assert r.returncode == 0, r.stderr
    assert "macs = 349151936" in r.stdout


def test_compile_emits_csdf_sdf3_json_dot(tmp_path):
    out = tmp_path / "out"
    r = run("compile", "zoo:lenet5", "-o", str(out), "--emit", "csdf,sdf3,json,dot")
    assert r.returncode == 0, r.stderr
    assert "convert-nn-to-csdf" in r.stderr  # says it added the lowering to the pipeline
    names = {p.name for p in out.iterdir()}
    assert {"lenet5.csdf.mlir", "lenet5.sdf3.xml", "lenet5.csdf.json", "lenet5.dot",
            "report.md"} <= names
    data = json.loads((out / "lenet5.csdf.json").read_text())
    conv = next(a for a in data["actors"] if a["operator"] == "conv5x5")
    # LeNet-5's first conv: 6 x 28 outputs per row, 25 MACs each, 28 rows
    assert conv["phases"] == 28 and conv["work"] == [[28, 6 * 28 * 25]]
    assert "CSDF graph" in (out / "report.md").read_text()
    # the csdf text is valid input to `alohac opt`, which runs analyses on it
    r = run("opt", str(out / "lenet5.csdf.mlir"), "-p", "analyze-repetition")
    assert r.returncode == 0, r.stderr
    assert "firings = 28 : i64" in r.stdout


def test_malformed_csdf_file_is_a_verifier_error_naming_the_op(tmp_path):
    bad = tmp_path / "bad.mlir"
    bad.write_text("""builtin.module {
  csdf.graph @g {
    csdf.actor @a "input" phases 2 times [2 x 3] work [2 x 0]
    csdf.channel @c0 @a out0 -> @b in0 prod [2 x 3] cons [2 x 3] init 0 : f32
  }
}
""")
    r = run("opt", str(bad), "-p", "analyze-repetition")
    assert r.returncode == 7, r.stderr
    assert r.stderr.count("\n") == 1 and "csdf.channel @c0" in r.stderr and "@b" in r.stderr


def test_analyze_json_contract_keys():
    r = run("analyze", "zoo:lenet5", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout.strip().splitlines()[-1])
    for key in ("macs", "params", "params_deployed", "activation_bytes", "blocks"):
        assert key in data
    # LeNet-5 on 28x28 by hand: conv1 6*28*28*25, conv2 16*10*10*150, fc 400*120 + 120*84 + 84*10
    assert data["macs"] == 6 * 28 * 28 * 25 + 16 * 10 * 10 * 150 + 400 * 120 + 120 * 84 + 84 * 10
    assert data["params"] == (150 + 6) + (2400 + 16) + (48000 + 120) + (10080 + 84) + (840 + 10) + 2
    assert any(b["op"] == "nn.conv" for b in data["blocks"])


def test_help_everywhere():
    for cmd in ([], ["compile"], ["opt"], ["analyze"], ["list"]):
        r = run(*cmd, "--help")
        assert r.returncode == 0 and "usage: alohac" in r.stdout
    assert "exit codes" in run("--help").stdout


def test_list_passes_and_zoo():
    r = run("list", "passes")
    assert "canonicalize" in r.stdout and "analyze-cost" in r.stdout
    r = run("list", "zoo")
    for name in ("bvlc_alexnet", "mnist-8", "vgg16", "tiny_yolov2", "mnist_cnn"):
        assert f"zoo:{name}" in r.stdout


def _assert_one_line_error(r, code: int, *needles: str):
    assert r.returncode == code, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.mark.parametrize("case", ["truncated", "random", "missing", "unsupported", "dynamic",
                                  "cyclic", "mlir-typo", "bad-pass", "bad-zoo"])
def test_bad_inputs_give_one_line_and_a_distinct_exit_code(case, tmp_path):
    from onnx import TensorProto, helper
    if case == "truncated":
        p = tmp_path / "cut.onnx"
        p.write_bytes(open(light_path("inception_v1"), "rb").read()[:3000])
        _assert_one_line_error(run("analyze", str(p)), 3, "cut.onnx", "not an ONNX model")
    elif case == "random":
        p = tmp_path / "noise.onnx"
        p.write_bytes(np.random.default_rng(1).integers(0, 256, 999, dtype=np.uint8).tobytes())
        _assert_one_line_error(run("analyze", str(p)), 3, "noise.onnx")
    elif case == "missing":
        _assert_one_line_error(run("analyze", str(tmp_path / "nope.onnx")), 3, "no such file")
    elif case in ("unsupported", "dynamic", "cyclic"):
        if case == "unsupported":
            nodes = [helper.make_node("Erf", ["x"], ["y"], name="erf1")]
            shape = [1, 4]
        elif case == "dynamic":
            nodes = [helper.make_node("Relu", ["x"], ["y"])]
            shape = [1, "c"]
        else:
            nodes = [helper.make_node("Add", ["x", "y"], ["a"], name="n1"),
                     helper.make_node("Relu", ["a"], ["y"], name="n2")]
            shape = [1, 4]
        g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                          shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
        p = tmp_path / f"{case}.onnx"
        onnx.save(helper.make_model(g), str(p))
        code, needles = {"unsupported": (4, ("unsupported.onnx", "'erf1'", "Erf", "supported:")),
                         "dynamic": (5, ("dynamic.onnx", "dynamic", "--input-shape")),
                         "cyclic": (5, ("cyclic",))}[case]
        _assert_one_line_error(run("analyze", str(p)), code, *needles)
        if case == "dynamic":  # and the suggested fix works
            assert run("analyze", str(p), "--input-shape", "x=1,4", "--json").returncode == 0
    elif case == "mlir-typo":
        out = tmp_path / "o"
        assert run("compile", "zoo:lenet5", "-o", str(out)).returncode == 0
        text = (out / "lenet5.mlir").read_text().replace("nn.conv", "nn.convv", 1)
        (out / "bad.mlir").write_text(text)
        _assert_one_line_error(run("opt", str(out / "bad.mlir"), "-p", "canonicalize"), 6,
                               "bad.mlir:", "nn.convv")
    elif case == "bad-pass":
        _assert_one_line_error(run("compile", "zoo:lenet5", "-p", "canonicalise", "-o",
                                   str(tmp_path / "o")), 2, "unknown pass 'canonicalise'",
                               "did you mean 'canonicalize'?")
        assert not (tmp_path / "o").exists()  # nothing half-written
    else:
        _assert_one_line_error(run("analyze", "zoo:resnet1000"), 2, "zoo:resnet1000")
        _assert_one_line_error(run("analyze", "zoo:lenet"), 2, "did you mean 'lenet5'?")


TABLE6_KEYS = {"macs", "params", "params_deployed", "activation_bytes", "blocks", "latency_s",
               "throughput_fps", "gops_per_s", "energy_j", "processors", "memory_bytes", "per_pe",
               "per_actor"}


def test_analyze_with_target_prints_the_contract_keys(tmp_path):
    png = tmp_path / "gantt.png"
    r = run("analyze", "zoo:lenet5", "--target", "neuraghe-losa", "--json", "--gantt", str(png))
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout.strip().splitlines()[-1])
    assert TABLE6_KEYS <= set(data)
    assert data["gops_per_s"] == pytest.approx(2 * data["macs"] * data["throughput_fps"] / 1e9)
    assert data["platform"] == "neuraghe-losa" and data["datatype"] == "fixed16"
    assert set(data["per_pe"]) <= {"ce", "arm0", "arm1"} and data["processors"] >= 1
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r8 = run("analyze", "zoo:lenet5", "--target", "neuraghe-losa", "--bits", "8", "--json")
    assert json.loads(r8.stdout.strip().splitlines()[-1])["datatype"] == "fixed8"


def test_compile_with_target_writes_report_json_with_the_same_keys(tmp_path):
    out = tmp_path / "out"
    r = run("compile", "zoo:lenet5", "--target", "host-cpu", "-o", str(out))
    assert r.returncode == 0, r.stderr
    data = json.loads((out / "report.json").read_text())
    assert TABLE6_KEYS <= set(data)
    report = (out / "report.md").read_text()
    # one vocabulary, auto-scaled units: the latency in the table is report.json's latency_s
    from aloha_ir.figures import quantity
    assert "| Latency |" in report and f"| {quantity(data['latency_s'], 's')} |" in report
    assert "Performance (s)" not in report


def test_list_platforms_and_json():
    r = run("list", "platforms")
    assert r.returncode == 0 and "neuraghe-losa" in r.stdout and "orlando" in r.stdout
    r = run("list", "platforms", "--json")
    data = json.loads(r.stdout.strip().splitlines()[-1])
    assert data["orlando"]["operating_points"] == ["low", "high"]


def test_bad_target_errors(tmp_path):
    r = run("analyze", "zoo:lenet5", "--target", "neuraghe-lose")
    assert r.returncode == 2 and "did you mean 'neuraghe-losa'" in r.stderr
    r = run("analyze", "zoo:lenet5", "--target", str(tmp_path / "missing.arch"))
    assert r.returncode == 3 and "no such file" in r.stderr
    bad = tmp_path / "bad.arch"
    bad.write_text("platform bad {\n  backend = host\n  datatypes = f32\n  static_power = 1 W\n"
                   "  pe c : cpu {\n    ops = conv\n    clock = 1 GHz\n"
                   "    ops_per_cycle = f32: 1\n  }\n}\n")
    r = run("analyze", "zoo:lenet5", "--target", str(bad))
    assert r.returncode == 4 and "cannot run on bad" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = run("analyze", "zoo:vgg16", "--target", "orlando")
    assert r.returncode == 8 and "--allow-overflow" in r.stderr
    r = run("analyze", "zoo:lenet5", "--gantt", "x.png")
    assert r.returncode == 2 and "needs --target" in r.stderr


def test_a_user_pipeline_with_target_is_kept():
    r = run("analyze", "zoo:resnet18", "--target", "neuraghe-losa", "--json", "-p",
            "canonicalize,convert-nn-to-csdf,map{strategy=fastest}")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout.strip().splitlines()[-1])
    assert "arm1" not in data["per_pe"]  # fastest keeps every ARM actor on arm0
