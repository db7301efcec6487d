"""The onnx wheel's backend test cases run through ALOHA in three checked stages, each against the
case's expected outputs (the independent reference), for tests/test_onnx_backend.py and
benchmarks/onnx_coverage.py.

The cases: the node cases (generated in memory by onnx.backend.test.case.node, as
`backend-test-tools generate-data` would write them) and the folders data/{pytorch-converted,
pytorch-operator,simple} (model.onnx and test_data_set_0 each). A model below opset 7 (the pytorch-*
folders) is first converted to opset 13 with onnx.version_converter, as the importer's refusal of
it advises.

The stages, as a new user would run them:
- `import`: frontends.onnx.import_onnx, then the imported nn module run in float by the project's
  float executor (runtime.torch.module.build);
- `round-trip`: backends.onnx.export.export_onnx of the imported module, run by onnxruntime;
- `c`: `alohac compile MODEL --target host-cpu --emit c`, the program built (make) and run on the
  case's inputs (a file per model input and per output), where its outputs are float.

Every stage's outcome is one of OUTCOMES: `passed` (the outputs equal the expected ones within the
case's rtol/atol, 1e-3/1e-7 unless the case says otherwise, as onnx's backend runner compares),
`warned` (other numbers, but the ones the import warned of: a double input is computed in float32,
and the outputs equal the case model's own, by onnxruntime, on the inputs rounded to float32 --
9e223 becoming inf), `refused` (an AlohaError, exit 2-8, with its reason), `wrong` (it ran and gave
other numbers or another shape that nothing explains: a silent error), `crashed` (exit 1 or an
exception that is not an AlohaError: a bug) or `skipped` (with the reason).

No stage sees the double values themselves, as no user's run does: the compiled model's interface
is float32 (the generated program reads float32 files, the executors take float32 tensors), and
the caller's conversion (numpy's, here) makes a magnitude beyond 3.4e38 infinite; from there the
float32 computation is IEEE's (an infinity propagates, nothing saturates). What tells the user is
the import's warning, said before any run.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import re
import subprocess
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from aloha_ir.errors import AlohaError

DATA = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
FOLDERS = ("pytorch-converted", "pytorch-operator", "simple")
STAGES = ("import", "round-trip", "c")
OUTCOMES = ("passed", "warned", "refused", "wrong", "crashed", "skipped")
CLAIMS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "frontends",
                      "onnx", "claimed_cases.txt")
RUN_TIMEOUT_S = 120


@dataclass(frozen=True)
class Outcome:
    """One stage's result (one of OUTCOMES) and why: the refusal or crash message, the mismatch,
    or the reason for a skip ('' when passed)."""

    result: str
    why: str = ""


@dataclass(frozen=True)
class Case:
    """A backend test case: `kind/name`, its model and its first data set (inputs, expected
    outputs), loaded on demand, and the tolerances its outputs are compared with."""

    name: str
    load: Callable[[], onnx.ModelProto]
    data: Callable[[], tuple[list, list]]
    rtol: float = 1e-3
    atol: float = 1e-7


@functools.cache
def _node_cases() -> tuple:
    from onnx.backend.test.case import node
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        return tuple(node.collect_testcases())


def cases(only: str | None = None) -> Iterator[Case]:
    """Every case whose name contains `only` (all of them without it), the node cases first."""
    for c in _node_cases():
        if not only or only in c.name:
            yield Case(f"node/{c.name}", lambda c=c: c.model, lambda c=c: c.data_sets[0],
                       c.rtol, c.atol)
    for folder in FOLDERS:
        for name in sorted(os.listdir(os.path.join(DATA, folder))):
            path = os.path.join(DATA, folder, name, "model.onnx")
            if os.path.exists(path) and (not only or only in f"{folder}/{name}"):
                yield Case(f"{folder}/{name}", lambda p=path: onnx.load(p),
                           lambda d=os.path.dirname(path): _data_set(d))


@functools.cache
def case_names() -> frozenset[str]:
    return frozenset(c.name for c in cases())


def case(name: str) -> Case:
    """The case called `name` (`node/test_relu`, `simple/test_sign_model`...)."""
    kind, _, rest = name.partition("/")
    found = [c for c in cases(rest) if c.name == name] if kind in ("node", *FOLDERS) else []
    if not found:
        raise KeyError(f"no ONNX backend test case {name!r} in onnx {onnx.__version__}")
    return found[0]


def _data_set(case_dir: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The inputs and expected outputs of a case folder's test_data_set_0."""
    d = os.path.join(case_dir, "test_data_set_0")

    def read(kind):
        names = sorted(f for f in os.listdir(d) if f.startswith(kind))
        return [numpy_helper.to_array(onnx.load_tensor(os.path.join(d, f))) for f in names]
    return read("input_"), read("output_")


