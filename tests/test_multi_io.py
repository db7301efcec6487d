"""A model of several inputs and outputs through the generated program: one file per model input
and per output, in the model's order (network.json names them), every file k frames. Checked
against onnxruntime on a torch-exported CNN whose inputs and outputs have other shapes, whose
first output is consumed inside the graph too and whose second input feeds two convolutions;
the program's own memory figure against a hand count; its usage and refusals; the ONNX round
trip; and the self-timed analysis of a graph with two sources and two sinks by hand."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest

from aloha_ir import dataflow, rle, selftimed
from aloha_ir.dataflow import Edge
from codegen_helpers import STRICT, SLOW_FLOAT_ARM, build, float_variant, generate, have_gcc
from model_helpers import relative_error, run_ort

pytestmark = pytest.mark.skipif(not have_gcc(), reason="needs gcc and make")
FRAMES = 3
A, B = (1, 3, 8, 8), (1, 2, 8, 8)  # the model's inputs 'a' and 'b'
Z, Y = (1, 4, 8, 8), (1, 5)  # its outputs 'z' (also read by conv3) and 'y'


@pytest.fixture(scope="module")
def two_by_two(tmp_path_factory) -> str:
    """The torch CNN with inputs a, b and outputs z, y, exported to ONNX."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class TwoByTwo(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(2, 4, 3, padding=1)
            self.gate = nn.Conv2d(2, 4, 1)  # b's second reader
            self.conv3, self.fc = nn.Conv2d(4, 6, 3, stride=2), nn.Linear(6 * 3 * 3, 5)

        def forward(self, a, b):
            z = torch.relu(self.conv1(a)) + self.conv2(b) * torch.sigmoid(self.gate(b))
            return z, self.fc(torch.relu(self.conv3(z)).flatten(1))

    torch.manual_seed(0)
    path = str(tmp_path_factory.mktemp("two_by_two") / "two_by_two.onnx")
    torch.onnx.export(TwoByTwo().eval(), (torch.randn(*A), torch.randn(*B)), path,
                      input_names=["a", "b"], output_names=["z", "y"], opset_version=13,
                      dynamo=False)
    return path


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(1)
    return (rng.standard_normal((FRAMES, *A)).astype(np.float32),
            rng.standard_normal((FRAMES, *B)).astype(np.float32))


def _run(code: str, args: list[str], **env) -> subprocess.CompletedProcess:
    return subprocess.run([os.path.join(code, "network"), *args], cwd=code, capture_output=True,
                          text=True, timeout=120, env={**os.environ, **env})


def _check_against_onnxruntime(code: str, model: str, frames) -> None:
    """Run the program on the frames (a file per input) and compare each frame's outputs (a file
    per output) with onnxruntime's."""
    import onnx
    a, b = frames
    a.tofile(os.path.join(code, "IN0.bin"))
    b.tofile(os.path.join(code, "IN1.bin"))
    r = _run(code, ["IN0.bin", "IN1.bin", "OUT0.bin", "OUT1.bin"])
    assert r.returncode == 0, r.stderr[-2000:]
    z = np.fromfile(os.path.join(code, "OUT0.bin"), "<f4").reshape(FRAMES, *Z)
    y = np.fromfile(os.path.join(code, "OUT1.bin"), "<f4").reshape(FRAMES, *Y)
    m = onnx.load(model)
    for k in range(FRAMES):
        want_z, want_y = run_ort(m, {"a": a[k], "b": b[k]})
        assert relative_error(z[k], want_z) < 1e-5 and relative_error(y[k], want_y) < 1e-5, k


@pytest.fixture(scope="module")
def host_program(two_by_two, tmp_path_factory) -> str:
    """`alohac compile` of the model for host-cpu, built: the output folder."""
    from alohac.main import main
    out = str(tmp_path_factory.mktemp("host") / "out")
    assert main(["compile", two_by_two, "--target", "host-cpu", "--emit", "c", "-o", out]) == 0
    build(os.path.join(out, "code"), cflags=STRICT)
    return out


def test_a_two_input_two_output_cnn_on_host_matches_onnxruntime(two_by_two, frames,
                                                                 host_program):
    code = os.path.join(host_program, "code")
    manifest = json.load(open(os.path.join(code, "network.json")))
    assert [(io["port"], io["shape"], io["file"]) for io in manifest["inputs"]] == \
        [("a", list(A), "IN0.bin"), ("b", list(B), "IN1.bin")]
    assert [(io["port"], io["shape"], io["file"]) for io in manifest["outputs"]] == \
        [("z", list(Z), "OUT0.bin"), ("y", list(Y), "OUT1.bin")]
    _check_against_onnxruntime(code, two_by_two, frames)
    # the program holds one frame of each input and output: (192 + 128 + 256 + 5) floats, which
    # analyze-memory counts too
    r = _run(code, ["IN0.bin", "IN1.bin", "OUT0.bin", "OUT1.bin"], ALOHA_MEMORY="1")
    assert "io 2324)" in r.stderr, r.stderr
    report = json.load(open(os.path.join(host_program, "report.json")))
    assert f" memory_bytes {report['memory_bytes']} " in r.stderr, r.stderr
    assert 0 < report["period_s"] <= report["latency_s"]


