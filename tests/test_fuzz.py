"""Fuzzing every input format through the driver's own code path: whatever the input, `alohac`
ends with success or an AlohaError whose exit code names the user's mistake, never 1 (an internal
error, a compiler bug).

Formats: ONNX (corrupted bytes and mutated graphs), nn/csdf IR text, .arch files, pipeline text,
search spaces, mapping files, weight sidecars. Each test runs `alohac.main.main` in-process (or,
for search spaces, the loader and genotype decoding `alohac explore` runs) on inputs mutated from
valid ones, so most reach deep into the compiler. The fast suite runs a fixed, derandomised set of
examples per format (a regression set, about a minute in all); the `slow`-marked twins run ten times
as many random ones.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import re

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from aloha_ir.errors import AlohaError
from aloha_ir.passmanager import PassManager
from aloha_ir.textio import parse_module, print_module, verify_module
from alohac.main import main
from archdesc.loader import PLATFORM_DIR
from frontends.onnx import import_model
from frontends.zoo import load_zoo, zoo_onnx

pytestmark = pytest.mark.filterwarnings("ignore::aloha_ir.errors.AlohaWarning")


def fuzz(examples: int, **strategies):
    """Two tests from one property: the fast one (`examples` derandomised inputs) and its slow
    twin (ten times as many, random)."""
    common = dict(deadline=None, database=None, suppress_health_check=list(HealthCheck))

    def make(prop):
        fast = settings(max_examples=examples, derandomize=True, **common)(
            given(**strategies)(prop))
        slow = settings(max_examples=10 * examples, **common)(given(**strategies)(prop))
        return fast, pytest.mark.slow(slow)
    return make


def cli(*argv: str) -> tuple[int, str]:
    """Run `alohac ARGV` in-process: (exit code, standard error)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, err.getvalue()


def no_internal_error(code: int, err: str, what: str) -> None:
    assert code != 1, f"{what}: {err.strip().splitlines()[-1] if err.strip() else err}"
    if code:
        assert err.strip().splitlines()[-1].startswith("alohac: "), err


def aloha_error_only(fn, *args) -> None:
    """fn(*args) succeeds or raises an AlohaError of a user's kind, in one line."""
    try:
        fn(*args)
    except AlohaError as e:
        assert type(e).exit_code != 1, f"{type(e).__name__}: {e}"
        assert "\n" not in e.one_line()


# --- the valid inputs mutations start from ----------------------------------------------------------

