"""The job kinds: each a typed parameter model and the `alohac` command that does the work.

A job runs the command line's own code (alohac.main.main with an argv), in a process of its own:
the service is an orchestrator of the same stateless tools a user runs by hand, so a job and the
command give the same answer and there is no second copy of any flow. A kind says which argv its
parameters make (references resolved to the files they name: service.resources), where the
command's result is (its --json line, or a file it wrote), and which files are its artefacts.

The flow kind has no command: the runner drives it as a sequence of child jobs (service.flow).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

OUT = "out"  # the command's output folder, relative to the job's folder (its working directory)
INPUTS = "in"  # uploaded files linked under the name they were sent with, relative to the same

ModelRef = Annotated[str, Field(min_length=1, max_length=300, examples=["zoo:lenet5"],
                                description="zoo:NAME, model:DIGEST (POST /models) or "
                                            "job:ID/PATH (a model a job wrote)")]
DataRef = Annotated[str, Field(min_length=1, max_length=100, examples=["digits"],
                               description="digits, mnist, or dataset:DIGEST (POST /datasets)")]
Platform = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$",
                                examples=["neuraghe-losa"], description="GET /platforms")]
Bits = Literal[8, 16, 32]
Seed = Annotated[int, Field(ge=0, le=2**31 - 1, description="seed of every random choice: the "
                                                            "same seed, the same result")]
Eps = Annotated[str, Field(pattern=r"^[0-9eE.+:,-]{1,200}$", examples=["0:0.3:0.05"],
                           description="START:STOP:STEP or a comma-separated list")]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AnalyzeParams(_Params):
    """A model's predicted latency, throughput, energy, processors and memory on a platform (the
    seeds' Table 6 figures) and the Gantt chart of its schedule."""
    model: ModelRef
    target: Platform
    bits: Bits | None = None
    opp: Annotated[str, Field(max_length=100, pattern=r"^[A-Za-z0-9_.-]*$")] = ""
    gantt: bool = True


class CompileParams(_Params):
    """The deployed program: report, IR, generated code (download /archive for a zip)."""
    model: ModelRef
    target: Platform
    bits: Bits | None = None
    buffers: Literal["schedule", "minimal"] = "schedule"
    mapping: Annotated[str, Field(max_length=300, description="job:ID/mapping.json of an "
                                  "explore-mapping job")] = ""
    data: DataRef | None = Field(None, description="calibration data for a float model the "
                                 "platform computes in fixed point")


class TrainParams(_Params):
    """Train a zoo model (seeded weights) or fine-tune an uploaded one on a dataset."""
    model: ModelRef
    data: DataRef = "digits"
    epochs: Annotated[int, Field(ge=1, le=500)] = 10
    lr: Annotated[float, Field(gt=0, le=10)] = 1e-3
    seed: Seed = 0


class QuantizeParams(_Params):
    """Quantize to power-of-two fixed point (post-training, or fine-tuned)."""
    model: ModelRef
    data: DataRef = "digits"
    bits: Annotated[str, Field(pattern=r"^\d{1,2}(,\d{1,2})?$")] = "8"
    method: Literal["ptq", "pact", "dorefa", "inq"] = "ptq"
    granularity: Literal["layer", "channel"] = "layer"
    samples: Annotated[int, Field(ge=1, le=100_000)] = 512
    epochs: Annotated[int, Field(ge=0, le=500)] = 30
    seed: Seed = 0


class PruneParams(_Params):
    """Prune weights near the layer mean (threshold) or kernels that never fire (activity)."""
    model: ModelRef
    data: DataRef = "digits"
    method: Literal["threshold", "activity"] = "threshold"
    threshold: Annotated[str, Field(pattern=r"^[0-9.]{1,10}(,[0-9.]{1,10}){0,20}$")] = "1.0"
    epochs: Annotated[int, Field(ge=0, le=500)] = 0
    seed: Seed = 0


class SecurityParams(_Params):
    """The security evaluation curve (accuracy under attack vs epsilon), adversarial examples
    with the model's output per epsilon, and the adversarial set."""
    model: ModelRef
    data: DataRef = "digits"
    attack: Literal["fgsm", "pgd"] = "pgd"
    norm: Literal["inf", "2", "1"] = "inf"
    eps: Eps | None = None
    samples: Annotated[int, Field(ge=1, le=100_000)] | None = None
    steps: Annotated[int, Field(ge=1, le=10_000)] | None = None
    mode: Literal["fast", "slow"] = "fast"
    examples: Annotated[int, Field(ge=0, le=20)] = 3
    save_adversarial: bool = True
    seed: Seed = 0


