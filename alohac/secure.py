"""`alohac secure`: the security evaluation curve of a model (attack and noise), its level, plots,
adversarial example images, adversarial datasets, and transfer evaluation on a saved dataset; with
`--deployed`, the float model and its fixed-point deployment side by side (security/deployed.py)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from aloha_ir.errors import InputFileError, UsageError

ADV_FORMAT = "aloha-adversarial-dataset/1"


def prepare(model_spec: str, data: str, input_scale, seed: int = 0):
    """(module, name, attack-space test inputs in [0, 1], labels, the model's input range)."""
    from aloha_ir.dialects.nn import graph_of
    from frontends.datasets import load
    from frontends.loader import load_model
    from passes.execution import data_for_model
    from security.evaluate import attack_data
    module = load_model(model_spec)
    graph = graph_of(module)
    splits = data_for_model(load(data, seed=seed), graph)  # fits the model's input and outputs
    x01, y, rng = attack_data(graph, splits.test, input_scale)
    name = os.path.splitext(os.path.basename(model_spec.removeprefix("zoo:")))[0]
    return module, name, x01, y, rng


def save_adversarial(path: str, x01, y, eps, adv, meta: dict) -> str:
    """An adversarial dataset: clean inputs, labels, and per epsilon the adversarial inputs (all
    in [0, 1]), with its metadata (source model, data, attack, norm, epsilon, seed, ...)."""
    from aloha_ir.outputs import write_bytes
    import io
    buf = io.BytesIO()
    np.savez_compressed(buf, x=x01.astype(np.float32), y=y.astype(np.int64),
                        eps=np.asarray(eps, np.float64), x_adv=adv.astype(np.float32),
                        meta=np.array(json.dumps({"format": ADV_FORMAT, **meta})))
    return write_bytes(path, buf.getvalue())


def load_adversarial(path: str) -> dict:
    if not os.path.exists(path):
        raise InputFileError("no such file", where=path)
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in ("x", "y", "eps", "x_adv", "meta")}
        meta = json.loads(str(data["meta"]))
    except (KeyError, ValueError, OSError) as e:
        raise InputFileError(f"not an adversarial dataset ({e})", where=path,
                             hint="make one with alohac secure --save-adversarial") from None
    if meta.get("format") != ADV_FORMAT:
        raise InputFileError(f"unknown format {meta.get('format')!r}", where=path)
    x, adv = data["x"], data["x_adv"]
    if adv.shape[1:] != x.shape or len(data["eps"]) != len(adv) or len(data["y"]) != len(x):
        raise InputFileError("inconsistent arrays", where=path)
    if x.size and (x.min() < 0 or x.max() > 1 or adv.min() < 0 or adv.max() > 1):
        raise InputFileError("inputs outside [0, 1]", where=path)
    return {"x": x, "y": data["y"], "eps": [float(e) for e in data["eps"]], "x_adv": adv,
            "meta": meta}


def transfer(module, saved: dict, input_range, name: str) -> dict:
    """Accuracy of `module` on a saved adversarial dataset, per epsilon."""
    import torch

    from security.evaluate import curve_average, level_of, torch_model
    model = torch_model(module, *input_range)

    def acc(x):
        with torch.no_grad():
            pred = model(torch.from_numpy(np.ascontiguousarray(x))).reshape(len(x), -1).argmax(1)
        return float((pred.numpy() == saved["y"]).mean())
    clean = acc(saved["x"])
    accuracy = [acc(a) for a in saved["x_adv"]]
    avg = curve_average(saved["eps"], accuracy)
    level, kept = level_of(avg, clean)
    m = saved["meta"]
    return {"model": name, "source_model": m.get("source_model"), "attack": m.get("attack"),
            "norm": m.get("norm"), "eps": saved["eps"], "accuracy": accuracy,
            "clean_accuracy": clean, "curve_average": avg, "level": level, "kept": kept,
            "samples": int(len(saved["y"])), "transfer": True}


def precision_of(module) -> str:
    """The model's arithmetic for titles: "float", or the fixed-point widths of its weights
    (constants of rank 2 and more: biases are 32-bit whatever the precision) and activations,
    e.g. "fixed point W8/A8"."""
    from aloha_ir.dialects.nn import ConstOp
    from aloha_ir.fixedpoint import format_of
    weights, acts = set(), set()
    for op in module.walk():
        for r in op.results:
            f = format_of(r)
            if f is None:
                continue
            if not isinstance(op, ConstOp):
                acts.add(f.bits)
            elif len(r.type.get_shape()) >= 2:
                weights.add(f.bits)
    if not weights and not acts:
        return "float"
    return ("fixed point W" + ("/".join(map(str, sorted(weights))) or "-") + "/A" +
            ("/".join(map(str, sorted(acts))) or "-"))


