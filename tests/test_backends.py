"""The conformance suite of code generators: every registered backend generates for small models,
its output compiles with gcc -std=c99 -Wall -Wextra -Werror, runs, and matches an independent
reference (onnxruntime for float, the bit-exact fixed-point reference for quantized models); plus
the host backend's contract (input sizes, embedded weights, sanitizers, FIFO sizes, names)."""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from codegen_helpers import STRICT, build, digits_inputs, float_variant, generate, have_gcc, run
from model_helpers import light_path, randomize_weights, run_ort, strip_final_softmax

pytestmark = pytest.mark.skipif(not have_gcc(), reason="gcc and make are needed to build code")


def _backends():
    from backends.registry import registered
    return sorted(registered().items())


def _slow_but_host(cases):
    """The host backend's case in the fast suite, the platforms' (each 20-50 s: their emulated
    APIs log every call) in make test-all."""
    return [c if c[-2] == "host" else pytest.param(*c, marks=pytest.mark.slow) for c in cases]


def _quantized_digits(bits: int, granularity: str = "layer"):
    from aloha_ir.context import make_context
    from aloha_ir.passmanager import PassManager
    from frontends.loader import load_model
    module = load_model("zoo:digits_cnn", {})
    ctx = make_context()
    PassManager.parse(f"canonicalize,quantize{{bits={bits} data=digits samples=64 "
                      f"granularity={granularity}}}").run(module, ctx)
    return module


def _exact(module, code, x):
    from runtime.reference import reference
    r, y = run(code, x)
    assert r.returncode == 0, r.stderr
    ref = reference(module)
    want = np.stack([ref.real(x[i:i + 1].astype(np.float64)).reshape(-1) for i in range(len(x))])
    np.testing.assert_array_equal(y, want.astype(np.float32))
    return y


@pytest.mark.parametrize("name,cls,buffers", [  # orlando at its minimal sizes in make test-all
    pytest.param(n, c, b, marks=pytest.mark.slow) if (n, b) == ("orlando", "minimal") else (n, c, b)
    for n, c in _backends() for b in ("schedule", "minimal")])
@pytest.mark.parametrize("bits", [8, 16])
def test_every_backend_is_bit_exact_on_a_quantized_model(tmp_path, name, cls, bits, buffers):
    module = _quantized_digits(bits)
    code = generate(module, cls.default_platform, str(tmp_path), backend=name, buffers=buffers)
    build(code)
    _exact(module, code, digits_inputs(12))


@pytest.mark.parametrize("name,cls", _slow_but_host(_backends()))
def test_every_backend_matches_onnxruntime_in_float(tmp_path, name, cls):
    from backends.onnx.export import save_onnx
    from frontends.loader import load_model
    path = str(tmp_path / "lenet5.onnx")
    save_onnx(load_model("zoo:lenet5", {}), path)
    reference = strip_final_softmax(onnx.load(path))
    onnx.save(reference, path)
    target = float_variant(cls.default_platform, tmp_path)
    code = generate(load_model(path, {}), target, str(tmp_path), backend=name)
    manifest = json.load(open(os.path.join(code, "network.json")))
    assert manifest["datatype"] == "f32" and manifest["fixed"] is False
    assert {f["ctype"] for f in manifest["fifos"]} == {"float"}
    build(code)
    x = np.random.default_rng(0).uniform(0, 1, (3, 1, 28, 28)).astype(np.float32)
    r, y = run(code, x)
    assert r.returncode == 0, r.stderr
    want = np.concatenate([run_ort(reference, {"input": x[i:i + 1]})[0] for i in range(3)])
    np.testing.assert_allclose(y, want.reshape(3, -1), rtol=1e-3, atol=1e-3 * np.abs(want).max())


@pytest.mark.parametrize("zoo,name,cls", [  # lenet5 (17 s on the host) in make test-all
    pytest.param("lenet5", n, c, marks=pytest.mark.slow) for n, c in _backends()] + _slow_but_host(
    [("mnist_cnn", n, c) for n, c in _backends() if n != "orlando"]))