def tiny_onnx() -> onnx.ModelProto:
    """Conv + ReLU + max pool + flatten + dense: small enough that the whole target pipeline runs in
    a few milliseconds."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2],
                              strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1)]
    inits = [numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(np.zeros(4, np.float32), "b"),
             numpy_helper.from_array(rng.standard_normal((3, 64)).astype(np.float32), "fw"),
             numpy_helper.from_array(np.zeros(3, np.float32), "fb")]
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                        [1, 1, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 10
    return model


def many_ops_onnx() -> onnx.ModelProto:
    """One graph with most supported operators (and a folded shape subgraph), for graph mutations."""
    rng = np.random.default_rng(1)

    def init(name, shape, dtype=np.float32):
        return numpy_helper.from_array(rng.uniform(0.5, 1.5, shape).astype(dtype), name)
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1], strides=[1, 1], group=1),
        n("BatchNormalization", ["c", "s", "bb", "m", "v"], ["bn"], name="bn", epsilon=1e-5),
        n("LeakyRelu", ["bn"], ["lr"], name="lrelu", alpha=0.1),
        n("Pad", ["lr", "pads", "pv"], ["pd"], name="pad", mode="constant"),
        n("AveragePool", ["pd"], ["ap"], name="avg", kernel_shape=[3, 3], strides=[1, 1]),
        n("Mul", ["ap", "k"], ["mu"], name="mul"),
        n("Sub", ["mu", "sc"], ["su"], name="sub"),
        n("Div", ["su", "dv"], ["di"], name="div"),
        n("Clip", ["di", "lo", "hi"], ["cl"], name="clip"),
        n("Resize", ["cl", "", "scales"], ["rs"], name="resize", mode="nearest"),
        n("LRN", ["rs"], ["lrn"], name="lrn", size=3),
        n("Concat", ["lrn", "rs"], ["cat"], name="cat", axis=1),
        n("Dropout", ["cat"], ["dr"], name="drop"),
        n("Sigmoid", ["dr"], ["sg"], name="sig"),
        n("Transpose", ["sg"], ["tr"], name="tr", perm=[0, 1, 3, 2]),
        n("MaxPool", ["tr"], ["mp"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        n("Shape", ["mp"], ["shp"], name="shape"),
        n("Gather", ["shp", "zero"], ["n0"], name="gather", axis=0),
        n("Unsqueeze", ["n0", "ax0"], ["n1"], name="unsq"),
        n("Concat", ["n1", "minus1"], ["spec"], name="spec", axis=0),
        n("Reshape", ["mp", "spec"], ["flat"], name="reshape"),
        n("Gemm", ["flat", "fw", "fb"], ["g"], name="fc", transB=1),
        n("Tanh", ["g"], ["th"], name="tanh"),
        n("Softmax", ["th"], ["y"], name="softmax", axis=-1),
        n("GlobalAveragePool", ["tr"], ["gap"], name="gap"),
        n("ReduceMean", ["gap"], ["z"], name="mean", axes=[1], keepdims=1),
    ]
    inits = [init("w", (4, 3, 3, 3)), init("s", (4,)), init("bb", (4,)), init("m", (4,)),
             init("v", (4,)), numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64),
                                                      "pads"),
             numpy_helper.from_array(np.array(0.0, np.float32), "pv"), init("k", (1, 4, 1, 1)),
             numpy_helper.from_array(np.array(0.25, np.float32), "sc"),
             numpy_helper.from_array(np.array(2.0, np.float32), "dv"),
             numpy_helper.from_array(np.array(-1.0, np.float32), "lo"),
             numpy_helper.from_array(np.array(1.0, np.float32), "hi"),
             numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
             numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.array([0], np.int64), "ax0"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus1"),
             init("fw", (5, 8 * 6 * 6)), init("fb", (5,))]
    vi = helper.make_tensor_value_info
    g = helper.make_graph(nodes, "many", [vi("x", TensorProto.FLOAT, [1, 3, 6, 6])],
                          [vi("y", TensorProto.FLOAT, [1, 5]), vi("z", TensorProto.FLOAT, None)],
                          inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 10
    return model


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A folder with the valid inputs: tiny.onnx, many.onnx, tiny's IR with its weights (nn/:
    the nn graph; ir/: nn and the mapped csdf graph, and the csdf graph alone)."""
    root = tmp_path_factory.mktemp("fuzz")
    onnx.save(tiny_onnx(), str(root / "tiny.onnx"))
    onnx.save(many_ops_onnx(), str(root / "many.onnx"))
    code, err = cli("compile", root / "tiny.onnx", "-o", root / "ir", "--emit", "nn,csdf",
                    "--target", "host-cpu")
    assert code == 0, err
    code, err = cli("compile", root / "tiny.onnx", "-o", root / "nn")  # nn alone: faster to parse
    assert code == 0, err
    return root


def _files(root, name: str, data: bytes | str) -> str:
    """Write one example's file under a fresh name (hypothesis runs examples in one process)."""
    _files.count = getattr(_files, "count", 0) + 1
    folder = root / f"ex{_files.count}"
    folder.mkdir()
    path = folder / name
    (path.write_bytes if isinstance(data, bytes) else path.write_text)(data)
    return str(path)


# --- ONNX ----------------------------------------------------------------------------------------

_ONNX = None


def _valid_onnx() -> bytes:
    global _ONNX
    if _ONNX is None:
        _ONNX = zoo_onnx("mnist_cnn").SerializeToString()
    return _ONNX


def _corrupted_onnx(work, data):
    raw = bytearray(_valid_onnx())
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    path = _files(work, "m.onnx", bytes(raw))
    no_internal_error(*cli("analyze", path), "corrupted ONNX")


