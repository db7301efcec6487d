"""`alohac compare` compares each actor with the reference of what that actor computes (issue 18,
item 4: on NEURAghe a 7x7 conv runs as four 5x5 CE jobs whose partial sums an ARM merge adds up;
the CE actor was compared with the whole convolution, 0 dB, "first layer below 40 dB: conv",
while the merged output was at 136 dB)."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from codegen_helpers import generate, have_gcc

pytestmark = pytest.mark.skipif(not have_gcc(), reason="gcc and make are needed to build code")


def _conv7x7(path: str) -> None:
    """digits-shaped input [1, 1, 8, 8] -> Conv 7x7 (pad 3, 1 -> 8) + ReLU -> MaxPool -> Gemm."""
    rng = np.random.default_rng(0)
    t = lambda name, a: numpy_helper.from_array(a.astype(np.float32), name)  # noqa: E731
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["conv"], pads=[3, 3, 3, 3]),
             helper.make_node("Relu", ["conv"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "W2"], ["y"], transB=1)]
    g = helper.make_graph(nodes, "c7", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 1, 8, 8])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, None)], [t("W", rng.standard_normal((8, 1, 7, 7)) * 0.3),
                                             t("B", rng.standard_normal(8) * 0.1),
                                             t("W2", rng.standard_normal((10, 128)) * 0.1)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 10
    onnx.save(m, path)


def _module(path: str, fixed: bool):
    from aloha_ir.context import make_context
    from aloha_ir.passmanager import PassManager
    from frontends.loader import load_model
    module = load_model(path, {})
    if fixed:
        PassManager.parse("canonicalize,quantize{bits=8 data=digits samples=64}").run(
            module, make_context())
    return module


def _by_actor(result: dict) -> dict[str, dict]:
    rows = {r["actor"]: r for r in result["layers"]}
    assert len(rows) == len(result["layers"]), "two rows name the same actor"
    return rows


def _tamper(code: str, old: str, new: str) -> None:
    p = os.path.join(code, "neuraghe_api_host.c")
    src = open(p).read()
    assert src.count(old) == 1, old
    open(p, "w").write(src.replace(old, new))


def _compared(tmp_path, fixed: bool):
    from alohac.compare import compare
    path = str(tmp_path / "c7.onnx")
    _conv7x7(path)
    module = _module(path, fixed)
    code = generate(module, "neuraghe-losa", str(tmp_path))
    x = np.random.default_rng(1).uniform(0, 1, (1, 1, 8, 8)).astype(np.float32)
    result = compare(module, code, x)
    rows = _by_actor(result)
    ce = [r for r in rows.values() if r["computes"].startswith("partial sums of 4 jobs")]
    assert len(ce) == 1 and ce[0]["block"] == "conv", rows
    merge = rows[ce[0]["actor"] + "_merge"]
    assert merge["block"] == "conv" and merge["computes"] == "output"
    assert result["first_below_threshold"] is None, result["layers"]
    return module, code, x, rows, ce[0]["actor"], merge["actor"]


def test_a_neuraghe_7x7_conv_is_compared_job_by_job_without_a_false_alarm(tmp_path):
    *_, rows, _, _ = _compared(tmp_path, fixed=False)
    assert min(r["sqnr_db"] for r in rows.values()) > 80, rows


@pytest.mark.slow
def test_a_quantized_7x7_conv_has_exact_partial_sums_on_neuraghe(tmp_path):
    *_, rows, _, _ = _compared(tmp_path, fixed=True)
    assert all(r["exact"] for r in rows.values()), rows  # integer accumulators


@pytest.mark.slow
def test_compare_names_the_actor_that_is_wrong_the_ce_job_or_its_merge(tmp_path):
    from alohac.compare import compare
    module, code, x, _, ce, merge = _compared(tmp_path, fixed=False)
    # a merge that drops the last job: the merge is named, its CE actor still agrees
    _tamper(code, "for (k = 0; k < l->merges; k++)\n                    v += p[k * row + at];",
            "for (k = 0; k + 1 < l->merges; k++)\n                    v += p[k * row + at];")
    result = compare(module, code, x)
    assert result["first_below_threshold"] == merge, result["layers"]
    assert _by_actor(result)[ce]["sqnr_db"] > 80
    # a CE job that skips its last tap row: the CE actor is named before its merge
    _tamper(code, "for (ky = j->ky0; ky < j->ky0 + j->kh; ky++)",
            "for (ky = j->ky0; ky < j->ky0 + j->kh - 1; ky++)")
    result = compare(module, code, x)
    assert result["first_below_threshold"] == ce, result["layers"]
