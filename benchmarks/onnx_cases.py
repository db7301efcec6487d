"""Every ONNX backend test case through `alohac` as a new user would run it: import, then for the
imported ones `alohac compile MODEL --target host-cpu --emit c`; counts per outcome.

The cases are the onnx wheel's: the node cases (generated in memory by
onnx.backend.test.case.node, as `backend-test-tools generate-data` would write them) and the
folders data/{pytorch-converted,pytorch-operator,simple} (model.onnx each). A model below opset 7
(the pytorch-* folders) is first converted to opset 13 with onnx.version_converter, as the
importer's refusal of it advises. An outcome is
`imported`/`compiled`, `refused` (an AlohaError with its exit code 2-8: the reason is its kind and
the first words of its message) or `crashed` (exit 1, an internal error: a compiler bug).

    python benchmarks/onnx_cases.py [--only SUBSTRING] [--no-compile] [--list crashed|refused]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import os
import re
import sys
import tempfile
import warnings

import onnx

from aloha_ir.errors import AlohaError
from alohac.main import main as alohac
from frontends.loader import load_model

DATA = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
FOLDERS = ("pytorch-converted", "pytorch-operator", "simple")


def cases(only: str | None):
    """(kind/name, ModelProto or path) of every case whose name contains `only`."""
    from onnx.backend.test.case import node
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        generated = node.collect_testcases()
    for c in generated:
        if not only or only in c.name:
            yield f"node/{c.name}", c.model
    for folder in FOLDERS:
        for name in sorted(os.listdir(os.path.join(DATA, folder))):
            path = os.path.join(DATA, folder, name, "model.onnx")
            if os.path.exists(path) and (not only or only in name):
                yield f"{folder}/{name}", path


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
    args = ap.parse_args()
    outcomes = {"import": collections.Counter(), "compile": collections.Counter()}
    reasons = {"import": collections.Counter(), "compile": collections.Counter()}
    listed = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, model) in enumerate(cases(args.only)):
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
    for line in listed:
        print(line)
    for stage in ("import", "compile"):
        if not outcomes[stage]:
            continue
        total = sum(outcomes[stage].values())
        done = "imported" if stage == "import" else "compiled"
        print(f"\n{stage}: {total} cases, {outcomes[stage][done]} {done}, "
              f"{outcomes[stage]['refused']} refused, {outcomes[stage]['crashed']} crashed")
        for why, n in reasons[stage].most_common():
            print(f"  {n:5d}  {why}")
    return 1 if outcomes["import"]["crashed"] or outcomes["compile"]["crashed"] else 0


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
