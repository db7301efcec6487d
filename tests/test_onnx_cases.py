"""Issue 25 item 1: the ONNX backend test cases that crashed `alohac compile --target host-cpu
--emit c` (exit 1) are refused with exit 4 and a message naming the node and what to do
(benchmarks/onnx_cases.py counts every case). One tiny model per crash class, built here."""

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


def _alohac(capsys, tmp_path, model: onnx.ModelProto, command: str, *args: str) -> tuple[int, str]:
    """Exit code and standard error of `alohac COMMAND m.onnx --target host-cpu ARGS`
    (in-process)."""
    from alohac.main import main
    path = str(tmp_path / "m.onnx")
    onnx.save(model, path)
    capsys.readouterr()
    code = main([command, path, "--target", "host-cpu", *args])
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
