"""Input files a user hands the compiler (IR text, weight sidecars, mapping files, pipelines): every
mistake is one AlohaError with its exit code, never an internal error (issue 18 items 10, 11)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from aloha_ir.errors import InputFileError, IRParseError
from aloha_ir.textio import load_module, parse_module, print_module, save_module
from aloha_ir.weights import sidecar_path
from alohac.main import main
from frontends.zoo import load_zoo


@pytest.fixture
def saved_lenet(tmp_path):
    """zoo:lenet5 saved as .mlir + .weights.npz with real (materialised) blob weights."""
    from aloha_ir.consts import const_tensor, set_blob
    from aloha_ir.dialects.nn import ConstOp
    from aloha_ir.weights import weights_of
    module = load_zoo("lenet5")
    store = weights_of(module)
    for op in module.walk():
        if isinstance(op, ConstOp):
            set_blob(op, store, const_tensor(op, store).materialize(), "w")
    path = str(tmp_path / "lenet5.mlir")
    save_module(module, path)
    return path


def _rewrite_sidecar(path: str, change) -> str:
    side = sidecar_path(path)
    with np.load(side) as data:
        arrays = {k: data[k] for k in data.files}
    key = max(sorted(arrays), key=lambda k: arrays[k].size)
    arrays = change(arrays, key)
    np.savez(side, **arrays)
    return key


@pytest.mark.parametrize("change, message", [
    (lambda a, k: {**a, k: a[k].astype(np.float64)}, "is float64, expected float32"),
    (lambda a, k: {**a, k: np.where(np.arange(a[k].size).reshape(a[k].shape) == 3, np.nan,
                                    a[k]).astype(np.float32)}, "holds 1 NaN or infinite value"),
    (lambda a, k: {**a, k: np.full_like(a[k], np.inf)}, "NaN or infinite values"),
    (lambda a, k: {**a, k: a[k].reshape(-1)}, "its nn.const says"),
    (lambda a, k: {x: v for x, v in a.items() if x != k}, "is missing"),
])
def test_a_weights_sidecar_that_does_not_match_its_ir_is_refused(saved_lenet, change, message,
                                                                 capsys):
    """Before: another dtype or NaN/inf was never checked; a wrong shape passed opt and analyze."""
    key = _rewrite_sidecar(saved_lenet, change)
    with pytest.raises(InputFileError) as e:
        load_module(saved_lenet)
    assert message in str(e.value) and f"'{key}'" in str(e.value)
    assert "lenet5.weights.npz" in str(e.value)
    for argv in (["opt", saved_lenet, "-p", "canonicalize"], ["analyze", saved_lenet]):
        assert main(argv) == 3
        assert message in capsys.readouterr().err


def test_deeply_nested_ir_is_a_parse_error_not_a_crash(tmp_path, capsys):
    """Before: RecursionError (exit 1)."""
    n = 20000
    for text in ("builtin.module {" * n + "}" * n,
                 'builtin.module { nn.graph @g { %0 = nn.input {port = "x", r = ' + "[" * n +
                 "]" * n + "} : tensor<1xf32> } }"):
        with pytest.raises(IRParseError, match="nests too deeply"):
            parse_module(text, "deep.mlir")
        (tmp_path / "deep.mlir").write_text(text)
        assert main(["opt", str(tmp_path / "deep.mlir")]) == 6
        assert "deep.mlir" in capsys.readouterr().err


def test_non_ascii_names_round_trip_through_ir_text(tmp_path):
    """Before: xDSL printed them as escaped bytes and read them back as bytes, and the csdf
    parser refused the block name: the .mlir the compiler wrote could not be read back."""
    import onnx
    from onnx import TensorProto, helper

    from aloha_ir.dialects.nn import block_label
    from aloha_ir.passmanager import PassManager
    from frontends.onnx import import_model
    vi = helper.make_tensor_value_info
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["é"], name="rélu_ü"),
                           helper.make_node("Sigmoid", ["é"], ["ÿ"], name="日本")], "g",
                          [vi("x", TensorProto.FLOAT, [1, 2, 3, 3])],
                          [vi("ÿ", TensorProto.FLOAT, [1, 2, 3, 3])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    module = import_model(onnx.ModelProto.FromString(model.SerializeToString()), "u.onnx")
    PassManager.parse("canonicalize,convert-nn-to-csdf").run(module)
    path = str(tmp_path / "u.mlir")
    save_module(module, path)
    again = load_module(path)
    labels = [block_label(op) for op in again.walk() if block_label(op)]
    assert "rélu_ü" in labels and "日本" in labels
    blocks = [op.block_name for op in again.walk() if op.name == "csdf.actor"]
    assert "rélu_ü" in blocks and "日本" in blocks
    outputs = [op for op in again.walk() if op.name == "nn.output"]
    assert [p.data for p in outputs[0].ports.data] == ["ÿ"]
    assert print_module(again) == print_module(module)


def test_target_pipeline_naming_a_late_analysis_gets_the_stages_in_between(capsys):
    """Before: `-p convert-nn-to-csdf,analyze-processors --target T` ran no map or schedule and
    the report crashed with KeyError 'analyze-schedule' (exit 1)."""
    assert main(["analyze", "zoo:lenet5", "--target", "host-cpu", "--json", "-p",
                 "convert-nn-to-csdf,analyze-processors"]) == 0
    fig = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert fig["processors"] >= 1 and fig["latency_s"] > 0


def test_a_pipeline_that_names_map_gets_no_partition_it_did_not_ask_for():
    """`map{assign=...}` names the actors of the graph as the user's pipeline leaves it; an
    inserted `partition` would rename them (fc18 -> fc18_0, ...) and the assignment would fail."""
    from aloha_ir.passmanager import PassManager
    from archdesc.loader import load_platform
    from flows.target import TargetFlow
    flow = TargetFlow(load_platform("neuraghe-losa"))

    def names(user: str) -> list[str]:
        return [p.name for p in flow.passes(PassManager.parse(user).passes)]
    got = names('canonicalize,convert-nn-to-csdf,map{assign="conv7:ce"}')
    assert "partition" not in got and got.index("map") < got.index("analyze-schedule")
    got = names("convert-nn-to-csdf,analyze-processors")
    assert got.index("partition") < got.index("map") < got.index("analyze-processors")


def test_a_mapping_file_whose_predicted_is_a_list_is_an_input_error(tmp_path, capsys):
    """Before: TypeError in dict(list) (exit 1)."""
    from explore.system.mapping_file import MAPPING_FORMAT
    path = tmp_path / "mapping.json"
    path.write_text(json.dumps({"format": MAPPING_FORMAT, "model": "zoo:lenet5",
                                "platform": "host-cpu", "partition": {}, "assignment": {},
                                "bits": 32, "predicted": [1, 2]}))
    assert main(["analyze", "zoo:lenet5", "--target", "host-cpu", "--mapping", str(path)]) == 3
    assert "'predicted'" in capsys.readouterr().err
    path.write_text("[" * 100000 + "]" * 100000)
    assert main(["analyze", "zoo:lenet5", "--target", "host-cpu", "--mapping", str(path)]) == 3


def test_a_reader_closing_the_pipe_early_is_no_internal_error():
    """Before: `alohac list passes | head -1` printed a BrokenPipeError and exited 1."""
    p = subprocess.Popen([sys.executable, "-m", "alohac.main", "list", "passes"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # the reader is gone before the first write: deterministic EPIPE
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 141 and err == ""


def test_absurd_sizes_in_ir_text_are_refused_before_anything_is_allocated(saved_lenet):
    """Found by fuzzing: `: i64294967297` allocated gigabytes in the parser (2**width), and a
    4294967297-element tensor would be materialised by the first pass that needs its values."""
    from aloha_ir.errors import IRVerifyError
    text = open(saved_lenet).read()
    with pytest.raises(IRParseError, match="exceeds MLIR's limit"):
        parse_module(text.replace("imported_params = 61708 : i64",
                                  "imported_params = 61708 : i64294967297"), "w.mlir")
    big = text.replace("tensor<1x1x28x28xf32>", "tensor<4294967297x1x28x28xf32>", 1)
    assert big != text
    with open(saved_lenet, "w") as f:
        f.write(big)
    with pytest.raises(IRVerifyError, match="more than 2,147,483,647 elements"):
        load_module(saved_lenet)


def test_exec_times_that_do_not_cover_the_phases_are_a_verify_error(tmp_path, capsys):
    """Found by fuzzing: `exec_times = array<i64: 0, 0>` on an actor of 8 phases passed the
    verifier and the schedule failed with IndexError (exit 1)."""
    assert main(["compile", "zoo:lenet5", "--target", "host-cpu", "--emit", "csdf",
                 "-o", str(tmp_path)]) == 0
    capsys.readouterr()
    path = tmp_path / "lenet5.csdf.mlir"
    text = path.read_text()
    bad = re.sub(r"exec_times = array<i64: (\d+), ", "exec_times = array<i64: 0, ", text, count=1)
    assert bad != text
    path.write_text(bad)
    assert main(["opt", str(path), "-p", "analyze-schedule"]) == 7
    assert "exec_times has a run of 0 phases" in capsys.readouterr().err
    from aloha_ir.errors import exit_code_help
    assert "  141  " in exit_code_help()  # the status is documented where the others are
