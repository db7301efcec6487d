"""`alohac compare`: locate where generated code departs from the reference, layer by layer.

Builds the generated program's debug variant (every actor dumps what it produces), runs it on one
input, and compares each block's output with the project's reference for that block: the bit-exact
fixed-point reference (backends/reference.py) for a quantized model, the torch executor
(backends/torch/module.py) for a float one. Prints the signal-to-quantisation-noise ratio per layer
in the program's order and names the first layer below the threshold.
"""

from __future__ import annotations

import json
import math
import os
import subprocess

import numpy as np

from aloha_ir.errors import InputFileError, UsageError


def sqnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    """10 log10(signal / noise); inf when equal."""
    noise = float(np.sum((ref.astype(np.float64) - got.astype(np.float64)) ** 2))
    signal = float(np.sum(ref.astype(np.float64) ** 2))
    if noise == 0:
        return math.inf
    return 10 * math.log10(signal / noise) if signal > 0 else -math.inf


def rows_to_nchw(flat: np.ndarray, shape: list[int]) -> np.ndarray:
    """A dump is in production order: rows [H][C][W] for a rank-4 tensor, else the tensor."""
    if len(shape) == 4:
        n, c, h, w = shape
        return flat.reshape(h, c, w).transpose(1, 0, 2).reshape(shape)
    return flat.reshape(shape)


def block_references(module, x: np.ndarray) -> dict[str, np.ndarray]:
    """Block label -> the reference's output of that block for input x (real values)."""
    from aloha_ir import fixedpoint as fp
    from aloha_ir.dialects import nn
    from backends.reference import graph_of, op_label
    graph = graph_of(module)
    fixed = any(fp.format_of(op.results[0]) is not None for op in graph.ops
                if op.results and not isinstance(op, nn.ConstOp))
    out = {}
    if fixed:
        from backends.reference import reference
        ints = reference(module).integers(x.astype(np.float64))
        for i, op in enumerate(graph.ops):
            if isinstance(op, (nn.ConstOp, nn.OutputOp)):
                continue
            out[nn.block_label(op)] = fp.dequantize(ints[op_label(op, i)],
                                                    fp.format_of(op.results[0]).frac)
        return out
    import torch
    from aloha_ir.weights import weights_of
    from backends.torch.module import GraphModule
    m = GraphModule(graph, weights_of(module)).double().eval()
    with torch.no_grad():
        values = m.values(torch.from_numpy(x.astype(np.float64)))
    for op in graph.ops:
        if op.results and op.results[0] in values:
            out[nn.block_label(op)] = values[op.results[0]].numpy()
    return out


def compare(module, code_dir: str, x: np.ndarray, threshold_db: float = 40.0) -> dict:
    """Build and run the debug program on x (one input), compare every dumped block."""
    manifest_path = os.path.join(code_dir, "network.json")
    if not os.path.exists(manifest_path):
        raise InputFileError(f"{code_dir} holds no generated program (network.json missing)",
                             hint="alohac compile MODEL --target T -o OUT first")
    with open(manifest_path) as f:
        manifest = json.load(f)
    if list(x.shape) != manifest["input_shape"]:
        raise UsageError(f"input shape {list(x.shape)} is not the program's "
                         f"{manifest['input_shape']}")
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
        got = np.fromfile(os.path.join(code_dir, "dump", f"{a['cname']}.bin"), dtype="<f4")
        ref = np.asarray(refs[a["block"]], dtype=np.float64)
        if got.size != ref.size:
            layers.append({"actor": a["name"], "block": a["block"], "sqnr_db": None,
                           "note": f"dumped {got.size} values, the block has {ref.size}"})
            continue
        got = rows_to_nchw(got, list(ref.shape))
        s = sqnr_db(ref, got)
        row = {"actor": a["name"], "block": a["block"], "sqnr_db": s,
               "max_abs_err": float(np.max(np.abs(ref - got))) if ref.size else 0.0,
               "exact": bool(np.array_equal(ref.astype(np.float32), got))}
        layers.append(row)
        if first_bad is None and s < threshold_db:
            first_bad = a["block"]
    return {"layers": layers, "first_below_threshold": first_bad, "threshold_db": threshold_db,
            "fixed": manifest["fixed"]}


def cmd_compare(args) -> int:
    from alohac.main import _run, _target_pipeline
    from aloha_ir.outputs import Staged, check_folder
    from frontends.loader import load_model
    check_folder(args.output)
    module = load_model(args.model, {})
    _run(args, module, _target_pipeline(args))
    from archdesc.loader import load_platform
    from backends.api import get_backend
    platform = load_platform(args.target)
    backend = get_backend(args.backend or platform.backend)()
    # the program is built and run in there; one that fails to build or run stays to be read
    with Staged(args.output, "compare", commit_on=(InputFileError,)) as out:
        code_dir = out.path("code")
        backend.generate(module, platform, code_dir)
        with open(os.path.join(code_dir, "network.json")) as f:
            shape = json.load(f)["input_shape"]
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
    width = max([len(r["block"]) for r in result["layers"]] + [5])
    print(f"{'layer':<{width}}  {'SQNR dB':>9}  {'max |err|':>10}")
    for r in result["layers"]:
        s = r["sqnr_db"]
        text = "n/a" if s is None else ("exact" if r.get("exact") and s == math.inf else
                                        f"{s:9.1f}")
        print(f"{r['block']:<{width}}  {text:>9}  {r.get('max_abs_err', float('nan')):10.3g}"
              + (f"  {r['note']}" if "note" in r else ""))
    bad = result["first_below_threshold"]
    print(f"first layer below {args.threshold:g} dB: {bad}" if bad else
          f"every layer at or above {args.threshold:g} dB")
    if args.json:
        print(json.dumps({**result, "layers": [{**r, "sqnr_db": (None if r["sqnr_db"] is None
                                                                  or math.isinf(r["sqnr_db"])
                                                                  else r["sqnr_db"])}
                                               for r in result["layers"]]}))
    return 0
