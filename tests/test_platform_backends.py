"""The neuraghe and orlando backends: generated C (with the emitted middleware API and its host
emulation) compiles warning-free, and runs equal to the bit-exact reference (fixed point) or close
to the float executor; NEURAghe's CE job tables follow the cost model; a 7x7 conv gets its merge."""

from __future__ import annotations

import math
import os
import shutil
import subprocess

import numpy as np
import pytest

from aloha_ir.dialects import nn
from aloha_ir.dialects.nn import graph_of
from aloha_ir.textio import load_module
from alohac.main import main
from archdesc import costmodel
from archdesc.costmodel import Layer
from archdesc.loader import load_platform
from backends.neuraghe import ce_jobs
from backends.registry import registered
from runtime.reference import reference

CFLAGS = "CFLAGS=-std=c99 -O2 -Wall -Wextra -Werror"
pytestmark = pytest.mark.skipif(shutil.which("make") is None or shutil.which("gcc") is None,
                                reason="needs make and gcc")


def _conv7_onnx(path: str) -> None:
    """conv 7x7 stride 2 pad 3 + relu + conv 3x3 + relu + global avg pool + flatten + dense +
    softmax on a 1x8x8 input (the digits shape, so the quantize pass can calibrate it)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    r = np.random.default_rng(0)
    arrays = {"w1": r.standard_normal((8, 1, 7, 7)) * 0.3, "b1": r.standard_normal(8) * 0.1,
              "w2": r.standard_normal((8, 8, 3, 3)) * 0.2, "b2": r.standard_normal(8) * 0.1,
              "w3": r.standard_normal((10, 8)) * 0.3, "b3": r.standard_normal(10) * 0.1}
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in arrays.items()]
    node = helper.make_node
    nodes = [node("Conv", ["x", "w1", "b1"], ["conv1_out"], kernel_shape=[7, 7], strides=[2, 2],
                  pads=[3, 3, 3, 3]),
             node("Relu", ["conv1_out"], ["relu1_out"]),
             node("Conv", ["relu1_out", "w2", "b2"], ["conv2_out"], kernel_shape=[3, 3],
                  pads=[1, 1, 1, 1]),
             node("Relu", ["conv2_out"], ["relu2_out"]),
             node("GlobalAveragePool", ["relu2_out"], ["gap_out"]),
             node("Flatten", ["gap_out"], ["flat_out"]),
             node("Gemm", ["flat_out", "w3", "b3"], ["logits"], transB=1),
             node("Softmax", ["logits"], ["y"], axis=1)]
    g = helper.make_graph(nodes, "conv7", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 1, 8, 8])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [1, 10])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, path)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Model name -> .mlir path: digits_cnn quantized to 8 and 16 bits, mnist_cnn (float, the zoo's
    seeded random weights), the 7x7 model in float and quantized to 16 bits."""
    d = tmp_path_factory.mktemp("models")
    out = {}
    for bits in (8, 16):
        assert main(["quantize", "zoo:digits_cnn", "--data", "digits", "--bits", str(bits),
                     "-o", str(d / f"q{bits}")]) == 0
        out[f"digits_q{bits}"] = str(d / f"q{bits}" / "digits_cnn.mlir")
    out["mnist_float"] = "zoo:mnist_cnn"
    _conv7_onnx(str(d / "conv7.onnx"))
    out["conv7_float"] = str(d / "conv7.onnx")
    assert main(["quantize", str(d / "conv7.onnx"), "--data", "digits", "--bits", "16",
                 "-o", str(d / "q7")]) == 0
    out["conv7_q16"] = str(d / "q7" / "conv7.mlir")
    return out


def _build_and_run(src: str, target: str, out_dir: str, frames: int = 2, *options: str):
    """Compile for `target`, make, run `frames` random inputs; (module, x, y, stderr, code dir)."""
    assert main(["compile", src, "--target", target, "-o", out_dir, *options]) == 0
    code = os.path.join(out_dir, "code")
    r = subprocess.run(["make", "-s", "-C", code, CFLAGS], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    mlir = next(os.path.join(out_dir, f) for f in os.listdir(out_dir) if f.endswith(".mlir"))
    module = load_module(mlir)
    inp = next(o for o in graph_of(module).ops if isinstance(o, nn.InputOp))
    shape = tuple(nn.shape_of(inp.output)[1:])
    x = np.random.default_rng(1).uniform(0, 1, (frames,) + shape).astype(np.float32)
    x.tofile(os.path.join(code, "in.bin"))
    r = subprocess.run([os.path.join(code, "network"), "in.bin", "out.bin"], cwd=code,
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, ALOHA_PLATFORM_LOG="1"))
    assert r.returncode == 0, r.stderr
    y = np.fromfile(os.path.join(code, "out.bin"), dtype=np.float32).reshape(frames, -1)
    return module, x, y, r.stderr, code


