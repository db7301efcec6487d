"""A platform's numeric parameters as a fit sees them: which there are, where each is written, what
its source label says, within which physical bounds it may move, and the platform (or the .arch
text) with other values.

    tree, path = resolve("neuraghe-losa")
    ps = parameters(tree)                          # every fittable number, with its label
    estimated = [p for p in ps if p.label == "E"]  # hardware.md's [E]: the calibration's default
    platform = with_values(tree, path, {"ce.job_overhead": 2e-6})
    text = extension(tree, "neuraghe-losa", "my-losa", {"ce.job_overhead": 2e-6}, notes, header)

A parameter is named by its section path and key (`static_power`, `ce.job_overhead`,
`act_dma.latency`, `core.ops_per_cycle.f32`, `ca.fast.active_power` for an operating point of a
PE) and identified by the line that sets it: two platforms extending one template share the
template's parameters (`origin`), which is how one fit spans LOSA's and SABINA's rows.

Only rates, times, powers and energies are fitted: they are what a mechanistic cost model leaves
unknown. Sizes, counts, grids, kernels and clocks describe the structure (a fit that moved them
would be describing another chip), so they are never parameters here, whatever their label.
"""

from __future__ import annotations

import copy
import functools
import os
import re
from dataclasses import dataclass

from archdesc import units
from archdesc.loader import Prop, Section, build_platform
from archdesc.model import Platform

# key -> (dimension, lowest, highest) in SI units: what the hardware can physically be. A fit may not
# leave these bounds; they are wide on purpose (they exclude nonsense, not unlikely values).
BOUNDS: dict[str, tuple[str, float, float]] = {
    "static_power": ("power", 0.0, 1e3),  # a board, not a rack
    "active_power": ("power", 0.0, 1e3),
    "idle_power": ("power", 0.0, 1e3),
    "job_overhead": ("time", 1e-9, 1e-3),  # a descriptor write and a poll: ns to ms
    "call_overhead": ("time", 1e-9, 1e-3),
    "latency": ("time", 0.0, 1e-3),
    "pipeline_fill": ("cycles", 0, 1 << 16),
    "ops_per_cycle": ("number", 1e-3, 1024.0),
    "memory_bandwidth": ("bandwidth", 1e6, 1e13),
    "bandwidth": ("bandwidth", 1e6, 1e13),
    "energy_per_byte": ("energy", 0.0, 1e-6),
}
# the unit a value is written in when its line had none (a bare 0)
_UNIT = {"power": "W", "time": "us", "bandwidth": "GB/s", "energy": "pJ"}
_LABEL = re.compile(r"\[([A-Z])\]")
_ENTRY_LABEL = re.compile(r"([A-Za-z_][\w]*)\s*\[([A-Z])\]")


@dataclass(frozen=True)
class Parameter:
    name: str  # section path and key, dotted
    path: tuple[tuple[str, str | None], ...]  # (kind, name) of each enclosing section
    key: str
    entry: str | None  # the data type of a keyed value (ops_per_cycle)
    value: float  # SI units (cycles and rates as they are)
    dimension: str  # a units dimension, "cycles" or "number"
    label: str  # hardware.md's source label on its line: P, C, D, R, E ("" when none)
    origin: str  # file:line that sets it
    unit: str  # the unit it is written in

    @property
    def bounds(self) -> tuple[float, float]:
        _, lo, hi = BOUNDS[self.key]
        return lo, hi

    def show(self, value: float | None = None) -> str:
        """The value as the .arch file writes it (`1.5 us`)."""
        v = self.value if value is None else value
        if self.dimension == "cycles":
            return str(int(round(v)))
        if self.dimension == "number":
            return f"{v:.6g}"
        return f"{v / units.UNITS[self.unit][0]:.6g} {self.unit}"


def parameters(tree: Section) -> list[Parameter]:
    """Every fittable number of a resolved platform tree, in the order the file declares them."""
    out: list[Parameter] = []

    def walk(sec: Section, path: tuple, names: tuple[str, ...]):
        for key, prop in sec.props.items():
            if key not in BOUNDS:
                continue
            dim = BOUNDS[key][0]
            origin = prop.pos.rsplit(":", 1)[0]
            comment = _comment(origin)
            for kind, val, _ in prop.values:
                entry = None
                if kind == "keyed":
                    entry, (kind, val, _) = val[0], val[1]
                value, unit = _si(kind, val, dim)
                name = ".".join(names + (key,) + ((entry,) if entry else ()))
                out.append(Parameter(name, path, key, entry, value, dim,
                                     _label(comment, entry), origin, unit))
        for (kind, name), sub in sec.sections.items():
            walk(sub, path + ((kind, name),), names + ((name,) if name else ()))

    walk(tree, (), ())
    return out


def with_values(tree: Section, path: str, values: dict[str, float]) -> Platform:
    """The platform of `tree` with the named parameters set (checked like any .arch file)."""
    return build_platform(edited(tree, values), path)


