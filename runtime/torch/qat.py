"""Quantization-aware fine-tuning for the quantize pass: PACT (+ linear weights), DoReFa, INQ.

Training runs on the float GraphModule with fake quantizers hooked in (`act_fns`, `weight_fns`), then
a last phase trains with the deployment's own power-of-two formats, so snapping loses little. The
trained weights are written back into the IR and the PACT clip levels become the activation ranges the
pass turns into formats.

Precision relaxation (the seeds' Table 4 and the paper's section 4.1.1): precision p starts at
`start_bits` (Q1.15 = 16) and drops by log2(relaxation_factor) bits (sqrt(2): half a bit) whenever the
training is stale: over the last `delta_loss_window` epochs, the mean and standard deviation of the
change of the total training loss (summed over the epoch's batches) are both below their thresholds,
for `stale_checks` consecutive epochs, with the total loss below `loss_target`. The window is reset at
each drop. Inputs stop at 8 bits. Relaxation ends at the target bits.

Table 4's 20-epoch window was made for long trainings: within a budget of 30 epochs it allows one
drop, after which the power-of-two phase would jump straight to the target. So the schedule is first
fitted to the budget (`plan_relaxation`): the target must be reachable at least one epoch before the
last one if every check is stale; failing that with Table 4's window, an automatic window
(`delta_loss_window=0`) is shortened, down to 2 epochs; failing that too (or with a window the user
fixed) the drops grow, fewer and larger. Each drop, and why the target was or was not reached, is
recorded (`Relaxation.summary`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from xdsl.dialects.builtin import ModuleOp

from aloha_ir import fixedpoint as fp
from aloha_ir.dialects import nn
from aloha_ir.dialects.nn import graph_of
from aloha_ir.weights import weights_of
from quant.formats import Range
from runtime.torch.calibrate import calibrate
from runtime.torch.fixed import floor_ste
from runtime.torch.module import GraphModule

INQ_STAGES = (0.5, 0.75, 0.875, 1.0)
SNAP_EPOCHS = 2
TABLE4_WINDOW = 20  # epochs of delta loss the staleness statistics cover (the seeds' Table 4)
MIN_WINDOW = 2  # the fewest delta-loss epochs whose mean and spread still say something


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round half up with a straight-through gradient (the deployment's rounding)."""
    return floor_ste(x + 0.5)


class Precision:
    """The current precision in (possibly fractional) bits, shared by every quantizer."""

    def __init__(self, weight_bits: float, act_bits: float):
        self.weight_bits = weight_bits
        self.act_bits = act_bits
        self.pow2 = False  # the deployment's formats: integer bits, power-of-two steps


class ActQuant(torch.nn.Module):
    """PACT: y = clip(x, 0, alpha) (or [-alpha, alpha] for signed values), quantized to 2**p - 1
    levels with a trained alpha; in pow2 mode, the power-of-two format that holds alpha."""

    def __init__(self, alpha: float, signed: bool, precision: Precision, target_bits: int):
        super().__init__()
        self.alpha = torch.nn.Parameter(torch.tensor(float(max(alpha, 1e-3))))
        self.signed = signed
        self.precision = precision
        self.target_bits = target_bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.alpha
        lo = -a if self.signed else torch.zeros_like(a)
        y = torch.maximum(torch.minimum(x, a), lo)
        if self.precision.pow2:
            fmt = fp.format_for(float(a.detach()), self.target_bits, self.signed)
            q = torch.clamp(round_ste(y * 2.0 ** fmt.frac), fmt.qmin, fmt.qmax)
            return q * 2.0 ** -fmt.frac
        levels = 2.0 ** self.precision.act_bits - 1
        eps = (a - lo) / levels
        return round_ste((y - lo) / eps) * eps + lo


class WeightQuant(torch.nn.Module):
    """Linear symmetric (PACT's weights) or DoReFa weights at the current precision; pow2 mode uses
    the deployment's per-layer format."""

    def __init__(self, method: str, precision: Precision, target_bits: int):
        super().__init__()
        self.method = method
        self.precision = precision
        self.target_bits = target_bits

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.method == "dorefa":
            t = torch.tanh(w)
            t = t / (2 * t.abs().max().clamp_min(1e-12)) + 0.5
            k = 2.0 ** self.precision.weight_bits - 1
            w = 2 * (round_ste(t * k) / k) - 1
        top = float(w.detach().abs().max())
        if top == 0:
            return w
        if self.precision.pow2:
            fmt = fp.format_for(top, self.target_bits)
            return torch.clamp(round_ste(w * 2.0 ** fmt.frac), fmt.qmin, fmt.qmax) * \
                2.0 ** -fmt.frac
        if self.method == "dorefa":
            return w
        half_levels = 2.0 ** (self.precision.weight_bits - 1) - 1
        return round_ste(w / top * half_levels) * (top / half_levels)


