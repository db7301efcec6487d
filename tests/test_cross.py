"""The generated programs on the platforms' own CPUs, cross-compiled and run under QEMU: NEURAghe's
program for its ARM Cortex-A9 (armhf Linux, qemu-arm user mode) and Orlando's static-order program
for a Cortex-M4 (bare metal with newlib, qemu-system-arm on mps2-an386 with semihosting). Each must
output exactly, bit for bit, what the x86 build of the same model outputs, and that must be the
bit-exact fixed-point reference's (runtime.reference: an independent Python computation).

The static-order runtime itself (one loop, no pthreads) also builds and runs on this machine, so
its checks need no cross tools. `make toolchains` installs the tools; without them the cross tests
skip with the reason."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from codegen_helpers import STRICT, build, digits_inputs, generate, have_gcc, run

pytestmark = pytest.mark.skipif(not have_gcc(), reason="gcc and make are needed to build code")

ARMHF = ("arm-linux-gnueabihf-gcc", "qemu-arm")
CORTEX_M = ("arm-none-eabi-gcc", "qemu-system-arm")
HOST_MEMORY = 128 * 1024  # Orlando's host: a Cortex-M class microcontroller with 128 KiB


def _need(tools: tuple[str, ...]) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if tools == CORTEX_M and not os.path.isdir("/usr/lib/arm-none-eabi/newlib"):
        missing.append("newlib (libnewlib-arm-none-eabi)")
    if tools == ARMHF and not os.path.isfile("/usr/arm-linux-gnueabihf/include/stdio.h"):
        missing.append("the armhf C library (libc6-dev-armhf-cross)")
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (`make toolchains` installs them)")


def _quantized(zoo: str, bits: int, data: str = "digits", samples: int = 64):
    from aloha_ir.context import make_context
    from aloha_ir.passmanager import PassManager
    from frontends.loader import load_model
    module = load_model(f"zoo:{zoo}", {})
    PassManager.parse(f"canonicalize,quantize{{bits={bits} data=\"{data}\" samples={samples}}}"
                      ).run(module, make_context())
    return module


def _mnist(k: int) -> tuple[np.ndarray, str]:
    data = os.environ.get("ALOHA_DATA")
    if not data:
        pytest.skip("ALOHA_DATA is not set (mnist-8 and MNIST live in ../shared/data)")
    from frontends.datasets import load
    spec = f"mnist:{os.path.join(data, 'mnist')}"
    return load(spec).test.to_range(0.0, 255.0).x[:k], spec


def _reference(module, x: np.ndarray) -> np.ndarray:
    from runtime.reference import reference
    ref = reference(module)
    return np.stack([ref.real(x[i:i + 1].astype(np.float64)).reshape(-1)
                     for i in range(len(x))]).astype(np.float32)


def _make_run(code: str, machine: str, x: np.ndarray, timeout: float = 600
              ) -> tuple[subprocess.CompletedProcess, np.ndarray]:
    """`make TARGET=machine run IN=in.bin OUT=out.bin` in the code directory, as a user runs it."""
    np.ascontiguousarray(x, dtype="<f4").tofile(os.path.join(code, "in.bin"))
    out = os.path.join(code, "out.bin")
    if os.path.exists(out):
        os.remove(out)
    r = subprocess.run(["make", "-s", "-C", code, f"TARGET={machine}", "run", "IN=in.bin",
                        "OUT=out.bin", f"CFLAGS={STRICT}"], capture_output=True, text=True,
                       timeout=timeout)
    y = np.fromfile(out, dtype="<f4") if r.returncode == 0 else np.zeros(0, np.float32)
    return r, y.reshape(len(x), -1) if y.size else y


def _x86(module_factory, target: str, tmp_path, x: np.ndarray) -> np.ndarray:
    """The x86 build of the default (threaded) program."""
    code = generate(module_factory(), target, str(tmp_path / "x86"))
    build(code)
    r, y = run(code, x)
    assert r.returncode == 0, r.stderr
    return y


# ---------------------------------------------------------------------------------------------------
# the static-order runtime on this machine


@pytest.mark.parametrize("target", [pytest.param(t, marks=pytest.mark.slow)
                                    for t in ("orlando", "neuraghe-losa")])
def test_static_runtime_is_one_loop_without_pthreads_and_bit_exact(tmp_path, target):
    """--runtime static: one thread whose order holds every firing of the frame in the schedule's
    start order; no pthreads or malloc in the program; bit-exact with the reference and with
    the threaded program, frame after frame; every unit's power knob still runs around each frame
    (the platform's log counts what the threaded program's does)."""
    from aloha_ir.dialects import csdf
    from backends.registry import get_backend
    from codegen_helpers import lower
    module = _quantized("digits_cnn", 8)
    platform = lower(module, target)
    view = get_backend(platform.backend)(runtime="static").view(module, platform)
    assert len(view.threads) == 1
    graph = csdf.csdf_graphs(module)[0]
    # the start order by hand: every firing position the schedule recorded, sorted
    slots = sorted((s, a.sym_name.data) for a in graph.actors() for s in a.order)
    flat = [view.actors[i].name for i, n in view.threads[0].order for _ in range(n)]
    assert flat == [a for _, a in slots]
    x = digits_inputs(12)
    logs, outputs = {}, {}
    for runtime in ("static", "threads"):
        code = generate(_quantized("digits_cnn", 8), target, str(tmp_path / runtime),
                        runtime=runtime)
        build(code)
        r, outputs[runtime] = run(code, x, env={"ALOHA_PLATFORM_LOG": "1"})
        assert r.returncode == 0, r.stderr
        logs[runtime] = [ln for ln in r.stderr.splitlines() if ln.startswith(target[:7])]
    for f in ("network.c", "aloha_rt.c", "aloha_rt.h", "orlando_api_host.c"):
        if os.path.exists(os.path.join(tmp_path, "static", "code", f)):
            text = open(os.path.join(tmp_path, "static", "code", f)).read()
            assert not re.search(r"pthread_\w+\(|#include <pthread.h>|malloc\(|calloc\(", text), f
    assert "-lpthread" not in open(os.path.join(tmp_path, "static", "code", "Makefile")).read()
    np.testing.assert_array_equal(outputs["static"], _reference(module, x))
    np.testing.assert_array_equal(outputs["static"], outputs["threads"])
    # the threaded program's all-idle count depends on its threads' timing (a CA of the next frame
    # may start before the last of this one stops); the one thread ends every frame all idle
    timed = re.compile(r"every CA idle \(FC phase\) \d+")
    assert logs["static"] and [timed.sub("", ln) for ln in logs["static"]] == \
        [timed.sub("", ln) for ln in logs["threads"]]
    if target == "orlando":
        assert f"every CA idle (FC phase) {len(x)} time(s)" in "\n".join(logs["static"])


def test_instruction_count_from_a_qemu_log(tmp_path):
    """benchmarks/cross.py's count from a `-d in_asm,exec,nochain` log, by hand: block A (3
    instructions, in f) runs twice, block B (2, in g) once; B retranslated with 4 then runs once."""
    import importlib.util
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "benchmarks", "cross.py")
    spec = importlib.util.spec_from_file_location("bench_cross", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    log = tmp_path / "trace.log"
    log.write_text("""----------------