test_corrupted_onnx, test_corrupted_onnx_slow = fuzz(200, data=st.data())(_corrupted_onnx)


_OPS = ["Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Relu",
        "LeakyRelu", "Sigmoid", "Tanh", "Clip", "Softmax", "Add", "Sum", "Sub", "Mul", "Div",
        "Gemm", "MatMul", "Flatten", "Reshape", "Transpose", "Concat", "Pad", "LRN",
        "BatchNormalization", "Dropout", "Identity", "Resize", "ReduceMean", "Squeeze",
        "Unsqueeze", "Cast", "Shape", "Gather", "Slice", "ConstantOfShape", "Upsample",
        "ConvTranspose", "DepthToSpace", "SpaceToDepth", "ReduceMax"]
_ATTR_NAMES = ["kernel_shape", "strides", "pads", "dilations", "group", "auto_pad", "axis",
               "axes", "perm", "alpha", "beta", "transA", "transB", "mode", "keepdims", "to",
               "ceil_mode", "count_include_pad", "size", "bias", "epsilon", "value", "shape",
               "allowzero", "coordinate_transformation_mode", "nearest_mode", "start", "end",
               "storage_order", "min", "max", "ratio", "scales", "blocksize", "output_padding",
               "noop_with_empty_axes", "nonsense"]
_DTYPES = [np.float32, np.float32, np.float64, np.float16, np.int64, np.int32, np.uint8, np.bool_]
_ELEMS = [TensorProto.FLOAT] * 6 + [TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.UINT8,
                                    TensorProto.INT64, TensorProto.BOOL, TensorProto.STRING, 0]


def _small_int(data):
    return data.draw(st.sampled_from([-2, -1, 0, 1, 1, 2, 2, 3, 4, 7, 2 ** 31, -2 ** 40]))


def _attr_value(data):
    kind = data.draw(st.sampled_from(["int", "ints", "float", "floats", "string", "tensor"]))
    if kind == "int":
        return _small_int(data)
    if kind == "ints":
        return [_small_int(data) for _ in range(data.draw(st.integers(1, 8)))]
    if kind == "float":
        return data.draw(st.sampled_from([0.0, 0.5, -1.0, 1e-30, 1e30, float("nan"),
                                          float("inf")]))
    if kind == "floats":
        return [data.draw(st.floats(-4, 4)) for _ in range(data.draw(st.integers(0, 4)))]
    if kind == "string":
        return data.draw(st.sampled_from(["", "NOTSET", "SAME_UPPER", "VALID", "constant",
                                          "reflect", "nearest", "linear", "cubic", "half_pixel",
                                          "x\u00e9"]))
    return numpy_helper.from_array(_array(data))


def _array(data) -> np.ndarray:
    rank = data.draw(st.integers(0, 4))
    shape = tuple(data.draw(st.sampled_from([0, 1, 1, 2, 3, 4])) for _ in range(rank))
    dtype = data.draw(st.sampled_from(_DTYPES))
    values = np.random.default_rng(data.draw(st.integers(0, 99))).uniform(-2, 2, shape)
    if data.draw(st.integers(0, 9)) == 0 and values.size:
        values.flat[0] = data.draw(st.sampled_from([np.nan, np.inf, 0.0, 1e38]))
    with np.errstate(all="ignore"):
        return values.astype(dtype)


