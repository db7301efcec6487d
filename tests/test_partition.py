"""`partition` splits computing actors only, and a compile asked for code writes it or fails
(issue 18, item 19: a model ending in a Conv got no C code on host-cpu, exit 0)."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from codegen_helpers import build, have_gcc, run
from model_helpers import run_ort


def _ends_in_conv(path: str) -> onnx.ModelProto:
    """x [1, 3, 8, 8] -> Conv 3->8 named `y`: its output port has the conv's label."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 3, 3, 3))
                                .astype(np.float32), "W")
    g = helper.make_graph([helper.make_node("Conv", ["x", "W"], ["y"], pads=[1, 1, 1, 1])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 10
    onnx.save(m, path)
    return m


def _partitioned(path: str, pipeline: str):
    from aloha_ir.context import make_context
    from aloha_ir.dialects import csdf
    from aloha_ir.passmanager import PassManager
    from archdesc.loader import load_platform
    from frontends.loader import load_model
    module = load_model(path, {})
    ctx = make_context()
    ctx.target = load_platform("host-cpu")
    PassManager.parse(pipeline).run(module, ctx)
    return csdf.csdf_graphs(module)[0]


def test_the_output_actor_of_a_model_ending_in_a_conv_is_not_split(tmp_path):
    path = str(tmp_path / "conv.onnx")
    _ends_in_conv(path)
    graph = _partitioned(path, "canonicalize,convert-nn-to-csdf,partition")
    kinds = [a.kind.data for a in graph.actors()]
    assert kinds.count("output") == 1 and kinds.count("gather") == 1, kinds
    gather = next(a.sym_name.data for a in graph.actors() if a.kind.data == "gather")
    out = next(a.sym_name.data for a in graph.actors() if a.kind.data == "output")
    assert [c.src_name for c in graph.channels() if c.dst_name == out] == [gather]
    assert sum(1 for a in graph.actors() if a.split is not None) == 2  # host-cpu: 2 cores


def test_partition_refuses_to_split_a_boundary_actor(tmp_path):
    from aloha_ir.errors import PassError
    path = str(tmp_path / "conv.onnx")
    _ends_in_conv(path)
    with pytest.raises(PassError, match=r"@output_y is a output actor"):
        _partitioned(path, 'canonicalize,convert-nn-to-csdf,partition{actors="output_y:2"}')


def test_partition_refuses_more_parts_than_output_channels(tmp_path):
    """A request is honoured or refused, never silently capped: conv `y` has 8 output channels,
    so 8 parts of one channel each are made and 9 are an error naming both numbers."""
    from aloha_ir.errors import PassError
    path = str(tmp_path / "conv.onnx")
    _ends_in_conv(path)
    graph = _partitioned(path, 'canonicalize,convert-nn-to-csdf,partition{actors="y:8"}')
    assert sum(1 for a in graph.actors() if a.split is not None) == 8
    with pytest.raises(PassError, match=r"@y has 8 output channels; it cannot split into 9 parts"):
        _partitioned(path, 'canonicalize,convert-nn-to-csdf,partition{actors="y:9"}')


def _alohac(capsys, *args: str) -> tuple[int, str]:
    """Exit code and standard error of `alohac ARGS` (in-process: imports are paid once)."""
    from alohac.main import main
    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr().err


@pytest.mark.skipif(not have_gcc(), reason="gcc and make are needed to build code")
def test_a_model_ending_in_a_conv_gets_code_that_matches_onnxruntime(tmp_path, capsys):
    path = str(tmp_path / "conv.onnx")
    model = _ends_in_conv(path)
    out = str(tmp_path / "out")
    code, err = _alohac(capsys, "compile", path, "--target", "host-cpu", "-o", out)
    assert code == 0 and "no code generated" not in err, err  # default --emit: nn, c
    code = os.path.join(out, "code")
    build(code)
    x = np.random.default_rng(1).standard_normal((2, 1, 3, 8, 8)).astype(np.float32)
    r, y = run(code, x)
    assert r.returncode == 0, r.stderr
    want = np.stack([run_ort(model, {"x": xi})[0] for xi in x]).reshape(2, -1)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_a_compile_asked_for_code_that_writes_none_fails(tmp_path, capsys, monkeypatch):
    """By default (--target without --emit) and with --emit c: an op without a generated kernel
    (nn.transpose's record taken out: every op has one since issue 25 item 3) is exit 4 naming
    it, and so is a platform whose backend is not registered; --emit without c compiles without
    code."""
    from aloha_ir.dialects import nn
    from backends.codegen import KERNEL_RECORDS
    monkeypatch.delitem(KERNEL_RECORDS, nn.TransposeOp)
    g = helper.make_graph([helper.make_node("Transpose", ["x"], ["y"], perm=[0, 1, 3, 2])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    path = str(tmp_path / "t.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)
    for emit in ([], ["--emit", "nn,c"]):
        code, err = _alohac(capsys, "compile", path, "--target", "host-cpu", *emit, "-o",
                            str(tmp_path / "o"))
        assert code == 4 and "no code generated" in err and "nn.transpose" in err, (emit, err)
        assert not os.path.exists(tmp_path / "o" / "code" / "network.c")
    code, err = _alohac(capsys, "compile", path, "--target", "host-cpu", "--emit", "nn", "-o",
                        str(tmp_path / "nn"))
    assert code == 0, err
    arch = tmp_path / "nobackend.arch"
    arch.write_text("platform nobackend extends host-cpu {\n  backend = nowhere\n}\n")
    code, err = _alohac(capsys, "compile", path, "--target", str(arch), "-o",
                        str(tmp_path / "nb"))
    assert code == 4 and "backend 'nowhere' is not registered" in err, err