IN: f
0x00001000:  e92d4ff0  push     {r4, lr}
0x00001004:  e1a0000d  mov      r0, sp
0x00001008:  fa000193  blx      #0x2000

Trace 0: 0x7f00 [00000480/00001000/00000000/00000200] f
----------------
IN: g
0x00002000:  b095       sub      sp, #0x54
0x00002002:  4770       bx       lr

Trace 0: 0x7f40 [00000480/00002000/00000000/00000200] g
Trace 0: 0x7f00 [00000480/00001000/00000000/00000200] f
----------------
IN: g
0x00002000:  b095       sub      sp, #0x54
0x00002002:  bf00       nop
0x00002004:  bf00       nop
0x00002006:  4770       bx       lr

Trace 0: 0x7f80 [00000480/00002000/00000000/00000200] g
""")
    assert bench.instructions(str(log)) == {"f": 6, "g": 6}


def test_runtime_option_is_checked(tmp_path):
    from aloha_ir.errors import UsageError
    from backends.registry import get_backend
    with pytest.raises(UsageError, match="runtime='rtos'"):
        get_backend("host")(runtime="rtos")
    code = generate(_quantized("digits_cnn", 8), "host-cpu", str(tmp_path))
    r = subprocess.run(["make", "-s", "-C", code, "TARGET=cortex-m4"], capture_output=True,
                       text=True)
    assert r.returncode != 0 and "--runtime static" in r.stderr, r.stderr
    r = subprocess.run(["make", "-s", "-C", code, "TARGET=sparc"], capture_output=True, text=True)
    assert r.returncode != 0 and "expected host, armhf" in r.stderr, r.stderr


# ---------------------------------------------------------------------------------------------------
# NEURAghe's ARM: Cortex-A9, NEON, hard float, Linux (qemu-arm user mode)


def _armhf(module_factory, x: np.ndarray, tmp_path) -> np.ndarray:
    _need(ARMHF)
    module = module_factory()
    code = generate(module, "neuraghe-losa", str(tmp_path / "armhf"))
    r = subprocess.run(["make", "-s", "-C", code, "TARGET=armhf", f"CFLAGS={STRICT}"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr[-3000:]
    assert "ARM" in subprocess.run(["file", os.path.join(code, "network-armhf")],
                                   capture_output=True, text=True).stdout
    r, y = _make_run(code, "armhf", x)
    assert r.returncode == 0, r.stderr
    want = _x86(module_factory, "neuraghe-losa", tmp_path, x)
    np.testing.assert_array_equal(y, want)  # bit for bit with the x86 build
    np.testing.assert_array_equal(y, _reference(module, x))
    return y


def test_neuraghe_armhf_digits_cnn(tmp_path):
    """The fast check: the digits CNN at 8 bits (CE jobs emulated, ARM threads) on the armhf
    build under qemu-arm equals the x86 build and the reference."""
    _armhf(lambda: _quantized("digits_cnn", 8), digits_inputs(6), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("bits", [8, 16])
def test_neuraghe_armhf_mnist8(tmp_path, bits):
    x, spec = _mnist(50)
    _armhf(lambda: _quantized("mnist-8", bits, spec, 200), x, tmp_path)


@pytest.mark.slow
def test_neuraghe_armhf_lenet5(tmp_path):
    """A zoo CNN (LeNet-5, its 5x5 convolutions on the CE) at NEURAghe's default 16 bits."""
    x, spec = _mnist(8)
    _armhf(lambda: _quantized("lenet5", 16, spec, 100), x / 255.0, tmp_path)


