"""Genotypes: chain-structured networks as sequences of layer genes, and their decoding to ONNX.

A genotype is what the design-space explorer evolves (the seeds' `Genotype.of(simpleLayerChromosome
.of("Convolution", 5, 20, IntRange.of(2, 5)), ...)`, deliverable D2.2 section 2.1.2): the input and
output layers are implicit (exactly one each), and between them a sequence of genes, each naming its
kind, the search-space slot it belongs to (so crossover and mutation keep the space's layer order),
and its parameters. Kinds and their parameters:

- `convolution`: maps, kernel, stride, padding ("same" | "valid"); followed by a ReLU;
- `conv-group` (VGG-like): convs x (maps-channel kernel x kernel conv + ReLU, "same"), then a 2x2 max
  pool of stride 2 -- the seeds' "Convolution+Relu" chromosome grouped 2-3 times before a pool;
- `pooling`: mode ("max" | "avg"), kernel, stride (no padding);
- `dense`: neurons; followed by a ReLU (a flatten goes before the first dense layer);
- the output layer is a dense layer of `classes` neurons and a softmax.

A genotype decodes to an ONNX model (seeded He-initialised weights, drawn lazily like the zoo's
builders, inputs in [0, 1]) and, through the ONNX importer, to an nn module. `trace` follows the
spatial size layer by layer; a layer that would shrink it below 1 makes the genotype invalid
(`InvalidGenotype` names the layer); the search space repairs or rejects such genotypes
(explore/space.py).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass
from typing import Any

import onnx

from aloha_ir.errors import UsageError

KINDS = ("convolution", "conv-group", "pooling", "dense")
SPATIAL = ("convolution", "conv-group", "pooling")
# parameters of each kind with their defaults (a space may fix or range any of them)
DEFAULTS: dict[str, dict[str, Any]] = {
    "convolution": {"maps": 16, "kernel": 3, "stride": 1, "padding": "same"},
    "conv-group": {"convs": 2, "maps": 32, "kernel": 3},
    "pooling": {"mode": "max", "kernel": 2, "stride": 2},
    "dense": {"neurons": 64},
}
CATEGORICAL = {"padding": ("same", "valid"), "mode": ("max", "avg")}


class InvalidGenotype(UsageError):
    """A genotype that does not decode to a network (a layer leaves no spatial output)."""

    kind = "invalid genotype"


@dataclass(frozen=True)
class Gene:
    """One layer: its kind, the index of the search-space slot it came from, its parameters."""

    kind: str
    slot: int
    params: tuple[tuple[str, Any], ...]

    def __getitem__(self, name: str) -> Any:
        for k, v in self.params:
            if k == name:
                return v
        return DEFAULTS[self.kind][name]

    def with_params(self, **changes) -> "Gene":
        merged = dict(self.params) | changes
        return Gene(self.kind, self.slot, tuple(sorted(merged.items())))

    def to_json(self) -> dict:
        return {"kind": self.kind, "slot": self.slot, **dict(self.params)}

    @staticmethod
    def from_json(data: dict) -> "Gene":
        if not isinstance(data, dict) or data.get("kind") not in KINDS or \
                not isinstance(data.get("slot"), int):
            raise UsageError(f"not a gene: {data!r}",
                             hint=f"a gene is {{'kind': one of {', '.join(KINDS)}, 'slot': N, ...}}")
        params = {k: v for k, v in data.items() if k not in ("kind", "slot")}
        unknown = set(params) - set(DEFAULTS[data["kind"]])
        if unknown:
            raise UsageError(f"a {data['kind']} gene has no parameter {', '.join(sorted(unknown))}",
                             hint="parameters: " + ", ".join(DEFAULTS[data["kind"]]))
        return Gene(data["kind"], data["slot"], tuple(sorted(params.items())))

    def label(self) -> str:
        """A short readable name: C16k3s1, G2x32k3, Pmax2s2, D64."""
        if self.kind == "convolution":
            pad = "" if self["padding"] == "same" else "v"
            return f"C{self['maps']}k{self['kernel']}s{self['stride']}{pad}"
        if self.kind == "conv-group":
            return f"G{self['convs']}x{self['maps']}k{self['kernel']}"
        if self.kind == "pooling":
            return f"P{self['mode']}{self['kernel']}s{self['stride']}"
        return f"D{self['neurons']}"


@dataclass(frozen=True)
class Genotype:
    layers: tuple[Gene, ...]

    def to_json(self) -> dict:
        return {"layers": [g.to_json() for g in self.layers]}

    @staticmethod
    def from_json(data: dict) -> "Genotype":
        if not isinstance(data, dict) or not isinstance(data.get("layers"), list):
            raise UsageError("a genotype is {'layers': [gene, ...]}")
        return Genotype(tuple(Gene.from_json(g) for g in data["layers"]))

    def key(self) -> str:
        """The canonical identity of the genotype (the cache key): sha256 of its sorted JSON."""
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def describe(self) -> str:
        return "-".join(g.label() for g in self.layers) or "(no hidden layers)"


def out_size(gene: Gene, size: int) -> int:
    """The spatial size (one dimension) after `gene`; < 1 means the layer leaves nothing."""
    if gene.kind == "convolution":
        k, s = gene["kernel"], gene["stride"]
        pad = 2 * (k // 2) if gene["padding"] == "same" else 0
        return (size + pad - k) // s + 1 if size + pad >= k else 0
    if gene.kind == "conv-group":
        return (size - 2) // 2 + 1 if size >= 2 else 0
    if gene.kind == "pooling":
        k, s = gene["kernel"], gene["stride"]
        return (size - k) // s + 1 if size >= k else 0
    return size


def trace(genotype: Genotype, input_shape: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    """The (C, H, W) after every spatial layer, then (N, 1, 1) after every dense layer. Raises
    InvalidGenotype at the first layer that leaves no output, or a convolution after a dense."""
    c, h, w = input_shape
    shapes, flat = [], False
    for i, gene in enumerate(genotype.layers):
        if gene.kind == "dense":
            flat = True
            c, h, w = gene["neurons"], 1, 1
        elif flat:
            raise InvalidGenotype(f"layer {i} ({gene.label()}) is a {gene.kind} after a dense layer")
        else:
            nh, nw = out_size(gene, h), out_size(gene, w)
            if nh < 1 or nw < 1:
                raise InvalidGenotype(
                    f"layer {i} ({gene.label()}) gets a {h}x{w} input and leaves no output",
                    hint="the space repairs such layers (invalid: repair) when its ranges allow")
            h, w = nh, nw
            c = gene["maps"] if gene.kind != "pooling" else c
        shapes.append((c, h, w))
    return shapes


def to_onnx(genotype: Genotype, input_shape: tuple[int, int, int], classes: int,
            name: str | None = None) -> onnx.ModelProto:
    """The network as ONNX: inputs in [0, 1], seeded weights (the same genotype, the same model)."""
    from frontends.zoo import NetBuilder
    trace(genotype, input_shape)
    key = genotype.key()
    b = NetBuilder(name or f"genotype_{key[:12]}", (1, *input_shape),
                   seed=zlib.crc32(key.encode()))
    x = "input"
    for gene in genotype.layers:
        if gene.kind == "convolution":
            pad = gene["kernel"] // 2 if gene["padding"] == "same" else 0
            x = b.relu(b.conv(x, gene["maps"], gene["kernel"], gene["stride"], pad))
        elif gene.kind == "conv-group":
            for _ in range(gene["convs"]):
                x = b.relu(b.conv(x, gene["maps"], gene["kernel"], 1, gene["kernel"] // 2))
            x = b.pool(x, 2, 2)
        elif gene.kind == "pooling":
            kind = "MaxPool" if gene["mode"] == "max" else "AveragePool"
            x = b.pool(x, gene["kernel"], gene["stride"], kind=kind)
        else:
            if len(b.shapes[x]) == 4:
                x = b.flatten(x)
            x = b.relu(b.dense(x, gene["neurons"]))
    if len(b.shapes[x]) == 4:
        x = b.flatten(x)
    return b.model(b.softmax(b.dense(x, classes)))


def to_module(genotype: Genotype, input_shape: tuple[int, int, int], classes: int,
              name: str | None = None):
    """The network as an nn module (through the ONNX importer, like every other model)."""
    from frontends.onnx import import_model
    model = to_onnx(genotype, input_shape, classes, name)
    return import_model(model, source=f"genotype:{genotype.describe()}",
                        name=model.graph.name)
