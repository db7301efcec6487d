"""`prune`: remove low-impact weights and kernels (the deliverable's section 2.4.5, the paper's 4.3).

Methods (`method=`):
- `threshold`: in every convolution and dense layer, the weights within t x sigma of the layer mean
  mu (|w - mu| < t x sigma, sigma the standard deviation of the layer's weights) collapse to mu.
  Deployed mean-subtracted they are zeros, neither stored nor multiplied; mu's share comes back as mu
  times the input's window sum (aloha_ir.cost counts it). mu and sigma are the layer's before any
  pruning. `iterations=k > 1` reaches t in k equal steps and fine-tunes `epochs` epochs after each,
  holding the collapsed weights at mu (iterative pruning, Han et al. 2015); a weight once collapsed
  stays collapsed.
- `activity`: post-training kernel pruning from a kernel-activity profile (the paper's parsimonious
  inference). A kernel of a rectified convolution (fused relu, clip from 0, or a relu that is the
  output's only use) is active on an image when its output map exceeds `activity_eps` x the layer's
  peak somewhere; its activity is the fraction of `samples` training images it is active on.
  Kernels active on at most `max_activity` of them are replaced by zero: exact for a kernel that
  never fires. Where the width can change (aloha_ir.channels) the kernel is removed, with its input
  columns in the consumers, so shapes, MACs and parameters shrink for every later pass; elsewhere
  its weights and bias become zero. A layer keeps at least its most active kernel. The paper trains
  gating modules (LKAMs) to make kernels idle; `sparsify=lambda` is our substitute: before the
  profile, fine-tune `epochs` epochs under a group-lasso penalty lambda x sum over kernels of
  ||(W_k, b_k)||_2 (structured sparsity learning, Wen et al. 2016), applied as its proximal step
  after every optimiser step, so that kernels the loss does not need become exactly zero.
With `epochs > 0`, the activity method fine-tunes after removal (zeroed kernels held at zero).

Every pruned block gets a `pruning` dictionary attribute (what was done, the counts, and `value`,
the collapse value that analyze-cost and the ONNX sidecar read); the PruneReport
(ctx.report("prune")) gives parameters and MACs before and after, and the accuracy before and after
on the test split when data is given (`data=` or the driver's --data; the activity profile and
fine-tuning need it). A quantized graph may be pruned one-shot: its executors round the collapsed weights into
the layer's format, and accuracy is measured in fixed point; fine-tuning needs the float graph.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import DictionaryAttr, ModuleOp, StringAttr
from xdsl.ir import Operation, SSAValue

from aloha_ir import fixedpoint as fp
from aloha_ir.analysis import NN, Requires
from aloha_ir.channels import WidthGroups, retarget_channels
from aloha_ir.consts import const_tensor, set_blob
from aloha_ir.context import record_reports
from aloha_ir.dialects import nn
from aloha_ir.errors import PassError
from aloha_ir.optable import registrar
from aloha_ir.passmanager import TransformPass
from aloha_ir.weights import weights_of
from passes.analyze_cost import analyze_graph
from passes.execution import accuracy, check_finite_weights, dataset_for, near_chance

METHODS = ("threshold", "activity")
PRUNABLE = (nn.ConvOp, nn.DenseOp)


@dataclass
class LayerPruning:
    name: str
    op: str
    weights: int
    pruned: int                   # weights at the collapse value (threshold) or in zeroed kernels
    mean: float | None = None
    sigma: float | None = None
    kernels: int = 0
    kernels_removed: int = 0
    kernels_zeroed: int = 0
    activity: list[float] = field(default_factory=list)  # per kernel, activity method


@dataclass
class PruneReport:
    graph: str
    method: str
    threshold: float | None
    max_activity: float | None
    iterations: int
    epochs: int
    params_before: int            # deployed parameters (pruned weights excluded)
    params_after: int
    macs_before: int              # MACs with pruned weights skipped
    macs_after: int
    accuracy_before: float | None
    accuracy_after: float | None
    layers: list[LayerPruning] = field(default_factory=list)
    log: list[dict] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def params_removed(self) -> int:
        return self.params_before - self.params_after

    @property
    def macs_removed(self) -> int:
        return self.macs_before - self.macs_after

    def to_json(self) -> dict:
        return {**asdict(self), "params_removed": self.params_removed,
                "macs_removed": self.macs_removed}


def deployed_figures(module: ModuleOp, graph: nn.GraphOp) -> tuple[int, int]:
    """(parameters, MACs) a deployment pays for: pruned weights are neither stored nor multiplied
    (analyze-cost's params_deployed and macs_sparse)."""
    cost = analyze_graph(graph, annotate=False, store=weights_of(module))
    return cost.params_deployed, cost.macs_sparse


# ---------------------------------------------------------------------------------------------------
# Threshold pruning


def _layers(graph: nn.GraphOp) -> list[Operation]:
    return [op for op in graph.ops if isinstance(op, PRUNABLE) and isinstance(op.weight.owner,
                                                                              nn.ConstOp)]


class Collapse:
    """The threshold method's state: per layer, mu, sigma and the weights collapsed so far."""

    def __init__(self, module: ModuleOp, layers: list[Operation]):
        self.module, self.store = module, weights_of(module)
        self.layers = layers
        self.stats: dict[Operation, tuple[float, float]] = {}
        self.masks: dict[Operation, np.ndarray] = {}
        for op in layers:
            w = self.weights(op)
            self.stats[op] = (float(np.float32(w.mean(dtype=np.float64))),
                              float(w.std(dtype=np.float64)))
            self.masks[op] = np.zeros(w.shape, bool)

    def weights(self, op: Operation) -> np.ndarray:
        return const_tensor(op.weight.owner, self.store).materialize()

    def step(self, t: float) -> None:
        """Collapse the weights within t x sigma of mu, on top of those collapsed before."""
        for op in self.layers:
            mu, sigma = self.stats[op]
            w = self.weights(op)
            self.masks[op] |= np.abs(w.astype(np.float64) - mu) < t * sigma
            set_blob(op.weight.owner, self.store,
                     np.where(self.masks[op], np.float32(mu), w).astype(np.float32),
                     f"{nn.block_label(op) or 'w'}.pruned")

    def targets(self) -> dict[SSAValue, tuple[np.ndarray, np.ndarray]]:
        """(mask, values) per weight value: what fine-tuning holds fixed."""
        return {op.weight: (m, np.full(m.shape, self.stats[op][0], np.float32))
                for op, m in self.masks.items() if m.any()}


# ---------------------------------------------------------------------------------------------------
# Kernel activity


def rectified_output(op: Operation) -> SSAValue | None:
    """The value whose zero means `op`'s kernel is idle: the conv's own output with a fused relu (or
    clip from 0), else a relu/clip-from-0 that is its output's only use; None if not rectified."""
    def rectifier(kind: str | None, params) -> bool:
        return kind == "relu" or (kind == "clip" and len(params) == 2 and params[0] == 0.0)
    fused = op.fused_activation()
    if fused is not None:
        return op.output if rectifier(*fused) else None
    uses = list(op.output.uses)
    if len(uses) == 1 and isinstance(uses[0].operation, nn.ActOp):
        act = uses[0].operation
        if rectifier(act.kind.data, nn.floats(act.params)):
            return act.output
    return None


def kernel_activity(module: ModuleOp, graph: nn.GraphOp, data, samples: int, eps: float,
                    batch_size: int = 128) -> dict[Operation, np.ndarray]:
    """Per rectified convolution, the fraction of images on which each kernel is active."""
    import torch

    from runtime.torch.module import GraphModule
    probes = {op: v for op in graph.ops if isinstance(op, nn.ConvOp)
              if (v := rectified_output(op)) is not None}
    m = GraphModule(graph, weights_of(module)).eval()
    peaks: dict[Operation, list[np.ndarray]] = {op: [] for op in probes}
    with torch.no_grad():
        for x, _ in data.head(samples).batches(batch_size):
            values = m.values(torch.from_numpy(x))
            for op, v in probes.items():
                peaks[op].append(values[v].amax(dim=(2, 3)).numpy())
    activity = {}
    for op, chunks in peaks.items():
        p = np.concatenate(chunks)  # [images, kernels]: each map's peak
        top = float(p.max())
        activity[op] = (p > eps * top).mean(axis=0) if top > 0 else np.zeros(p.shape[1])
    return activity


def idle_kernels(activity: np.ndarray, max_activity: float) -> np.ndarray:
    """Kernels active on at most max_activity of the images; the most active one always stays."""
    idle = activity <= max_activity
    if idle.all():
        idle[int(np.argmax(activity))] = False
    return np.flatnonzero(idle)


def zero_kernels(module: ModuleOp, op: nn.ConvOp, kernels: np.ndarray) -> None:
    store = weights_of(module)
    for pos, value in ((1, op.weight), (2, op.bias)):
        if value is None or not len(kernels):
            continue
        a = np.array(const_tensor(value.owner, store).materialize())
        a[kernels] = 0
        set_blob(value.owner, store, a, f"{nn.block_label(op) or 'w'}.pruned")


ZeroRule = Callable[[Operation], bool]

# nn op class -> whether a block of it is channel-wise and maps an all-zero channel to zero, so that
# removing zeroed kernels passes through it (an op without a rule pins its width group;
# tests/test_op_coverage.py lists those with why)
ZERO_PRESERVING: dict[type[Operation], ZeroRule] = {}

# `@zero_preserving(nn.PoolOp)`: the decorated function decides it for the op classes named
zero_preserving = registrar(ZERO_PRESERVING, "zero-preserving rule")


@zero_preserving(nn.PoolOp, nn.DropoutOp, nn.ResizeOp)
def always_zero_preserving(o: Operation) -> bool:
    """Max, mean, copy or interpolation of one channel's zeros is zero."""
    return True


@zero_preserving(nn.ActOp)
def act_zero_preserving(o: nn.ActOp) -> bool:
    """relu, leaky_relu and tanh map 0 to 0; clip when its range holds 0 (sigmoid's 0.5 and
    softmax's mixing of channels do not)."""
    return o.kind.data in ("relu", "leaky_relu", "tanh") or (
        o.kind.data == "clip" and nn.floats(o.params)[0] <= 0.0 <= nn.floats(o.params)[1])


@zero_preserving(nn.PadOp)
def pad_zero_preserving(o: nn.PadOp) -> bool:
    """A rank-4 pad that pads no channels, with zeros (or reflecting/repeating edges)."""
    pads = o.prop_ints("pads")
    return len(pads) == 8 and pads[1] == pads[5] == 0 and (
        o.mode.data != "constant" or o.value.value.data == 0.0)


def passes_zero(o: Operation) -> bool:
    """Whether `o` is channel-wise and maps an all-zero channel to zero (by its ZERO_PRESERVING
    rule)."""
    rule = ZERO_PRESERVING.get(type(o))
    return rule is not None and rule(o)


def remove_kernels(module: ModuleOp, graph: nn.GraphOp, idle: dict[Operation, np.ndarray]
                   ) -> dict[Operation, bool]:
    """Remove the (already zeroed) idle kernels where the width can change; which ops lost them."""
    groups = WidthGroups(graph, passes_zero)
    plan: dict[SSAValue, np.ndarray] = {}
    removed = {}
    for op, kernels in idle.items():
        removed[op] = bool(len(kernels)) and groups.movable(op.output)
        if removed[op]:
            keep = np.setdiff1d(np.arange(nn.shape_of(op.output)[1]), kernels)
            plan.update({v: keep for v in groups.members(op.output)})
    if plan:
        retarget_channels(module, graph, plan, "pruned")
    return removed


# ---------------------------------------------------------------------------------------------------
# Fine-tuning with frozen pruned weights


def fine_tune(module: ModuleOp, graph: nn.GraphOp, splits, opts, hold, *, seed: int,
              sparsify: list[nn.ConvOp] = ()) -> list[dict]:
    """Train `opts.epochs` epochs; `hold()` gives {weight value: (mask, values)} re-applied after
    every step. For the convolutions in `sparsify`, every step ends with the group-lasso proximal
    step: each kernel's (weights, bias) shrinks by lr x opts.sparsify in L2 norm, and a kernel the
    loss does not hold up reaches exactly zero. Returns the training history."""
    import torch

    from runtime.torch.module import GraphModule
    from runtime.torch.train import TrainConfig, train
    m = GraphModule(graph, weights_of(module), logits=True)
    held = {m.const_keys[v]: (torch.from_numpy(mask), torch.from_numpy(values))
            for v, (mask, values) in hold().items() if m.const_roles[m.const_keys[v]] == "param"}
    groups = [[m.const_keys[v] for v in (o.weight, o.bias) if v is not None
               and m.const_keys[v] in m.params] for o in sparsify]
    shrink = opts.lr * opts.sparsify

    def after_step(model) -> None:
        with torch.no_grad():
            for key, (mask, values) in held.items():
                p = model.params[key]
                p.copy_(torch.where(mask, values, p))
            for keys in groups:
                ps = [model.params[k] for k in keys]
                norm = torch.sqrt(sum(p.flatten(1).square().sum(1) if p.dim() > 1 else p.square()
                                      for p in ps))
                scale = torch.clamp(1 - shrink / norm.clamp_min(1e-30), min=0)
                for p in ps:
                    p.mul_(scale.view(-1, *([1] * (p.dim() - 1))))

    after_step(m)
    config = TrainConfig(epochs=opts.epochs, batch_size=opts.batch_size, lr=opts.lr, seed=seed,
                         restore_best=not sparsify,
                         label="prune: sparsify" if sparsify else "prune: fine-tune")
    result = train(m, splits, config, after_step=after_step)
    m.write_back(module)
    return [{"epoch": r.epoch, "train_loss": r.train_loss, "val_accuracy": r.val.accuracy}
            for r in result.history]


# ---------------------------------------------------------------------------------------------------
# The pass


@dataclass(frozen=True)
class PrunePass(TransformPass):
    """Prune weights (threshold x sigma, collapse to the layer mean) or idle kernels (activity)."""

    name = "prune"
    requires = Requires(level=NN, data=True)  # data: see requirements()

    method: str = "threshold"
    threshold: float = 1.0
    iterations: int = 1
    epochs: int = 0
    lr: float = 1e-3
    batch_size: int = 64
    max_activity: float = 0.01
    activity_eps: float = 0.01
    samples: int = 1000
    sparsify: float = 0.0
    data: str = ""
    evaluate: bool = True
    seed: int = 0

    def __post_init__(self):
        if self.method not in METHODS:
            raise PassError(f"unknown pruning method '{self.method}'",
                            hint="methods: " + ", ".join(METHODS))
        rules = [(self.threshold >= 0, "threshold", ">= 0"), (self.iterations >= 1, "iterations",
                                                              ">= 1"),
                 (self.epochs >= 0, "epochs", ">= 0"), (self.lr > 0, "lr", "> 0"),
                 (self.batch_size >= 1, "batch_size", ">= 1"),
                 (0 <= self.max_activity < 1, "max_activity", "in [0, 1)"),
                 (0 <= self.activity_eps < 1, "activity_eps", "in [0, 1)"),
                 (self.samples >= 1, "samples", ">= 1"), (self.sparsify >= 0, "sparsify", ">= 0")]
        for ok, option, rule in rules:
            if not ok:
                raise PassError(f"prune: {option} must be {rule}, got {getattr(self, option)}")
        if self.iterations > 1 and self.epochs == 0:
            raise PassError("iterative pruning fine-tunes between its steps",
                            hint="give epochs >= 1 with iterations > 1")
        if self.sparsify and self.epochs == 0:
            raise PassError("sparsify is a fine-tuning penalty", hint="give epochs >= 1")

    def requirements(self) -> Requires:
        """Data for the activity profile and for fine-tuning."""
        return Requires(level=NN, data=self.method == "activity" or self.epochs > 0)

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        from aloha_ir.dialects.nn import graph_of
        graph = graph_of(op)
        quantized = any(fp.format_of(o.results[0]) for o in graph.ops if o.results)
        if quantized and self.epochs:
            raise PassError("fine-tuning a quantized graph is quantize's job",
                            hint="prune the float model with epochs, then quantize; or prune the "
                                 "quantized one with epochs=0")
        check_finite_weights(graph, weights_of(op))
        needs_data = self.method == "activity" or self.epochs > 0
        splits = dataset_for(ctx, self.data, graph, self.name) \
            if needs_data or self.data or getattr(ctx, "dataset", None) is not None else None
        seconds: dict[str, float] = {}
        evaluate = self.evaluate and splits is not None

        def measure(label: str) -> float | None:
            if not evaluate:
                return None
            t0 = time.perf_counter()
            acc = _accuracy(op, splits, quantized)
            seconds[label] = time.perf_counter() - t0
            return acc

        params0, macs0 = deployed_figures(op, graph)
        acc0 = measure("evaluate_before")
        t0 = time.perf_counter()
        log: list[dict] = []
        if self.method == "threshold":
            layers = self._threshold(op, graph, splits, log)
        else:
            layers = self._activity(op, graph, splits, log)
        seconds["prune"] = time.perf_counter() - t0
        params1, macs1 = deployed_figures(op, graph)
        untrained = near_chance(acc0, splits.test) if acc0 is not None else None
        record_reports(ctx, self.name, {graph.sym_name.data: PruneReport(
            graph.sym_name.data, self.method,
            self.threshold if self.method == "threshold" else None,
            self.max_activity if self.method == "activity" else None, self.iterations,
            self.epochs, params0, params1, macs0, macs1, acc0, measure("evaluate_after"), layers,
            log, seconds, [untrained] if untrained else [])})

    # --- threshold -------------------------------------------------------------------------------
    def _threshold(self, module: ModuleOp, graph: nn.GraphOp, splits, log) -> list[LayerPruning]:
        collapse = Collapse(module, _layers(graph))
        for k in range(1, self.iterations + 1):
            t = self.threshold * k / self.iterations
            collapse.step(t)
            if self.epochs:
                history = fine_tune(module, graph, splits, self, collapse.targets,
                                    seed=self.seed + k)
                log.append({"step": k, "threshold": t, "history": history})
        layers = []
        for op in collapse.layers:
            mu, sigma = collapse.stats[op]
            mask = collapse.masks[op]
            _annotate(op, {"method": StringAttr("threshold"),
                           "threshold": nn.float_attr(self.threshold),
                           "value": nn.float_attr(mu), "sigma": nn.float_attr(sigma),
                           "pruned": nn.int_attr(int(mask.sum())),
                           "total": nn.int_attr(mask.size)})
            layers.append(LayerPruning(_label(graph, op), op.name, mask.size, int(mask.sum()), mu,
                                       sigma))
        return layers

    # --- kernel activity -------------------------------------------------------------------------
    def _activity(self, module: ModuleOp, graph: nn.GraphOp, splits, log) -> list[LayerPruning]:
        convs = [o for o in graph.ops if isinstance(o, nn.ConvOp) and rectified_output(o)
                 and isinstance(o.weight.owner, nn.ConstOp)]
        if not convs:
            raise PassError("no rectified convolution to profile", hint="kernel activity needs "
                            "convolutions followed by relu (or clip from 0)")
        if self.sparsify:
            history = fine_tune(module, graph, splits, self, dict,
                                seed=self.seed, sparsify=convs)
            log.append({"phase": "sparsify", "lambda": self.sparsify, "history": history})
        activity = kernel_activity(module, graph, splits.train, self.samples, self.activity_eps,
                                   self.batch_size)
        idle = {o: idle_kernels(activity[o], self.max_activity) for o in convs}
        facts = {o: (nn.shape_of(o.output)[1], math.prod(nn.shape_of(o.weight)),
                     _label(graph, o)) for o in convs}
        for o, kernels in idle.items():
            zero_kernels(module, o, kernels)
        removed = remove_kernels(module, graph, idle)
        if self.epochs:
            def hold():  # zeroed kernels (not removed) stay zero: weights and bias
                held = {}
                for o in convs:
                    if not removed[o] and len(idle[o]):
                        for v in (o.weight, o.bias):
                            if v is not None:
                                mask = np.zeros(nn.shape_of(v), bool)
                                mask[idle[o]] = True
                                held[v] = (mask, np.zeros(mask.shape, np.float32))
                return held
            history = fine_tune(module, graph, splits, self, hold, seed=self.seed + 1)
            log.append({"phase": "fine-tune", "history": history})
        layers = []
        for o in convs:
            kernels, size, name = facts[o]
            n = len(idle[o])
            gone, zeroed = (n, 0) if removed[o] else (0, n)
            per_kernel = size // kernels
            if n:
                _annotate(o, {"method": StringAttr("activity"),
                              "max_activity": nn.float_attr(self.max_activity),
                              "kernels_removed": nn.int_attr(gone),
                              "kernels_zeroed": nn.int_attr(zeroed),
                              "kernels": nn.int_attr(kernels)})
            layers.append(LayerPruning(name, o.name, size, n * per_kernel, kernels=kernels,
                                       kernels_removed=gone, kernels_zeroed=zeroed,
                                       activity=[round(float(a), 6) for a in activity[o]]))
        return layers


def _accuracy(module: ModuleOp, splits, quantized: bool) -> float:
    if quantized:
        from runtime.torch.fixed import build_fixed
        return accuracy(build_fixed(module, logits=True), splits.test)
    from runtime.torch.module import build
    return accuracy(build(module, logits=True), splits.test)


def _annotate(op: Operation, entries: dict) -> None:
    op.attributes["pruning"] = DictionaryAttr(entries)


def _label(graph: nn.GraphOp, op: Operation) -> str:
    from aloha_ir.dialects.nn import op_label
    return op_label(op, list(graph.ops).index(op))