class ExploreParams(_Params):
    """Algorithm-level exploration: networks of a genotype space trading accuracy against the
    platform's figures, a Pareto front per scenario and its chosen point."""
    space: Annotated[str, Field(pattern=r"^space:[A-Za-z0-9_-]{1,50}$",
                                examples=["space:seed-example"])] = "space:seed-example"
    data: DataRef = "digits"
    target: Platform
    bits: Bits | None = None
    objectives: Annotated[str, Field(pattern=r"^[a-z_]{1,30}(,[a-z_]{1,30}){0,9}$")] = \
        "accuracy,latency,energy"
    constraints: Annotated[list[Annotated[str, Field(max_length=100, pattern=r"^[\w.]+(<=|>=)"
                                                     r"[\w.]+$")]], Field(max_length=10)] = []
    choose: Annotated[str, Field(pattern=r"^(knee|(max|min):[a-z_]{1,30})$")] = "knee"
    algorithm: Literal["nsga2", "random", "grid"] = "nsga2"
    budget: Annotated[int, Field(ge=1, le=10_000)] = 60
    pop_size: Annotated[int, Field(ge=2, le=1000)] | None = None
    proxy_epochs: Annotated[int, Field(ge=1, le=1000)] = 16
    proxy_subset: Annotated[int, Field(ge=0, le=1_000_000)] = 1024
    lrs: Annotated[str, Field(pattern=r"^[0-9.eE+-]{1,12}(,[0-9.eE+-]{1,12}){0,9}$",
                              description="learning rates the proxy's halving picks from "
                                          "(default: 3e-3,1e-3,3e-4,1e-4)")] | None = None
    seed: Seed = 0


class ExploreMappingParams(_Params):
    """System-level exploration: partitionings and mappings of a model on a platform."""
    model: ModelRef
    target: Platform
    bits: Bits | None = None
    budget: Annotated[int, Field(ge=1, le=100_000)] = 1500
    refine: Annotated[int, Field(ge=0, le=1000)] = 8
    seed: Seed = 0


class FairnessParams(_Params):
    """Dataset bias and model fairness: the data, a logistic regression, an MLP and its 8-bit
    deployment, with 95% intervals, differential bias, mitigation (alohac fairness)."""
    data: Literal["adult", "compas", "german"] = "german"
    sensitive: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,40}(,[A-Za-z0-9_-]{1,40}){0,4}$",
                                    examples=["sex,age"])] | None = None
    mitigate: list[Literal["reweigh", "threshold"]] = []
    bootstrap: Annotated[int, Field(ge=0, le=5000)] = 500
    epochs: Annotated[int, Field(ge=1, le=200)] = 10
    mlp: bool = True
    seed: Seed = 0


class FlowParams(_Params):
    """The seeds' orchestrated flow: algorithm-level exploration -> the chosen scenario point ->
    system-level mapping search -> compile -> code, each stage a child job."""
    explore: ExploreParams
    mapping_budget: Annotated[int, Field(ge=1, le=100_000)] = 300
    refine: Annotated[int, Field(ge=0, le=1000)] = 4
    scenario: Annotated[str, Field(max_length=100, pattern=r"^[A-Za-z0-9_.-]*$",
                                   description="the explored scenario whose chosen point is "
                                               "deployed (default: the first)")] = ""


PARAMS: dict[str, type[_Params]] = {
    "analyze": AnalyzeParams, "compile": CompileParams, "train": TrainParams,
    "quantize": QuantizeParams, "prune": PruneParams, "security": SecurityParams,
    "explore": ExploreParams, "explore-mapping": ExploreMappingParams,
    "fairness": FairnessParams, "flow": FlowParams}


@dataclass(frozen=True)
class Command:
    """What a job's process runs: alohac's argv, and where its result is."""

    argv: list[str]
    result_file: str = ""  # relative to the job folder; "" = the --json line on stdout
    inputs: dict[str, str] = field(default_factory=dict)  # job-relative name -> stored file


def _opt(flag: str, value) -> list[str]:
    return [] if value in (None, "") else [flag, str(value)]