def inq_quantize(w: np.ndarray, bits: int) -> np.ndarray:
    """INQ's power-of-two values {0, +-2**n2 .. +-2**n1} (Zhou et al. 2017), with n1 from the
    largest weight as in the paper and n2 = n1 + 2 - bits, so that every value is exact in the
    `bits`-wide power-of-two fixed-point format the weights deploy in (the paper's n2 would need
    more bits than a b-bit fixed-point multiplier has)."""
    top = float(np.abs(w).max())
    if top == 0:
        return w
    n1 = math.floor(math.log2(4 * top / 3))
    n2 = n1 + 2 - bits
    a = np.abs(w)
    with np.errstate(divide="ignore"):
        n = np.floor(np.log2(np.maximum(a, 1e-30) * 4 / 3))
    n = np.clip(n, n2, n1)
    q = np.where(a >= 2.0 ** (n2 - 1), np.exp2(n), 0.0)
    return (np.sign(w) * q).astype(w.dtype)


@dataclass(frozen=True)
class RelaxationPlan:
    """The relaxation schedule fitted to the epoch budget, decided before training.

    `drops` of `step_bits` each take the precision from the start to the target; with every check
    stale, drop k happens at epoch k x (window + stale_checks - 1) + 1 and the last one at
    `target_epoch`. `note` says what was changed from Table 4's schedule and why ("" when it fits);
    with `drops` 0 it says why nothing can be relaxed."""

    start_weight_bits: float
    start_activation_bits: float
    target_weight_bits: int
    target_activation_bits: int
    epochs: int
    window: int
    stale_checks: int
    step_bits: float
    drops: int
    target_epoch: int | None
    note: str = ""

    def to_json(self) -> dict:
        return asdict(self)


def _drop_epoch(k: int, window: int, stale_checks: int) -> int:
    """The epoch of the k-th drop when every check is stale: the first needs window + 1 losses
    (window deltas) and stale_checks checks; after a drop the window restarts from that loss."""
    return k * (window + stale_checks - 1) + 1


