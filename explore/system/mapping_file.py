"""Mapping files (`aloha-mapping/1`, JSON; see the package docstring): what `alohac
explore-mapping` writes and `alohac compile --mapping` applies."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from aloha_ir.errors import InputFileError
from archdesc.model import DATATYPE_BITS
from explore.system.refine import FIGURE_KEYS, Point
from explore.system.search import SearchResult
from flows.target import Placement

MAPPING_FORMAT = "aloha-mapping/1"


@dataclass(frozen=True)
class Mapping:
    """A saved mapping: what `alohac compile --mapping` applies."""

    model: str
    platform: str
    bits: int
    opp: str | None
    partition: dict[str, int]
    assignment: dict[str, str]
    predicted: dict
    units: tuple[str, ...] = ()  # the units the greedy rule may use (empty: all)
    inputs: dict | None = None  # the model's input shapes it was made for (None: not recorded)
    fits: bool | None = None

    def placement(self, source: str = "") -> Placement:
        """What the target flow applies: the plan, every actor's unit, the units the greedy
        rule may use; `source` is the file it was read from (its errors then name it)."""
        return Placement(tuple(self.partition.items()), tuple(self.assignment.items()),
                         self.units, source, self.model)


def mapping_json(result: SearchResult, point: Point | None = None) -> dict:
    point = point or result.chosen
    fig = point.figures
    return {
        "format": MAPPING_FORMAT, "model": result.model, "platform": result.platform,
        "datatype": fig["datatype"], "bits": DATATYPE_BITS[fig["datatype"]],
        "operating_point": point.design.opp, "partition": dict(point.design.plan),
        "assignment": point.assignment, "units": list(point.design.units),
        "pe": dict(point.design.pe), "fits": bool(fig["fits"]),
        "inputs": result.inputs,
        "predicted": {k: fig[k] for k in FIGURE_KEYS},
        "estimate": point.estimate.to_json(),
        "greedy": {k: result.greedy[k] for k in FIGURE_KEYS},
        "search": {"seed": result.seed, "evaluations": result.evaluations,
                   "refined": len(result.refined)},
    }


def save_mapping(path: str, data: dict) -> str:
    from aloha_ir.outputs import write_text
    return write_text(path, json.dumps(data, indent=1) + "\n")


def load_mapping(path: str, platform: str | None = None, model: str | None = None,
                 inputs: dict | None = None) -> Mapping:
    """Read and check a mapping file; `platform`/`model` are what it will be applied to, and
    `inputs` that model's input shapes (model_inputs of the loaded module; None: not checked)."""
    from frontends.loader import model_stem
    if not os.path.exists(path):
        raise InputFileError("no such mapping file", where=path,
                             hint="make one with alohac explore-mapping MODEL --target T -o OUT")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputFileError(f"not a JSON mapping file ({e})", where=path) from None
    except RecursionError:
        raise InputFileError("not a mapping file (JSON nested too deeply)", where=path) from None
    if not isinstance(data, dict) or data.get("format") != MAPPING_FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise InputFileError(f"not an {MAPPING_FORMAT} file (format {got!r})", where=path,
                             hint="alohac explore-mapping writes OUT/mapping.json")
    checks = {"model": str, "platform": str, "partition": dict, "assignment": dict,
              "bits": int}
    for key, kind in checks.items():
        if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
            raise InputFileError(f"'{key}' must be a {kind.__name__}", where=path)
    opp = data.get("operating_point")
    if opp is not None and not isinstance(opp, str):
        raise InputFileError("'operating_point' must be a string or null", where=path)
    if data["bits"] not in DATATYPE_BITS.values():
        raise InputFileError(f"'bits' {data['bits']} is not one of "
                             f"{sorted(DATATYPE_BITS.values())}", where=path)
    bad = [f"{a}: {n!r}" for a, n in data["partition"].items()
           if not isinstance(n, int) or isinstance(n, bool) or n < 1]
    bad += [f"{a}: {u!r}" for a, u in data["assignment"].items() if not isinstance(u, str) or not u]
    if bad:
        raise InputFileError(f"bad entries: {', '.join(bad[:3])}", where=path,
                             hint="partition: ACTOR -> parts >= 1; assignment: ACTOR -> unit")
    if any(c in a for a in [*data["partition"], *data["assignment"]] for c in ';:"'):
        raise InputFileError("actor names cannot hold ';', ':' or '\"'", where=path)
    units = data.get("units", [])
    if not isinstance(units, list) or not all(isinstance(u, str) and u and "," not in u
                                              and '"' not in u for u in units):
        raise InputFileError("'units' must be a list of unit names", where=path)
    recorded = data.get("inputs")
    if recorded is not None and not (
            isinstance(recorded, dict) and all(
                isinstance(d, list) and all(isinstance(n, int) and not isinstance(n, bool)
                                            for n in d) for d in recorded.values())):
        raise InputFileError("'inputs' must map input names to shapes (lists of ints)",
                             where=path)
    predicted = data.get("predicted")
    if predicted is not None and not (isinstance(predicted, dict) and all(
            v is None or isinstance(v, (int, float)) for v in predicted.values())):
        raise InputFileError("'predicted' must map figure names to numbers", where=path,
                             hint="alohac explore-mapping writes it; or leave it out")
    fits = data.get("fits")
    if fits is not None and not isinstance(fits, bool):
        raise InputFileError("'fits' must be true or false", where=path)
    if platform is not None and data["platform"] != platform:
        raise InputFileError(f"the mapping is for {data['platform']}, not {platform}",
                             where=path, hint=f"explore again with --target {platform}")
    if model is not None and model_stem(data["model"]) != model_stem(model):
        raise InputFileError(f"the mapping is for {data['model']}, not {model}", where=path,
                             hint=f"explore again: alohac explore-mapping {model} ...")
    if inputs is not None and recorded is not None:
        got = {k: [int(n) for n in v] for k, v in inputs.items()}
        if got != recorded:
            def shapes(d):
                return ", ".join(f"{k}={','.join(map(str, v))}" for k, v in sorted(d.items()))
            raise InputFileError(f"the mapping was made for input shapes {shapes(recorded)}, "
                                 f"not {shapes(got)}", where=path,
                                 hint="pass the same --input-shape, or explore again with "
                                      "these shapes")
    return Mapping(data["model"], data["platform"], data["bits"], opp, dict(data["partition"]),
                   dict(data["assignment"]), dict(data.get("predicted") or {}), tuple(units),
                   recorded, fits)
