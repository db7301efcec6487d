"""The deployment the report predicts is the one the generated C holds (issue 18, items 2, 3, 17 and
15's weights path): tensors stored in their formats' C types, the report's memory equal to what the
program allocates (its own ALOHA_MEMORY count, the symbols `nm` lists, `size`), a float model bound
for a fixed-point platform quantized (never silently float), the precision of a quantized model
taken from its types, where Orlando's memory goes, and weights.bin found beside the program."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from alohac.main import main
from codegen_helpers import STRICT, digits_inputs, have_gcc

needs_gcc = pytest.mark.skipif(not have_gcc() or shutil.which("nm") is None
                               or shutil.which("size") is None,
                               reason="gcc, make, nm and size are needed to build and inspect code")


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    """digits_cnn quantized: 8 bits per layer, and 16 bits per output channel (saved IR)."""
    from aloha_ir.context import make_context
    from aloha_ir.passmanager import PassManager
    from aloha_ir.textio import save_module
    from frontends.loader import load_model
    d = tmp_path_factory.mktemp("q")
    out = {}
    for bits, granularity in ((8, "layer"), (16, "channel")):
        module = load_model("zoo:digits_cnn", {})
        PassManager.parse(f"canonicalize,quantize{{bits={bits} data=digits samples=64 "
                          f"granularity={granularity} evaluate=false}}").run(module, make_context())
        path = str(d / f"q{bits}" / "digits_cnn.mlir")
        os.makedirs(os.path.dirname(path))
        save_module(module, path)
        out[bits] = path
    return out


def _compile(model: str, target: str, out, *options: str) -> str:
    assert main(["compile", model, "--target", target, "-o", str(out), *options]) == 0
    code = os.path.join(str(out), "code")
    r = subprocess.run(["make", "-s", "-C", code, f"CFLAGS={STRICT}"], capture_output=True,
                       text=True)
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr[-3000:]
    return code


def _run(code: str, x: np.ndarray, cwd: str | None = None, exe: str | None = None,
         env: dict | None = None) -> tuple[subprocess.CompletedProcess, np.ndarray]:
    inp, out = os.path.join(code, "in.bin"), os.path.join(code, "out.bin")
    x.astype("<f4").tofile(inp)
    if os.path.exists(out):
        os.remove(out)
    r = subprocess.run([exe or os.path.join(code, "network"), inp, out], cwd=cwd or code,
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "ALOHA_MEMORY": "1", **(env or {})})
    y = np.fromfile(out, dtype="<f4").reshape(len(x), -1) if r.returncode == 0 else None
    return r, y


def _reference(mlir: str, x: np.ndarray) -> np.ndarray:
    from aloha_ir.textio import load_module
    from runtime.reference import reference
    ref = reference(load_module(mlir))
    return np.stack([ref.real(x[i:i + 1].astype(np.float64)).reshape(-1)
                     for i in range(len(x))]).astype(np.float32)


def _program_memory(stderr: str) -> dict[str, int]:
    """The `memory:` line the program prints with ALOHA_MEMORY=1."""
    line = next(ln for ln in stderr.splitlines() if ln.startswith("memory:"))
    return {k: int(v) for k, v in re.findall(r"(\w+_bytes|windows|rows|staging|io) (\d+)", line)}


def _symbols(exe: str) -> dict[str, tuple[str, int]]:
    """Object symbol -> (nm type letter, size in bytes)."""
    out = subprocess.run(["nm", "-S", exe], capture_output=True, text=True, check=True).stdout
    found = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "bBdDrR":
            found[parts[3]] = (parts[2], int(parts[1], 16))
    return found


SYMBOL_PARTS = {  # what each part of the report is, by the generated names (backends/codegen/)
    "parameter_bytes": r"w\d+_.*",
    "buffer_bytes": r"f\d+_.*_buf",
    "window_bytes": r"a\d+_.*_win\d+",
    "row_bytes": r"a\d+_.*_obuf",
    "staging_bytes": r"a\d+_.*_nchw",
    "io_bytes": r"g_(in|out)_frame",
}


def _by_part(symbols: dict[str, tuple[str, int]]) -> dict[str, int]:
    return {part: sum(size for name, (_, size) in symbols.items() if re.fullmatch(pattern, name))
            for part, pattern in SYMBOL_PARTS.items()}


# ---------------------------------------------------------------------------------------------------
# item 2: storage types and memory


def _memory_matches(code: str, report: dict, stderr: str) -> dict[str, tuple[str, int]]:
    """report.json's memory, part by part, equals the program's own count (its ALOHA_MEMORY=1
    line) and the sizes `nm` gives the arrays of each part; returns the symbols."""
    m = report["memory"]
    own = _program_memory(stderr)
    for key in ("parameter_bytes", "buffer_bytes", "scratch_bytes", "memory_bytes"):
        assert own[key] == report[key], key
    assert (own["windows"], own["rows"], own["staging"], own["io"]) == (
        m["window_bytes"], m["row_bytes"], m["staging_bytes"], m["io_bytes"])
    symbols = _symbols(os.path.join(code, "network"))
    parts = _by_part(symbols)
    for key in ("parameter_bytes", "buffer_bytes", "window_bytes", "row_bytes", "staging_bytes",
                "io_bytes"):
        assert parts[key] == m[key], key
    return symbols


@needs_gcc
@pytest.mark.parametrize("bits,target", [(8, "neuraghe-losa"), (16, "host-cpu")])
def test_report_memory_is_what_the_program_allocates(quantized, tmp_path, bits, target):
    """report.json's memory_bytes = parameters + FIFO buffers + scratch, and each part equals (1)
    the program's own sizeof count (ALOHA_MEMORY=1), (2) the sizes `nm` gives the arrays of that
    part, (3) within the runtime's bookkeeping, what `size` says the binary holds; weights embedded
    (const arrays, static allocation only)."""
    code = _compile(quantized[bits], target, tmp_path, "--weights", "embedded")
    report = json.load(open(tmp_path / "report.json"))
    assert report["memory_bytes"] == report["parameter_bytes"] + report["buffer_bytes"] + \
        report["scratch_bytes"]
    m = report["memory"]
    assert report["scratch_bytes"] == sum(m[k] for k in ("window_bytes", "row_bytes",
                                                          "staging_bytes", "io_bytes"))
    x = digits_inputs(3)
    r, y = _run(code, x)
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(y, _reference(quantized[bits], x))
    symbols = _memory_matches(code, report, r.stderr)
    assert all(symbols[n][0] in "rR" for n in symbols if re.fullmatch(r"w\d+_.*", n))  # const
    sizes = subprocess.run(["size", "-A", os.path.join(code, "network")], capture_output=True,
                           text=True, check=True).stdout
    section = {s[0]: int(s[1]) for s in (ln.split() for ln in sizes.splitlines())
               if len(s) >= 2 and s[0].startswith(".") and s[1].isdigit()}
    assert section[".rodata"] >= report["parameter_bytes"]
    activations = report["buffer_bytes"] + report["scratch_bytes"]
    manifest = json.load(open(os.path.join(code, "network.json")))
    bookkeeping = 320 * (len(manifest["fifos"]) + len(manifest["actors"])) + 16384
    assert activations <= section[".bss"] <= activations + bookkeeping


@needs_gcc
def test_a_batch_on_neuraghe_counts_each_items_scratch_as_the_program_allocates_it(tmp_path):
    """Batch 2 on neuraghe-losa (a float model with a 7x7 conv, quantized for its fixed16): the
    kernels that mix one item's channels -- the split 7x7's CE actor and its merge among them --
    run once per item on one-item copies of their windows and output, the partial sums of every
    item go through the FIFO to the merge, and the report counts those copies as the program
    allocates them (report.json == the program's ALOHA_MEMORY count == nm); every item is
    bit-exact with the reference of the saved, quantized IR run on the whole batch."""
    from aloha_ir.textio import load_module
    from runtime.reference import reference
    from model_helpers import conv7x7
    path = str(tmp_path / "c7.onnx")
    conv7x7(path, batch=2)
    out = tmp_path / "out"
    code = _compile(path, "neuraghe-losa", out, "--weights", "embedded")
    report = json.load(open(out / "report.json"))
    assert report["datatype"] == "fixed16" and report["memory"]["partial_sums"] > 0
    source = open(os.path.join(code, "network.c")).read()
    assert "ng_arm_merge(" in source and "_item_win0" in source
    x = np.random.default_rng(0).uniform(0, 1, (3, 2, 1, 8, 8)).astype(np.float32)
    r, y = _run(code, x)
    assert r.returncode == 0, r.stderr
    symbols = _memory_matches(code, report, r.stderr)
    assert sum(size for name, (_, size) in symbols.items() if "_item_" in name) > 0
    ref = reference(load_module(str(out / "c7.mlir")))
    want = np.stack([ref.real(xi.astype(np.float64)).reshape(-1) for xi in x])
    np.testing.assert_array_equal(y, want.astype(np.float32))


@pytest.mark.slow
@needs_gcc
def test_fixed_point_values_are_stored_in_their_formats_c_types(quantized, tmp_path):
    """An 8-bit model: 1-byte weights, 4-byte biases (accumulator format), 1-byte FIFO tokens --
    counted by hand from the IR's shapes -- and weights.bin is exactly those bytes plus its
    16-byte header; the int32 accumulator is used where the fan-in allows it."""
    from aloha_ir import fixedpoint as fp
    from aloha_ir.dialects import nn
    from aloha_ir.textio import load_module
    from aloha_ir.dialects.nn import graph_of
    code = _compile(quantized[8], "host-cpu", tmp_path)
    graph = graph_of(load_module(quantized[8]))
    by_hand = 0
    for op in graph.ops:
        if isinstance(op, (nn.ConvOp, nn.DenseOp)):
            assert fp.format_of(op.weight).bits == 8
            by_hand += math.prod(nn.shape_of(op.weight)) * 1 + math.prod(nn.shape_of(op.bias)) * 4
        elif isinstance(op, (nn.AddOp, nn.MulOp)):  # the in-graph input normalisation
            for v in op.operands:
                if isinstance(v.owner, nn.ConstOp):
                    assert fp.format_of(v).bits == 8
                    by_hand += math.prod(nn.shape_of(v))
    assert os.path.getsize(os.path.join(code, "weights.bin")) == 16 + by_hand
    manifest = json.load(open(os.path.join(code, "network.json")))
    assert manifest["memory"]["parameter_bytes"] == by_hand
    assert {f["token_bytes"] for f in manifest["fifos"]} == {1}
    assert {f["ctype"] for f in manifest["fifos"]} <= {"int8_t", "uint8_t"}
    source = open(os.path.join(code, "network.c")).read()
    assert "static int8_t w0_" in source and "int32_t" not in re.sub(
        r"static int32_t w\d+_\w+_b\[", "", source.split("---- FIFOs")[1].split("---- actors")[0])
    makefile = open(os.path.join(code, "Makefile")).read()
    assert re.search(r"-DALOHA_V_u8_i8_a32", makefile)
    # the narrow types under ASan + UBSan, bit-exact
    r = subprocess.run(["make", "-s", "-C", code, "sanitize", f"CFLAGS={STRICT}"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    x = digits_inputs(3)
    r, y = _run(code, x, exe=os.path.join(code, "network-asan"),
                env={"ASAN_OPTIONS": "detect_leaks=0", "UBSAN_OPTIONS": "halt_on_error=1"})
    assert r.returncode == 0 and "runtime error" not in r.stderr, r.stderr[-2000:]
    np.testing.assert_array_equal(y, _reference(quantized[8], x))


# ---------------------------------------------------------------------------------------------------
# item 2: a float model on a platform without float


@needs_gcc
@pytest.mark.parametrize("data", [None, "digits"])
def test_float_model_on_a_fixed_point_platform_is_quantized_and_said_so(tmp_path, capsys, data):
    """zoo:digits_cnn (float) compiled for neuraghe-losa (fixed16/fixed8 only): the IR, the C and
    network.json are fixed16, never float code under a fixed16 report; stderr says how it was
    calibrated (random inputs in the input's range without --data, the data with it), and the
    program equals the bit-exact reference of the saved, quantized IR."""
    options = ("--data", data) if data else ()
    code = _compile("zoo:digits_cnn", "neuraghe-losa", tmp_path, *options)
    err = capsys.readouterr().err
    assert "digits_cnn is float and neuraghe-losa computes in fixed16: quantized it to fixed16" \
        in err
    assert ("inputs of digits" in err) if data else ("random inputs uniform in [0, 1]" in err and
                                                    "accuracy is unknown" in err)
    manifest = json.load(open(os.path.join(code, "network.json")))
    report = json.load(open(tmp_path / "report.json"))
    assert manifest["datatype"] == report["datatype"] == "fixed16" and manifest["fixed"] is True
    mlir = str(tmp_path / "digits_cnn.mlir")
    assert "!nn.fixed<16" in open(mlir).read() and "xf32" not in open(mlir).read().split(
        "nn.graph")[1].split("nn.output")[0].replace("nn.const", "")
    x = digits_inputs(4)
    r, y = _run(code, x)
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(y, _reference(mlir, x))
    assert _program_memory(r.stderr)["memory_bytes"] == report["memory_bytes"]


def test_code_generation_refuses_a_float_graph_mapped_at_a_fixed_data_type(tmp_path):
    """Bypassing the driver (a float graph mapped for neuraghe-losa handed to the backend) is an
    UnsupportedError naming the data type, not float C."""
    from aloha_ir.errors import UnsupportedError
    from codegen_helpers import generate
    from frontends.loader import load_model
    with pytest.raises(UnsupportedError, match="float but neuraghe-losa deploys fixed16"):
        generate(load_model("zoo:lenet5", {}), "neuraghe-losa", str(tmp_path))


def test_analyze_of_a_float_model_predicts_what_compile_deploys(tmp_path, capsys):
    """analyze (no quantization) and compile (quantized) report the same memory for a float model
    on a fixed-point platform; analyze says the figures are for the quantized deployment."""
    assert main(["analyze", "zoo:digits_cnn", "--target", "orlando", "--json"]) == 0
    captured = capsys.readouterr()
    predicted = json.loads(captured.out.strip().splitlines()[-1])
    assert "figures are for it deployed in fixed16" in captured.err
    assert main(["compile", "zoo:digits_cnn", "--target", "orlando", "--emit", "nn", "-o",
                 str(tmp_path)]) == 0
    report = json.load(open(tmp_path / "report.json"))
    for key in ("datatype", "memory_bytes", "parameter_bytes", "buffer_bytes", "scratch_bytes",
                "latency_s"):
        assert report[key] == predicted[key], key


def test_a_users_lowering_pipeline_still_quantizes_for_a_fixed_point_platform(tmp_path, capsys):
    """-p naming its own lowering and mapping: quantize-for-target runs after the user's
    canonicalize, before the lowering (a float graph would otherwise be mapped at fixed16)."""
    assert main(["compile", "zoo:digits_cnn", "--target", "neuraghe-losa", "-p",
                 "canonicalize,convert-nn-to-csdf,partition,map{strategy=fastest}", "--emit", "nn",
                 "-o", str(tmp_path)]) == 0
    assert "quantized it to fixed16" in capsys.readouterr().err
    assert "!nn.fixed<16" in open(tmp_path / "digits_cnn.mlir").read()


# ---------------------------------------------------------------------------------------------------
# item 3: precision from the IR's types; --bits validation


def _analyze(capsys, *args: str) -> tuple[int, dict | None, str]:
    code = main(["analyze", *args, "--json"])
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    return code, (json.loads(lines[-1]) if code == 0 else None), captured.err


def test_quantized_model_is_predicted_at_its_own_precision(quantized, capsys):
    """An 8-bit model is predicted in fixed8 on NEURAghe and host-cpu without --bits (it was
    fixed16 and f32): the same figures as --bits 8 (the cost model's 8-bit rates), 8-bit storage
    in the memory; a 16-bit model in fixed16."""
    for target in ("neuraghe-losa", "host-cpu"):
        code, fig, _ = _analyze(capsys, quantized[8], "--target", target)
        assert code == 0 and fig["datatype"] == "fixed8"
        code, same, _ = _analyze(capsys, quantized[8], "--target", target, "--bits", "8")
        assert code == 0 and same["latency_s"] == fig["latency_s"]
        code, fig16, _ = _analyze(capsys, quantized[16], "--target", target)
        assert code == 0 and fig16["datatype"] == "fixed16"
        assert fig["parameter_bytes"] < fig16["parameter_bytes"]
    # the CE's 8-bit mode packs two MACs per DSP: faster than the 16-bit prediction
    _, f8, _ = _analyze(capsys, quantized[8], "--target", "neuraghe-losa")
    _, f16, _ = _analyze(capsys, quantized[16], "--target", "neuraghe-losa")
    assert f8["latency_s"] < f16["latency_s"]


def test_mixed_precision_runs_in_the_wider_mode(tmp_path, capsys):
    """8-bit weights with 16-bit activations: predicted in fixed16 (the engine's mode is set by
    the widest operand; --bits 8 contradicts it), while the generated code stores the conv and
    dense weights in int8_t and the activations in 16-bit types."""
    from aloha_ir import fixedpoint as fp
    from aloha_ir.context import make_context
    from aloha_ir.dialects import nn
    from aloha_ir.passmanager import PassManager
    from aloha_ir.textio import save_module
    from aloha_ir.dialects.nn import graph_of
    from frontends.loader import load_model
    module = load_model("zoo:digits_cnn", {})
    PassManager.parse("canonicalize,quantize{bits=8 abits=16 data=digits samples=64 "
                      "evaluate=false}").run(module, make_context())
    weighted = [op for op in graph_of(module).ops if isinstance(op, (nn.ConvOp, nn.DenseOp))]
    assert {fp.format_of(op.weight).bits for op in weighted} == {8}
    assert {fp.format_of(op.output).bits for op in weighted} == {16}
    path = str(tmp_path / "w8a16.mlir")
    save_module(module, path)
    code, fig, _ = _analyze(capsys, path, "--target", "neuraghe-losa")
    assert code == 0 and fig["datatype"] == "fixed16"
    code, _, err = _analyze(capsys, path, "--target", "neuraghe-losa", "--bits", "8")
    assert code == 2 and "contradicts the model's 16-bit" in err
    assert main(["compile", path, "--target", "host-cpu", "-o", str(tmp_path / "c")]) == 0
    manifest = json.load(open(tmp_path / "c" / "code" / "network.json"))
    ctypes = {w["name"]: w["ctype"] for w in manifest["weights"]}
    assert all(ctypes[f"{nn.block_label(op)}_w"] == "int8_t" for op in weighted)
    assert {f["ctype"] for f in manifest["fifos"]} <= {"int16_t", "uint16_t"}


@pytest.mark.parametrize("args,message", [
    (["--bits", "16"], "contradicts the model's 8-bit fixed-point types"),
    (["--bits", "32"], "contradicts the model's 8-bit"),
])
def test_bits_that_contradict_the_types_are_usage_errors(quantized, capsys, tmp_path, args,
                                                        message):
    code, _, err = _analyze(capsys, quantized[8], "--target", "neuraghe-losa", *args)
    assert code == 2 and message in err and "drop --bits" in err
    assert main(["explore-mapping", quantized[8], "--target", "neuraghe-losa", *args,
                 "--budget", "2", "-o", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_bits_without_target_or_beyond_the_platform_are_usage_errors(capsys, tmp_path):
    code, _, err = _analyze(capsys, "zoo:lenet5", "--bits", "8")
    assert code == 2 and "--bits needs --target" in err
    assert main(["compile", "zoo:lenet5", "--bits", "8", "--emit", "nn", "-o",
                 str(tmp_path)]) == 2
    assert "--bits needs --target" in capsys.readouterr().err
    code, _, err = _analyze(capsys, "zoo:lenet5", "--target", "neuraghe-losa", "--bits", "32")
    assert code == 2 and "neuraghe-losa has no 32-bit data type" in err and "8 (fixed8)" in err


# ---------------------------------------------------------------------------------------------------
# item 17: where Orlando's memory goes


def test_orlando_report_says_where_the_memory_goes(capsys):
    """MobileNet-v1 on Orlando: the report breaks memory_bytes into its parts (they add up), the
    FIFO buffers into kinds (the split copies recounted here from the csdf graph's channels), and
    says why the buffers exceed the peak activation: each split part's copy of its input (vs one
    shared buffer per producer)."""
    from aloha_ir.dialects import csdf
    from archdesc.loader import load_platform
    from flows.report import markdown
    from flows.target import TargetFlow
    from frontends.loader import load_model
    module = load_model("zoo:mobilenet_v1", {})
    report = TargetFlow(load_platform("orlando"), allow_overflow=True).run(module).to_json()
    err = capsys.readouterr().err
    m = report["memory"]
    kinds = ("between_actors", "reuse", "split_copies", "to_gather", "partial_sums")
    assert sum(m[k] for k in kinds) == report["buffer_bytes"]
    assert report["memory_bytes"] == report["parameter_bytes"] + report["buffer_bytes"] + \
        report["scratch_bytes"]
    assert not report["fits"] and "split-input copies" in err
    graph = csdf.csdf_graphs(module)[0]
    copies = [c for c in graph.channels() if re.fullmatch(r".+_p\d+", c.src_port.data)]
    # float MobileNet deployed in fixed16: 2 bytes per token
    assert copies and m["split_copies"] == sum(2 * max(1, c.buffer)
                                               for c in copies)
    assert m["split_copies"] > report["peak_activation_bytes"] > 0
    assert m["split_copies_shared_bytes"] < m["split_copies"] / 4
    notes = " ".join(report["memory_notes"])
    assert "exceed the peak activation" in notes and "copies of split actors' inputs" in notes
    md = markdown(report, "mobilenet_v1 on orlando")
    assert "FIFO buffers holding each split part's copy of its input" in md
    assert "needed in sram" in md and "**over**" in md


# ---------------------------------------------------------------------------------------------------
# item 15: weights.bin beside the program


@needs_gcc
def test_program_finds_weights_beside_itself_from_any_directory(quantized, tmp_path):
    code = _compile(quantized[8], "host-cpu", tmp_path / "out")
    x = digits_inputs(2)
    want = _reference(quantized[8], x)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for exe, env in ((os.path.join(code, "network"), None),
                     (os.path.relpath(os.path.join(code, "network"), elsewhere), None),
                     ("network", {"PATH": code + os.pathsep + os.environ.get("PATH", "")})):
        r, y = _run(code, x, cwd=str(elsewhere), exe=exe, env=env)
        assert r.returncode == 0, (exe, r.stderr)
        np.testing.assert_array_equal(y, want)
    # the override wins, and a wrong file is named
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"ALOHAWB2" + b"\0" * 8)
    r, _ = _run(code, x, cwd=str(elsewhere), env={"ALOHA_WEIGHTS": str(bad)})
    assert r.returncode == 3 and f"{bad} is not the weights file of this network" in r.stderr
    moved = tmp_path / "moved"
    shutil.copytree(code, moved)
    os.remove(moved / "weights.bin")
    r, _ = _run(str(moved), x, cwd=str(elsewhere))
    assert r.returncode == 3 and "weights.bin" in r.stderr and "ALOHA_WEIGHTS" in r.stderr