def arrays(data: tuple[list, list]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The data set as numpy arrays (the cast cases give TensorProtos)."""
    return tuple([t if isinstance(t, np.ndarray) else numpy_helper.to_array(t) for t in ts]
                 for ts in data)


def as_user_would(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model`, converted to opset 13 as the importer's refusal of opsets below 7 advises (the
    pytorch-* folders are opset 6); a model the converter cannot take stays as it is."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or opset >= 7:
        return model
    from onnx import version_converter
    try:
        return version_converter.convert_version(model, 13)
    except Exception:  # noqa: BLE001  (then the importer refuses the model as it is)
        return model


def mismatch(got: list[np.ndarray], want: list[np.ndarray], rtol: float, atol: float
             ) -> str | None:
    """None when `got` equals the expected outputs `want` as onnx's backend runner compares them
    (|got - want| <= atol + rtol |want|, NaN equal to NaN, the same shapes), else what differs."""
    if len(got) != len(want):
        return f"{len(got)} outputs, {len(want)} expected"
    for i, (g, w) in enumerate(zip(got, want)):
        g, w = np.asarray(g), np.asarray(w)
        if g.shape != w.shape:
            return f"output {i}: shape {list(g.shape)}, {list(w.shape)} expected"
        try:  # bfloat16 and the float8 types (ml_dtypes) compare as numbers too
            g64, w64 = g.astype(np.float64), w.astype(np.float64)
        except (TypeError, ValueError):
            if not np.array_equal(g, w):
                return f"output {i}: values differ"
            continue
        close = np.isclose(g64, w64, rtol=rtol, atol=atol, equal_nan=True)
        if not close.all():
            with np.errstate(invalid="ignore", over="ignore"):
                worst = np.unravel_index(np.argmax(np.where(close, -1.0, np.nan_to_num(
                    np.abs(g64 - w64), nan=np.inf))), g64.shape)
            return (f"output {i}: {int((~close).sum())} of {close.size} values differ, the most "
                    f"at {list(map(int, worst))}: {g64[worst]:.6g}, {w64[worst]:.6g} expected")
    return None


def _error(e: BaseException) -> Outcome:
    if isinstance(e, AlohaError):
        return Outcome("refused", f"exit {e.exit_code} {e.kind}: {e.one_line()}")
    return Outcome("crashed", f"{e.__class__.__name__}: {e}")


def _quiet():
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    return stack


def save(c: Case, path: str) -> str:
    """Write the case's model, as a user would give it, to `path`."""
    onnx.save(as_user_would(c.load()), path)
    return path


def run_import(c: Case, path: str):
    """(the import stage's Outcome, the imported module or None). `path` is the saved model."""
    from aloha_ir.errors import AlohaWarning
    from frontends.onnx import import_onnx
    try:
        with _quiet(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", AlohaWarning)
            module = import_onnx(path)
    except Exception as e:  # noqa: BLE001  (a crash is an outcome)
        return _error(e), None
    # what the importer said it changed: a wrong outcome names it (it was not silent then)
    said = "; ".join(dict.fromkeys(str(w.message).removeprefix(f"{path}: ") for w in caught
                                   if issubclass(w.category, AlohaWarning)))
    try:
        inputs, outputs = arrays(c.data())
    except (TypeError, ValueError) as e:
        return Outcome("skipped", f"the case's data cannot be read by numpy: {e}"), module
    try:
        import torch

        from runtime.torch.module import build
        with _quiet(), torch.no_grad():
            executor = build(module).eval()
            got = executor(*(torch.from_numpy(np.ascontiguousarray(x, np.float32))
                             for x in inputs))
        got = [t.numpy() for t in (got if isinstance(got, tuple) else (got,))]
    except Exception as e:  # noqa: BLE001
        return _error(e), module
    judged = _judge(got, outputs, c, module)
    if judged.result == "wrong" and said:
        judged = Outcome("wrong", f"{judged.why} (the import warned: {said})")
    return judged, module


def run_round_trip(c: Case, module) -> Outcome:
    """The round-trip stage: our ONNX export of the imported module, run by onnxruntime."""
    from backends.onnx.export import export_onnx
    from model_helpers import run_ort
    try:
        with _quiet():
            exported = export_onnx(module)
    except Exception as e:  # noqa: BLE001
        return _error(e)
    inputs, outputs = arrays(c.data())
    init = {t.name for t in exported.graph.initializer}
    ports = [vi for vi in exported.graph.input if vi.name not in init]
    if len(ports) != len(inputs):
        return Outcome("wrong", f"the export takes {len(ports)} inputs, the case gives "
                                f"{len(inputs)}")
    elem = {vi.name: vi.type.tensor_type.elem_type for vi in [*ports, *exported.graph.output]}
    dtypes = {name: np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t)) for name, t in elem.items()}
    custom = sorted({str(dtypes[vi.name]) for vi in exported.graph.output
                     if dtypes[vi.name].kind == "V"})
    if custom:
        return Outcome("skipped", f"onnxruntime's Python API gives no {custom[0]} tensors")
    try:
        feeds = {vi.name: _feed(np.ascontiguousarray(x, dtypes[vi.name]), elem[vi.name])
                 for vi, x in zip(ports, inputs)}
        got = run_ort(exported, feeds)
    except Exception as e:  # noqa: BLE001  (onnxruntime refusing our export is our bug)
        return Outcome("crashed", f"onnxruntime on the export: {e.__class__.__name__}: "
                                  f"{' '.join(str(e).split())[:300]}")
    return _judge(got, outputs, c, module)


