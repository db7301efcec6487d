"""Search spaces: which genotypes a search may produce, read from a small YAML or TOML file.

The seeds' example (deliverable D2.2, Figure 2) written as a space file:

    name: seed-example
    input: [1, 28, 28]          # C, H, W (the data's shape wins when --data is given)
    classes: 10
    layers:
      - dataI
      - {type: Convolution, count: [2, 5], maps: [5, 20], kernel: {choices: [3, 5]}}
      - {type: Pooling, kernel: 2, stride: 2}
      - {type: DenseBlock, count: [1, 5], neurons: [10, 20]}
      - dataO

A parameter is a value, an inclusive range `[lo, hi]`, or `{choices: [...]}`; `count` (default 1) is
how many layers the slot holds. Types: dataI/input, Convolution, Convolution+Relu/conv-group (a VGG
group: `convs` convolutions then a 2x2 max pool), Pooling, DenseBlock/dense, dataO/output. `invalid:
repair` (default) changes a layer whose window no longer fits (a smaller kernel or stride from its
ranges) or drops it when its slot allows, and `invalid: reject` refuses the genotype; either way the
reason is returned (`repair`) or raised (`InvalidGenotype`). "same" padding and VGG groups need odd
kernels (an even one cannot pad symmetrically). A space may also list `scenarios`
(explore/scenarios.py).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from typing import Any

import numpy as np

from aloha_ir.errors import InputFileError, UsageError
from frontends.genotype import (CATEGORICAL, DEFAULTS, SPATIAL, Gene, Genotype, InvalidGenotype,
                                out_size, trace)

ALIASES = {"datai": "input", "input": "input", "datao": "output", "output": "output",
           "convolution": "convolution", "conv": "convolution",
           "convolution+relu": "conv-group", "conv-group": "conv-group", "vgg-group": "conv-group",
           "pooling": "pooling", "pool": "pooling", "denseblock": "dense", "dense": "dense"}
BUNDLED_DIR = os.path.join(os.path.dirname(__file__), "spaces")
INVALID_MODES = ("repair", "reject")
MAX_VALUES = 4096  # a range wider than this is a typo, not a search space


@dataclass(frozen=True)
class Slot:
    """One chromosome of the space: a layer kind, how many layers, each parameter's values."""

    kind: str
    count: tuple[int, int]
    params: dict[str, tuple]  # name -> allowed values, sorted

    def sample(self, rng: np.random.Generator, index: int) -> Gene:
        return Gene(self.kind, index, tuple(sorted(
            (k, _pick(rng, v)) for k, v in self.params.items())))


