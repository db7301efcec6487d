"""The generated programs on the platforms' ARM CPUs, under QEMU: NEURAghe's program cross-compiled
for its Cortex-A9 (armhf Linux, qemu-arm) and Orlando's static-order program for a Cortex-M4
(bare metal, qemu-system-arm on mps2-an386), on mnist-8 in fixed point (the digits CNN without
ALOHA_DATA).

Per target it prints:
- the QEMU run time per frame. NOT a timing claim: QEMU translates ARM code to x86 code, so this is
  how long the emulation takes on this machine, not how long the chip would;
- the instructions one frame executes, counted by QEMU itself: Debian's QEMU ships no TCG plugins
  (no libinsn.so), so the count comes from QEMU's own log (`-d in_asm,exec,nochain`: every
  translated block with its instructions, and every execution of a block, chaining off so that
  none is skipped); one frame = a run of 2 frames minus a run of 1 (start-up, the C library and
  the weights' loading cancel out);
- next to it the cpu cost model's operation count for the same actors (network.json's `work`:
  MACs for conv and dense, element operations otherwise) and the instructions the conv and dense
  kernels execute per MAC (the kernels' own code: the conv and dense entry points and the
  micro-kernel, tile, staging and row functions they expand to; the helpers they call,
  requantisation and stores, are listed apart).

    python benchmarks/cross.py [--frames 20] [--bits 16] [--top 6]

It needs the cross toolchains and QEMU (`make toolchains`); a target whose tools are missing is
reported and skipped.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]
sys.path.insert(0, os.path.join(HERE, ".."))

# the conv and dense kernels' own code: their entry points and the static helpers they expand to
# (aloha_kernels.c's mk_/tile_/tile_st_/stage_/rows_ functions, named after the kernel's type pair)
KERNEL_SYMBOL = re.compile(r"conv|dense|^(mkt?|tile|tile_st|stage|rows)_")

TARGETS = [  # platform, make TARGET, generation options, the tools it needs
    ("neuraghe-losa", "armhf", {}, ("arm-linux-gnueabihf-gcc", "qemu-arm")),
    ("orlando", "cortex-m4", {"runtime": "static", "weights": "embedded"},
     ("arm-none-eabi-gcc", "qemu-system-arm")),
]


def model_and_inputs(bits: int, frames: int):
    """(a factory of the quantized model, its name, `frames` inputs)."""
    from aloha_ir.context import make_context
    from aloha_ir.passmanager import PassManager
    from frontends.datasets import load
    from frontends.loader import load_model
    data = os.environ.get("ALOHA_DATA")
    if data:
        zoo, spec, samples = "mnist-8", f"mnist:{os.path.join(data, 'mnist')}", 200
        x = load(spec).test.to_range(0.0, 255.0).x[:frames]
    else:
        zoo, spec, samples = "digits_cnn", "digits", 64
        x = load(spec).test.x[:frames]

    def factory():
        module = load_model(f"zoo:{zoo}", {})
        PassManager.parse(f"canonicalize,quantize{{bits={bits} data=\"{spec}\" "
                          f"samples={samples}}}").run(module, make_context())
        return module
    return factory, zoo, np.ascontiguousarray(x, dtype="<f4")


def run_command(code: str, machine: str, inp: str, out: str) -> list[str]:
    """The generated Makefile's own `run` command for `machine` (make -n prints it)."""
    r = subprocess.run(["make", "-s", "-n", "-C", code, f"TARGET={machine}", "run", f"IN={inp}",
                        f"OUT={out}"], capture_output=True, text=True, check=True)
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("qemu-")][-1]
    return shlex.split(line)


def traced(cmd: list[str], log: str) -> list[str]:
    """`cmd` with QEMU logging every translated block and every block executed."""
    return cmd[:1] + ["-d", "in_asm,exec,nochain", "-D", log] + cmd[1:]


def instructions(log: str) -> collections.Counter:
    """Instructions executed per symbol, from a `-d in_asm,exec,nochain` log: a block's size is
    the instruction lines of its latest translation, each `Trace` line one execution of it."""
    size: dict[str, int] = {}
    count: collections.Counter = collections.Counter()
    block_pc, n = None, 0
    trace = re.compile(r"^Trace \d+: \S+ \[[0-9a-f]+/([0-9a-f]+)/[0-9a-f]+/[0-9a-f]+\] ?(\S*)")
    insn = re.compile(r"^0x([0-9a-f]+):\s")
    with open(log, errors="replace") as f:
        for line in f:
            m = insn.match(line)
            if m:
                if block_pc is None:
                    block_pc = int(m.group(1), 16)
                n += 1
                continue
            if block_pc is not None and not line.strip():
                size[block_pc], block_pc, n = n, None, 0
                continue
            m = trace.match(line)
            if m:
                count[m.group(2) or "(no symbol: shared C library)"] += \
                    size.get(int(m.group(1), 16), 0)
    return count


