"""The README's commands, run as a user runs them, so that a README example can never be broken
again (issue 18: both explore examples crashed and no test ran them).

Every ```sh block runs in order in one scratch folder (later blocks read what earlier ones wrote,
as a reader following the README does), with the venv's `alohac` and `python` first on PATH and
ALOHA_DATA passed through (the blocks that train networks are marked slow: `make test-all`); the ```python block runs too, and `make run`'s own recipe (read from the
Makefile) at a small model. Long commands are scaled down by SCALE, a rewrite table kept here: each
rule must match a README command, so a README edit cannot silently run a long command unscaled.
Each command must exit 0, every file it says it wrote must exist, a --json command's last line must
be a JSON object, and the checks in CHECKS look at what the command is about (the published MACs,
the files a block reads later, progress lines in the log, the program's output size).
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
BIN = os.path.dirname(sys.executable)

# (pattern, replacement): what the suite runs instead of a long command (re.sub on the command)
SCALE = [
    (r"--epochs 15\b", "--epochs 1 --subset 300"),
    (r"^(alohac train (?!.*--epochs).*)$", r"\1 --epochs 1 --subset 300"),
    (r"^(alohac quantize .*--method pact.*)$", r"\1 --epochs 1"),
    (r"--sparsify 10 --epochs 5\b", "--sparsify 10 --epochs 1"),
    (r"^(alohac secure (?!.*--transfer).*)$", r"\1 --samples 50"),
    (r"^(alohac secure .*--apply\b.*)$", r"\1 --apply-epochs 1"),
    (r"--data digits --budget 60\b", "--data digits --budget 2 --proxy-epochs 2 "
                                     "--proxy-subset 128 --lrs 3e-3"),
    (r"--algorithm random --budget 300\b", "--algorithm random --budget 24"),
    (r"--budget 300 -o out/map\b", "--budget 40 -o out/map"),
    (r"^(alohac calibrate neuraghe-losa losa\.csv .*)$", r"\1 --params arm.call_overhead --no-loo"),
]
# a command that needs the real data names one of these
NEEDS_DATA = ("mnist:", "zoo:mnist-8", "$ALOHA_DATA")
PROGRESS = r"^[\w :(),-]+: .* \[[\d.]+ s\]$"  # aloha_ir.console's log line
# a command that cross-compiles or runs under QEMU names one of these: the tools it needs
NEEDS_TOOLS = {"TARGET=armhf": ("arm-linux-gnueabihf-gcc", "qemu-arm"),
               "TARGET=cortex-m4": ("arm-none-eabi-gcc", "qemu-system-arm")}


def _blocks(lang: str) -> list[tuple[int, str]]:
    """(line number, body) of every ```lang block of the README."""
    text = open(README, encoding="utf-8").read()
    out = []
    for m in re.finditer(r"^```" + lang + r"\n(.*?)^```", text, re.M | re.S):
        out.append((text[:m.start()].count("\n") + 1, m.group(1)))
    return out


def _commands(body: str) -> list[str]:
    """The commands of a shell block: continuation lines joined, trailing comments dropped."""
    body = body.replace("\\\n", " ")
    cmds = []
    for line in body.splitlines():
        line = re.sub(r"\s+#\s.*$", "", line).strip()
        if line and not line.startswith("#"):
            cmds.append(" ".join(line.split()) if "'" not in line and '"' not in line else line)
    return cmds


SHELL = [(n, _commands(b)) for n, b in _blocks("sh") if not _commands(b)[0].startswith("make ")]
# blocks that train a network start torch and train in several processes: minutes on a loaded
# 2-core machine even scaled down, so they run in `make test-all` (the other blocks in `make test`)
# a block that trains, or cross-compiles and runs under QEMU (tests/test_cross.py does that in
# make test), runs in make test-all
TRAINS = re.compile(r"^alohac (train|quantize|prune|secure) |TARGET=(armhf|cortex-m4)")


def scaled(cmd: str) -> str:
    for pattern, repl in SCALE:
        cmd = re.sub(pattern, repl, cmd)
    return cmd


def _json_last_line(r) -> dict:
    return json.loads(r.stdout.strip().splitlines()[-1])


def _progress(r, label: str) -> bool:
    """The run logged a progress line starting with `label` (its stderr is a pipe, not a tty)."""
    lines = [line for line in r.stderr.splitlines() if re.match(PROGRESS, line)]
    assert any(line.startswith(label) for line in lines), (label, r.stderr[-2000:])
    return True


# a regex on the README command -> a check of the run's outcome (r, workdir)
CHECKS = {
    r"^alohac analyze zoo:resnet18$":
        lambda r, d: "1,814,073,344" in r.stdout,  # DESIGN.md's exact MACs of resnet18
    r"^alohac analyze model\.onnx --json$":
        lambda r, d: {"macs", "params", "params_deployed", "activation_bytes", "blocks"}
        <= set(_json_last_line(r)),
    r"^alohac analyze dyn\.onnx": lambda r, d: "MACs" in r.stdout,
    r"^alohac train ": lambda r, d: _progress(r, "train: epoch 1/") and
        "test accuracy" in r.stdout,
    r"^alohac quantize .*--method pact": lambda r, d: _progress(r, "quantize: pact: epoch 1/")
        and _json_last_line(r)["weight_bits"] == 4,
    r"^alohac quantize .*--bits 8 ": lambda r, d: os.path.exists(os.path.join(
        d, "out", "q8", "digits.weights.npz")),
    r"^alohac prune .*--threshold": lambda r, d: len(_json_last_line(r)["sweep"]) == 3,
    r"^alohac prune .*--sparsify": lambda r, d: _progress(r, "prune: sparsify: epoch 1/"),
    r"^alohac secure (?!.*--transfer)": lambda r, d: _progress(r, "secure (") and
        os.path.exists(os.path.join(d, _out_dir(r.args), "security.json")),
    r"^alohac secure .*--attack fmn": lambda r, d: _progress(r, "secure (fmn L2)") and _fmn_ok(
        json.load(open(os.path.join(d, _out_dir(r.args), "security.json")))),
    r"^alohac secure .*--deployed 8": lambda r, d: len(json.load(open(os.path.join(
        d, _out_dir(r.args), "deployed.json")))["transfer"]["accuracy"]) > 1 and os.path.exists(
        os.path.join(d, _out_dir(r.args), "deployed.mlir")),
    r"^alohac secure .*--apply": lambda r, d: json.load(open(os.path.join(
        d, _out_dir(r.args), "security.json")))["recommendations"] and os.path.exists(
        os.path.join(d, _out_dir(r.args), "reject.png")),
    r"--transfer": lambda r, d: json.load(open(os.path.join(d, "out", "transfer",
                                                           "transfer.json")))["transfer"],
    r"^alohac explore space": lambda r, d: _progress(r, "explore: point 1/") and
        json.load(open(os.path.join(d, _out_dir(r.args), "pareto.json")))["pareto"],
    r"^alohac explore-mapping": lambda r, d: _progress(r, "explore-mapping: refined 1/") and
        os.path.exists(os.path.join(d, "out", "map", "mapping.json")),
    r"map\{assign=": lambda r, d: "| conv7 | conv5x5 | ce |" in r.stdout and
        "| fc18 | dense | arm0 |" in r.stdout,
    r"^alohac compile .*&& make -C out/host/code$": lambda r, d: os.access(
        os.path.join(d, "out", "host", "code", "network"), os.X_OK),
    r"^\(cd out/host/code && \./network": lambda r, d: os.path.getsize(
        os.path.join(d, "out", "out.bin")) == 4 * 10 * 4,  # 4 frames x 10 float32 scores
    r"^alohac compile model_qdq\.onnx": lambda r, d: "not powers of two" in r.stderr and
        "conv" in json.load(open(os.path.join(d, "out", "qdq", "report.json")))["scale_mapping"],
    r"TARGET=armhf run ": lambda r, d: os.path.getsize(
        os.path.join(d, "out", "ng-arm.bin")) == 2 * 10 * 4,  # 2 frames x 10 float32 scores
    r"TARGET=cortex-m4 run ": lambda r, d: os.path.getsize(
        os.path.join(d, "out", "m4.bin")) == 2 * 10 * 4 and json.load(open(
            os.path.join(d, "out", "m4", "code", "size.json")))["ram_bytes"] <= 128 * 1024,
    r"^alohac compare ": lambda r, d: "dB" in r.stdout or "SQNR" in r.stdout,
    r"^alohac calibrate ": lambda r, d: "extends neuraghe-losa" in open(
        os.path.join(d, "out", "my-losa.arch")).read() and "zoo:resnet18 16-bit" in r.stdout,
}


def _out_dir(argv) -> str:
    args = shlex.split(argv) if isinstance(argv, str) else list(argv)
    return args[args.index("-o") + 1]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """One scratch folder for the whole README, with the user's files it assumes."""
    import onnx
    from onnx import TensorProto, helper

    from model_helpers import light_path
    d = tmp_path_factory.mktemp("readme")
    onnx.save(onnx.load(light_path("bvlc_alexnet")), str(d / "model.onnx"))
    conv = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    w = helper.make_tensor("w", TensorProto.FLOAT, [8, 3, 3, 3], [0.01] * 216)
    g = helper.make_graph([conv], "dyn", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["n", 3, "h", "w"])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, None)], [w])
    onnx.save(helper.make_model(g), str(d / "dyn.onnx"))
    _qdq_model(str(d / "model_qdq.onnx"))
    return d


def _qdq_model(path: str) -> None:
    """The README's `model_qdq.onnx`: a small CNN quantized by onnxruntime's quantize_static (QDQ,
    symmetric int8 activations)."""
    from qdq_helpers import small_qdq
    small_qdq(path, np.random.default_rng(0).uniform(0, 1, (16, 1, 8, 8)).astype(np.float32),
              normalise=False)


def _env() -> dict:
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    env.pop("COLUMNS", None)  # what a log gets, whatever the test runner's terminal
    return env


def _fmn_ok(result: dict) -> bool:
    """One distance per sample, and the curve their thresholding gives."""
    dist = [math.inf if v is None else v for v in result["distances"]]
    return len(dist) == result["samples"] and all(
        abs(a - sum(v > e for v in dist) / len(dist)) < 1e-9
        for e, a in zip(result["eps"], result["accuracy"]))


def _run(cmd: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", cmd], cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=900)


def _check(readme_cmd: str, cmd: str, r, cwd) -> None:
    assert r.returncode == 0, f"{cmd}\nexit {r.returncode}\n{r.stderr[-3000:]}"
    for path in re.findall(r"^wrote (\S+)$", r.stdout + "\n" + r.stderr, re.M):
        assert os.path.exists(os.path.join(cwd, path)), f"{cmd}: says it wrote {path}"
    if "--json" in cmd.split():
        _json_last_line(r)
    for pattern, check in CHECKS.items():
        if re.search(pattern, readme_cmd):
            assert check(r, str(cwd)), f"{cmd}: check {pattern!r} failed\n{r.stdout[-3000:]}"


@pytest.mark.parametrize("line,commands", [
    pytest.param(n, cmds, id=f"README:{n}",
                 marks=[pytest.mark.slow] if any(TRAINS.search(c) for c in cmds) else [])
    for n, cmds in SHELL])
def test_readme_shell_block(line, commands, workdir):
    for cmd in commands:
        if any(k in cmd for k in NEEDS_DATA) and not os.environ.get("ALOHA_DATA"):
            pytest.skip(f"README:{line} needs the real data (ALOHA_DATA): {cmd}")
        for key, tools in NEEDS_TOOLS.items():
            missing = [t for t in tools if key in cmd and shutil.which(t) is None]
            if missing:
                pytest.skip(f"README:{line} needs {', '.join(missing)} (`make toolchains`): {cmd}")
        run = scaled(cmd)
        r = _run(run, workdir)
        r.args = run
        _check(cmd, run, r, workdir)


def test_readme_python_block(workdir):
    (line, body), = _blocks("python")
    expected = re.findall(r"#\s*(\d+)\s*$", body, re.M)
    r = subprocess.run([sys.executable, "-c", body], cwd=workdir, env=_env(),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == expected, f"README:{line} prints {r.stdout!r}, says {expected}"


def test_make_run_recipe_at_a_small_model(tmp_path):
    """`make run`'s alohac and make commands, as the Makefile has them, at zoo:lenet5."""
    text = open(os.path.join(ROOT, "Makefile")).read().replace("\\\n", " ")
    recipe = re.search(r"^run: .*\n((?:\t.*\n)+)", text, re.M).group(1)
    values = {"BIN": BIN, "MODEL": "zoo:lenet5", "TARGET": "neuraghe-losa",
              "OUT": str(tmp_path / "run"), "MAKE": "make"}
    for line in recipe.splitlines():
        cmd = re.sub(r"\$\((\w+)\)", lambda m: values[m.group(1)], line.strip().lstrip("@"))
        r = _run(cmd, ROOT)
        assert r.returncode == 0, f"{cmd}\n{r.stderr[-3000:]}"
    out = tmp_path / "run"
    for name in ("lenet5.mlir", "lenet5.csdf.mlir", "lenet5.sdf3.xml", "lenet5.dot", "report.md",
                 "report.json", "gantt.png", "cost.json", "code/network"):
        assert (out / name).exists(), name
    assert json.load(open(out / "cost.json"))["macs"] == json.load(open(out / "report.json"))["macs"]


def test_every_scale_rule_applies_to_a_readme_command():
    commands = [c for _, cmds in SHELL for c in cmds]
    for pattern, _ in SCALE:
        assert any(re.search(pattern, c) for c in commands), f"unused scale rule {pattern!r}"
    for pattern in CHECKS:
        assert any(re.search(pattern, c) for c in commands), f"unused check {pattern!r}"