def title_of(args, module, report) -> str:
    """What a plot shows: the model as given, its precision, the data and the attack settings,
    so the plots of a float and a quantized model (or of two modes) cannot be confused."""
    return (f"{args.model} ({precision_of(module)}) on {args.data}\n"
            f"{report.attack.upper()}{f'-{report.steps}' if report.attack == 'pgd' else ''} "
            f"L{report.norm}, {report.samples} samples, {report.mode} mode")


def examples_figure(module, x01, y, eps, adv, input_range, path: str, k: int = 3,
                    columns: int = 4, title: str = "") -> str | None:
    """The seeds' Figure 5/6: per sample (the first k the model classifies correctly), the input,
    then for increasing epsilon the perturbation (magnified to the full grey range) over the
    adversarial input, each titled with the model's prediction and its probability."""
    import matplotlib
    import torch
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from security.evaluate import torch_model
    if x01.ndim != 4 or x01.shape[1] not in (1, 3):
        return None
    model = torch_model(module, *input_range)
    picks = [j for j in range(len(eps)) if eps[j] > 0]
    picks = sorted({picks[round(i * (len(picks) - 1) / max(1, columns - 1))]
                    for i in range(min(columns, len(picks)))})

    def show(ax, img, title):
        img = np.transpose(img, (1, 2, 0))
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=7)
        ax.axis("off")

    def predict(x):
        with torch.no_grad():
            p = torch.softmax(model(torch.from_numpy(x[None])).reshape(-1).double(), 0)
        c = int(p.argmax())
        return c, float(p[c])
    # samples the model gets right when clean: what the attack changes is then visible
    with torch.no_grad():
        right = model(torch.from_numpy(x01)).reshape(len(x01), -1).argmax(1).numpy() == y
    rows = np.flatnonzero(right)[:k].tolist()
    if not rows or not picks:
        return None
    fig, axes = plt.subplots(2 * len(rows), 1 + len(picks),
                             figsize=(1.6 * (1 + len(picks)), 3.0 * len(rows)), squeeze=False)
    for r, i in enumerate(rows):
        c, pr = predict(x01[i])
        show(axes[2 * r, 0], x01[i], f"label {y[i]}\npred {c} ({pr:.2f})")
        axes[2 * r + 1, 0].axis("off")
        for col, j in enumerate(picks, 1):
            d = adv[j, i] - x01[i]
            m = float(np.abs(d).max())
            show(axes[2 * r, col], 0.5 + 0.5 * d / (m or 1.0),
                 f"eps {eps[j]:g}\nperturbation x{0.5 / m:.1f}" if m else f"eps {eps[j]:g}\nnone")
            c, pr = predict(adv[j, i])
            show(axes[2 * r + 1, col], adv[j, i], f"pred {c} ({pr:.2f})" +
                 (" wrong" if c != y[i] else ""))
    shown = ", ".join(f"{eps[j]:g}" for j in picks)
    fig.suptitle(f"{title}; adversarial examples at epsilon {shown} (of {eps[0]:g}.."
                 f"{eps[-1]:g})"
                 if title else f"adversarial examples at epsilon {shown}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def cmd_secure(args) -> int:
    from security.evaluate import (SecurityConfig, evaluate, parse_eps, parse_range,
                                 plot_curves)
    from aloha_ir.outputs import Staged, check_folder, write_text
    from alohac.run import in_flags
    input_scale = parse_range(args.input_scale)
    check_folder(args.output)
    if args.transfer and args.deployed:
        raise UsageError("--transfer evaluates a saved dataset; --deployed attacks the float "
                         "and the deployed model", hint="give one of them")
    if args.reject and args.deployed:
        raise UsageError("--reject evaluates the float model's reject option; --deployed has no "
                         "reject option", hint="run --reject without --deployed")
    if args.transfer:
        saved = load_adversarial(args.transfer)
        from aloha_ir.dialects.nn import graph_of
        from frontends.loader import load_model
        from security.evaluate import model_range
        module = load_model(args.model)
        rng = model_range(graph_of(module), input_scale, (0.0, 1.0))
        name = os.path.splitext(os.path.basename(args.model.removeprefix("zoo:")))[0]
        result = transfer(module, saved, rng, name)
        with Staged(args.output, "secure") as out:
            path = write_text(out.path("transfer.json"), json.dumps(result, indent=1))
        _print(args, result, [out.final(path)])
        return 0
    with in_flags({"eps": "--eps", "samples": "--samples", "steps": "--steps",
                   "workers": "--workers"}):
        config = SecurityConfig(attack=args.attack, norm=args.norm,
                                eps=tuple(parse_eps(args.eps)) if args.eps else None,
                                samples=args.samples, mode=args.mode, steps=args.steps,
                                step_size=args.step_size, random_start=args.random_start,
                                noise=not args.no_noise, sanity=not args.no_sanity,
                                workers=args.workers, seed=args.seed,
                                check_steps=args.check_steps, sampling=args.sampling)
    if args.deployed:
        return cmd_deployed(args, config)
    module, name, x01, y, rng = prepare(args.model, args.data, input_scale, args.seed)
    keep = bool(args.save_adversarial or args.examples)
    t0 = time.perf_counter()
    from aloha_ir.console import Progress
    from security.evaluate import CHUNK
    cfg = config.resolved()
    with Progress(f"secure ({cfg.attack} L{cfg.norm})") as bar:
        report, adv = evaluate(module, x01, y, config, input_range=rng, name=name,
                               progress=lambda done, total: bar.step(
                                   f"samples {min(len(x01), cfg.samples, done * CHUNK)} of "
                                   f"{min(len(x01), cfg.samples)} attacked at "
                                   f"{len(cfg.eps)} epsilons", completed=done, total=total),
                               keep_adversarial=keep)
    n = report.samples
    picked = np.asarray(report.sample_indices)
    with Staged(args.output, "secure") as out:
        written = []
        if args.save_adversarial:
            meta = {"source_model": args.model, "data": args.data, "attack": report.attack,
                    "norm": report.norm, "eps": report.eps, "seed": args.seed,
                    "steps": report.steps, "samples": n, "mode": report.mode,
                    "warm_start": report.warm_start, "input_range": list(rng)}
            written.append(save_adversarial(out.path("adversarial.npz"), x01[picked], y[picked],
                                            report.eps, adv, meta))
        if args.examples and adv is not None:
            p = examples_figure(module, x01[picked], y[picked], report.eps, adv, rng,
                                out.path("examples.png"), k=args.examples,
                                title=title_of(args, module, report))
            if p:
                written.append(p)
            else:
                report.warnings.append("no example images: the inputs are not images "
                                       "(N, 1|3, H, W)")
        written.append(plot_curves([report], out.path("security.png"),
                                   title_of(args, module, report)))
        result = report.to_json()
        result["seconds"] = time.perf_counter() - t0
        result["data"] = args.data
        result["steps_per_eps"] = cfg.steps
        from alohac.secure_defences import run as defences
        written += defences(args, module, report, x01[picked], y[picked], config, rng,
                             out, result)
        written.insert(0, write_text(out.path("security.json"), json.dumps(result, indent=1)))
        written.insert(1, write_text(out.path("security.md"),
                                     report_markdown(result, title_of(args, module, report))))
    _print(args, result, [out.final(w) for w in written])
    return 0


def report_markdown(result: dict, title: str) -> str:
    """security.md: what was evaluated, the curve, and the reliability flags."""
    from security.flags import markdown
    head = title.replace("\n", "; ")
    rows = ["| eps | " + " | ".join(f"{e:g}" for e in result["eps"]) + " |",
            "| --- |" + " --- |" * len(result["eps"]),
            "| accuracy | " + " | ".join(f"{a:.3f}" for a in result["accuracy"]) + " |"]
    return "\n".join([f"# Security evaluation: {head}", "",
                      f"Clean accuracy {result['clean_accuracy']:.4f}, curve average "
                      f"{result['curve_average']:.4f}: {result['level']} security.", "",
                      *rows, "", markdown(result.get("flags", []))])


def print_outputs(args, warnings: list[str], written: list[str], result: dict) -> bool:
    """The warnings (stderr), the files written, and with --json the result as the last line;
    returns whether the result went out as JSON."""
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    for w in written:
        print(f"wrote {w}", file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(result))
    return args.json


def _print(args, result: dict, written: list[str]) -> None:
    if print_outputs(args, result.get("warnings", []), written, result):
        return
    what = "transfer" if result.get("transfer") else result["attack"].upper()
    print(f"{what} L{result['norm']}: clean accuracy {result['clean_accuracy']:.4f}, curve "
          f"average {result['curve_average']:.4f} over eps {result['eps'][0]:g}..."
          f"{result['eps'][-1]:g} ({len(result['eps'])} points, {result['samples']} samples): "
          f"{result['level']} security")
    rows = zip(result["eps"], result["accuracy"])
    print("  eps " + " ".join(f"{e:>6.3g}" for e, _ in rows))
    print("  acc " + " ".join(f"{a:>6.3f}" for a in result["accuracy"]))
    metrics = result.get("metrics")
    if metrics:  # the attack-effectiveness figures per epsilon
        def row(label, key, fmt):
            print(f"  {label:<4}" + " ".join(
                "     -" if m[key] is None else format(m[key], fmt) for m in metrics))
        row("succ", "success_rate", ">6.3f")
        row("conf", "adversarial_confidence", ">6.3f")
        row("fwd", "forward_per_sample", ">6.1f")
        row("bwd", "backward_per_sample", ">6.1f")
        row("sec", "seconds", ">6.2f")
    if result.get("attack") == "fmn":
        median = result["median_distance"]
        check = result["pgd_check"]
        print(f"  median robust distance {'inf' if median is None else f'{median:.4g}'}; "
              + (f"the {check['attack']} check found an adversarial input FMN missed for "
                 f"{check['samples']} of {result['samples']} samples (the curve takes the worse "
                 "case)"
                 if check["attack"] else "no PGD check"))


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
    """`--deployed BITS|FILE`: BITS quantizes MODEL here as `alohac quantize MODEL --data DATA
    --bits BITS` does (PTQ) and writes OUT/deployed.mlir, the file `alohac compile --target T`
    turns into the program whose decisions the deployed curve reports; FILE takes a model
    quantized elsewhere (another method or calibration) as it is."""
    from aloha_ir.console import Progress
    from aloha_ir.outputs import Staged, write_text
    from aloha_ir.textio import save_module
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
        from alohac.secure_defences import run_deployed
        written += run_deployed(args, module, deployed, report, here, x01, y, config, rng, out,
                                result)
        written.insert(0, write_text(out.path("deployed.json"), json.dumps(result, indent=1)))
        if args.save_adversarial:
            meta = {"source_model": args.deployed, "data": args.data, "attack": dr.attack,
                    "norm": dr.norm, "eps": dr.eps, "seed": args.seed, "steps": dr.steps,
                    "samples": dr.samples, "mode": dr.mode, "input_range": list(rng),
                    "deployed": precision}
            written.append(save_adversarial(out.path("adversarial-deployed.npz"),
                                            x01[dr.sample_indices], y[dr.sample_indices],
                                            dr.eps, dadv,
                                            meta))
    _print_deployed(args, result, [out.final(w) for w in written])
    return 0


def _print_deployed(args, result: dict, written: list[str]) -> None:
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


def add_parser(sub, epilog: str) -> None:
    from security.evaluate import DEFAULT_EPS_STOP, LEVELS, MODES
    fast, slow = MODES["fast"], MODES["slow"]
    p = sub.add_parser(
        "secure", help="security evaluation: accuracy under attack vs epsilon, level, plots",
        description=(
            "Attack MODEL on the test split of DATA with increasing perturbation bounds and "
            "report the security evaluation curve (accuracy vs epsilon), for the attack and for "
            "random noise, its average and a level. Inputs are attacked in [0, 1] whatever the "
            "model takes (its declared input range, --input-scale, or the data's normalisation "
            "say how to map them); epsilon is in the norm's units. Default epsilon ranges: 0.."
            f"{DEFAULT_EPS_STOP['inf']} (inf), 0..{DEFAULT_EPS_STOP['2']} (2), 0.."
            f"{DEFAULT_EPS_STOP['1']} (1). Modes: fast = {fast['samples']} samples, "
            f"{fast['points']} points, PGD-{fast['steps']} warm-started from the previous "
            f"epsilon; slow = {slow['samples']} samples, {slow['points']} points, PGD-"
            f"{slow['steps']} from the clean input; --attack fmn runs FMN-"
            f"{fast['fmn_steps']} (fast) or FMN-{slow['fmn_steps']} (slow) once, with a PGD-"
            f"{fast['check_steps']} / PGD-{slow['check_steps']} check at the grid epsilon below "
            "each sample's distance (further down where it wins). The samples are a seeded draw "
            "stratified by class. Level: the curve average as a fraction of "
            "the clean accuracy: " + ", ".join(f"{n} >= {f:.2f}" for n, f in LEVELS[:-1]) +
            ", else low. Reliability flags say when the curve cannot be trusted and what to do "
            "(eps0_mismatch, zero_gradients, pgd_weaker_than_fgsm, non_monotone, "
            "above_chance_full_box, gradient_free_stronger: a Square attack beating PGD). Writes "
            "OUT/security.json, OUT/security.md and OUT/security.png (and examples.png, "
            "adversarial.npz when asked). --json prints one JSON object as the last line (eps, "
            "accuracy, clean_accuracy, curve_average, level, attack, norm, samples, noise, "
            "flags, warnings, metrics per epsilon: success_rate, adversarial_confidence, "
            "forward_per_sample, backward_per_sample, seconds; fmn: distances, median_distance, "
            "pgd_check)."),
        epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    from alohac.learn import DATA_HELP
    p.add_argument("model", metavar="MODEL", help="an .onnx or .mlir file, or zoo:NAME")
    p.add_argument("--data", default="digits", help=DATA_HELP + " (default: digits)")
    p.add_argument("--attack", choices=("fgsm", "pgd", "fmn"), default="pgd",
                   help="fgsm: one gradient step; pgd: projected gradient descent; fmn: the "
                        "fast minimum-norm attack, run once for the whole curve (each sample's "
                        "smallest adversarial distance), with a PGD check where it decides the "
                        "curve")
    p.add_argument("--norm", default="inf", help="inf, 2 or 1 (default: inf)")
    p.add_argument("--eps", metavar="START:STOP:STEP",
                   help="epsilon grid, STOP included (or a comma-separated list)")
    p.add_argument("--samples", type=int, help="evaluate N test samples, drawn with --seed "
                   "and stratified by class (default: the mode's)")
    p.add_argument("--sampling", choices=("stratified", "first"), default="stratified",
                   help="how the N samples are chosen: a seeded draw stratified by class "
                        "(default), or the first N of the test split")
    p.add_argument("--mode", choices=tuple(MODES), default="fast",
                   help="samples, epsilon points and PGD steps (see above)")
    p.add_argument("--steps", type=int, help="PGD or FMN steps (default: the mode's)")
    p.add_argument("--check-steps", type=int,
                   help="fmn: steps of the PGD check at the grid epsilon below each "
                        "sample's distance (0: none; default: the mode's)")
    p.add_argument("--step-size", type=float,
                   help="PGD step as a multiple of epsilon (default 2.5 / steps)")
    p.add_argument("--random-start", action="store_true",
                   help="PGD starts from a random point of the ball")
    p.add_argument("--no-noise", action="store_true", help="skip the random-noise curves")
    p.add_argument("--no-sanity", action="store_true",
                   help="skip the reliability checks (no flags)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--input-scale", metavar="LO:HI",
                   help="the value range the model's input expects (e.g. 0:255)")
    p.add_argument("--examples", type=int, default=3,
                   help="adversarial example images for this many samples (0: none)")
    p.add_argument("--save-adversarial", action="store_true",
                   help="save OUT/adversarial.npz: the adversarial inputs per epsilon with their "
                        "metadata, for transfer tests")
    p.add_argument("--transfer", metavar="FILE.npz",
                   help="evaluate MODEL on a saved adversarial dataset instead of attacking it")
    p.add_argument("--deployed", metavar="BITS|FILE",
                   help="also attack the deployed fixed-point model and compare: BITS quantizes "
                        "MODEL here (PTQ on DATA, as alohac quantize; written as "
                        "OUT/deployed.mlir), FILE is a model quantized already; the deployed "
                        "forward pass is bit-exact with the generated C, its gradient the "
                        "rounding's straight-through estimator; writes OUT/deployed.json and "
                        "OUT/deployed.png (float, deployed, and the float's examples on the "
                        "deployed model)")
    from alohac.secure_defences import add_arguments
    add_arguments(p)
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the data split, random starts and noise")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output directory")
    p.set_defaults(func=cmd_secure)