def edited(tree: Section, values: dict[str, float]) -> Section:
    """A copy of `tree` with the named parameters set (KeyError naming an unknown one)."""
    known = {p.name: p for p in parameters(tree)}
    out = copy.deepcopy(tree)
    for name, v in values.items():
        p = known[name]
        sec = out
        for k in p.path:
            sec = sec.sections[k]
        prop = sec.props[p.key]
        vals = []
        for kind, val, tok in prop.values:
            if kind == "keyed" and val[0] == p.entry:
                vals.append((kind, (val[0], _written(p, v, val[1][2])), tok))
            elif kind != "keyed":
                vals.append(_written(p, v, tok))
            else:
                vals.append((kind, val, tok))
        sec.props[p.key] = Prop(prop.key, vals, prop.pos)
    return out


def extension(tree: Section, base: str, name: str, values: dict[str, float],
              notes: dict[str, str], header: list[str]) -> str:
    """The text of an .arch file `platform NAME extends BASE` setting `values` over `tree` (BASE's
    resolved tree), each line commented `[F]` with its previous value and `notes[name]`, `header` as
    its first comments. `base` is a bundled platform's name or a path relative to where the file
    is written."""
    every = parameters(tree)
    types = _section_types(tree)
    lines = [f"# {h}" if h else "#" for h in header]
    ext = base if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", base) else f'"{base}"'
    lines.append(f"platform {name} extends {ext} {{")
    keyed: dict[tuple, dict[str, list[Parameter]]] = {}
    for p in every:
        if p.name in values:
            keyed.setdefault(p.path, {}).setdefault(p.key, [])
    for p in every:  # a keyed line is rewritten whole: its entries not fitted keep their value
        if p.key in keyed.get(p.path, {}):
            keyed[p.path][p.key].append(p)
    tree_of: dict = {}  # nested: section key -> subtree; "" -> the section's own lines
    for path, keys in keyed.items():
        node = tree_of
        for k in path:
            node = node.setdefault(k, {})
        node[""] = keys

    def emit(node: dict, path: tuple, depth: int):
        pad = "  " * depth
        for key, ps in node.get("", {}).items():
            def now(p: Parameter) -> str:
                return p.show(values.get(p.name, p.value))
            if ps[0].entry is None:
                text = f"{key} = {now(ps[0])}"
            else:
                text = f"{key} = " + ", ".join(f"{p.entry}: {now(p)}" for p in ps)
            was = "; ".join(f"{p.name} was {p.show()}" + (f" [{p.label}]" if p.label else "")
                            + (f", {notes[p.name]}" if notes.get(p.name) else "")
                            for p in ps if p.name in values)
            lines.append(f"{pad + text:<40} # [F] {was}")
        for k, sub in node.items():
            if k == "":
                continue
            kind, sname = k
            typ = types.get(path + (k,))
            lines.append(f"{pad}{kind}{' ' + sname if sname else ''}"
                         + (f" : {typ}" if typ else "") + " {")
            emit(sub, path + (k,), depth + 1)
            lines.append(pad + "}")

    emit(tree_of, (), 1)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _section_types(tree: Section) -> dict[tuple, str | None]:
    """(kind, name) path -> the section's type (`conv-engine` of `pe ce : conv-engine`)."""
    out: dict[tuple, str | None] = {}

    def walk(sec: Section, path: tuple):
        for key, sub in sec.sections.items():
            out[path + (key,)] = sub.type
            walk(sub, path + (key,))

    walk(tree, ())
    return out


def _written(p: Parameter, v: float, tok) -> tuple:
    if p.dimension == "cycles":
        return ("number", int(round(v)), tok)
    if p.dimension == "number":
        return ("number", float(v), tok)
    return ("quantity", (v / units.UNITS[p.unit][0], p.unit), tok)


def _si(kind: str, val, dim: str) -> tuple[float, str]:
    if kind == "quantity":
        number, unit = val
        return units.quantity(number, unit).value, unit
    if dim in ("cycles", "number"):
        return float(val), ""
    return float(val), _UNIT[dim]  # a bare 0


def _comment(origin: str) -> str:
    path, _, line = origin.rpartition(":")
    try:
        text = _lines(path, os.stat(path).st_mtime_ns)[int(line) - 1]
    except (OSError, ValueError, IndexError):
        return ""
    return text.partition("#")[2]


@functools.lru_cache(maxsize=64)
def _lines(path: str, mtime_ns: int) -> list[str]:
    """A file's lines, read once per version of it (a fit asks for every line's label per trial)."""
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def _label(comment: str, entry: str | None) -> str:
    """The source label of a value: for a keyed entry the label written after a word its data type
    starts with (`f32 [D] ...; fixed [E]`), else the line's first label."""
    if entry is not None:
        for word, label in _ENTRY_LABEL.findall(comment):
            if entry.startswith(word):
                return label
    found = _LABEL.findall(comment)
    return found[0] if found else ""