def _feed(x: np.ndarray, elem_type: int):
    """`x` as onnxruntime's Python API takes it: a numpy array, or for a type numpy has only
    through ml_dtypes (bfloat16, the float8s) an OrtValue of its bits with the ONNX type."""
    if x.dtype.kind != "V":
        return x
    import onnxruntime
    bits = x.view(np.dtype(f"u{x.dtype.itemsize}"))
    return onnxruntime.OrtValue.ortvalue_from_numpy_with_onnx_type(bits, elem_type)


def _judge(got, want, c: Case, module) -> Outcome:
    """passed; warned when the outputs differ as the import of `module` warned they would, its
    double inputs rounded to float32 (onnxruntime gives the expected outputs from the case's model
    on the case's inputs, and ours on them rounded); else wrong."""
    why = mismatch(got, want, c.rtol, c.atol)
    if why is None:
        return Outcome("passed")
    if not _has_double_input(module):
        return Outcome("wrong", why)
    inputs, _ = arrays(c.data())
    with np.errstate(over="ignore"):
        rounded = [x.astype(np.float32).astype(x.dtype) if x.dtype == np.float64 else x
                   for x in inputs]
    try:  # the only difference between the two runs is the rounding
        exact, as_float32 = _run_case_model(c, inputs), _run_case_model(c, rounded)
    except Exception:  # noqa: BLE001  (onnxruntime cannot run the case: nothing explains it)
        return Outcome("wrong", why)
    if mismatch(exact, want, c.rtol, c.atol) is None and \
            mismatch(got, as_float32, c.rtol, c.atol) is None:
        return Outcome("warned", f"{why}; the case's model gives these outputs on its inputs "
                                 "rounded to float32, as the import warned")
    return Outcome("wrong", why)