# ---------------------------------------------------------------------------------------------------
# Orlando's host: Cortex-M4F, bare metal, newlib + semihosting (qemu-system-arm, mps2-an386)


def _cortex_m4(module_factory, x: np.ndarray, tmp_path, weights: str = "embedded") -> dict:
    _need(CORTEX_M)
    module = module_factory()
    code = generate(module, "orlando", str(tmp_path / "m4"), runtime="static", weights=weights)
    r = subprocess.run(["make", "-s", "-C", code, "TARGET=cortex-m4", f"CFLAGS={STRICT}"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr[-3000:]
    r, y = _make_run(code, "cortex-m4", x)
    assert r.returncode == 0, r.stderr
    want = _x86(module_factory, "orlando", tmp_path, x)
    np.testing.assert_array_equal(y, want)  # bit for bit with the x86 (threaded) build
    np.testing.assert_array_equal(y, _reference(module, x))
    size = json.load(open(os.path.join(code, "size.json")))
    # the figures against the ELF's own section headers (readelf), independently of `size`
    sections = _sections(os.path.join(code, "network-cortex-m4.elf"))
    assert size["data_bytes"] == sections[".data"]
    assert size["bss_bytes"] == sections[".bss"] + sections[".heap_stack"]
    assert size["flash_bytes"] == size["text_bytes"] + size["data_bytes"]
    assert size["ram_bytes"] == size["data_bytes"] + size["bss_bytes"] <= HOST_MEMORY
    assert size["host_memory_bytes"] == HOST_MEMORY
    manifest = json.load(open(os.path.join(code, "network.json")))
    assert size["parameter_bytes"] == sum(w["elements"] * {"int8_t": 1, "int16_t": 2}.get(
        w["ctype"], 4) for w in manifest["weights"])
    # where the weights live: every weight array's address in flash (embedded) or RAM (file)
    addresses = _weight_addresses(os.path.join(code, "network-cortex-m4.elf"), manifest)
    in_flash = {a < 0x20000000 for a in addresses}
    assert in_flash == {weights == "embedded"}
    assert size["weights"].startswith("flash" if weights == "embedded" else "RAM")
    return size


def _sections(elf: str) -> dict[str, int]:
    out = subprocess.run(["arm-none-eabi-readelf", "-S", "-W", elf], capture_output=True,
                         text=True, check=True).stdout
    sizes = {}
    for m in re.finditer(r"\]\s+(\S+)\s+\S+\s+[0-9a-f]+\s+[0-9a-f]+\s+([0-9a-f]+)", out):
        sizes[m.group(1)] = int(m.group(2), 16)
    return sizes


def _weight_addresses(elf: str, manifest: dict) -> list[int]:
    """The addresses of the weight arrays (network.c's `static const` tensors, named after the
    tensors: names.py's c_identifier) from the ELF's symbol table."""
    out = subprocess.run(["arm-none-eabi-nm", "-S", elf], capture_output=True, text=True,
                         check=True).stdout
    symbols = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4:
            symbols[parts[3]] = int(parts[0], 16)
    text = open(os.path.join(os.path.dirname(elf), "network.c")).read()
    block = text.split("/* ---- weights", 1)[1].split("/* ----", 1)[0]
    names = re.findall(r"^static (?:const )?\w+ (\w+)\[", block, re.M)
    assert len(names) == len(manifest["weights"]) and all(n in symbols for n in names), names
    return [symbols[n] for n in names]


def test_orlando_cortex_m4_digits_cnn(tmp_path):
    """The fast check: the digits CNN at 8 bits, static-order program on the Cortex-M4 under
    qemu-system-arm, equals the x86 build and the reference; the size report's figures."""
    _cortex_m4(lambda: _quantized("digits_cnn", 8), digits_inputs(6), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("bits", [8, 16])
def test_orlando_cortex_m4_mnist8(tmp_path, bits):
    x, spec = _mnist(50)
    size = _cortex_m4(lambda: _quantized("mnist-8", bits, spec, 200), x, tmp_path)
    print(f"mnist-8 {bits} bits on the Cortex-M4: {size}")


@pytest.mark.slow
def test_orlando_cortex_m4_weights_file_lives_in_ram(tmp_path):
    """With --weights file the program reads weights.bin through semihosting into RAM (.bss)."""
    x, spec = _mnist(4)
    _cortex_m4(lambda: _quantized("mnist-8", 8, spec, 200), x, tmp_path, weights="file")