def test_every_backend_runs_at_the_minimal_fifo_sizes_bit_exact(tmp_path, zoo, name, cls):
    """The float program with size-buffers' capacities (TargetFlow buffers="minimal") completes
    without deadlock, outputs exactly what the program at the schedule's sizes outputs, matches
    onnxruntime, and allocates less FIFO memory. (mnist_cnn in float does not fit Orlando's 4 MiB
    SRAM at the schedule's sizes: analyze-memory refuses it.)"""
    from backends.onnx.export import save_onnx
    from frontends.loader import load_model
    path = str(tmp_path / f"{zoo}.onnx")
    save_onnx(load_model(f"zoo:{zoo}", {}), path)
    reference = strip_final_softmax(onnx.load(path))
    onnx.save(reference, path)
    target = float_variant(cls.default_platform, tmp_path)
    x = np.random.default_rng(0).uniform(0, 1, (3, 1, 28, 28)).astype(np.float32)
    out, fifo_bytes = {}, {}
    for buffers in ("schedule", "minimal"):
        code = generate(load_model(path, {}), target, str(tmp_path / buffers), backend=name,
                        buffers=buffers)
        build(code)
        r, out[buffers] = run(code, x, timeout=120)  # a hang fails the test through the timeout
        assert r.returncode == 0, r.stderr
        manifest = json.load(open(os.path.join(code, "network.json")))
        fifo_bytes[buffers] = manifest["memory"]["buffer_bytes"]
    np.testing.assert_array_equal(out["minimal"], out["schedule"])
    want = np.concatenate([run_ort(reference, {"input": x[i:i + 1]})[0] for i in range(3)])
    np.testing.assert_allclose(out["minimal"], want.reshape(3, -1), rtol=1e-3,
                               atol=1e-3 * np.abs(want).max())
    assert fifo_bytes["minimal"] < fifo_bytes["schedule"]


# ---------------------------------------------------------------------------------------------------
# host: float models against onnxruntime


def _light(name: str, tmp_path) -> str:
    m = strip_final_softmax(randomize_weights(onnx.load(light_path(name)), seed=0))
    m.ir_version = min(m.ir_version, 10)
    p = str(tmp_path / f"{name}.onnx")
    onnx.save(m, p)
    return p