def _is_fixed(module) -> bool:
    from aloha_ir import fixedpoint as fp
    return any(fp.format_of(op.results[0]) for op in graph_of(module).ops
               if op.results and not isinstance(op, nn.ConstOp))


def _check(module, x, y, fixed: bool) -> None:
    assert fixed == _is_fixed(module)
    if fixed:
        ref = np.stack([np.asarray(reference(module).real(x[i:i + 1])).astype(np.float32)
                        .reshape(-1) for i in range(len(x))])
        assert np.array_equal(y, ref), np.abs(y - ref).max()
    else:
        torch = pytest.importorskip("torch")
        from runtime.torch.module import build
        ref = build(module)(torch.from_numpy(x)).detach().numpy().reshape(len(x), -1)
        np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_backends_registered():
    assert {"host", "neuraghe", "orlando"} <= set(registered())


@pytest.mark.parametrize("target", ["neuraghe-losa", "orlando"])
@pytest.mark.parametrize("model", ["digits_q8", "digits_q16", "mnist_float"])
def test_generated_code_matches_reference(models, tmp_path, target, model):
    """A float model (mnist_float) is quantized for these fixed-point platforms: the program is
    bit-exact with the reference of the compiled (quantized) IR."""
    # mnist_cnn's dense layer split over Orlando's 16 DSPs gives each part a copy of its 9,216
    # inputs (FIFO and window): 5.7 MiB of activations against 4 MiB of SRAM, so it is reported
    options = ("--allow-overflow",) if target == "orlando" and model == "mnist_float" else ()
    module, x, y, log, code = _build_and_run(models[model], target, str(tmp_path / "g"), 2,
                                             *options)
    _check(module, x, y, fixed=True)
    api = "neuraghe_api.h" if target.startswith("neuraghe") else "orlando_api.h"
    assert os.path.exists(os.path.join(code, api))
    if target.startswith("neuraghe"):
        assert "CE jobs per frame" in log and "clock gated 2 time(s)" in log
    else:
        assert "orlando: operating point low" in log and "stream-switch route" in log
        assert "gated" in log


@pytest.mark.parametrize("model,float_target", [("conv7_float", True), ("conv7_float", False),
                                                ("conv7_q16", False)])
def test_neuraghe_7x7_runs_as_four_5x5_and_a_merge(models, tmp_path, model, float_target):
    """The 7x7 conv's four partial jobs reach the merge through the FIFO: in float (a NEURAghe
    variant with a float data type), and in fixed point (the float model quantized for LOSA, or
    quantized beforehand) bit-exact with the reference."""
    from codegen_helpers import SLOW_FLOAT_ARM, float_variant
    # float on the ARM slow enough that the 7x7 goes to the CE
    target = float_variant("neuraghe-losa", tmp_path, SLOW_FLOAT_ARM) if float_target else \
        "neuraghe-losa"
    module, x, y, log, code = _build_and_run(models[model], target, str(tmp_path / "g"))
    _check(module, x, y, fixed=not float_target)
    text = open(os.path.join(code, "network.c")).read()
    assert "_merge: merge on arm" in text and "ng_arm_merge(" in text
    assert "x 4 sub-job(s)" in log and "rows merged on the ARM" in log