def plan_relaxation(epochs: int, start: tuple[float, float], target: tuple[int, int],
                    factor: float, window: int, stale_checks: int) -> RelaxationPlan:
    """Fit the relaxation from `start` to `target` (weight, activation bits) into `epochs`, leaving
    at least one epoch at the target. `window` 0 is automatic: Table 4's, shortened to fit."""
    base = round(math.log2(factor), 12)  # sqrt(2): exactly half a bit
    gap = max(start[0] - target[0], start[1] - target[1], 0.0)
    table4 = window or TABLE4_WINDOW

    def plan(w: int, step: float, drops: int, note: str = "") -> RelaxationPlan:
        return RelaxationPlan(start[0], start[1], target[0], target[1], epochs, w, stale_checks,
                              step, drops, _drop_epoch(drops, w, stale_checks) if drops else None,
                              note)

    def fits(k: int, w: int) -> bool:
        return _drop_epoch(k, w, stale_checks) < epochs

    if gap == 0:
        return plan(table4, base, 0, "the start precision is the target: nothing to relax")
    need = math.ceil(gap / base - 1e-9)
    if fits(need, table4):
        return plan(table4, base, need)
    full = (f"{need} drops of {base:g} bit with a {table4}-epoch window reach the target at epoch "
            f"{_drop_epoch(need, table4, stale_checks)} at the earliest, past the "
            f"{epochs}-epoch budget")
    w = table4
    if not window:
        w = (epochs - 2) // need - stale_checks + 1
        if w >= MIN_WINDOW:
            return plan(min(w, table4), base, need, f"{full}: window shortened to {w} epochs")
        w = MIN_WINDOW
    drops = min(need, (epochs - 2) // (w + stale_checks - 1))
    if drops >= 1:
        step = gap / drops
        return plan(w, step, drops, f"{full}: {drops} drop{'s' * (drops > 1)} of {step:.3g} bits "
                                    f"with a {w}-epoch window instead")
    least = _drop_epoch(1, w, stale_checks) + 1
    shorter = f" or a --delta-loss-window below {w}" if window > MIN_WINDOW else ""
    return plan(w, base, 0, f"one drop with a {w}-epoch window and {stale_checks} stale checks "
                            f"needs {least} epochs, the budget is {epochs}: give --epochs >= "
                            f"{least}{shorter}")


class Relaxation:
    """The precision-relaxation heuristic as the training engine's on_epoch callback, on `plan`'s
    window and step. `steps` records each drop, `summary()` whether the target was reached."""

    def __init__(self, opts, precision: Precision, batches: int, log: list[dict],
                 plan: RelaxationPlan):
        self.o = opts
        self.p = precision
        self.batches = batches
        self.log = log
        self.plan = plan
        self.losses: list[float] = []
        self.stale = 0
        self.steps: list[dict] = []
        self.last_check: dict | None = None

    def state_dict(self) -> dict:
        """What a training checkpoint must carry for a resumed relaxation to continue."""
        return {"weight_bits": self.p.weight_bits, "act_bits": self.p.act_bits,
                "losses": list(self.losses), "stale": self.stale, "log": list(self.log),
                "steps": list(self.steps), "last_check": self.last_check}

    def load_state_dict(self, state: dict) -> None:
        self.p.weight_bits, self.p.act_bits = state["weight_bits"], state["act_bits"]
        self.losses, self.stale = list(state["losses"]), state["stale"]
        self.log[:] = state["log"]
        # checkpoints written before the drops were recorded lack these two
        self.steps, self.last_check = list(state.get("steps", [])), state.get("last_check")

    def done(self) -> bool:
        return self.p.weight_bits <= self.o.bits and self.p.act_bits <= self.o.activation_bits

    def __call__(self, epoch: int, record) -> bool | None:
        total = float(record.train_loss) * self.batches
        self.losses.append(total)
        window = self.plan.window
        deltas = np.diff(self.losses[-(window + 1):])
        entry = {"epoch": epoch, "total_loss": total, "weight_bits": self.p.weight_bits,
                 "activation_bits": self.p.act_bits, "val_accuracy": _val_accuracy(record),
                 "relaxed": False}
        if len(deltas) >= window and self.plan.drops and not self.done():
            mean, std = float(deltas.mean()), float(deltas.std())
            stale = abs(mean) < self.o.delta_loss_avg_thresh and \
                std < self.o.delta_loss_stdev_thresh
            self.stale = self.stale + 1 if stale else 0
            self.last_check = {"epoch": epoch, "delta_loss_mean": mean, "delta_loss_std": std,
                               "stale": stale, "stale_checks": self.stale, "total_loss": total}
            if self.stale >= self.o.stale_checks and total < self.o.loss_target:
                before = (self.p.weight_bits, self.p.act_bits)
                self.p.weight_bits = _lower(self.p.weight_bits, self.plan.step_bits, self.o.bits)
                self.p.act_bits = _lower(self.p.act_bits, self.plan.step_bits,
                                         self.o.activation_bits)
                self.steps.append({
                    "epoch": epoch, "from_weight_bits": before[0],
                    "to_weight_bits": self.p.weight_bits, "from_activation_bits": before[1],
                    "to_activation_bits": self.p.act_bits, "delta_loss_mean": mean,
                    "delta_loss_std": std, "window": window, "total_loss": total,
                    "val_accuracy": entry["val_accuracy"]})
                self.losses, self.stale = [total], 0
                entry["relaxed"] = True
        self.log.append(entry)
        return None

    def summary(self) -> dict:
        """The JSON's relaxation record: the plan, the drops, whether the target was reached and,
        if not, why (the precision the power-of-two phase then jumps from)."""
        reached = self.done()
        return {"plan": self.plan.to_json(), "steps": list(self.steps), "reached_target": reached,
                "reached_epoch": self.steps[-1]["epoch"] if reached and self.steps else None,
                "final_weight_bits": self.p.weight_bits,
                "final_activation_bits": self.p.act_bits,
                "reason": "" if reached else self._why_not()}

    def _why_not(self) -> str:
        if not self.plan.drops:
            return self.plan.note
        c, o = self.last_check, self.o
        since = self.steps[-1]["epoch"] if self.steps else 0
        if c is None or c["epoch"] <= since:
            return (f"no full {self.plan.window}-epoch delta-loss window after "
                    + (f"the last drop (epoch {since})" if since else "the start")
                    + f" within the {self.plan.epochs} epochs")
        if not c["stale"]:
            return (f"the training was not stale at the last check (epoch {c['epoch']}): the "
                    f"delta loss over {self.plan.window} epochs has mean {c['delta_loss_mean']:.4g}"
                    f" and std {c['delta_loss_std']:.4g}, the thresholds are "
                    f"{o.delta_loss_avg_thresh:g} and {o.delta_loss_stdev_thresh:g}")
        if c["stale_checks"] < o.stale_checks:
            return (f"stale on {c['stale_checks']} consecutive checks at the end, "
                    f"{o.stale_checks} needed")
        return (f"the total training loss {c['total_loss']:.4g} stayed above loss_target "
                f"{o.loss_target:g}")


def _lower(bits: float, step: float, target: int) -> float:
    """One drop, landing exactly on the target rather than a rounding error above it."""
    return float(target) if bits - step < target + 1e-9 else bits - step


def _val_accuracy(record) -> float:
    return float(record.val.accuracy)


def insert_batchnorms(module) -> int:
    """The seeds' PACT scheme: a batch norm after every convolution that has none (identity
    statistics to start), so that activations stay well representable while training; the conv's
    fused activation moves onto it. Returns how many were inserted; canonicalize folds them."""
    from xdsl.dialects.builtin import f32

    from aloha_ir.consts import make_const
    from aloha_ir.weights import ConstTensor
    graph = graph_of(module)
    store = weights_of(module)
    inserted = 0
    for op in list(graph.ops):
        if not isinstance(op, nn.ConvOp) or any(isinstance(u.operation, nn.BatchNormOp)
                                                 for u in op.output.uses):
            continue
        c = nn.shape_of(op.output)[1]
        consts = [make_const(ConstTensor.full((c,), v), store, "bn", f32) for v in (1, 0, 0, 1)]
        moved = {k: op.properties.pop(k) for k in ("activation", "act_params")
                 if k in op.properties}
        bn = nn.BatchNormOp.create(operands=[op.output] + [k.output for k in consts],
                                   result_types=[op.output.type],
                                   properties={"epsilon": nn.float_attr(1e-5), **moved})
        op.output.replace_uses_with_if(bn.output, lambda use: use.operation is not bn)
        graph.body.block.insert_ops_after([*consts, bn], op)
        inserted += 1
    return inserted


def _qat_module(module, splits, opts, precision: Precision) -> tuple[GraphModule, dict]:
    """The float executor with quantizers: PACT activations (clip levels from calibration) and the
    method's weight quantizer on conv/dense weights. Returns it and {value: act_fns label}."""
    graph = graph_of(module)
    stats = calibrate(module, splits.train, opts.samples, None)
    m = GraphModule(graph, weights_of(module), logits=True)
    acts: dict = {}
    for op in graph.ops:
        if isinstance(op, (nn.ConstOp, nn.InputOp, nn.OutputOp)) or op is m.skip_softmax:
            continue
        feeds_bn = isinstance(op, nn.ConvOp) and op.output.uses and all(
            isinstance(u.operation, nn.BatchNormOp) for u in op.output.uses)
        if opts.method == "pact" and not feeds_bn:  # a conv and its BN deploy folded: one format
            r = stats[op.results[0]]
            acts[op.results[0]] = label = m.labels[op]
            m.act_fns[label] = ActQuant(r.level, r.lo < 0, precision, opts.activation_bits)
        if isinstance(op, (nn.ConvOp, nn.DenseOp)) and opts.method != "inq":
            key = m.const_keys[op.weight]
            if m.const_roles[key] == "param":
                m.weight_fns[key] = WeightQuant(opts.method, precision, opts.bits)
    return m, acts


def fine_tune(module, splits, opts, fold_batchnorms: Callable[[ModuleOp], None]
              ) -> tuple[list[dict], dict, dict | None]:
    """Fine-tune `module` in place with opts.method; returns (log, activation ranges by value, the
    relaxation's summary for pact and dorefa).

    With opts.insert_bn (pact, dorefa) the relaxation trains with batch norms after the convs;
    `fold_batchnorms(module)` folds them (the quantize pass supplies canonicalize: executors sit
    below passes and run none) before the final phase, which trains the folded network with the
    deployment's power-of-two quantizers (fresh clip levels from calibration) so that folding costs
    nothing."""
    from runtime.torch.train import TrainConfig, train

    inserted = insert_batchnorms(module) if opts.insert_bn else 0
    relaxes = opts.method in ("pact", "dorefa")
    start_w = opts.start_bits if relaxes else opts.bits
    start_a = (opts.start_abits or opts.start_bits) if relaxes else opts.bits
    precision = Precision(max(start_w, opts.bits), max(start_a, opts.activation_bits))
    m, acts = _qat_module(module, splits, opts, precision)
    log: list[dict] = []
    n_batches = max(1, math.ceil(len(splits.train) / opts.batch_size))
    config = TrainConfig(epochs=opts.epochs, batch_size=opts.batch_size, lr=opts.lr,
                         seed=opts.seed, checkpoint=opts.checkpoint or None,
                         restore_best=opts.method == "inq", label=f"quantize: {opts.method}")
    relaxation = None
    if opts.method == "inq":
        _inq(m, splits, config, opts, log)
    else:
        plan = plan_relaxation(opts.epochs, (precision.weight_bits, precision.act_bits),
                               (opts.bits, opts.activation_bits), opts.relaxation_factor,
                               opts.delta_loss_window, opts.stale_checks)
        relax = Relaxation(opts, precision, n_batches, log, plan)
        train(m, splits, config, regularizer=_pact_l2(m), on_epoch=relax)
        relaxation = relax.summary()
        precision.weight_bits, precision.act_bits = opts.bits, opts.activation_bits
        precision.pow2 = True
        if inserted:
            m.write_back(module)
            fold_batchnorms(module)
            log.append({"phase": "fold batch norms", "count": inserted})
            m, acts = _qat_module(module, splits, opts, precision)
        snap = TrainConfig(epochs=SNAP_EPOCHS, batch_size=opts.batch_size, lr=opts.lr / 10,
                           seed=opts.seed + 1, label="quantize: snap to power-of-two")
        result = train(m, splits, snap, regularizer=_pact_l2(m))
        log.append({"phase": "snap", "epochs": SNAP_EPOCHS,
                    "val_accuracy": _val_accuracy(result.history[-1])})
    m.write_back(module)
    ranges = {}
    for v, label in acts.items():
        a = float(m.act_fns[label].alpha.detach())
        signed = m.act_fns[label].signed
        ranges[v] = Range(lo=-a if signed else 0.0, hi=a, level=a, batches=1)
    return log, ranges, relaxation


def _pact_l2(m: GraphModule):
    """PACT's L2 penalty on the clip levels (none without activation quantizers)."""
    if not len(m.act_fns):
        return None
    return lambda: 1e-4 * sum(q.alpha ** 2 for q in m.act_fns.values())


def _inq(m: GraphModule, splits, config, opts, log: list[dict]) -> None:
    """Incremental network quantization: freeze growing fractions of the largest weights as powers of
    two and retrain the rest; at 100% every weight is a power of two (or zero)."""
    from dataclasses import replace

    from runtime.torch.train import train
    keys = [m.const_keys[op.weight] for op in m.ops if isinstance(op, (nn.ConvOp, nn.DenseOp))
            and m.const_roles[m.const_keys[op.weight]] == "param"]
    frozen = {k: torch.zeros_like(m.params[k], dtype=torch.bool) for k in keys}
    values = {k: m.params[k].detach().clone() for k in keys}
    per_stage = max(1, config.epochs // len(INQ_STAGES))

    def restore(model):
        with torch.no_grad():
            for k in keys:
                model.params[k][frozen[k]] = values[k][frozen[k]]

    for stage, fraction in enumerate(INQ_STAGES):
        with torch.no_grad():
            for k in keys:
                w = m.params[k].detach()
                cut = torch.quantile(w.abs().flatten(), 1 - fraction) if fraction < 1 else -1.0
                newly = ~frozen[k] & (w.abs() >= cut)
                q = torch.from_numpy(inq_quantize(w.numpy(), opts.bits))
                values[k] = torch.where(newly, q, values[k])
                frozen[k] |= newly
        restore(m)
        result = train(m, splits, replace(config, epochs=per_stage, seed=config.seed + stage,
                                          checkpoint=None), after_step=restore)
        log.append({"phase": f"inq {fraction:.3f}", "epochs": per_stage,
                    "val_accuracy": _val_accuracy(result.history[-1])})