def _mutate_graph(model: onnx.ModelProto, data) -> None:
    g = model.graph
    names = [t for n in g.node for t in list(n.input) + list(n.output)] + \
        [i.name for i in g.input] + [t.name for t in g.initializer] + ["", "nowhere"]
    what = data.draw(st.sampled_from(["attr", "attr", "attr", "drop_attr", "op", "input", "node",
                                      "init", "init", "graph_input", "opset", "output"]))
    node = g.node[data.draw(st.integers(0, len(g.node) - 1))] if g.node else None
    if what == "attr" and node is not None:
        name = data.draw(st.sampled_from(_ATTR_NAMES + [a.name for a in node.attribute]))
        keep = [a for a in node.attribute if a.name != name]
        del node.attribute[:]
        value = _attr_value(data)
        kind = None if not isinstance(value, list) else onnx.AttributeProto.INTS if value and \
            isinstance(value[0], int) else onnx.AttributeProto.FLOATS
        node.attribute.extend(keep + [helper.make_attribute(name, value, attr_type=kind)])
    elif what == "drop_attr" and node is not None and node.attribute:
        del node.attribute[data.draw(st.integers(0, len(node.attribute) - 1))]
    elif what == "op" and node is not None:
        node.op_type = data.draw(st.sampled_from(_OPS))
    elif what == "input" and node is not None:
        ins = list(node.input) + [""]
        ins[data.draw(st.integers(0, len(ins) - 1))] = data.draw(st.sampled_from(names))
        if data.draw(st.booleans()):
            ins = ins[:-1]
        del node.input[:]
        node.input.extend(ins)
    elif what == "node" and node is not None:
        if data.draw(st.booleans()):
            g.node.remove(node)
        else:
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            del copy.output[:]
            copy.output.append(data.draw(st.sampled_from(names)))
            g.node.append(copy)
    elif what == "init" and g.initializer:
        t = g.initializer[data.draw(st.integers(0, len(g.initializer) - 1))]
        t.CopyFrom(numpy_helper.from_array(_array(data), t.name))
    elif what == "graph_input":
        vi = g.input[0]
        dims = [data.draw(st.sampled_from([0, 1, 1, 3, 6, 8, -1, "n"]))
                for _ in range(data.draw(st.integers(0, 5)))]
        vi.CopyFrom(helper.make_tensor_value_info(vi.name, data.draw(st.sampled_from(_ELEMS)),
                                                  dims if data.draw(st.integers(0, 5)) else None))
    elif what == "opset":
        model.opset_import[0].version = data.draw(st.sampled_from([0, 1, 6, 7, 9, 11, 13, 18, 99]))
    elif what == "output" and g.output:
        if data.draw(st.booleans()):
            del g.output[data.draw(st.integers(0, len(g.output) - 1))]
        else:
            g.output[0].type.tensor_type.elem_type = data.draw(st.sampled_from(_ELEMS))


def _mutated_onnx_graph(work, data):
    seed = data.draw(st.sampled_from(["tiny.onnx", "many.onnx"]))
    model = onnx.load(str(work / seed))
    for _ in range(data.draw(st.integers(1, 3))):
        _mutate_graph(model, data)
    path = _files(work, "m.onnx", model.SerializeToString())
    code, err = cli("analyze", path)
    no_internal_error(code, err, "mutated ONNX graph")
    if code == 0:  # it imports: the whole target pipeline must hold too
        target = data.draw(st.sampled_from(["host-cpu", "neuraghe-losa", "orlando"]))
        no_internal_error(*cli("analyze", path, "--target", target, "--json", "--allow-overflow"),
                          f"mutated ONNX graph on {target}")


test_mutated_onnx_graph, test_mutated_onnx_graph_slow = fuzz(400, data=st.data())(
    _mutated_onnx_graph)


# --- nn/csdf IR text -----------------------------------------------------------------------------

_TEXT = None


def _valid_text() -> str:
    global _TEXT
    if _TEXT is None:
        module = load_zoo("lenet5")
        PassManager.parse("canonicalize,convert-nn-to-csdf").run(module)  # both dialects
        _TEXT = print_module(module)
    return _TEXT


def _mutated_ir_text(data):
    text = _valid_text()
    pos = data.draw(st.integers(0, len(text) - 1))
    cut = data.draw(st.integers(0, 12))
    insert = data.draw(st.text(alphabet="%@{}[]<>:=,x0123456789.-\"nn \\", max_size=6))
    aloha_error_only(lambda: verify_module(parse_module(text[:pos] + insert + text[pos + cut:],
                                                         "fuzz.mlir")))


test_mutated_ir_text, test_mutated_ir_text_slow = fuzz(250, data=st.data())(_mutated_ir_text)

_NUMBER = re.compile(r"(?<![A-Za-z_%@])-?\d+(\.\d+)?(e[-+]?\d+)?")


