"""Figures as people read them: one word and one auto-scaled unit per figure, everywhere.

JSON keys carry their SI unit in the name (`latency_s`, `energy_j`, `memory_bytes`) and stay raw
numbers; tables, reports and plot axes show the same figures through this module, so `analyze`,
`explore`, `explore-mapping`, `report.md` and every plot say "latency 3.63 ms", never
"latency_s 0.00363" or "Performance (s)". Times and energies take decimal prefixes (ns, µs, ms,
s; nJ, µJ, mJ, J), memory binary ones (B, KiB, MiB, GiB: what a linker map shows); counts keep
every digit with thousands separators.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

# key -> (the word on a label, the SI unit of the stored value; "" for a plain count or ratio)
FIGURES: dict[str, tuple[str, str]] = {
    "latency_s": ("latency", "s"),
    "period_s": ("period", "s"),
    "energy_j": ("energy per frame", "J"),
    "memory_bytes": ("memory", "B"),
    "buffer_bytes": ("buffers", "B"),
    "parameter_bytes": ("parameter memory", "B"),
    "peak_activation_bytes": ("peak activations", "B"),
    "activation_bytes": ("activation bytes", "B"),
    "throughput_fps": ("throughput (frames/s)", ""),
    "gops_per_s": ("GOps/s", ""),
    "gops_per_w": ("GOps/s/W", ""),
    "average_power_w": ("average power", "W"),
    "processors": ("processors", ""),
    "params": ("parameters", ""),
    "macs": ("MACs", ""),
    "accuracy": ("accuracy", ""),
    "test_accuracy": ("test accuracy", ""),
    "security": ("security (curve average)", ""),
}

_DECIMAL = ((1.0, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"))
_BINARY = ((1024.0 ** 3, "Gi"), (1024.0 ** 2, "Mi"), (1024.0, "Ki"), (1.0, ""))


def label(key: str) -> str:
    """The figure in words: `latency_s` -> "latency"; an unknown key with its underscores gone."""
    return FIGURES.get(key, (key.replace("_", " "), ""))[0]


def unit_of(key: str) -> str:
    return FIGURES.get(key, ("", ""))[1]


def scale(unit: str, magnitude: float) -> tuple[float, str]:
    """(factor, prefixed unit) that shows `magnitude` (in `unit`) between 1 and 1000 (1024 for
    bytes), e.g. scale("s", 0.0036) == (1e-3, "ms"); counts and unknown units are not scaled."""
    m = abs(magnitude)
    if unit == "B":
        return next(((f, p + "B") for f, p in _BINARY if m >= f), (1.0, "B"))
    if unit in ("s", "J", "W"):
        if not math.isfinite(m) or m == 0:
            return 1.0, unit
        return next(((f, p + unit) for f, p in _DECIMAL if m >= f),
                    (1e-9, "n" + unit))
    return 1.0, unit


def _digits(value: float, significant: int) -> str:
    """`value` with `significant` digits, never in scientific notation, thousands separated."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    decimals = max(0, significant - 1 - math.floor(math.log10(abs(value))))
    return f"{value:,.{decimals}f}"


def quantity(value: float | None, unit: str, significant: int = 4) -> str:
    """`value` (in `unit`) with an auto-scaled unit: quantity(0.0036, "s") == "3.6 ms",
    quantity(218312, "B") == "213.2 KiB"; None is "-"."""
    if value is None:
        return "-"
    if not unit:
        return count(value)
    # scaled after rounding, so 999.96 µs shows as 1 ms, not 1000 µs
    factor, shown = scale(unit, float(f"{value:.{significant}g}"))
    text = _digits(value / factor, significant)
    return f"{text.rstrip('0').rstrip('.') if '.' in text else text} {shown}"


def count(value: float) -> str:
    """A count or ratio: integers with thousands separators, others with 4 significant digits."""
    if float(value).is_integer():
        return f"{int(value):,}"
    return _digits(value, 4)


def show(key: str, value: float | None) -> str:
    """A figure by its JSON key, as a table cell: show("energy_j", 1.4e-3) == "1.4 mJ"."""
    return quantity(value, unit_of(key))


def axis(key: str, values: Iterable[float], note: str = "") -> tuple[float, str]:
    """(factor, axis label) for plotting `values` of figure `key`: divide the data by factor;
    the label is in words with the unit the largest value needs, e.g. (1e-3, "latency (ms)"),
    and `note` after the words ("latency, self-timed, one frame (ms)")."""
    words = f"{label(key)}, {note}" if note else label(key)
    unit = unit_of(key)
    finite = [abs(v) for v in values if v is not None and math.isfinite(v)]
    if not unit:
        return 1.0, words
    factor, shown = scale(unit, max(finite, default=0.0))
    return factor, f"{words} ({shown})"


def log_scale(ax, which: str = "x") -> None:
    """Put a matplotlib axis on a log scale with plain tick labels (0.2, 0.5, 1, 2), not 2x10^-1:
    the unit is already in the label."""
    import matplotlib.ticker
    getattr(ax, f"set_{which}scale")("log")
    plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
    axis_ = ax.xaxis if which == "x" else ax.yaxis
    axis_.set_major_formatter(plain)
    axis_.set_minor_formatter(plain)
