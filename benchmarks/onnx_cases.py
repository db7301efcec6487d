"""Every ONNX backend test case through `alohac` as a new user would run it: import, then for the
imported ones `alohac compile MODEL --target host-cpu --emit c` (and with --run, the generated
program built and run on the case's input); counts per outcome.

The cases are the onnx wheel's: the node cases (generated in memory by
onnx.backend.test.case.node, as `backend-test-tools generate-data` would write them) and the
folders data/{pytorch-converted,pytorch-operator,simple} (model.onnx each). A model below opset 7
(the pytorch-* folders) is first converted to opset 13 with onnx.version_converter, as the
importer's refusal of it advises. An outcome is
`imported`/`compiled`, `refused` (an AlohaError with its exit code 2-8: the reason is its kind and
the first words of its message) or `crashed` (exit 1, an internal error: a compiler bug).

A program's run is `matched` (relative error below 1e-3 of the largest expected value), `wrong`,
`crashed` (make failed, a non-zero exit, no output in 120 s) or `skipped` (a case with several
inputs or outputs or integer outputs, which the program does not take, or data numpy cannot convert).

    python benchmarks/onnx_cases.py [--only SUBSTRING] [--no-compile] [--run]
                                    [--target PLATFORM] [--list crashed|refused]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import os
import re
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import onnx
from onnx import numpy_helper

from aloha_ir.errors import AlohaError
from alohac.main import main as alohac
from frontends.loader import load_model

DATA = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
FOLDERS = ("pytorch-converted", "pytorch-operator", "simple")


def cases(only: str | None):
    """(kind/name, ModelProto or path, a function giving the first data set's (inputs, outputs))
    of every case whose name contains `only`."""
    from onnx.backend.test.case import node
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        generated = node.collect_testcases()
    for c in generated:
        if not only or only in c.name:
            yield f"node/{c.name}", c.model, lambda c=c: c.data_sets[0]
    for folder in FOLDERS:
        for name in sorted(os.listdir(os.path.join(DATA, folder))):
            path = os.path.join(DATA, folder, name, "model.onnx")
            if os.path.exists(path) and (not only or only in name):
                yield f"{folder}/{name}", path, lambda d=os.path.dirname(path): data_set(d)


def data_set(case_dir: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The inputs and expected outputs of a case folder's test_data_set_0."""
    d = os.path.join(case_dir, "test_data_set_0")
    if not os.path.isdir(d):
        return [], []

    def read(kind):
        names = sorted(f for f in os.listdir(d) if f.startswith(kind))
        return [numpy_helper.to_array(onnx.load_tensor(os.path.join(d, f))) for f in names]
    return read("input_"), read("output_")


def run_program(code_dir: str, data) -> tuple[str, str]:
    """Build the generated program and run it on the case's one input: ('matched', ''),
    ('wrong', the relative error), ('crashed', why) or ('skipped', why)."""
    try:  # the cast cases give TensorProtos
        inputs, outputs = ([t if isinstance(t, np.ndarray) else numpy_helper.to_array(t)
                            for t in ts] for ts in data())
        for t in inputs + outputs:
            t.astype(np.float32)
    except (TypeError, ValueError):
        return "skipped", "the case's data have a type numpy cannot convert to float32"
    if len(inputs) != 1 or len(outputs) != 1 or outputs[0].dtype.kind != "f":
        return "skipped", "the program takes one float input and gives one float output"
    r = subprocess.run(["make", "-s", "-C", code_dir, "network"], capture_output=True, text=True)
    if r.returncode:
        return "crashed", f"make: {r.stderr.strip()[-300:]}"
    inp, out = os.path.join(code_dir, "in.bin"), os.path.join(code_dir, "out.bin")
    np.ascontiguousarray(inputs[0], "<f4").tofile(inp)
    try:
        r = subprocess.run([os.path.join(code_dir, "network"), inp, out], capture_output=True,
                           text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return "crashed", "no output within 120 s"
    if r.returncode:
        return "crashed", f"exit {r.returncode}: {r.stderr.strip()[-300:]}"
    y, want = np.fromfile(out, "<f4"), outputs[0].astype(np.float32).reshape(-1)
    if y.shape != want.shape:
        return "wrong", f"{y.size} outputs, {want.size} expected"
    finite = np.isfinite(want)  # the cast cases hold NaN and infinities: those must be equal
    if not np.array_equal(y[~finite], want[~finite], equal_nan=True):
        return "wrong", "a NaN or infinity differs"
    if not finite.any():
        return "matched", ""
    y, want = y[finite], want[finite]
    err = float(np.abs(y - want).max() / max(float(np.abs(want).max()), 1e-6))
    return ("matched", "") if err < 1e-3 else ("wrong", f"relative error {err:.3g}")


def as_user_would(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model`, converted to opset 13 as the importer's refusal of opsets below 7 advises (the
    pytorch-* folders are opset 6)."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or opset >= 7:
        return model
    from onnx import version_converter
    try:
        return version_converter.convert_version(model, 13)
    except Exception:  # noqa: BLE001  (a model the converter cannot take is refused as it is)
        return model


def reason(message: str) -> str:
    """A refusal's class: its kind and its words, without the file, node, tensor and operator
    names and the numbers that vary from case to case, up to the advice."""
    lines = [ln for ln in message.splitlines() if ln.startswith("alohac: ")]  # not the notes
    text = " ".join((lines[-1] if lines else message).split()).removeprefix("alohac: ")
    kind, _, rest = text.partition(": ")
    rest = re.sub(r"^\S*\.(onnx|mlir)(:\d+)*: ", "", rest)  # the file the error names
    rest = re.sub(r"^([^\s:]+: )?no code generated: ", "", rest)  # and the block it names
    rest = re.sub(r"^node '[^']*' \(\w+\): ", "", rest)
    rest = re.sub(r"^quantize-for-target: \S+", "quantize-for-target: …", rest)  # the graph
    rest = re.sub(r"'[^']*'", "'…'", rest)
    rest = re.sub(r"\boperator \w+", "operator …", rest)
    rest = re.sub(r"\d+", "N", re.split(r";| \(", rest, maxsplit=1)[0])
    return f"{kind}: {rest}"[:110]


def run_alohac(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = alohac(argv)
    return code, err.getvalue()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="run the cases whose name contains this")
    ap.add_argument("--no-compile", action="store_true", help="import only")
    ap.add_argument("--list", choices=("crashed", "refused"), help="print those cases' messages")
    ap.add_argument("--target", default="host-cpu")
    ap.add_argument("--run", action="store_true", help="build every generated program (make) and "
                    "run it on the case's input against its expected output (host-cpu: float)")
    args = ap.parse_args()
    stages = ("import", "compile", "run")
    outcomes = {stage: collections.Counter() for stage in stages}
    reasons = {stage: collections.Counter() for stage in stages}
    listed = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, model, data) in enumerate(cases(args.only)):
            path = os.path.join(tmp, f"case{i}.onnx")
            onnx.save(as_user_would(onnx.load(model) if isinstance(model, str) else model), path)
            try:
                with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
                    warnings.simplefilter("ignore")
                    load_model(path)
            except AlohaError as e:
                stage_outcome(outcomes, reasons, listed, args, "import", name, e.exit_code,
                              f"{e.kind}: {e.one_line()}")
                continue
            except Exception as e:  # noqa: BLE001  (a crash is what this script counts)
                stage_outcome(outcomes, reasons, listed, args, "import", name, 1,
                              f"internal error: {e.__class__.__name__}: {e}")
                continue
            stage_outcome(outcomes, reasons, listed, args, "import", name, 0, "")
            if args.no_compile:
                continue
            code, err = run_alohac(["compile", path, "--target", args.target, "--emit", "c",
                                    "-o", os.path.join(tmp, f"out{i}")])
            stage_outcome(outcomes, reasons, listed, args, "compile", name, code, err)
            if code == 0 and args.run:
                result, why = run_program(os.path.join(tmp, f"out{i}", "code"), data)
                outcomes["run"][result] += 1
                if result != "matched":
                    reasons["run"][f"{result}: {re.sub(r'[0-9.e+-]+$', 'N', why)[:100]}"] += 1
                    if args.list:
                        listed.append(f"run {result} {name}: {why}")
    for line in listed:
        print(line)
    for stage in stages:
        if not outcomes[stage]:
            continue
        total = sum(outcomes[stage].values())
        kinds = {"import": ("imported", "refused"), "compile": ("compiled", "refused"),
                 "run": ("matched", "wrong", "skipped")}[stage] + ("crashed",)
        print(f"\n{stage}: {total} cases, " + ", ".join(f"{outcomes[stage][k]} {k}"
                                                       for k in kinds))
        for why, n in reasons[stage].most_common():
            print(f"  {n:5d}  {why}")
    return 1 if any(outcomes[stage]["crashed"] for stage in stages) else 0


def stage_outcome(outcomes, reasons, listed, args, stage: str, name: str, code: int,
                  message: str) -> None:
    """Count `name`'s exit `code` at `stage` (0 done, 1 crashed, else refused for a reason)."""
    if code == 0:
        outcomes[stage]["imported" if stage == "import" else "compiled"] += 1
        return
    kind = "crashed" if code == 1 else "refused"
    outcomes[stage][kind] += 1
    reasons[stage][f"{'CRASH' if code == 1 else f'exit {code}'} {reason(message)}"] += 1
    if args.list == kind:
        lines = [ln for ln in message.splitlines() if ln.startswith("alohac: ")] or [message]
        listed.append(f"{stage} {kind} {name}: {' '.join(lines[-1].split())[:300]}")


if __name__ == "__main__":
    sys.exit(main())