def test_ce_job_table_follows_the_cost_model(models, tmp_path):
    platform = load_platform("neuraghe-losa")
    ce = platform.pe("ce")
    # by hand: a 3x3 conv, 32 output maps = 8 groups of N_ROW = 4, one tile (fits the TCDM)
    small = Layer("conv", 1, 28, 28, 32, 26, 26, (3, 3))
    jobs = ce_jobs(platform, small, "fixed16")
    assert len(jobs) == math.ceil(32 / 4) * 1 == costmodel.cost(platform, ce, small, "fixed16").jobs
    assert {(j.co_lo, j.co_hi) for j in jobs} == {(4 * g, 4 * g + 4) for g in range(8)}
    # a layer that does not fit the TCDM: several tiles, each output row in exactly one tile
    big = Layer("conv", 64, 224, 224, 64, 224, 224, (3, 3), pads=(1, 1, 1, 1))
    c = costmodel.cost(platform, ce, big, "fixed16")
    jobs = ce_jobs(platform, big, "fixed16")
    assert c.tiles > 1 and len(jobs) == c.jobs == c.tiles * 16
    assert all(sum(j.oy_lo <= oy < j.oy_hi for j in jobs if j.og == 0) == 1 for oy in range(224))
    # the generated table of a mapped 3x3 layer has the cost model's count
    module, *_ = _build_and_run(models["digits_q16"], "neuraghe-losa", str(tmp_path / "g"), 1)
    text = open(str(tmp_path / "g" / "code" / "network.c")).read()
    from aloha_ir.dialects import csdf
    from passes.target import actor_layers
    graph = csdf.csdf_graphs(module)[0]
    layers = actor_layers(module, graph)
    ces = [a for a in graph.actors() if a.pe_kind == "conv-engine"]
    assert ces
    for a in ces:
        n = costmodel.cost(platform, ce, layers[a.sym_name.data], "fixed16").jobs
        assert f"{a.sym_name.data}: {n} jobs = " in text


def test_vgg16_is_split_into_ce_jobs_as_hardware_md_describes():
    """VGG-16 on neuraghe-losa (one 4x4 CE, 1 MiB TCDM, 16-bit): the job tables the generated
    code holds, per layer, against a hand computation from hardware.md. A job is a tile of output
    rows x one group of N_ROW = 4 output maps; input maps are padded to 3 x N_COL = 12 (3x3)."""
    import collections
    import math
    from codegen_helpers import lower
    from aloha_ir.dialects import csdf
    from backends.neuraghe import ce_jobs
    from frontends.loader import load_model
    from passes.target import actor_layers
    module = load_model("zoo:vgg16", {})
    platform = lower(module, "neuraghe-losa")
    graph = csdf.csdf_graphs(module)[0]
    layers = actor_layers(module, graph)
    jobs = collections.defaultdict(list)
    shape = {}
    for a in graph.actors():
        if a.pe_kind == "conv-engine":
            layer = layers[a.sym_name.data]
            jobs[a.block_name] += ce_jobs(platform, layer, "fixed16")
            shape[a.block_name] = layer
    assert len(jobs) == 13  # every VGG-16 convolution runs on the CE
    for block, js in jobs.items():
        layer = shape[block]
        out_groups = math.ceil(layer.cout / 4)
        tiles = sorted({(j.oy_lo, j.oy_hi) for j in js})
        # tiles cover the output rows exactly once, in order
        assert tiles[0][0] == 0 and tiles[-1][1] == layer.hout
        assert all(a[1] == b[0] for a, b in zip(tiles, tiles[1:]))
        assert len(js) == out_groups * len(tiles), block
        for j in js:
            assert j.IF == math.ceil(layer.cin / 12) * 12 and j.OF == 4
            assert (j.FS_h, j.FS_w) == (3, 3)
            # a tile's input rows (with the 2-row halo) of padded maps fit the 1 MiB TCDM
            assert j.IH <= j.oy_hi - j.oy_lo + 2
            assert j.IH * j.IF * (layer.win + 2) * 2 <= 1 << 20
    # by hand, the conv5 block: 14 x 14 x 512 -> 512. One tile (16 input rows x 516 padded maps x
    # 16 columns x 2 B = 264 KiB fits), 512 / 4 = 128 output groups: 128 jobs per layer.
    conv5 = [b for b in jobs if shape[b].hout == 14]
    assert len(conv5) == 3 and all(len(jobs[b]) == 128 for b in conv5)
    # conv1_1: 224 rows, 3 -> 64 maps: 16 output groups; hardware.md's example says the first
    # layer alone (6.4 MB of activations) cannot be one tile of the 1 MiB TCDM
    first = next(b for b in jobs if shape[b].cin == 3)
    assert len({(j.oy_lo, j.oy_hi) for j in jobs[first]}) > 1
    assert len(jobs[first]) % 16 == 0