@pytest.mark.slow  # two more builds; the host-cpu program runs in make test
@pytest.mark.parametrize("target", ["neuraghe-losa", "orlando"])
def test_the_platform_programs_stream_several_inputs_and_outputs(two_by_two, frames, tmp_path,
                                                                 target):
    """NEURAghe's and Orlando's programs share the runtime and the input/output actors (in float:
    calibrating a model of two inputs for fixed point is refused)."""
    from frontends.loader import load_model
    platform = float_variant(target, tmp_path, SLOW_FLOAT_ARM if target != "orlando" else "")
    code = generate(load_model(two_by_two, {}), platform, str(tmp_path))
    build(code)
    _check_against_onnxruntime(code, two_by_two, frames)


def test_the_usage_names_each_file_and_unequal_frame_counts_are_refused(host_program, tmp_path):
    code = os.path.join(host_program, "code")
    r = _run(code, ["IN0.bin", "OUT0.bin"])
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        f"usage: {os.path.join(code, 'network')} IN0.bin IN1.bin OUT0.bin OUT1.bin",
        "  IN0.bin: k >= 1 inputs of 1x3x8x8 float32 (little-endian, NCHW) back to back "
        "(model input 'a')",
        "  IN1.bin: k >= 1 inputs of 1x2x8x8 float32 (little-endian, NCHW) back to back "
        "(model input 'b')",
        "  OUT0.bin: the k outputs of 1x4x8x8 float32 (model output 'z')",
        "  OUT1.bin: the k outputs of 1x5 float32 (model output 'y')"]
    two, three = str(tmp_path / "two.bin"), str(tmp_path / "three.bin")
    np.zeros((2, *A), np.float32).tofile(two)
    np.zeros((3, *B), np.float32).tofile(three)
    r = _run(code, [two, three, "OUT0.bin", "OUT1.bin"])
    assert r.returncode == 2
    assert r.stderr == (f"network: {three} holds 3 inputs but {two} holds 2: every input file "
                        "holds the same number of frames\n")


def test_a_two_input_two_output_model_round_trips_through_onnx(two_by_two, frames):
    import onnx

    from backends.onnx.export import export_onnx
    from frontends.loader import load_model
    exported = export_onnx(load_model(two_by_two, {}))
    assert [vi.name for vi in exported.graph.output] == ["z", "y"]
    a, b = frames
    got = run_ort(exported, {"a": a[0], "b": b[0]})
    want = run_ort(onnx.load(two_by_two), {"a": a[0], "b": b[0]})
    for g, w in zip(got, want):
        assert g.shape == w.shape and relative_error(g, w) < 1e-5


def test_two_sources_and_two_sinks_a_frame_ends_when_the_last_sink_has_fired():
    """i0 -> a -> o0 and i1 -> b -> o1, with a's output read by b too, each actor on its own
    processor: frame 0 ends when o1 does (i1 0-2, a 1-4, b 4-9, o1 9-10), and the period is the
    slowest actor's time (b, 5)."""
    one = rle.encode([1])  # one token a firing
    phases = dict.fromkeys(["i0", "i1", "a", "b", "o0", "o1"], 1)
    edges = [Edge("i0a", "i0", "a", one, one), Edge("ao0", "a", "o0", one, one),
             Edge("ab", "a", "b", one, one), Edge("i1b", "i1", "b", one, one),
             Edge("bo1", "b", "o1", one, one)]
    times = {"i0": [1.0], "i1": [2.0], "a": [3.0], "b": [5.0], "o0": [1.0], "o1": [1.0]}
    q = dataflow.firings(phases, dataflow.repetition_vector(phases, edges))
    run = selftimed.simulate(phases, edges, times, q, frames=30)
    assert run.latency == pytest.approx(10.0)
    assert run.period() == pytest.approx(5.0)


def test_compare_refuses_a_program_of_several_inputs_naming_them():
    from aloha_ir.errors import UnsupportedError
    from alohac.compare import input_shape
    one = {"inputs": [{"port": "x", "shape": [1, 3, 8, 8]}]}
    assert input_shape(one) == [1, 3, 8, 8]
    with pytest.raises(UnsupportedError, match=r"one input; this one takes 2 \(a, b\)"):
        input_shape({"inputs": [{"port": "a", "shape": list(A)}, {"port": "b", "shape": list(B)}]})


@pytest.mark.parametrize("way,word", [("in", "input"), ("out", "output")])
def test_boundary_actors_that_are_not_the_models_are_refused(way, word):
    """A csdf graph whose input or output actors stream other tensors than the model's inputs or
    outputs is refused, the message naming both sides."""
    from aloha_ir.errors import UnsupportedError
    from backends.codegen.build import _ios
    with pytest.raises(UnsupportedError, match=rf"the csdf graph's {word} actors stream \['b'\], "
                                               rf"the model's {word}s are \['a'\]"):
        _ios(way, [("a", "a", None)], {"b": None})
