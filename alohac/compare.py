"""`alohac compare`: locate where generated code departs from the reference, actor by actor.

Builds the generated program's debug variant (every actor dumps what it computes), runs it on one
input, and compares each actor's dump with the project's reference of what that actor computes:
its block's output (the bit-exact fixed-point reference, runtime/reference.py, for a quantized
model; the torch executor, runtime/torch/module.py, for a float one), the channel slice of it a
split actor computes, or the partial sums of a split kernel's jobs (a NEURAghe 7x7 runs as four 5x5
jobs whose sums an ARM merge adds up: the CE actor's FIFO carries them, and its dump is what the
FIFO carries: per row, per item, [C][W][job] in accumulator units). Prints the
signal-to-quantisation-noise ratio per actor in the program's order and names the first actor
below the threshold.
"""

from __future__ import annotations

import json
import math
import os
import subprocess

import numpy as np

from aloha_ir.errors import InputFileError, UnsupportedError, UsageError


def sqnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    """10 log10(signal / noise); inf when equal."""
    noise = float(np.sum((ref.astype(np.float64) - got.astype(np.float64)) ** 2))
    signal = float(np.sum(ref.astype(np.float64) ** 2))
    if noise == 0:
        return math.inf
    return 10 * math.log10(signal / noise) if signal > 0 else -math.inf


def rows_to_nchw(flat: np.ndarray, shape: list[int]) -> np.ndarray:
    """A dump is in production order: rows [H][N][C][W] for a rank-4 tensor (a batch folded into
    the row), else the tensor."""
    if len(shape) == 4:
        n, c, h, w = shape
        return flat.reshape(h, n, c, w).transpose(1, 2, 0, 3)
    return flat.reshape(shape)


def block_references(module, x: np.ndarray) -> dict[str, np.ndarray]:
    """Block label -> the reference's output of that block for input x (real values)."""
    from aloha_ir import fixedpoint as fp
    from aloha_ir.dialects import nn
    from aloha_ir.dialects.nn import graph_of, op_label
    graph = graph_of(module)
    fixed = any(fp.format_of(op.results[0]) is not None for op in graph.ops
                if op.results and not isinstance(op, nn.ConstOp))
    out = {}
    if fixed:
        from runtime.reference import reference
        ints = reference(module).integers(x.astype(np.float64))
        for i, op in enumerate(graph.ops):
            if isinstance(op, (nn.ConstOp, nn.OutputOp)):
                continue
            out[nn.block_label(op)] = fp.dequantize(ints[op_label(op, i)],
                                                    fp.format_of(op.results[0]).frac)
        return out
    import torch
    from aloha_ir.weights import weights_of
    from runtime.torch.module import GraphModule
    m = GraphModule(graph, weights_of(module)).double().eval()
    with torch.no_grad():
        values = m.values(torch.from_numpy(x.astype(np.float64)))
    for op in graph.ops:
        if op.results and op.results[0] in values:
            out[nn.block_label(op)] = values[op.results[0]].numpy()
    return out


