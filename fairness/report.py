"""The fairness report as Markdown and as a plot (selection rate per group: the data's base rate
beside each model's selection rate, with their 95% intervals)."""

from __future__ import annotations


def _ci(e: dict, digits: int = 3) -> str:
    v, (lo, hi) = e["value"], e["ci95"]
    if v is None:
        return "n/a"
    return f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]" if lo is not None else \
        f"{v:.{digits}f}"


def error_bar(e: dict) -> tuple[float, float]:
    """An estimate's distances below and above its value to its interval's ends (0 without an
    interval, or past an end: a percentile interval need not hold its point estimate)."""
    lo, hi = e["ci95"]
    v = e["value"]
    return (0.0 if lo is None else max(0.0, v - lo), 0.0 if hi is None else max(0.0, hi - v))


def _signed(v: dict) -> str:
    lo, hi = v["ci95"]
    return f"{v['change']:+.3f}" + (f" [{lo:+.3f}, {hi:+.3f}]" if lo is not None else "")


def markdown(r: dict) -> str:
    lines = [f"# Fairness of {r['dataset']}: label {r['label']} = {r['positive']}", "",
             f"{r['samples']:,} samples ({r['source'] or 'CSV'}), {r['features']} features; "
             f"trained on {r['train']:,}, measured on {r['test']:,}; 95% intervals from "
             f"{r['bootstrap']} bootstrap resamples (seed {r['seed']}).", ""]
    for attr, d in r["data"].items():
        lines += [f"## {attr}", "", "| group | share | base rate | " + " | ".join(
            f"{m} selection rate | {m} TPR | {m} FPR | {m} accuracy" for m in r["models"]) +
            " |", "|" + "---|" * (3 + 4 * len(r["models"]))]
        for g in d["groups"]:
            row = d["by_group"][g]
            cells = [g, f"{row['share']:.3f}", _ci(row["base_rate"])]
            for m in r["models"].values():
                mg = m["fairness"][attr]["by_group"][g]
                cells += [_ci(mg[k]) for k in ("selection_rate", "tpr", "fpr", "accuracy")]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", f"Data: base-rate difference {_ci(d['disparities']['base_rate_difference'])}"
                      f", ratio {_ci(d['disparities']['base_rate_ratio'])}"
                      f" (four-fifths rule {'met' if d['four_fifths_rule'] else 'not met'}).", ""]
        for name, m in r["models"].items():
            f = m["fairness"][attr]
            red = m["reduced"][attr]
            lines.append(f"**{name}** (accuracy {m['accuracy']:.3f}): " + ", ".join(
                f"{k} {_ci(v)}" for k, v in f["disparities"].items() if k in red["kept"]) +
                ("; dropped as redundant: " + ", ".join(
                    f"{k} (follows {v['follows']}, r = {v['correlation']})"
                    for k, v in red["dropped"].items()) if red["dropped"] else ""))
            for k, v in m["differential"][attr].items():
                lines.append(f"- {k} minus the data's {v['against']}: {_signed(v)}: "
                             f"{v['verdict']} (same sign in {v['confidence']:.0%} of resamples)")
            for k, v in m.get("against_float", {}).get(attr, {}).items():
                lines.append(f"- deployed minus float {k}: {_signed(v)}: {v['verdict']}")
            lines.append("")
    lines += ["## Mitigation", ""] + [f"- suggested: {s['method'] or 'none'}: {s['why']}"
                                      for s in r.get("suggestions", [])]
    for name, m in r.get("mitigations", {}).items():
        attr = m["attribute"]
        dp = m["fairness"][attr]["disparities"]["dp_difference"]
        change = m["against_before"][attr]["dp_difference"]
        lines.append(f"- applied {name} ({attr}): accuracy {m['accuracy_before']:.3f} -> "
                     f"{m['accuracy']:.3f}, dp difference {_ci(dp)} ({_signed(change)} "
                     f"against the logistic regression: {change['verdict']})" +
                     ("; it needs the sensitive attribute when predicting"
                      if m["needs_sensitive_at_prediction"] else ""))
    return "\n".join(lines) + "\n"


def plot(r: dict, path: str) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    attrs = list(r["data"])
    fig, axes = plt.subplots(1, len(attrs), figsize=(5.5 * len(attrs), 3.8), squeeze=False)
    series = [("data (base rate)", lambda a, g: r["data"][a]["by_group"][g]["base_rate"])] + [
        (name, lambda a, g, m=m: m["fairness"][a]["by_group"][g]["selection_rate"])
        for name, m in r["models"].items()]
    for ax, attr in zip(axes[0], attrs):
        groups = r["data"][attr]["groups"]
        width = 0.8 / len(series)
        for i, (label, get) in enumerate(series):
            vals = [get(attr, g) for g in groups]
            x = [j + (i - (len(series) - 1) / 2) * width for j in range(len(groups))]
            err = [list(b) for b in zip(*map(error_bar, vals))]
            ax.bar(x, [v["value"] for v in vals], width, yerr=err, capsize=2, label=label)
        ax.set_xticks(range(len(groups)), groups, rotation=30 if len(groups) > 3 else 0,
                      ha="right" if len(groups) > 3 else "center", fontsize=8)
        ax.set_ylabel(f"P({r['label']} = {r['positive']})")
        ax.set_title(attr)
        ax.legend(fontsize=8)
    fig.suptitle(f"{r['dataset']}: positive rate by group (95% intervals)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_tradeoff(result: dict, path: str) -> str:
    """Accuracy against the demographic-parity difference (with its interval) for every model and
    mitigation, on the first sensitive attribute: down and right is better."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    attr = result["sensitive"][0]
    fig, ax = plt.subplots(figsize=(6, 4.2))
    points = [(name, m["accuracy"], m["fairness"][attr]["disparities"]["dp_difference"])
              for name, m in result["models"].items()]
    points += [(f"logistic_regression + {k}", m["accuracy"],
                m["fairness"][m["attribute"]]["disparities"]["dp_difference"])
               for k, m in result.get("mitigations", {}).items()]
    for name, acc, dp in points:
        below, above = error_bar(dp)
        ax.errorbar(acc, dp["value"], yerr=[[below], [above]], fmt="o", capsize=3, label=name)
    ax.set_xlabel("accuracy (test rows)")
    ax.set_ylabel(f"demographic-parity difference ({attr})")
    ax.set_title(f"{result['dataset']}: accuracy vs fairness (95% intervals)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
