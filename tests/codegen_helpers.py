"""Test helpers for generated code: map a module on a platform, generate, build with gcc, run."""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np

STRICT = "-std=c99 -O2 -Wall -Wextra -Werror"
# a NEURAghe ARM that is slow in float (0.05 ops per cycle), so a float conv still goes to the CE
# on `float_variant("neuraghe-losa", ..., SLOW_FLOAT_ARM)`
SLOW_FLOAT_ARM = "  pe arm : cpu {\n    ops_per_cycle = f32: 0.05, fixed16: 1.25, fixed8: 2.5\n  }\n"


def have_gcc() -> bool:
    return shutil.which("gcc") is not None and shutil.which("make") is not None


def lower(module, target: str, buffers: str = "schedule"):
    """Run the target pipeline (canonicalize ... analyze-memory) in place, the FIFOs sized by
    `buffers` (TargetFlow's); returns the platform."""
    from archdesc.loader import load_platform
    from flows.target import TargetFlow
    flow = TargetFlow(load_platform(target), buffers=buffers)
    flow.run(module)
    return flow.platform


def generate(module, target: str, out_dir: str, backend: str | None = None,
             buffers: str = "schedule", **options) -> str:
    """Lower `module` for `target` (FIFOs sized by `buffers`) and write its code; returns the code
    directory."""
    from backends.registry import get_backend
    platform = lower(module, target, buffers)
    cls = get_backend(backend or platform.backend)
    code = os.path.join(out_dir, "code")
    cls(**options).generate(module, platform, code)
    return code


def build(code: str, target: str = "network", cflags: str = STRICT) -> subprocess.CompletedProcess:
    r = subprocess.run(["make", "-s", "-C", code, target, f"CFLAGS={cflags}"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "warning" not in r.stderr, r.stderr[-3000:]
    return r


def run(code: str, x: np.ndarray, exe: str = "network", timeout: float = 300,
        env: dict | None = None) -> tuple[subprocess.CompletedProcess, np.ndarray]:
    """Run the program on the frames of x (k x input shape); returns (process, outputs as float32)."""
    inp, out = os.path.join(code, "in.bin"), os.path.join(code, "out.bin")
    np.ascontiguousarray(x, dtype="<f4").tofile(inp)
    if os.path.exists(out):
        os.remove(out)
    r = subprocess.run([os.path.join(code, exe), inp, out], cwd=code, capture_output=True,
                       text=True, timeout=timeout, env={**os.environ, **(env or {})})
    y = np.fromfile(out, dtype="<f4") if r.returncode == 0 else np.zeros(0, np.float32)
    return r, y.reshape(len(x), -1) if y.size else y


def digits_inputs(k: int) -> np.ndarray:
    """The first k images of scikit-learn's digits, scaled to [0, 1], as k x 1 x 8 x 8 float32
    frames (zoo:digits_cnn's input)."""
    from sklearn.datasets import load_digits
    return (load_digits().images[:k].astype(np.float32) / 16.0).reshape(k, 1, 8, 8)


def float_variant(platform: str, directory, extra: str = "") -> str:
    """`platform` itself if it has a float data type, else an .arch extending it with one (the
    float code path of a backend whose bundled platforms compute in fixed point); `extra` lines
    go inside the platform (e.g. a PE's f32 rate). A CPU that `extra` does not redefine runs f32
    at its fixed16 rate: the loader wants a rate for every declared data type."""
    from archdesc.loader import load_platform
    p = load_platform(platform)
    if "f32" in p.datatypes and not extra:
        return platform
    cpus = ""
    for pe in p.pes:
        rates = dict(pe.ops_per_cycle)
        if pe.kind == "cpu" and "f32" not in rates and f"pe {pe.name} " not in extra:
            rates = {"f32": rates.get("fixed16", min(rates.values())), **rates}
            listed = ", ".join(f"{dt}: {r:g}" for dt, r in rates.items())
            cpus += f"  pe {pe.name} : cpu {{\n    ops_per_cycle = {listed}\n  }}\n"
    path = os.path.join(str(directory), f"{p.name}-f32.arch")
    with open(path, "w") as f:
        f.write(f"platform {p.name}-f32 extends {p.name} {{\n  description = \"{p.name} with a "
                "float data type (test)\"\n  datatypes = f32, " +
                ", ".join(d for d in p.datatypes if d != "f32") +
                f"\n  default_datatype = f32\n{cpus}{extra}}}\n")
    return path