@dataclass(frozen=True)
class SearchSpace:
    name: str
    slots: tuple[Slot, ...]
    input_shape: tuple[int, int, int] | None = None
    classes: int | None = None
    invalid: str = "repair"
    scenarios: tuple[dict, ...] = ()
    source: str = ""

    # --- genotypes ------------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator, input_shape: tuple[int, int, int]) -> Genotype:
        """A random genotype (uniform count per slot, uniform values), repaired; retried a few
        times when repair fails (a space whose every draw is invalid is reported)."""
        last = None
        for _ in range(50):
            layers = []
            for i, slot in enumerate(self.slots):
                n = int(rng.integers(slot.count[0], slot.count[1] + 1))
                layers += [slot.sample(rng, i) for _ in range(n)]
            try:
                return self.repair(Genotype(tuple(layers)), input_shape)[0]
            except InvalidGenotype as e:
                last = e
        raise UsageError(f"search space '{self.name}': 50 random genotypes in a row are invalid "
                         f"for a {input_shape} input; the last: {last.message}",
                         where=self.source, hint="widen the ranges or lower the layer counts")

    def counts(self, genotype: Genotype) -> list[int]:
        return [sum(1 for g in genotype.layers if g.slot == i) for i in range(len(self.slots))]

    def check(self, genotype: Genotype) -> None:
        """Raise InvalidGenotype unless every gene is in its slot's ranges, in slot order, with
        each slot's count in range."""
        slots = [g.slot for g in genotype.layers]
        if slots != sorted(slots) or any(not 0 <= s < len(self.slots) for s in slots):
            raise InvalidGenotype("genes are out of the space's slot order")
        for gene in genotype.layers:
            slot = self.slots[gene.slot]
            if gene.kind != slot.kind:
                raise InvalidGenotype(f"gene {gene.label()} is in slot {gene.slot} ({slot.kind})")
            for k, allowed in slot.params.items():
                if gene[k] not in allowed:
                    raise InvalidGenotype(f"{gene.label()}: {k} = {gene[k]} is outside the space")
        for i, (n, slot) in enumerate(zip(self.counts(genotype), self.slots)):
            if not slot.count[0] <= n <= slot.count[1]:
                raise InvalidGenotype(f"slot {i} ({slot.kind}) holds {n} layers, the space allows "
                                      f"{slot.count[0]}..{slot.count[1]}")

    def repair(self, genotype: Genotype, input_shape: tuple[int, int, int]
               ) -> tuple[Genotype, list[str]]:
        """The genotype made decodable: each layer that would leave no output gets the nearest
        kernel/stride from its ranges that fits, or is dropped if its slot keeps its minimum count.
        Returns (genotype, what was changed); raises InvalidGenotype (with the reason) when it
        cannot be repaired or the space says `invalid: reject`."""
        self.check(genotype)
        _, h, w = input_shape
        size = min(h, w)
        counts = self.counts(genotype)
        kept, notes = [], []
        for i, gene in enumerate(genotype.layers):
            if gene.kind not in SPATIAL or out_size(gene, size) >= 1:
                kept.append(gene)
                size = out_size(gene, size)
                continue
            problem = f"layer {i} ({gene.label()}) gets a {size}x{size} input and leaves no output"
            if self.invalid == "reject":
                raise InvalidGenotype(problem + " (the space rejects invalid genotypes)")
            fixed = self._refit(gene, size)
            if fixed is not None:
                notes.append(f"{problem}: now {fixed.label()}")
                kept.append(fixed)
                size = out_size(fixed, size)
            elif counts[gene.slot] > self.slots[gene.slot].count[0]:
                counts[gene.slot] -= 1
                notes.append(f"{problem}: dropped")
            else:
                raise InvalidGenotype(
                    f"{problem}, no kernel/stride in its ranges fits, and its slot needs at least "
                    f"{self.slots[gene.slot].count[0]} layer(s)")
        repaired = Genotype(tuple(kept))
        trace(repaired, input_shape)
        return repaired, notes

    def _refit(self, gene: Gene, size: int) -> Gene | None:
        """The gene with the kernel/stride values closest to its own that leave an output."""
        slot = self.slots[gene.slot]
        best = None
        for k in slot.params["kernel"]:
            for st in slot.params.get("stride", (None,)):  # a VGG group has no stride
                cand = gene.with_params(kernel=k, **({} if st is None else {"stride": st}))
                if out_size(cand, size) < 1:
                    continue
                dist = abs(k - gene["kernel"]) + (0 if st is None else abs(st - gene["stride"]))
                if best is None or dist < best[0]:
                    best = (dist, cand)
        return best[1] if best else None

    def size(self) -> float:
        """How many distinct genotypes the space holds (before validity), as a float."""
        total = 1.0
        for slot in self.slots:
            per = float(np.prod([len(v) for v in slot.params.values()])) if slot.params else 1.0
            total *= sum(per ** n for n in range(slot.count[0], slot.count[1] + 1))
        return total

    def to_json(self) -> dict:
        return {"name": self.name, "input": list(self.input_shape) if self.input_shape else None,
                "classes": self.classes, "invalid": self.invalid,
                "layers": [{"type": s.kind, "count": list(s.count),
                            **{k: list(v) for k, v in s.params.items()}} for s in self.slots]}


def _pick(rng: np.random.Generator, values: tuple):
    v = values[int(rng.integers(len(values)))]
    return v.item() if hasattr(v, "item") else v


# --- reading space files --------------------------------------------------------------------------
def bundled_spaces() -> list[str]:
    return sorted(f.rsplit(".", 1)[0] for f in os.listdir(BUNDLED_DIR)
                  if f.endswith((".yaml", ".toml")))


def load_space(spec: str) -> SearchSpace:
    """SPACE: a .yaml/.yml/.toml file, or `space:NAME` for a bundled one."""
    if spec.startswith("space:"):
        name = spec[6:]
        if name not in bundled_spaces():
            raise UsageError(f"unknown bundled space '{spec}'",
                             hint="bundled: " + ", ".join(f"space:{n}" for n in bundled_spaces()))
        path = next(os.path.join(BUNDLED_DIR, f"{name}{ext}") for ext in (".yaml", ".toml")
                    if os.path.exists(os.path.join(BUNDLED_DIR, f"{name}{ext}")))
    else:
        path = spec
    if not os.path.exists(path):
        raise InputFileError("no such file", where=path,
                             hint="SPACE is a .yaml/.toml file or space:NAME (" +
                                  ", ".join(f"space:{n}" for n in bundled_spaces()) + ")")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise InputFileError(f"cannot read: {e.strerror or e}", where=path) from None
    return parse_space(raw, path)


