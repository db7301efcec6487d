"""`alohac secure MODEL --deployed BITS|FILE`: the float model and its fixed-point deployment
attacked side by side (security/deployed.py), with the float model's examples transferred.

BITS quantizes MODEL here as `alohac quantize MODEL --data DATA --bits BITS` does (PTQ, calibrated
on DATA) and writes the result as OUT/deployed.mlir, the file `alohac compile --target T` turns
into the program whose decisions the deployed curve reports; FILE takes a model quantized
elsewhere (another method, another calibration) as it is.
"""

from __future__ import annotations

import json
import os

from aloha_ir.errors import UsageError


def deployed_module(spec: str, module, data: str, seed: int):
    """(the deployed module, whether it was quantized here) from `--deployed BITS|FILE`."""
    from security.deployed import load_deployed, quantize_ptq
    if spec.isdigit():
        return quantize_ptq(module, int(spec), data, seed), True
    if not os.path.exists(spec):
        raise UsageError(f"'{spec}' is neither a number of bits nor a file", where="--deployed",
                         hint="e.g. --deployed 8, or --deployed out/q8/model.mlir")
    return load_deployed(spec, module), False


def cmd_deployed(args, config) -> int:
    from aloha_ir.console import Progress
    from aloha_ir.outputs import Staged, write_text
    from aloha_ir.textio import save_module
    from alohac.secure import precision_of, prepare, report_markdown, title_of
    from security.deployed import evaluate_deployed, plot_deployed
    from security.evaluate import parse_range
    from security.flags import markdown
    module, name, x01, y, rng = prepare(args.model, args.data, parse_range(args.input_scale),
                                        args.seed)
    deployed, here = deployed_module(args.deployed, module, args.data, args.seed)
    precision = precision_of(deployed)
    cfg = config.resolved()
    with Progress(f"secure ({cfg.attack} L{cfg.norm}, float and deployed)") as bar:
        report, _, dadv = evaluate_deployed(
            module, deployed, x01, y, config, input_range=rng, name=name, precision=precision,
            progress=lambda done, total: bar.step(f"chunk {done} of {total}", completed=done,
                                                  total=total))
    with Staged(args.output, "secure") as out:
        written = []
        if here:
            written += save_module(deployed, out.path("deployed.mlir"))
        result = report.to_json()
        result["data"] = args.data
        written.insert(0, write_text(out.path("deployed.json"), json.dumps(result, indent=1)))
        fr = report.float_report
        written.append(write_text(out.path("security.json"),
                                  json.dumps({**fr.to_json(), "data": args.data}, indent=1)))
        dr = report.deployed_report
        md = report_markdown(fr.to_json(), title_of(args, module, fr)) + "\n" + "\n".join([
            f"# The deployed model ({precision})", "",
            f"Clean accuracy {dr.clean_accuracy:.4f}, curve average {dr.curve_average:.4f}: "
            f"{dr.level} security; the float model's adversarial examples leave it "
            f"{report.transfer_average:.4f} on average.", "",
            "| eps | " + " | ".join(f"{e:g}" for e in dr.eps) + " |",
            "| --- |" + " --- |" * len(dr.eps),
            "| float | " + " | ".join(f"{a:.3f}" for a in fr.accuracy) + " |",
            "| deployed | " + " | ".join(f"{a:.3f}" for a in dr.accuracy) + " |",
            "| float's examples on deployed | " +
            " | ".join(f"{a:.3f}" for a in report.transfer_accuracy) + " |", "",
            markdown(dr.flags).replace("## Reliability flags", "## Reliability flags "
                                       "(deployed)")])
        written.append(write_text(out.path("security.md"), md))
        written.append(plot_deployed(report, out.path("deployed.png"),
                                     f"{args.model} on {args.data}: float vs {precision}\n"
                                     f"{fr.attack.upper()} L{fr.norm}, {fr.samples} samples, "
                                     f"{fr.mode} mode"))
        if args.save_adversarial:
            from alohac.secure import save_adversarial
            meta = {"source_model": args.deployed, "data": args.data, "attack": dr.attack,
                    "norm": dr.norm, "eps": dr.eps, "seed": args.seed, "steps": dr.steps,
                    "samples": dr.samples, "mode": dr.mode, "input_range": list(rng),
                    "deployed": precision}
            written.append(save_adversarial(out.path("adversarial-deployed.npz"),
                                            x01[:dr.samples], y[:dr.samples], dr.eps, dadv,
                                            meta))
    _print(args, result, [out.final(w) for w in written])
    return 0


def _print(args, result: dict, written: list[str]) -> None:
    from alohac.secure import print_outputs
    warnings = [f"{who}: {w}" for who in ("float", "deployed") for w in result[who]["warnings"]]
    if print_outputs(args, warnings, written, result):
        return
    f, d, t = result["float"], result["deployed"], result["transfer"]
    print(f"{f['attack'].upper()} L{f['norm']} over eps {f['eps'][0]:g}...{f['eps'][-1]:g} "
          f"({len(f['eps'])} points, {f['samples']} samples):")
    print("  eps      " + " ".join(f"{e:>6.3g}" for e in f["eps"]))
    print("  float    " + " ".join(f"{a:>6.3f}" for a in f["accuracy"]) +
          f"   avg {f['curve_average']:.4f} ({f['level']})")
    print("  deployed " + " ".join(f"{a:>6.3f}" for a in d["accuracy"]) +
          f"   avg {d['curve_average']:.4f} ({d['level']}, {result['precision']})")
    print("  transfer " + " ".join(f"{a:>6.3f}" for a in t["accuracy"]) +
          f"   avg {t['curve_average']:.4f} (the float's examples on the deployed model)")