def _ir_file_through_opt(work, data):
    """The tiny model's nn and csdf text with numbers, names and lines changed, through
    `alohac opt` (parse, weights, verify, a pipeline)."""
    dialect = data.draw(st.sampled_from(["tiny.mlir", "tiny.csdf.mlir"]))
    lines = (work / ("nn" if dialect == "tiny.mlir" else "ir") / dialect).read_text().splitlines()
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(lines) - 1))
        how = data.draw(st.sampled_from(["number", "number", "delete", "duplicate", "swap"]))
        if how == "number" and _NUMBER.search(lines[i]):
            spans = [m.span() for m in _NUMBER.finditer(lines[i])]
            a, b = spans[data.draw(st.integers(0, len(spans) - 1))]
            new = data.draw(st.sampled_from(["0", "-1", "1", "2", "3", "7", "64", "100000",
                                             "4294967297", "1.5", "-0.5", "1e30"]))
            lines[i] = lines[i][:a] + new + lines[i][b:]
        elif how == "delete":
            del lines[i]
        elif how == "duplicate":
            lines.insert(i, lines[i])
        else:
            j = data.draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
    path = _files(work, dialect, "\n".join(lines) + "\n")
    side = work / "nn" / "tiny.weights.npz"
    if dialect == "tiny.mlir":
        os.link(side, path[:-len(".mlir")] + ".weights.npz")
    pipeline = "canonicalize,analyze-cost,convert-nn-to-csdf" if dialect == "tiny.mlir" else \
        "analyze-repetition,analyze-schedule"
    no_internal_error(*cli("opt", path, "-p", pipeline), f"mutated {dialect}")


test_ir_file_through_opt, test_ir_file_through_opt_slow = fuzz(120, data=st.data())(
    _ir_file_through_opt)


# --- weight sidecars -------------------------------------------------------------------------------

def _weights_sidecar(work, data):
    path = _files(work, "tiny.mlir", (work / "nn" / "tiny.mlir").read_text())
    with np.load(work / "nn" / "tiny.weights.npz") as f:
        arrays = {k: f[k] for k in f.files}
    how = data.draw(st.sampled_from(["array", "array", "drop", "extra", "bytes"]))
    key = data.draw(st.sampled_from(sorted(arrays)))
    if how == "array":
        arrays[key] = _array(data) if data.draw(st.booleans()) else \
            arrays[key].astype(data.draw(st.sampled_from(_DTYPES)))
    elif how == "drop":
        del arrays[key]
    elif how == "extra":
        arrays["zz"] = _array(data)
    side = path[:-len(".mlir")] + ".weights.npz"
    np.savez(side, **arrays)
    if how == "bytes":
        raw = bytearray(open(side, "rb").read())
        for _ in range(data.draw(st.integers(1, 6))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
        open(side, "wb").write(bytes(raw[: data.draw(st.integers(0, len(raw)))]))
    code, err = cli("opt", path, "-p", "canonicalize,analyze-cost")
    no_internal_error(code, err, "weights sidecar")
    if code == 0:
        no_internal_error(*cli("analyze", path, "--target", "host-cpu", "--json"),
                          "weights sidecar on host-cpu")


test_weights_sidecar, test_weights_sidecar_slow = fuzz(80, data=st.data())(_weights_sidecar)


# --- .arch files -----------------------------------------------------------------------------------

_ARCH_NUMBER = re.compile(r"(?<![A-Za-z_])-?\d+(\.\d+)?(e[-+]?\d+)?(x\d+)?")
_ARCH_UNIT = re.compile(r"\d\s*([A-Za-z][A-Za-z/]*)")
_ARCH_VALUES = ["0", "-1", "1", "2", "3", "0.5", "1e400", "1e-30", "2147483648", "99999", "3x3",
                "0x4", "1e3"]
_ARCH_UNITS = ["Hz", "MHz", "GB/s", "KiB", "B", "W", "mW", "us", "V", "nJ", "bit/s", "GiB", "x",
               ""]


def _mutated_arch(work, data):
    base = data.draw(st.sampled_from(["host-cpu.arch", "_neuraghe.arch", "orlando.arch"]))
    lines = open(os.path.join(PLATFORM_DIR, base)).read().splitlines()
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(lines) - 1))
        code_part = lines[i].split("#")[0]
        how = data.draw(st.sampled_from(["number", "number", "number", "unit", "delete",
                                         "duplicate", "text"]))
        if how == "number" and _ARCH_NUMBER.search(code_part):
            spans = [m.span() for m in _ARCH_NUMBER.finditer(code_part)]
            a, b = spans[data.draw(st.integers(0, len(spans) - 1))]
            lines[i] = lines[i][:a] + data.draw(st.sampled_from(_ARCH_VALUES)) + lines[i][b:]
        elif how == "unit" and _ARCH_UNIT.search(code_part):
            m = _ARCH_UNIT.search(code_part)
            lines[i] = lines[i][:m.start(1)] + data.draw(st.sampled_from(_ARCH_UNITS)) + \
                lines[i][m.end(1):]
        elif how == "delete":
            del lines[i]
        elif how == "duplicate":
            lines.insert(i, lines[i])
        else:
            pos = data.draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:pos] + data.draw(st.text("{}=,:;x0 #\"-*>", max_size=3)) + \
                lines[i][pos:]
    path = _files(work, base, "\n".join(lines) + "\n")
    target = path
    if base == "_neuraghe.arch":  # a child beside it extends the mutated base
        target = os.path.join(os.path.dirname(path), "neuraghe-losa.arch")
        with open(os.path.join(PLATFORM_DIR, "neuraghe-losa.arch")) as f:
            open(target, "w").write(f.read())
    no_internal_error(*cli("analyze", work / "tiny.onnx", "--target", target, "--json"),
                      f"mutated {base}")