def partial_sums(module, refs: dict[str, np.ndarray], block: str, taps: list[list[int]],
                 channels: tuple[int, int]) -> np.ndarray:
    """[jobs, N, C, H, W]: per job, conv `block` over only its taps (ky0, kx0, kh, kw) for output
    channels [lo, hi), no bias, no activation, from the reference of the conv's input (real
    values; for a quantized model these are exact, so the sums are the accumulators' values)."""
    import torch
    import torch.nn.functional as F

    from aloha_ir import fixedpoint as fp
    from aloha_ir.consts import const_tensor
    from aloha_ir.dialects import nn
    from aloha_ir.weights import weights_of
    from aloha_ir.dialects.nn import graph_of
    op = next(o for o in graph_of(module).ops if nn.block_label(o) == block)
    wv = op.weight
    if fp.format_of(wv) is not None:
        from runtime.reference import reference
        ref = reference(module)
        w = np.asarray(fp.dequantize(ref.consts[wv], np.reshape(ref.frac(wv), (-1, 1, 1, 1))
                                     if np.ndim(ref.frac(wv)) else ref.frac(wv)))
    else:
        w = const_tensor(wv.owner, weights_of(module)).materialize()
    lo, hi = channels
    w = torch.from_numpy(np.asarray(w, dtype=np.float64)[lo:hi])
    _, strides, (t, left, b, r), dil = op.window()
    x = F.pad(torch.from_numpy(np.asarray(refs[nn.block_label(op.input.owner)], np.float64)),
              (left, r, t, b))
    out = []
    for ky0, kx0, kh, kw in taps:
        mask = torch.zeros_like(w)
        mask[:, :, ky0:ky0 + kh, kx0:kx0 + kw] = 1
        out.append(F.conv2d(x, w * mask, stride=tuple(strides), dilation=tuple(dil),
                            groups=op.prop_int("group", 1)).numpy())
    return np.stack(out)


def actor_reference(module, refs: dict[str, np.ndarray], actor: dict, flat: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray] | str:
    """(reference, dump as that array) of what one actor computes (its manifest `ref`), or why
    they cannot be compared."""
    base = np.asarray(refs[actor["block"]], dtype=np.float64)
    what = actor.get("ref", {})
    lo, hi = what.get("channels", (0, base.shape[1] if base.ndim > 1 else 1))
    if "taps" in what:
        want = partial_sums(module, refs, actor["block"], what["taps"], (lo, hi))
        jobs, n, c, h, w = want.shape
        if flat.size != want.size:
            return f"dumped {flat.size} values, its partial sums have {want.size}"
        got = flat.reshape(h, n, c, w, jobs).transpose(4, 1, 2, 0, 3)
        return want, got * np.reshape(what["scale"], (1, 1, -1, 1, 1))
    want = base[:, lo:hi] if "channels" in what else base
    if flat.size != want.size:
        return f"dumped {flat.size} values, the reference has {want.size}"
    return want, rows_to_nchw(flat, list(want.shape))


def _computes(actor: dict) -> str:
    what = actor.get("ref", {})
    text = "output"
    if "channels" in what:
        text = f"channels {what['channels'][0]}:{what['channels'][1]}"
    if "taps" in what:
        text = f"partial sums of {len(what['taps'])} jobs" + (
            f", {text}" if "channels" in what else "")
    return text


def input_shape(manifest: dict) -> list[int]:
    """The shape of the one input of the program network.json describes (compare feeds one)."""
    ports = [io["port"] for io in manifest["inputs"]]
    if len(ports) != 1:
        raise UnsupportedError(f"alohac compare runs a program of one input; this one takes "
                               f"{len(ports)} ({', '.join(ports)})",
                               hint="compare a model with one input")
    return manifest["inputs"][0]["shape"]