def _host_float(path: str, tmp_path, k: int = 2, scale: float = 1.0, sanitize: bool = False):
    from frontends.loader import load_model
    module = load_model(path, {})
    code = generate(module, "host-cpu", str(tmp_path))
    build(code, "network-asan" if sanitize else "network")
    model = onnx.load(path)
    inits = {t.name for t in model.graph.initializer}
    name = next(i.name for i in model.graph.input if i.name not in inits)
    shape = json.load(open(os.path.join(code, "network.json")))["inputs"][0]["shape"]
    x = (np.random.default_rng(1).uniform(0, 1, [k] + shape[1:]) * scale).astype(np.float32)
    r, y = run(code, x, "network-asan" if sanitize else "network",
               env={"ASAN_OPTIONS": "detect_leaks=0", "UBSAN_OPTIONS": "halt_on_error=1"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "runtime error" not in r.stderr and "AddressSanitizer" not in r.stderr, r.stderr
    want = np.concatenate([run_ort(model, {name: x[i:i + 1]})[0].reshape(1, -1) for i in range(k)])
    err = np.abs(y - want).max() / np.abs(want).max()
    assert err < 1e-3, f"relative error {err}"
    return code


@pytest.mark.parametrize("name", ["squeezenet", *(pytest.param(n, marks=pytest.mark.slow)
                                                  for n in ("inception_v1", "resnet50"))])
def test_host_float_light_models_match_onnxruntime(tmp_path, name):
    _host_float(_light(name, tmp_path), tmp_path, k=1)


def test_host_float_mnist8_matches_onnxruntime_under_sanitizers(tmp_path):
    data = os.environ.get("ALOHA_DATA")
    if not data:
        pytest.skip("ALOHA_DATA is not set (mnist-8 lives in ../shared/data/onnx)")
    _host_float(os.path.join(data, "onnx", "mnist-8.onnx"), tmp_path, k=3, scale=255.0,
                sanitize=True)


@pytest.mark.parametrize("zoo", [pytest.param(z, marks=pytest.mark.slow)  # make test-all
                                 for z in ("mnist_cnn", "lenet5")])
def test_host_float_zoo_builders_match_onnxruntime_under_sanitizers(tmp_path, zoo):
    from backends.onnx.export import save_onnx
    from frontends.loader import load_model
    path = str(tmp_path / f"{zoo}.onnx")
    save_onnx(load_model(f"zoo:{zoo}", {}), path)
    onnx.save(strip_final_softmax(onnx.load(path)), path)
    _host_float(path, tmp_path, k=2, sanitize=True)


def test_host_fixed_point_per_channel_is_exact_under_sanitizers(tmp_path):
    module = _quantized_digits(8, "channel")
    code = generate(module, "host-cpu", str(tmp_path))
    build(code, "network-asan")
    from runtime.reference import reference
    x = digits_inputs(5)
    r, y = run(code, x, "network-asan", env={"ASAN_OPTIONS": "detect_leaks=0"})
    assert r.returncode == 0 and "runtime error" not in r.stderr, r.stderr
    ref = reference(module)
    want = np.stack([ref.real(x[i:i + 1].astype(np.float64)).reshape(-1) for i in range(5)])
    np.testing.assert_array_equal(y, want.astype(np.float32))


@pytest.mark.parametrize("name,cls", _backends())
def test_threads_have_no_data_race(tmp_path, name, cls):
    """ThreadSanitizer over a quantized model streamed through every backend's threads."""
    module = _quantized_digits(16)
    code = generate(module, cls.default_platform, str(tmp_path), backend=name)
    build(code, "network-tsan")
    r, y = run(code, digits_inputs(6), "network-tsan", env={"TSAN_OPTIONS": "halt_on_error=1"})
    if "FATAL: ThreadSanitizer" in r.stderr:  # e.g. an unsupported memory layout (ASLR)
        pytest.skip("ThreadSanitizer cannot run here: " + r.stderr.splitlines()[0])
    assert r.returncode == 0 and "ThreadSanitizer" not in r.stderr, r.stderr[-3000:]


@pytest.mark.parametrize("name,cls", [  # orlando's (14 s) in make test-all
    pytest.param(n, c, marks=pytest.mark.slow) if n == "orlando" else (n, c) for n, c in _backends()])
def test_one_thread_per_unit_and_the_timing_and_profile_modes(tmp_path, name, cls):
    """Unplaced actors (input, output, gathers) run on a programmable unit's thread, never one of
    their own; every actor is in exactly one thread's order, firing its phases once per frame.
    The timing and profile modes and the no-spin setting leave the outputs bit-exact, and the
    profile counts each actor's firings."""
    from backends.registry import get_backend
    from codegen_helpers import lower
    module = _quantized_digits(16)
    platform = lower(module, cls.default_platform)
    view = get_backend(name)().view(module, platform)
    units = dict(platform.units())
    fired = {}
    for t in view.threads:
        assert t.unit in units, t.unit
        for a, n in t.order:
            fired[a] = fired.get(a, 0) + n
            if not view.actors[a].unit:
                assert units[t.unit].kind == "cpu", (view.actors[a].name, t.unit)
    assert fired == {a.index: a.phases for a in view.actors}

    code = generate(_quantized_digits(16), cls.default_platform, str(tmp_path), backend=name)
    build(code)
    x = digits_inputs(5)
    y = _exact(module, code, x)
    for env in ({"ALOHA_TIMING": "latency", "ALOHA_PROFILE": "1"}, {"ALOHA_TIMING": "1"},
                {"ALOHA_SPIN_US": "0"}):
        r, y2 = run(code, x, env=env)
        assert r.returncode == 0, r.stderr
        np.testing.assert_array_equal(y2, y)
    r, _ = run(code, x, env={"ALOHA_TIMING": "latency", "ALOHA_PROFILE": "1"})
    timing = [ln for ln in r.stderr.splitlines() if ln.startswith("timing:")]
    assert len(timing) == 1 and "frames 5 " in timing[0] and timing[0].endswith("mode latency")
    profile = [ln.split() for ln in r.stderr.splitlines() if ln.startswith("profile:")]
    assert [int(p[2]) for p in profile] == [a.index for a in view.actors]
    for p in profile:
        assert float(p[4]) == view.actors[int(p[2])].phases
        assert float(p[6]) >= 0 and float(p[8]) >= 0


# ---------------------------------------------------------------------------------------------------
# the program's contract


def test_embedded_weights_give_the_same_output_with_static_allocation_only(tmp_path):
    module = _quantized_digits(8)
    a = generate(module, "host-cpu", str(tmp_path / "file"))
    b = generate(_quantized_digits(8), "host-cpu", str(tmp_path / "emb"), weights="embedded")
    build(a)
    build(b)
    assert not os.path.exists(os.path.join(b, "weights.bin"))
    for f in ("network.c", "aloha_rt.c", "aloha_kernels.c"):
        text = open(os.path.join(b, f)).read()
        assert "malloc(" not in text and "calloc(" not in text, f
    x = digits_inputs(4)
    (ra, ya), (rb, yb) = run(a, x), run(b, x)
    assert ra.returncode == rb.returncode == 0
    np.testing.assert_array_equal(ya, yb)


def test_input_size_must_be_a_multiple_of_one_input(tmp_path):
    code = generate(_quantized_digits(8), "host-cpu", str(tmp_path))
    build(code)
    for nbytes in (0, 4 * 64 + 4, 100):
        p = os.path.join(code, "bad.bin")
        open(p, "wb").write(b"\0" * nbytes)
        import subprocess
        r = subprocess.run(["./network", "bad.bin", "o.bin"], cwd=code, capture_output=True,
                           text=True, timeout=30)
        assert r.returncode != 0 and "multiple of one input" in r.stderr, (nbytes, r.stderr)
    r = subprocess.run(["./network"], cwd=code, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "usage" in r.stderr


@pytest.mark.slow  # 22 s; test_every_backend_runs_at_the_minimal_fifo_sizes_bit_exact stays fast
def test_program_runs_with_exactly_the_analysed_fifo_sizes_and_fails_loudly_below(tmp_path):
    from frontends.loader import load_model
    module = load_model("zoo:mnist_cnn", {})
    code = generate(module, "host-cpu", str(tmp_path / "ok"))
    build(code)
    manifest = json.load(open(os.path.join(code, "network.json")))
    assert all(f["capacity"] == f["analysed"] for f in manifest["fifos"])
    x = np.random.default_rng(0).uniform(0, 1, (3, 1, 28, 28)).astype(np.float32)
    r, y_ok = run(code, x, timeout=120)
    assert r.returncode == 0, r.stderr
    # a channel whose analysed size is exactly what one firing moves: one token less cannot work
    tight = [f for f in manifest["fifos"] if f["analysed"] == f["max_firing"] and f["analysed"]]
    # and one whose size exceeds a firing's: too small a FIFO there deadlocks the schedule
    loose = [f for f in manifest["fifos"] if f["analysed"] > f["max_firing"]]
    assert tight and loose
    for f, expect in ((tight[0], "one firing"), (loose[0], None)):
        small = generate(load_model("zoo:mnist_cnn", {}), "host-cpu", str(tmp_path / f["name"]),
                         fifo_override={f["name"]: f["analysed"] - 1})
        build(small)
        r, y = run(small, x, timeout=120)  # a hang fails the test through the timeout
        if r.returncode == 0:  # the FIFO did not matter for this execution: same result
            assert expect is None
            np.testing.assert_array_equal(y, y_ok)
        else:
            assert r.returncode == 3 and ("deadlock" in r.stderr or "one firing" in r.stderr)
            if expect:
                assert expect in r.stderr
    # a deadlock is reported, not hung: shrink every buffer above a firing's size to that size
    shrink = {f["name"]: f["max_firing"] for f in loose}
    small = generate(load_model("zoo:mnist_cnn", {}), "host-cpu", str(tmp_path / "all"),
                     fifo_override=shrink)
    build(small)
    r, _ = run(small, x, timeout=120)
    assert r.returncode == 3 and "deadlock" in r.stderr, r.stderr


@pytest.mark.slow
def test_the_program_deadlocks_one_token_below_the_minimal_sizes_where_the_model_does(tmp_path):
    """lenet5 on host-cpu at size-buffers' capacities: a channel the program's modelled execution
    says deadlocks one token smaller (and that holds more than a firing moves) makes the real
    program stop with "deadlock" too: the model is the program's execution, not a bound on it."""
    from aloha_ir.dialects import csdf
    from archdesc.loader import load_platform
    from frontends.loader import load_model
    from test_size_buffers import one_token_less
    module = load_model("zoo:lenet5", {})
    code = generate(module, "host-cpu", str(tmp_path / "ok"), buffers="minimal")
    manifest = json.load(open(os.path.join(code, "network.json")))
    firing = {f["name"]: f["max_firing"] for f in manifest["fifos"]}
    cpu = [u for u, pe in load_platform("host-cpu").units() if pe.kind == "cpu"]
    s, _, smaller = one_token_less(csdf.csdf_graphs(module)[0], cpu)
    assert {f["name"]: f["capacity"] for f in manifest["fifos"]} == s.capacities
    stuck = [c for c, p in smaller.items() if p is None and s.capacities[c] > firing[c]]
    assert stuck
    x = np.random.default_rng(0).uniform(0, 1, (3, 1, 28, 28)).astype(np.float32)
    build(code)
    r, _ = run(code, x, timeout=120)
    assert r.returncode == 0, r.stderr
    for c in stuck[:2]:
        small = generate(load_model("zoo:lenet5", {}), "host-cpu", str(tmp_path / c),
                         buffers="minimal", fifo_override={c: s.capacities[c] - 1})
        build(small)
        r, _ = run(small, x, timeout=120)
        assert r.returncode == 3 and "deadlock" in r.stderr, (c, r.stderr)


def _odd_names_model() -> onnx.ModelProto:
    """Names as ONNX exporters write them: '/', ':', '.', leading digits, C keywords, quotes and
    duplicates (two nodes named the same)."""
    rng = np.random.default_rng(3)
    w1 = numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "0.weight")
    b1 = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "int")
    w2 = numpy_helper.from_array(rng.standard_normal((3, 4, 3, 3)).astype(np.float32), "w:0/x")
    nodes = [
        helper.make_node("Conv", ["in/put:0", "0.weight", "int"], ["/conv/Conv_output_0"],
                         name="/conv/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["/conv/Conv_output_0"], ["return"], name="while"),
        helper.make_node("Conv", ["return", "w:0/x"], ["1x\"q\\"], name="/conv/Conv"),
        helper.make_node("Relu", ["1x\"q\\"], ["c2"], name="c2"),  # named like a csdf channel
        helper.make_node("Relu", ["c2"], ["out.put"], name="while"),
    ]
    g = helper.make_graph(nodes, "static", [helper.make_tensor_value_info(
        "in/put:0", TensorProto.FLOAT, [1, 1, 6, 6])], [helper.make_tensor_value_info(
            "out.put", TensorProto.FLOAT, [1, 3, 4, 4])], [w1, b1, w2])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 10
    return m


def test_identifiers_from_onnx_names_are_valid_and_unique(tmp_path):
    from frontends.loader import load_model
    model = _odd_names_model()
    path = str(tmp_path / "odd.onnx")
    onnx.save(model, path)
    code = generate(load_model(path, {}), "host-cpu", str(tmp_path))
    build(code)
    x = np.random.default_rng(0).standard_normal((2, 1, 6, 6)).astype(np.float32)
    r, y = run(code, x)
    assert r.returncode == 0, r.stderr
    for i, node in enumerate(model.graph.node):  # onnxruntime itself rejects duplicate names
        node.name = f"n{i}"
    want = np.concatenate([run_ort(model, {"in/put:0": x[i:i + 1]})[0].reshape(1, -1)
                           for i in range(2)])
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def test_c_identifier_and_c_string():
    from backends.api import c_string
    from backends.codegen import C_KEYWORDS, c_identifier
    import re
    names = ["/a/b:0", "0conv", "int", "while", "a.b", "", "__x", "é", "a b", "a/b", "a_b"]
    idents = [c_identifier(n, i) for i, n in enumerate(names)]
    assert len(set(idents)) == len(idents)
    for ident in idents:
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", ident) and ident not in C_KEYWORDS
        assert "__" not in ident
    assert c_string('a"b\\c?') == '"a\\"b\\\\c\\077"'


def test_generated_files_and_the_code_size_report_from_the_cli(tmp_path):
    import subprocess
    import sys
    out = str(tmp_path / "out")
    r = subprocess.run([sys.executable, "-m", "alohac.main", "compile", "zoo:lenet5", "--target",
                        "host-cpu", "-o", out], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    code = os.path.join(out, "code")
    for f in ("Makefile", "network.c", "aloha_rt.c", "aloha_rt.h", "aloha_kernels.c",
              "aloha_kernels.h", "weights.bin", "network.json", "code-size.md",
              "code-size.json"):
        assert os.path.exists(os.path.join(code, f)), f
    size = json.load(open(os.path.join(code, "code-size.json")))
    weights = os.path.getsize(os.path.join(code, "weights.bin"))
    assert size["memory"]["parameter_bytes"] == weights - 16  # magic + byte count
    r = subprocess.run(["make", "-s", "-C", code, f"CFLAGS={STRICT}"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    # the program is built with -O3, for the host's own vector instructions when gcc builds for
    # this machine, and without them for a cross compiler (which need not be installed: its
    # -dumpmachine names another machine, or nothing)
    def build_line(*args):
        r = subprocess.run(["make", "-n", "-B", "-C", code, "network", *args],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return next(line for line in r.stdout.splitlines() if " -o network " in line).split()

    native = build_line()
    assert "-O3" in native and "-march=native" in native
    assert "-march=native" not in build_line("CC=arm-linux-gnueabihf-gcc")
    assert "-march=native" not in build_line("MARCH=")
    r = subprocess.run([sys.executable, "-m", "alohac.main", "list", "backends", "--json"],
                       capture_output=True, text=True)
    assert "host" in json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_compare_reports_per_layer_sqnr_and_locates_a_broken_layer(tmp_path):
    from alohac.compare import compare
    module = _quantized_digits(8)
    code = generate(module, "host-cpu", str(tmp_path))
    x = digits_inputs(1)
    result = compare(module, code, x[0:1])
    assert result["first_below_threshold"] is None
    assert all(r["exact"] for r in result["layers"]) and len(result["layers"]) >= 6
    # corrupt one conv's output in the generated code: compare must name that layer first
    src = open(os.path.join(code, "network.c")).read()
    conv = [a for a in json.load(open(os.path.join(code, "network.json")))["actors"]
            if a["kernel"] == "conv"][-1]
    marker = f"static void {conv['cname']}_compute(aloha_actor *a, int phase)\n{{\n"
    start = src.index(marker) + len(marker)
    end = src.index("\n}\n", start)
    src = src[:end] + "\n    ((int32_t *)a->obuf)[0] += 7;" + src[end:]
    open(os.path.join(code, "network.c"), "w").write(src)
    result = compare(module, code, x[0:1])
    first = next(r for r in result["layers"] if not r["exact"])
    assert first["block"] == conv["block"]
    assert first["sqnr_db"] < 200


@pytest.mark.slow
def test_an_out_of_tree_platform_registers_through_the_entry_point(tmp_path):
    """The README's "Adding a platform", end to end: a package outside backends/ (its .arch file,
    backend module and a template overriding platform.j2) registered by entry point metadata."""
    import subprocess
    import sys
    here = os.path.dirname(__file__)
    package = os.path.join(here, "example_platform")
    dist = tmp_path / "site" / "toy_platform-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-platform\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[aloha.backends]\ntoy = toy_platform:ToyBackend\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tmp_path / "site"), package, os.path.dirname(here)])}
    alohac = [sys.executable, "-m", "alohac.main"]
    r = subprocess.run(alohac + ["list", "backends"], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "toy" in r.stdout and "host" in r.stdout, r.stdout + r.stderr
    q = tmp_path / "q"
    r = subprocess.run(alohac + ["quantize", "zoo:digits_cnn", "--data", "digits", "--samples",
                                 "64", "-o", str(q)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    arch = os.path.join(package, "toy_platform", "toy.arch")
    out = tmp_path / "out"
    r = subprocess.run(alohac + ["compile", str(q / "digits_cnn.mlir"), "--target", arch, "-o",
                                 str(out)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    code = str(out / "code")
    assert "toy_busy" in open(os.path.join(code, "network.c")).read()
    build(code)
    from aloha_ir.textio import load_module
    module = load_module(str(q / "digits_cnn.mlir"))
    x = digits_inputs(3)
    r, y = run(code, x)
    threads = len(json.load(open(os.path.join(code, "network.json")))["threads"])
    assert r.returncode == 0, r.stderr
    assert f"toy: {2 * 3 * threads} busy/idle switches on {threads} threads" in r.stderr
    from runtime.reference import reference
    ref = reference(module)
    want = np.stack([ref.real(x[i:i + 1].astype(np.float64)).reshape(-1) for i in range(3)])
    np.testing.assert_array_equal(y, want.astype(np.float32))


@pytest.mark.parametrize("target", [pytest.param("neuraghe-losa", marks=pytest.mark.slow),
                                    pytest.param("orlando", marks=pytest.mark.slow)])
def test_mnist8_fixed_point_on_the_platforms_agrees_with_onnxruntime(tmp_path, target):
    """mnist-8 quantized (PTQ, 16 bit) on the platform's generated program over 1,000 MNIST test
    images: top-1 agrees with onnxruntime's float model on >= 99% and the outputs equal the
    bit-exact reference (benchmarks/generated_c.py runs all 10,000)."""
    data = os.environ.get("ALOHA_DATA")
    if not data:
        pytest.skip("ALOHA_DATA is not set (mnist-8 and MNIST live in ../shared/data)")
    from aloha_ir.context import make_context
    from aloha_ir.passmanager import PassManager
    from runtime.reference import reference
    from frontends.datasets import load
    from frontends.loader import load_model
    mnist = f"mnist:{os.path.join(data, 'mnist')}"
    module = load_model("zoo:mnist-8", {})
    PassManager.parse(f"canonicalize,quantize{{bits=16 data=\"{mnist}\" samples=200}}").run(
        module, make_context())
    want = reference(module)
    test = load(mnist).test.to_range(0.0, 255.0)
    x, labels = test.x[:1000], test.y[:1000]
    code = generate(module, target, str(tmp_path))
    build(code)
    r, y = run(code, x)
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(y[:100], want.real(x[:100].astype(np.float64)).reshape(100, -1)
                                  .astype(np.float32))
    model = onnx.load(os.path.join(data, "onnx", "mnist-8.onnx"))
    name = model.graph.input[0].name
    logits = np.concatenate([run_ort(model, {name: x[i:i + 1]})[0] for i in range(1000)])
    agreement = np.mean(y.argmax(1) == logits.argmax(1))
    print(f"{target}: top-1 agreement {agreement:.4f}, accuracy {np.mean(y.argmax(1) == labels)}")
    assert agreement >= 0.99