def parse_space(raw: bytes | str, source: str = "<space>") -> SearchSpace:
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    try:
        if source.endswith(".toml"):
            try:
                data = tomllib.loads(text)
            except tomllib.TOMLDecodeError as e:
                raise InputFileError(f"not valid TOML: {e}", where=source) from None
        else:
            import yaml
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as e:
                mark = getattr(e, "problem_mark", None)
                where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
                raise InputFileError(f"not valid YAML: {getattr(e, 'problem', None) or e}",
                                     where=where) from None
    except RecursionError:  # both parsers recurse per nesting level
        raise InputFileError("not a search space: nested too deeply", where=source) from None
    return space_from_dict(data, source)


def space_from_dict(data: Any, source: str = "<space>") -> SearchSpace:
    if not isinstance(data, dict):
        raise InputFileError("a search space is a mapping with a 'layers' list", where=source,
                             hint="see `alohac explore --help` for the format")
    unknown = set(data) - {"name", "input", "classes", "layers", "invalid", "scenarios",
                           "description"}
    if unknown:
        raise InputFileError(f"unknown key(s) {', '.join(sorted(map(str, unknown)))}",
                             where=source, hint="keys: name, description, input, classes, "
                                                "layers, invalid, scenarios")
    layers = data.get("layers")
    if not isinstance(layers, list) or not layers:
        raise InputFileError("'layers' must be a non-empty list", where=source)
    entries = [_layer_entry(e, f"{source}: layers[{i}]") for i, e in enumerate(layers)]
    kinds = [k for k, _ in entries]
    if kinds.count("input") != 1 or kinds[0] != "input":
        raise InputFileError("the first layer must be the one input layer (dataI)",
                             where=f"{source}: layers")
    if kinds.count("output") != 1 or kinds[-1] != "output":
        raise InputFileError("the last layer must be the one output layer (dataO)",
                             where=f"{source}: layers")
    slots = []
    for i, (kind, entry) in enumerate(entries[1:-1], start=1):
        slots.append(_slot(kind, entry, f"{source}: layers[{i}]"))
    seen_dense = False
    for i, s in enumerate(slots, start=1):
        if s.kind == "dense":
            seen_dense = True
        elif seen_dense:
            raise InputFileError(f"a {s.kind} slot after a dense slot", where=f"{source}: "
                                 f"layers[{i}]", hint="dense layers come last (chain networks)")
    input_shape = data.get("input")
    if input_shape is not None:
        if not (isinstance(input_shape, list) and len(input_shape) == 3 and
                all(isinstance(d, int) and not isinstance(d, bool) and d >= 1
                    for d in input_shape)):
            raise InputFileError(f"input must be [C, H, W] with positive integers, got "
                                 f"{input_shape!r}", where=f"{source}: input")
        input_shape = tuple(input_shape)
    classes = data.get("classes")
    if classes is not None and (not isinstance(classes, int) or isinstance(classes, bool) or
                                classes < 2):
        raise InputFileError(f"classes must be an integer >= 2, got {classes!r}",
                             where=f"{source}: classes")
    invalid = data.get("invalid", "repair")
    if invalid not in INVALID_MODES:
        raise InputFileError(f"invalid must be one of {', '.join(INVALID_MODES)}, got "
                             f"{invalid!r}", where=f"{source}: invalid")
    scenarios = data.get("scenarios") or []
    if not isinstance(scenarios, list) or not all(isinstance(s, dict) for s in scenarios):
        raise InputFileError("scenarios must be a list of mappings", where=f"{source}: scenarios")
    name = data.get("name") or os.path.basename(source).rsplit(".", 1)[0]
    return SearchSpace(str(name), tuple(slots), input_shape, classes, invalid, tuple(scenarios),
                       source)