def command(kind: str, p: _Params, res, jobs_root: str) -> Command:
    """The argv of a job of `kind` with parameters `p`; `res` (service.resources.Resources)
    resolves the references, so a bad one fails here, at submission."""
    inputs: dict[str, str] = {}
    return replace(_command(kind, p, res, jobs_root, inputs), inputs=inputs)


def _command(kind: str, p: _Params, res, jobs_root: str, inputs: dict[str, str]) -> Command:
    def model() -> str:
        """The model's path; an upload under the name it was sent with (linked into the job's
        folder), so titles and messages show the user's name, not the store's digest."""
        path, name = res.resolve_model(p.model, jobs_root), res.uploaded_name(p.model)
        if name is None:
            return path
        inputs[f"{INPUTS}/{name}"] = path
        return f"{INPUTS}/{name}"

    data = (lambda: res.resolve_dataset(p.data))
    if kind in ("analyze", "compile", "explore", "explore-mapping"):
        res.check_platform(p.target)
    if kind == "analyze":
        return Command(["analyze", model(), "--target", p.target, *_opt("--bits", p.bits),
                        *_opt("--opp", p.opp), "--json",
                        *(["--gantt", f"{OUT}/gantt.png"] if p.gantt else [])])
    if kind == "compile":
        mapping = res.resolve_model(p.mapping, jobs_root) if p.mapping else ""
        return Command(["compile", model(), "--target", p.target, *_opt("--bits", p.bits),
                        "--buffers", p.buffers, *_opt("--mapping", mapping),
                        *_opt("--data", p.data and data()), "-o", OUT,
                        "--gantt", f"{OUT}/gantt.png"], f"{OUT}/report.json")
    if kind == "train":
        return Command(["train", model(), "--data", data(), "--epochs", str(p.epochs),
                        "--lr", str(p.lr), "--seed", str(p.seed), "--json",
                        "-o", f"{OUT}/model.onnx"])
    if kind == "quantize":
        return Command(["quantize", model(), "--data", data(), "--bits", p.bits,
                        "--method", p.method, "--granularity", p.granularity,
                        "--samples", str(p.samples), "--epochs", str(p.epochs),
                        "--seed", str(p.seed), "--json", "-o", OUT])
    if kind == "prune":
        return Command(["prune", model(), "--data", data(), "--method", p.method,
                        "--threshold", p.threshold, "--epochs", str(p.epochs),
                        "--seed", str(p.seed), "--json", "-o", OUT])
    if kind == "security":
        return Command(["secure", model(), "--data", data(), "--attack", p.attack,
                        "--norm", p.norm, *_opt("--eps", p.eps), *_opt("--samples", p.samples),
                        *_opt("--steps", p.steps), "--mode", p.mode,
                        "--examples", str(p.examples),
                        *(["--save-adversarial"] if p.save_adversarial else []),
                        "--seed", str(p.seed), "--json", "-o", OUT])
    if kind == "explore":
        return Command(["explore", p.space, "--target", p.target, *_opt("--bits", p.bits),
                        "--data", data(), "--objectives", p.objectives,
                        *[a for c in p.constraints for a in ("--constraint", c)],
                        "--choose", p.choose, "--algorithm", p.algorithm,
                        "--budget", str(p.budget), *_opt("--pop-size", p.pop_size),
                        "--proxy-epochs", str(p.proxy_epochs),
                        "--proxy-subset", str(p.proxy_subset), *_opt("--lrs", p.lrs),
                        "--seed", str(p.seed),
                        "--workers", "0", "--json", "-o", OUT])
    if kind == "explore-mapping":
        return Command(["explore-mapping", model(), "--target", p.target,
                        *_opt("--bits", p.bits), "--budget", str(p.budget),
                        "--refine", str(p.refine), "--seed", str(p.seed), "--json", "-o", OUT])
    if kind == "fairness":
        return Command(["fairness", "--data", p.data, *_opt("--sensitive", p.sensitive),
                        *_opt("--mitigate", ",".join(p.mitigate)),
                        "--bootstrap", str(p.bootstrap), "--epochs", str(p.epochs),
                        *([] if p.mlp else ["--no-mlp"]), "--seed", str(p.seed), "--json",
                        "-o", OUT])
    raise ValueError(f"kind {kind} has no command")


def read_result(folder: str, cmd: Command, stdout: str) -> dict | None:
    """The job's result: its --json line (the last line of stdout that is a JSON object) or the
    file the command wrote."""
    if cmd.result_file:
        try:
            with open(os.path.join(folder, cmd.result_file)) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None