def compare(module, code_dir: str, x: np.ndarray, threshold_db: float = 40.0) -> dict:
    """Build and run the debug program on x (one input), compare every dumping actor."""
    manifest_path = os.path.join(code_dir, "network.json")
    if not os.path.exists(manifest_path):
        raise InputFileError(f"{code_dir} holds no generated program (network.json missing)",
                             hint="alohac compile MODEL --target T -o OUT first")
    with open(manifest_path) as f:
        manifest = json.load(f)
    shape = input_shape(manifest)
    if list(x.shape) != shape:
        raise UsageError(f"input shape {list(x.shape)} is not the program's {shape}")
    build = subprocess.run(["make", "-s", "-C", code_dir, "debug"], capture_output=True, text=True)
    if build.returncode:
        raise InputFileError(f"building the debug program failed:\n{build.stderr[-2000:]}")
    x.astype("<f4").tofile(os.path.join(code_dir, "dump", "input.bin"))
    run = subprocess.run(["./network-debug", "dump/input.bin", "dump/output.bin"], cwd=code_dir,
                         capture_output=True, text=True, timeout=3600)
    if run.returncode:
        raise InputFileError(f"the debug program failed ({run.returncode}): {run.stderr[-2000:]}")
    refs = block_references(module, x)
    layers = []
    first_bad = None
    for a in manifest["actors"]:
        if not a["dump"] or a["block"] not in refs:
            continue
        flat = np.fromfile(os.path.join(code_dir, "dump", f"{a['cname']}.bin"), dtype="<f4")
        row = {"actor": a["name"], "block": a["block"], "computes": _computes(a)}
        pair = actor_reference(module, refs, a, flat)
        if isinstance(pair, str):
            layers.append({**row, "sqnr_db": None, "note": pair})
            continue
        ref, got = pair
        s = sqnr_db(ref, got)
        layers.append({**row, "sqnr_db": s,
                       "max_abs_err": float(np.max(np.abs(ref - got))) if ref.size else 0.0,
                       "exact": bool(np.array_equal(ref.astype(np.float32),
                                                    got.astype(np.float32)))})
        if first_bad is None and s < threshold_db:
            first_bad = a["name"]
    return {"layers": layers, "first_below_threshold": first_bad, "threshold_db": threshold_db,
            "fixed": manifest["fixed"]}


def cmd_compare(args) -> int:
    from alohac.run import input_shapes, run_target
    from aloha_ir.outputs import Staged, check_folder
    from frontends.loader import load_model
    check_folder(args.output)
    module = load_model(args.model, input_shapes(args.input_shape))
    run_target(args, module)
    from archdesc.loader import load_platform
    from backends.registry import get_backend
    platform = load_platform(args.target)
    backend = get_backend(args.backend or platform.backend)()
    # the program is built and run in there; one that fails to build or run stays to be read
    with Staged(args.output, "compare", commit_on=(InputFileError,)) as out:
        code_dir = out.path("code")
        backend.generate(module, platform, code_dir)
        with open(os.path.join(code_dir, "network.json")) as f:
            shape = input_shape(json.load(f))
        if args.input:
            x = np.fromfile(args.input, dtype="<f4")
            if x.size < math.prod(shape):
                raise InputFileError(f"{args.input} holds {x.size} floats, one input needs "
                                     f"{math.prod(shape)}")
            x = x[:math.prod(shape)].reshape(shape)
        else:
            lo, hi = args.range
            x = np.random.default_rng(args.seed).uniform(lo, hi, size=shape).astype(np.float32)
        result = compare(module, code_dir, x, args.threshold)
    rows = result["layers"]
    aw = max([len(r["actor"]) for r in rows] + [5])
    bw = max([len(r["block"]) for r in rows] + [5])
    cw = max([len(r["computes"]) for r in rows] + [8])
    print(f"{'actor':<{aw}}  {'block':<{bw}}  {'computes':<{cw}}  {'SQNR dB':>9}  "
          f"{'max |err|':>10}")
    for r in rows:
        s = r["sqnr_db"]
        text = "n/a" if s is None else ("exact" if r.get("exact") and s == math.inf else
                                        f"{s:9.1f}")
        print(f"{r['actor']:<{aw}}  {r['block']:<{bw}}  {r['computes']:<{cw}}  {text:>9}  "
              f"{r.get('max_abs_err', float('nan')):10.3g}" + (f"  {r['note']}" if "note" in r
                                                                else ""))
    bad = result["first_below_threshold"]
    block = next((r["block"] for r in rows if r["actor"] == bad), None)
    print(f"first actor below {args.threshold:g} dB: {bad} (block {block})" if bad else
          f"every actor at or above {args.threshold:g} dB")
    if args.json:
        print(json.dumps({**result, "layers": [{**r, "sqnr_db": (None if r["sqnr_db"] is None
                                                                  or math.isinf(r["sqnr_db"])
                                                                  else r["sqnr_db"])}
                                               for r in result["layers"]]}))
    return 0