def _layer_entry(entry: Any, where: str) -> tuple[str, dict]:
    if isinstance(entry, str):
        entry = {"type": entry}
    if not isinstance(entry, dict) or "type" not in entry:
        raise InputFileError(f"a layer is a type name or a mapping with 'type', got {entry!r}",
                             where=where)
    kind = ALIASES.get(str(entry["type"]).lower())
    if kind is None:
        raise InputFileError(f"unknown layer type {entry['type']!r}", where=where,
                             hint="types: dataI, Convolution, Convolution+Relu, Pooling, "
                                  "DenseBlock, dataO")
    return kind, entry


def _slot(kind: str, entry: dict, where: str) -> Slot:
    if kind in ("input", "output"):
        raise InputFileError(f"a second {kind} layer", where=where)
    params = {}
    allowed = set(DEFAULTS[kind]) | {"type", "count"}
    unknown = set(entry) - allowed
    if unknown:
        raise InputFileError(f"{kind} has no parameter {', '.join(sorted(map(str, unknown)))}",
                             where=where, hint="parameters: " + ", ".join(DEFAULTS[kind]))
    for name, default in DEFAULTS[kind].items():
        params[name] = _values(entry.get(name, default), name, f"{where}.{name}")
    kernels = params.get("kernel", ())
    same = kind == "conv-group" or "same" in params.get("padding", ())
    if same and any(k % 2 == 0 for k in kernels):
        raise InputFileError(f"even kernel(s) {[k for k in kernels if k % 2 == 0]} with 'same' "
                             "padding: it cannot pad both sides equally", where=f"{where}.kernel",
                             hint="use odd kernels, e.g. {choices: [3, 5]}, or padding: valid")
    count = _values(entry.get("count", 1), "count", f"{where}.count", lo=0)
    if count[-1] > 64:
        raise InputFileError(f"count up to {count[-1]} layers: at most 64 per slot",
                             where=f"{where}.count")
    if list(count) != list(range(count[0], count[-1] + 1)):
        raise InputFileError("count must be a value or a range [lo, hi]", where=f"{where}.count")
    return Slot(kind, (count[0], count[-1]), params)


def _values(spec: Any, name: str, where: str, lo: int = 1) -> tuple:
    """A parameter's allowed values: a value, [lo, hi] (inclusive) or {choices: [...]}."""
    if name in CATEGORICAL:
        values = spec["choices"] if isinstance(spec, dict) and "choices" in spec else \
            spec if isinstance(spec, list) else [spec]
        bad = [v for v in values if v not in CATEGORICAL[name]]
        if bad or not values:
            raise InputFileError(f"{name} must be among {', '.join(CATEGORICAL[name])}, got "
                                 f"{spec!r}", where=where)
        return tuple(sorted(set(values)))
    if isinstance(spec, dict):
        if set(spec) != {"choices"} or not isinstance(spec["choices"], list) or \
                not spec["choices"]:
            raise InputFileError(f"{name}: a mapping must be {{choices: [v, ...]}}", where=where)
        values = spec["choices"]
    elif isinstance(spec, list):
        if len(spec) != 2 or not all(_is_int(v) for v in spec) or spec[0] > spec[1]:
            raise InputFileError(f"{name}: a range is [lo, hi] with integers lo <= hi, got "
                                 f"{spec!r}", where=where, hint="a set of values: {choices: [...]}")
        if spec[1] - spec[0] + 1 > MAX_VALUES:
            raise InputFileError(f"{name}: range {spec} has more than {MAX_VALUES} values",
                                 where=where)
        values = list(range(spec[0], spec[1] + 1))
    else:
        values = [spec]
    if not all(_is_int(v) and v >= lo for v in values):
        raise InputFileError(f"{name} values must be integers >= {lo}, got {spec!r}", where=where)
    return tuple(sorted(set(values)))


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def resolve_io(space: SearchSpace, data_shape: tuple[int, ...] | None, data_classes: int | None
               ) -> tuple[tuple[int, int, int], int]:
    """The input shape and class count: the data's when given, else the space's."""
    shape = tuple(data_shape) if data_shape is not None else space.input_shape
    classes = data_classes if data_classes is not None else space.classes
    if shape is None or classes is None:
        raise UsageError(f"search space '{space.name}' names no input shape/classes and no data "
                         "gives them", where=space.source,
                         hint="add `input: [C, H, W]` and `classes: N` to the space, or give "
                              "the data's shape and classes")
    if len(shape) != 3:
        raise UsageError(f"genotypes take C x H x W inputs, the data's samples are {list(shape)}")
    return shape, classes
