"""`alohac compare` compares each actor with the reference of what that actor computes (issue 18,
item 4: on NEURAghe a 7x7 conv runs as four 5x5 CE jobs whose partial sums an ARM merge adds up;
the CE actor was compared with the whole convolution, 0 dB, "first layer below 40 dB: conv",
while the merged output was at 136 dB). The CE actor's partial sums travel through its FIFO to
the merge, one token per output element holding every job's sum; its dump is that FIFO data, and it
is compared with torch's conv2d over each job's taps (masked weights) on the reference input."""

from __future__ import annotations

import os

import numpy as np
import pytest

from codegen_helpers import SLOW_FLOAT_ARM, float_variant, generate, have_gcc
from model_helpers import conv7x7

pytestmark = pytest.mark.skipif(not have_gcc(), reason="gcc and make are needed to build code")


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


def _compared(tmp_path, fixed: bool, batch: int = 1):
    """A 7x7 on LOSA (quantized), or in float on a LOSA variant with a float data type whose ARM
    is slow enough that the conv still goes to the CE, compared on one input of `batch` items."""
    from alohac.compare import compare
    path = str(tmp_path / "c7.onnx")
    conv7x7(path, batch)
    module = _module(path, fixed)
    target = "neuraghe-losa" if fixed else float_variant("neuraghe-losa", tmp_path,
                                                         SLOW_FLOAT_ARM)
    code = generate(module, target, str(tmp_path))
    x = np.random.default_rng(1).uniform(0, 1, (batch, 1, 8, 8)).astype(np.float32)
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
def test_every_item_of_a_batch_carries_its_own_partial_sums_to_the_merge(tmp_path):
    """At batch 2 the CE actor runs once per item; each item's partial sums travel through the
    FIFO to the merge, and each item's sums and outputs are its own (bit-exact)."""
    *_, rows, _, _ = _compared(tmp_path, fixed=True, batch=2)
    assert all(r["exact"] for r in rows.values()), rows


@pytest.mark.slow
def test_compare_names_the_actor_that_is_wrong_the_ce_job_or_its_merge(tmp_path):
    from alohac.compare import compare
    module, code, x, _, ce, merge = _compared(tmp_path, fixed=False)
    # a merge that drops the last job: the merge is named, its CE actor still agrees
    _tamper(code, "for (k = 0; k < l->merges; k++)\n                    v += ",
            "for (k = 0; k + 1 < l->merges; k++)\n                    v += ")
    result = compare(module, code, x)
    assert result["first_below_threshold"] == merge, result["layers"]
    assert _by_actor(result)[ce]["sqnr_db"] > 80
    # a CE job that skips its last tap row: the CE actor is named before its merge
    _tamper(code, "l->co_base + lo, l->co_base + hi, j->ky0, j->kh, j->kx0",
            "l->co_base + lo, l->co_base + hi, j->ky0, j->kh - 1, j->kx0")
    result = compare(module, code, x)
    assert result["first_below_threshold"] == ce, result["layers"]