test_mutated_arch, test_mutated_arch_slow = fuzz(150, data=st.data())(_mutated_arch)


# --- pipeline text ---------------------------------------------------------------------------------

_PASS_NAMES = ["canonicalize", "analyze-cost", "convert-nn-to-csdf", "partition", "map",
               "analyze-schedule", "analyze-buffers", "size-buffers", "analyze-memory",
               "analyze-energy",
               "analyze-processors",
               "analyze-repetition", "align-to-arch", "prune", "quantize", "analyze-security",
               "canonicalise", "", "map map"]
_OPTIONS = ["target", "strategy", "bits", "opp", "assign", "units", "actors", "auto", "grain",
            "max_frames", "in_flight", "timeline", "pareto", "budget_bytes", "allow_overflow",
            "annotate", "direction",
            "multiple", "fold_batchnorm", "method", "threshold", "data", "nonsense"]
_VALUES = ["host-cpu", "orlando", "neuraghe-losa", "nowhere", "greedy", "fastest", "0", "1", "8",
           "16", "-3", "1000", "true", "false", "up", "down", "low", "ptq", "1.5", "\"\"",
           "\"conv:core0\"", "\"conv:ce;relu:arm\"", "\"core0,core1\"", "\"x:y:z\"", "[1, 2]",
           "{}", "\"", "nan"]


def _pipeline_text(data) -> str:
    stages = []
    for _ in range(data.draw(st.integers(0, 4))):
        name = data.draw(st.sampled_from(_PASS_NAMES))
        opts = [f"{data.draw(st.sampled_from(_OPTIONS))}={data.draw(st.sampled_from(_VALUES))}"
                for _ in range(data.draw(st.integers(0, 2)))]
        stages.append(name + ("{" + " ".join(opts) + "}" if opts or data.draw(st.booleans())
                              else ""))
    text = ",".join(stages)
    if data.draw(st.integers(0, 4)) == 0 and text:
        pos = data.draw(st.integers(0, len(text)))
        text = text[:pos] + data.draw(st.text("{}=,\" ", max_size=2)) + text[pos:]
    return text


def _pipelines(work, data):
    text = _pipeline_text(data)
    no_internal_error(*cli("opt", work / "ir" / "tiny.mlir", "-p", text), f"opt -p '{text}'")
    no_internal_error(*cli("analyze", work / "tiny.onnx", "--target", "host-cpu", "--json",
                           "-p", text), f"analyze --target host-cpu -p '{text}'")


