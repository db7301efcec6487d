"""Issue 25 item 1: the ONNX backend test cases that crashed `alohac compile --target host-cpu
--emit c` (exit 1) are refused with exit 4 and a message naming the node and what to do
(benchmarks/onnx_coverage.py counts every case). One tiny model per crash class, built here."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

EXIT_UNSUPPORTED = 4


def _model(nodes, inputs, outputs, inits=()) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "t", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m


def _vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _init(name, values):
    return numpy_helper.from_array(np.asarray(values, np.float32), name)


def _alohac(capsys, tmp_path, model: onnx.ModelProto, command: str, *args: str,
            target: str = "host-cpu") -> tuple[int, str]:
    """Exit code and standard error of `alohac COMMAND m.onnx --target TARGET ARGS`
    (in-process)."""
    from alohac.main import main
    path = str(tmp_path / "m.onnx")
    onnx.save(model, path)
    capsys.readouterr()
    code = main([command, path, "--target", target, *args])
    return code, " ".join(capsys.readouterr().err.split())


def _compile_c(capsys, tmp_path, model) -> tuple[int, str]:
    return _alohac(capsys, tmp_path, model, "compile", "--emit", "c", "-o", str(tmp_path / "o"))


def _conv(weights_given: str) -> onnx.ModelProto:
    """x [1, 1, 5, 5] * W [1, 1, 3, 3] + b [1]; `weights_given` names the tensor that is a graph
    input instead of an initializer (or "" for none)."""
    inits = {"W": _init("W", np.ones((1, 1, 3, 3))), "b": _init("b", [0.5])}
    shapes = {"W": [1, 1, 3, 3], "b": [1]}
    inputs = [_vi("x", [1, 1, 5, 5])] + ([_vi(weights_given, shapes[weights_given])]
                                         if weights_given else [])
    return _model([helper.make_node("Conv", ["x", "W", "b"], ["y"], name="conv", pads=[1] * 4)],
                  inputs, [_vi("y", None)], [t for n, t in inits.items() if n != weights_given])


@pytest.mark.parametrize("runtime, role", [("W", "weights"), ("b", "bias")])
def test_conv_weights_given_at_run_time_are_refused_at_import(tmp_path, capsys, runtime, role):
    """Before: `'InputOp' object has no attribute 'splat'`, exit 1, in the C generation (ONNX's
    test_basic_conv_* cases give W as a graph input)."""
    code, err = _compile_c(capsys, tmp_path, _conv(runtime))
    assert code == EXIT_UNSUPPORTED, err
    assert f"node 'conv' (Conv): Conv {role} '{runtime}' computed at run time" in err, err
    assert "give the weights as initializers" in err and "internal error" not in err
    assert not os.path.exists(tmp_path / "o")
    # the same conv with both as initializers compiles
    code, err = _compile_c(capsys, tmp_path, _conv(""))
    assert code == 0, err
    assert os.path.exists(tmp_path / "o" / "code" / "network.c")


def test_a_shape_as_the_output_is_refused_naming_the_node(tmp_path, capsys):
    """ONNX's test_shape_* cases: the output is Shape(x), known at compile time. At 3fd521c a
    KeyError on an nn.const in the lowering (exit 1); refused at import since 8f3adf8 without
    naming the node that computes it."""
    m = _model([helper.make_node("Shape", ["x"], ["y"], name="shape")], [_vi("x", [1, 3, 4, 4])],
               [helper.make_tensor_value_info("y", TensorProto.INT64, None)])
    code, err = _compile_c(capsys, tmp_path, m)
    assert code == EXIT_UNSUPPORTED, err
    assert "graph output 'y' is a constant, from node 'shape' (Shape)" in err, err
    assert "compute it from an input" in err


@pytest.mark.parametrize("rank", [2, 3, 5])
def test_batch_norm_on_a_rank_other_than_4_is_refused_by_the_c_generator(tmp_path, capsys, rank):
    """ONNX's BatchNorm1d_3d_input and BatchNorm3d cases. Before: a numpy broadcast ValueError
    (rank 3, 5) or a template error (rank 2), exit 1. `alohac analyze` still predicts them."""
    shape = [2, 3] + [4] * (rank - 2)
    params = [_init(n, v) for n, v in (("s", [1, 2, 3]), ("b", [0, 1, 2]), ("m", [0, 0, 1]),
                                       ("v", [1, 4, 9]))]
    m = _model([helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"],
                                 name="bn")], [_vi("x", shape)], [_vi("y", None)], params)
    code, err = _compile_c(capsys, tmp_path, m)
    assert code == EXIT_UNSUPPORTED, err
    assert f"bn: no code generated: nn.batchnorm on a rank-{rank} tensor {shape}" in err, err
    assert "[N, C, H, W]" in err
    code, err = _alohac(capsys, tmp_path, m, "analyze")
    assert code == 0, err


def _pad(x, y, name):
    return [helper.make_node("Pad", [x, "pads"], [y], name=name, mode="reflect")], \
        [numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")]


def _transpose(x, y, name):
    return [helper.make_node("Transpose", [x], [y], name=name, perm=[0, 1, 3, 2])], []


def _reduce(x, y, name):
    return [helper.make_node("ReduceMean", [x], [y], name=name, axes=[1], keepdims=1)], []


def _resize(x, y, name):
    return [helper.make_node("Resize", [x, "", "scales"], [y], name=name, mode="nearest")], \
        [_init("scales", [1, 1, 2, 2])]


LAYERS = {"nn.pad": _pad, "nn.transpose": _transpose, "nn.reduce": _reduce,
          "nn.resize": _resize}


def _chain(*ops: str) -> onnx.ModelProto:
    """x [1, 2, 4, 4] -> Relu -> each of `ops` -> y; an op's node is named after it (`pad`), its
    second one `pad_again`."""
    nodes, inits, last = [helper.make_node("Relu", ["x"], ["r"], name="relu")], [], "r"
    for i, op in enumerate(ops):
        out = "y" if i == len(ops) - 1 else f"t{i}"
        name = op.split(".")[1] + ("_again" if op in ops[:i] else "")
        more_nodes, more_inits = LAYERS[op](last, out, name)
        nodes, inits, last = nodes + more_nodes, inits + more_inits, out
    unique = {t.name: t for t in inits}  # a repeated op shares its constants
    return _model(nodes, [_vi("x", [1, 2, 4, 4])], [_vi("y", None)], unique.values())


def _without_kernels(monkeypatch, *ops: str) -> None:
    """Take the C kernel records of `ops` out of the library (every op these tests chain has one
    since issue 25 item 3)."""
    from aloha_ir.dialects import nn
    from backends.codegen import KERNEL_RECORDS
    classes = {cls.name: cls for cls in nn.NN.operations}
    for op in ops:
        monkeypatch.delitem(KERNEL_RECORDS, classes[op], raising=False)


@pytest.mark.parametrize("op", LAYERS)
def test_the_layers_exporters_emit_compile_to_c(tmp_path, capsys, op):
    """Before issue 25 item 3 the kernel library had no kernel for these (exit 4); now the chain
    compiles (tests/test_layer_kernels.py checks the program's numbers)."""
    code, err = _compile_c(capsys, tmp_path, _chain(op, op))
    assert code == 0, err
    assert os.path.exists(tmp_path / "o" / "code" / "network.c")


@pytest.mark.parametrize("op", LAYERS)
def test_an_op_the_kernel_library_lacks_is_refused_before_generating(tmp_path, capsys,
                                                                     monkeypatch, op):
    """host-cpu's .arch lists pad, resize, transpose and reduce in its PEs' ops, so they are
    mapped and predicted; one without a C kernel record (taken out here) is refused: exit 4
    naming the op and its node, no code written; `alohac analyze` predicts it."""
    _without_kernels(monkeypatch, op)
    code, err = _compile_c(capsys, tmp_path, _chain(op))
    assert code == EXIT_UNSUPPORTED, err
    node = op.split(".")[1]
    assert f"the C kernel library has no kernel for {op} (node '{node}')" in err, err
    assert not os.path.exists(tmp_path / "o" / "code" / "network.c")
    code, err = _alohac(capsys, tmp_path, _chain(op), "analyze")
    assert code == 0, err


def test_every_op_without_a_kernel_is_named_at_once_with_the_kernels_there_are(tmp_path, capsys,
                                                                              monkeypatch):
    """One refusal names them all (before: the first actor's op only), and the kernels the
    library has come from the kernel table (before: a hand-written list in the hint)."""
    from aloha_ir.dialects import nn
    from backends.codegen import KERNEL_RECORDS
    _without_kernels(monkeypatch, "nn.pad", "nn.transpose")
    code, err = _compile_c(capsys, tmp_path, _chain("nn.pad", "nn.transpose", "nn.pad"))
    assert code == EXIT_UNSUPPORTED, err
    assert "no kernel for nn.pad (node 'pad', 'pad_again'); nn.transpose (node 'transpose')" in err, err
    kernels = err.split("the kernels are ", 1)[1]
    assert nn.ConvOp.name in kernels and nn.PadOp.name not in kernels
    assert kernels.count("nn.") == len(KERNEL_RECORDS)


# --- found by benchmarks/onnx_coverage.py --target neuraghe-losa: the calibration of a float model
# for a fixed-point platform (quantize-for-target, random inputs)

def _compile_for(capsys, tmp_path, model, target: str) -> tuple[int, str]:
    return _alohac(capsys, tmp_path, model, "compile", "-o", str(tmp_path / "o"), target=target)


def test_a_model_with_two_inputs_is_refused_by_the_fixed_point_calibration(tmp_path, capsys):
    """ONNX's test_add, test_mul, test_sum_*, test_concat_*: two run-time inputs. Before:
    `2 inputs expected, got 1`, exit 1, in quantize-for-target (its random data is one tensor)."""
    m = _model([helper.make_node("Add", ["x", "y"], ["z"], name="sum")],
               [_vi("x", [1, 2, 4, 4]), _vi("y", [1, 2, 4, 4])], [_vi("z", None)])
    code, err = _compile_for(capsys, tmp_path, m, "neuraghe-losa")
    assert code == EXIT_UNSUPPORTED, err
    assert "quantize-for-target: t has 2 inputs ('x', 'y')" in err, err
    assert "computes in fixed16" in err and "give the inputs other than the data as " \
        "initializers" in err


@pytest.mark.parametrize("batch, samples", [(2, 16), (3, 18)])  # 16 rounded up to whole batches
def test_a_batch_the_graph_names_is_calibrated_a_batch_at_a_time(tmp_path, capsys, batch,
                                                                   samples):
    """ONNX's test_spacetodepth_expanded: a Reshape names the batch (2). Before: the 16 random
    inputs ran as one batch of 16 and the reshape to [2, 16] failed (RuntimeError, exit 1)."""
    m = _model([helper.make_node("Reshape", ["x", "s"], ["r"], name="flat"),
                helper.make_node("Relu", ["r"], ["y"], name="relu")],
               [_vi("x", [batch, 4, 2, 2])], [_vi("y", None)],
               [numpy_helper.from_array(np.array([batch, 16], np.int64), "s")])
    code, err = _compile_for(capsys, tmp_path, m, "neuraghe-losa")
    assert code == 0, err
    assert f"calibrated on {samples} random inputs" in err, err
    assert os.path.exists(tmp_path / "o" / "code" / "network.c")


def test_a_run_time_cast_to_bfloat16_is_refused_not_silently_skipped(tmp_path, capsys):
    """The ONNX backend suite's node/test_cast_FLOAT_to_BFLOAT16 imported as a no-op and came out
    0.819105 where bfloat16 gives 0.820312: refused now, exit 4 naming the node."""
    model = _model([helper.make_node("Cast", ["x"], ["y"], name="to_bf16",
                                     to=TensorProto.BFLOAT16)],
                   [_vi("x", [1, 4])], [helper.make_tensor_value_info("y", TensorProto.BFLOAT16,
                                                                      [1, 4])])
    code, err = _alohac(capsys, tmp_path, model, "analyze")
    assert code == EXIT_UNSUPPORTED and "bfloat16" in err and "to_bf16" in err, err


def test_the_double_input_note_says_what_float32_cannot_hold():
    """The backend suite's add cases hold 9e223 in double inputs: float32 makes them infinite,
    which the note said nothing about."""
    from aloha_ir import interface
    from frontends.onnx import import_model
    model = _model([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT)],
                   [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [1, 4])],
                   [_vi("y", [1, 4])])
    note, = [n for n in interface.notes(import_model(model)) if "double" in n]
    assert "3.4e+38" in note and "infinite" in note