def _has_double_input(module) -> bool:
    """Whether the import of `module` computes a double input in float32 (it warns of it)."""
    from aloha_ir import interface
    from aloha_ir.dialects import nn
    return any(isinstance(op, nn.InputOp) and interface.input_type(op) == "double"
               for op in module.walk())


def _run_case_model(c: Case, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """The case's model, as the user gives it, run by onnxruntime on `inputs`."""
    from model_helpers import run_ort
    model = as_user_would(c.load())
    init = {t.name for t in model.graph.initializer}
    names = [vi.name for vi in model.graph.input if vi.name not in init]
    with _quiet():
        return run_ort(model, dict(zip(names, inputs)))


def run_c(c: Case, module, path: str, out_dir: str, target: str = "host-cpu") -> Outcome:
    """The C stage: `alohac compile` of the saved model for `target` (`module`: its import, for the
    judgement), then (host-cpu only) the
    program built and run on the case's inputs, one file each, its outputs read from one file
    each (network.json names them in argument order; float outputs only: else skipped after the
    compile)."""
    from alohac.main import main as alohac
    err = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(err), \
                contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            code = alohac(["compile", path, "--target", target, "--emit", "c", "-o", out_dir])
    except Exception as e:  # noqa: BLE001  (the driver turns errors into exit codes: a bug)
        return Outcome("crashed", f"{e.__class__.__name__}: {e}")
    if code:
        lines = [ln for ln in err.getvalue().splitlines() if ln.startswith("alohac: ")]
        text = " ".join((lines[-1] if lines else err.getvalue()).split())
        return Outcome("crashed" if code == 1 else "refused", f"exit {code} {text}"[:400])
    if target != "host-cpu":
        return Outcome("skipped", f"compiled; {target}'s program does not run here (only "
                                  "host-cpu's float program is run against the expected outputs)")
    try:  # a float64 value beyond float32's range becomes inf, as the program will read it
        inputs, outputs = arrays(c.data())
        with np.errstate(over="ignore"):
            inputs = [np.ascontiguousarray(t, "<f4") for t in inputs]
            for t in outputs:
                t.astype(np.float32)
    except (TypeError, ValueError):
        return Outcome("skipped", "the case's data cannot be converted to float32")
    # an int64 output is ArgMax's or ArgMin's index, which the program writes as a float32
    if any(t.dtype.kind not in "fi" for t in outputs):
        return Outcome("skipped", "the program gives float or index outputs only")
    code_dir = os.path.join(out_dir, "code")
    r = subprocess.run(["make", "-s", "-C", code_dir, "network"], capture_output=True, text=True)
    if r.returncode:
        return Outcome("crashed", f"make: {r.stderr.strip()[-300:]}")
    with open(os.path.join(code_dir, "network.json")) as f:  # the files in argument order
        manifest = json.load(f)
    if len(manifest["inputs"]) != len(inputs) or len(manifest["outputs"]) != len(outputs):
        return Outcome("wrong", f"the program takes {len(manifest['inputs'])} inputs and gives "
                                f"{len(manifest['outputs'])} outputs, the case has "
                                f"{len(inputs)} and {len(outputs)}")
    ins = [os.path.join(code_dir, io["file"]) for io in manifest["inputs"]]
    outs = [os.path.join(code_dir, io["file"]) for io in manifest["outputs"]]
    for x, name in zip(inputs, ins):
        x.tofile(name)
    try:
        r = subprocess.run([os.path.join(code_dir, "network"), *ins, *outs], capture_output=True,
                           text=True, timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return Outcome("crashed", f"no output within {RUN_TIMEOUT_S} s")
    if r.returncode:
        return Outcome("crashed", f"exit {r.returncode}: {r.stderr.strip()[-300:]}")
    got = []
    for name, want in zip(outs, outputs):
        y = np.fromfile(name, "<f4")
        if y.size != want.size:
            return Outcome("wrong", f"{os.path.basename(name)}: {y.size} values, {want.size} "
                                    "expected")
        got.append(y.reshape(want.shape))
    return _judge(got, outputs, c, module)


def run_case(c: Case, stages, work_dir: str, target: str = "host-cpu") -> dict[str, Outcome]:
    """The outcomes of `stages` (a subset of STAGES) for case `c`, files under `work_dir`. A stage
    after a failed import is skipped."""
    path = save(c, os.path.join(work_dir, "model.onnx"))
    result: dict[str, Outcome] = {}
    imported, module = run_import(c, path)
    if "import" in stages:
        result["import"] = imported
    no_module = Outcome("skipped", f"import {imported.result}")
    if "round-trip" in stages:
        result["round-trip"] = no_module if module is None else run_round_trip(c, module)
    if "c" in stages:
        result["c"] = no_module if module is None else \
            run_c(c, module, path, os.path.join(work_dir, "out"), target)
    return result


def reason(why: str) -> str:
    """A refusal's or crash's class: its words without the file, node, tensor and operator names
    and the numbers that vary from case to case, up to the advice."""
    text = re.sub(r"^alohac: ", "", " ".join(why.split()).removeprefix("exit "))
    code, _, text = text.partition(" ")
    text = text.removeprefix("alohac: ")
    kind, _, rest = text.partition(": ")
    rest = re.sub(r"^\S*\.(onnx|mlir)(:\d+)*: ", "", rest)  # the file the error names
    rest = re.sub(r"^([^\s:]+: )?no code generated: ", "", rest)  # and the block it names
    rest = re.sub(r"^node '[^']*' \(\w+\): ", "", rest)
    rest = re.sub(r"^quantize-for-target: \S+", "quantize-for-target: …", rest)  # the graph
    rest = re.sub(r"'[^']*'", "'…'", rest)
    rest = re.sub(r"\boperator \w+", "operator …", rest)
    rest = re.sub(r"\d+", "N", re.split(r";| \(", rest, maxsplit=1)[0])
    return f"exit {code} {kind}: {rest}"[:110]


# --- the claims list ------------------------------------------------------------------------------

def read_claims(path: str = CLAIMS) -> dict[str, dict[str, str]]:
    """case name -> {stage: the outcome claimed for it (passed or warned)}, in stage order, from
    the claims list (comments skipped)."""
    claims: dict[str, dict[str, str]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            words = line.split("#", 1)[0].split()
            if words:
                claims[words[0]] = {stage: outcome or "passed" for stage, _, outcome in
                                    (w.partition("=") for w in words[1:])}
    return claims


CLAIMS_HEADER = """\
# The ONNX backend test cases (the onnx wheel's onnx.backend.test: node/, pytorch-converted/,
# pytorch-operator/, simple/) that ALOHA claims, one a line: the case, then the stages it passes
# against the case's expected outputs (import = the imported module run in float, round-trip =
# our ONNX export run by onnxruntime, c = the generated host-cpu program); `STAGE=warned`: the
# stage gives the numbers the import warned of (a double input computed in float32), not the
# expected ones. Made by `python benchmarks/onnx_coverage.py --write-claims` (every case whose
# import passes or warned); tests/test_onnx_backend.py runs every claimed stage: a claimed case
# that regresses fails it.
"""


def write_claims(outcomes: dict[str, dict[str, Outcome]], path: str = CLAIMS) -> int:
    """Write the claims list from a run's outcomes; the number of cases claimed."""
    claimed = ("passed", "warned")

    def stages(got):
        for s in STAGES:
            result = got.get(s, Outcome("")).result
            if result in claimed:
                yield s if result == "passed" else f"{s}={result}"
    lines = [" ".join([name, *stages(got)]) for name, got in sorted(outcomes.items())
             if got.get("import", Outcome("")).result in claimed]
    with open(path, "w", encoding="utf-8") as f:
        f.write(CLAIMS_HEADER + "".join(f"{ln}\n" for ln in lines))
    return len(lines)