test_pipeline_text, test_pipeline_text_slow = fuzz(80, data=st.data())(_pipelines)


# --- mapping files ---------------------------------------------------------------------------------

def _valid_mapping(work) -> dict:
    """A mapping of tiny on host-cpu as explore-mapping writes one: conv in two parts, every
    actor after partition pinned to a core."""
    from aloha_ir.context import make_context
    from archdesc.loader import load_platform
    from explore.system.mapping_file import MAPPING_FORMAT
    module = import_model(tiny_onnx(), source=str(work / "tiny.onnx"))
    ctx = make_context()
    ctx.target = load_platform("host-cpu")
    PassManager.parse('canonicalize,convert-nn-to-csdf,partition{actors="conv:2" auto=false}'
                      ).run(module, ctx)
    actors = [op.sym_name.data for op in module.walk() if op.name == "csdf.actor"
              and op.kind.data not in ("input", "output", "gather")]
    return {"format": MAPPING_FORMAT, "model": str(work / "tiny.onnx"), "platform": "host-cpu",
            "bits": 32, "operating_point": None, "partition": {"conv": 2},
            "assignment": {a: f"core{i % 2}" for i, a in enumerate(actors)},
            "units": ["core0", "core1"], "inputs": {"x": [1, 1, 8, 8]}, "fits": True,
            "predicted": {"latency_s": 1e-6, "energy_j": 1e-5}}


_JSON_VALUES = [None, True, 0, 1, 2, -1, 32, 8, 16, 1.5, 10 ** 9, "", "core0", "core1", "core7", "ce",
                "conv", "x:y", "a;b", [], [1, 2], ["core0"], {}, {"conv": 2}, {"conv": "core0"},
                {"x": [1, 1, 8, 8]}, {"x": [0]}, "[" * 3]


def _mapping_files(work, data):
    mapping = _valid_mapping(work)
    for _ in range(data.draw(st.integers(1, 3))):
        key = data.draw(st.sampled_from(sorted(mapping) + ["extra"]))
        how = data.draw(st.sampled_from(["set", "set", "drop", "inner"]))
        if how == "drop":
            mapping.pop(key, None)
        elif how == "inner" and isinstance(mapping.get(key), dict) and mapping[key]:
            inner = data.draw(st.sampled_from(sorted(mapping[key]) + ["nope"]))
            mapping[key][inner] = copy.deepcopy(data.draw(st.sampled_from(_JSON_VALUES)))
        else:
            mapping[key] = copy.deepcopy(data.draw(st.sampled_from(_JSON_VALUES)))
    text = json.dumps(mapping)
    if data.draw(st.integers(0, 5)) == 0:
        text = text[: data.draw(st.integers(0, len(text)))]
    path = _files(work, "mapping.json", text)
    no_internal_error(*cli("analyze", work / "tiny.onnx", "--target", "host-cpu", "--mapping",
                           path, "--json"), f"mapping {text}")


test_mapping_files, test_mapping_files_slow = fuzz(120, data=st.data())(_mapping_files)


# --- search spaces ---------------------------------------------------------------------------------

_SPACE_TYPES = ["dataI", "Convolution", "Convolution+Relu", "Pooling", "DenseBlock", "dataO",
                "conv", "nope"]
_SPACE_PARAMS = ["count", "maps", "kernel", "stride", "padding", "mode", "convs", "neurons",
                 "other"]
_SPACE_VALUES = [0, 1, 2, 3, 5, 16, -1, 2.5, "same", "valid", "max", "avg", True, None, [1, 3],
                 [3, 1], [2, 5], [0, 4], [1, 100000], {"choices": [3, 5]}, {"choices": []},
                 {"choices": [2, "x"]}, {"other": 1}, "[", []]