def per_frame(code: str, cmd_for, work: str) -> collections.Counter:
    """One frame's instructions per symbol: a run of 2 frames minus a run of 1."""
    counts = []
    for k in (1, 2):
        log = os.path.join(work, f"trace{k}.log")
        subprocess.run(traced(cmd_for(k), log), cwd=code, capture_output=True, check=True,
                       timeout=1800)
        counts.append(instructions(log))
        os.remove(log)
    return counts[1] - counts[0]


def measure(platform: str, machine: str, options: dict, factory, x: np.ndarray, work: str,
            top: int) -> dict:
    from backends.registry import get_backend
    from flows.target import TargetFlow
    from archdesc.loader import load_platform
    module = factory()
    flow = TargetFlow(load_platform(platform))
    flow.run(module)
    code = os.path.join(work, machine, "code")
    get_backend(flow.platform.backend)(**options).generate(module, flow.platform, code)
    subprocess.run(["make", "-s", "-C", code, f"TARGET={machine}"], capture_output=True,
                   check=True)
    for k in (1, 2, len(x)):
        x[:k].tofile(os.path.join(code, f"in{k}.bin"))

    def cmd_for(k):
        return run_command(code, machine, f"in{k}.bin", f"out{k}.bin")
    t = time.perf_counter()
    subprocess.run(cmd_for(len(x)), cwd=code, capture_output=True, check=True, timeout=1800)
    qemu_s = (time.perf_counter() - t) / len(x)
    by_symbol = per_frame(code, cmd_for, work)
    manifest = json.load(open(os.path.join(code, "network.json")))
    macs = sum(a["work"] for a in manifest["actors"] if a["kernel"] in ("conv", "dense"))
    kernel_insns = sum(v for s, v in by_symbol.items() if KERNEL_SYMBOL.search(s))
    size = json.load(open(os.path.join(code, "size.json"))) if machine == "cortex-m4" else None
    return {"platform": platform, "target": machine, "qemu_s_per_frame": qemu_s,
            "instructions_per_frame": sum(by_symbol.values()),
            "cost_model_ops_per_frame": sum(a["work"] for a in manifest["actors"]),
            "conv_dense_macs": macs, "conv_dense_instructions": kernel_insns,
            "instructions_per_mac": kernel_insns / macs if macs else None,
            "top": by_symbol.most_common(top), "size": size}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=20, help="frames of the timed run")
    ap.add_argument("--bits", type=int, default=16, choices=(8, 16))
    ap.add_argument("--top", type=int, default=6, help="symbols listed per target")
    args = ap.parse_args()
    factory, zoo, x = model_and_inputs(args.bits, args.frames)
    print(f"{zoo} at {args.bits} bits; QEMU run times are NOT timing claims (QEMU is not the "
          "chip); instruction counts are QEMU's own (-d in_asm,exec,nochain), one frame")
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for platform, machine, options, tools in TARGETS:
            missing = [t for t in tools if shutil.which(t) is None]
            if missing:
                print(f"{platform} on {machine}: skipped, {', '.join(missing)} not installed "
                      "(`make toolchains`)")
                continue
            r = measure(platform, machine, options, factory, x.copy(), work, args.top)
            rows.append(r)
            print(f"\n{platform} on {machine} (QEMU): {r['qemu_s_per_frame'] * 1e3:.2f} ms per "
                  f"frame of emulation; {r['instructions_per_frame']:,} instructions per frame; "
                  "the cost model's operations for the same actors "
                  f"{r['cost_model_ops_per_frame']:,}"
                  f" ({r['conv_dense_macs']:,} conv/dense MACs, run in "
                  f"{r['conv_dense_instructions']:,} kernel instructions: "
                  f"{r['instructions_per_mac']:.2f} per MAC)")
            for name, n in r["top"]:
                print(f"    {n:>12,}  {name}")
            if r["size"]:
                s = r["size"]
                print(f"    size: text {s['text_bytes']:,} B, data {s['data_bytes']:,} B, bss "
                      f"{s['bss_bytes']:,} B: flash {s['flash_bytes']:,} B, RAM "
                      f"{s['ram_bytes']:,} B of the host's {s['host_memory_bytes']:,} B; "
                      f"weights ({s['parameter_bytes']:,} B) in {s['weights']}")
    print(json.dumps({"model": zoo, "bits": args.bits, "targets": [
        {k: v for k, v in r.items() if k != "top"} for r in rows]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