def _space_entries(data) -> dict:
    layers = ["dataI"]
    for _ in range(data.draw(st.integers(0, 4))):
        entry = {"type": data.draw(st.sampled_from(_SPACE_TYPES))}
        for _ in range(data.draw(st.integers(0, 3))):
            entry[data.draw(st.sampled_from(_SPACE_PARAMS))] = data.draw(
                st.sampled_from(_SPACE_VALUES))
        layers.append(entry if data.draw(st.integers(0, 4)) else entry["type"])
    layers.append("dataO")
    space = {"name": "fuzz", "input": data.draw(st.sampled_from([[1, 12, 12], [3, 8, 8],
                                                                 [1, 1, 1], [0, 4, 4], "x"])),
             "classes": data.draw(st.sampled_from([2, 10, 1, "ten"])), "layers": layers}
    if data.draw(st.booleans()):
        space["invalid"] = data.draw(st.sampled_from(["repair", "reject", "maybe"]))
    if data.draw(st.integers(0, 3)) == 0:
        space["scenarios"] = data.draw(st.sampled_from(
            [[{"name": "a", "constraints": ["macs<=100000"]}], [{"constraints": ["x<"]}],
             [{"choose": "knee"}], "s", [1]]))
    if data.draw(st.integers(0, 5)) == 0:
        space.pop(data.draw(st.sampled_from(sorted(space))))
    return space


def _search_spaces(work, data):
    """The loader and what `alohac explore` does with a space before training: its scenarios,
    input/classes, random genotypes repaired and decoded to verified nn modules."""
    import yaml

    from explore.objectives import parse_objectives
    from explore.scenarios import parse_scenarios
    from explore.space import load_space, resolve_io
    from frontends.genotype import to_module
    space_dict = _space_entries(data)
    if data.draw(st.booleans()):
        text, name = yaml.safe_dump(space_dict), "space.yaml"
    else:
        text, name = json.dumps(space_dict), "space.yaml"  # JSON is YAML too
    if data.draw(st.integers(0, 5)) == 0:
        text = text[: data.draw(st.integers(0, len(text)))]
    path = _files(work, name, text)

    def run():
        space = load_space(path)
        objectives = parse_objectives("macs,params")
        parse_scenarios(list(space.scenarios), objectives, path)
        shape, classes = resolve_io(space, None, None)
        rng = np.random.default_rng(data.draw(st.integers(0, 9)))
        for _ in range(3):
            genotype = space.sample(rng, shape)
            verify_module(to_module(genotype, shape, classes))
        space.size()
        json.dumps(space.to_json())
    aloha_error_only(run)


test_search_spaces, test_search_spaces_slow = fuzz(200, data=st.data())(_search_spaces)


# --- measurement files (alohac calibrate) ------------------------------------------------------------

_MEASURED = ("model,bits,operating_point,fps,gops_per_s,power_w,gops_per_w,platform\n"
             "zoo:lenet5,16,,5000,,12.5,,\nzoo:mnist_cnn,8,,,30.5,,2.4,neuraghe-losa\n")


def _measurement_files(work, data):
    """A valid measurements file, mutated (cells replaced, characters dropped or inserted, the
    file cut): it reads as rows or fails with a MeasurementError naming the line."""
    from flows.calibrate import MeasurementError, read_measurements
    text = _MEASURED
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(text)))
        op = data.draw(st.sampled_from(["drop", "insert", "cell", "cut"]))
        if op == "drop":
            text = text[:i] + text[i + 1:]
        elif op == "insert":
            text = text[:i] + data.draw(st.sampled_from([",", "\n", '"', "-", "nan", "1e999",
                                                         "0", "\x00", "é", " "])) + text[i:]
        elif op == "cell":
            cells = text.split(",")
            k = data.draw(st.integers(0, len(cells) - 1))
            cells[k] = data.draw(st.text(max_size=6))
            text = ",".join(cells)
        else:
            text = text[:i]
    path = _files(work, "m.csv", text.encode("utf-8", "surrogateescape"))
    try:
        rows = read_measurements(path)
    except MeasurementError as e:
        assert e.where.startswith(path) and "\n" not in e.one_line()
        return
    for r in rows:
        assert r.model and (r.fps is None) != (r.gops_per_s is None)
        for v in (r.fps, r.gops_per_s, r.power_w, r.gops_per_w):
            assert v is None or (np.isfinite(v) and v > 0)


test_measurement_files, test_measurement_files_slow = fuzz(150, data=st.data())(
    _measurement_files)
