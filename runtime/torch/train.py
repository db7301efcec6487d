"""The training engine: any `torch.nn.Module` mapping a float32 batch to logits, on `Splits`.

Models: classification gives logits [N, classes] for labels [N]; segmentation gives
[N, classes, H, W] for labels [N, H, W]. The loss is cross-entropy, plus an optional `regularizer()`
term (PACT's L2 on its clipping parameters) and an optional data-dependent `penalty(x, logits, y)`
(the input-gradient penalty: x requires a gradient when a penalty is given). Quantization-aware schemes hook in through
`after_step(model)` (re-apply pruning masks, INQ's frozen weights) and `on_epoch(epoch, record)` (a
precision-relaxation heuristic; returning True stops training). A callback with state gives it
`state_dict()`/`load_state_dict()`; the checkpoint carries it, so a resumed run continues it.

Runs are reproducible: torch and numpy are seeded from `config.seed`, epoch e shuffles with a
generator seeded by (seed, e), and a checkpoint carries the RNG states, so a run that is
interrupted and restarted ends with the same weights and history (bar the `seconds` timings) as one
that was not.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import pickle
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aloha_ir.console import Progress
from aloha_ir.errors import InputFileError, Interrupted, PassError, UsageError
from aloha_ir.outputs import write_bytes
from runtime.torch.metrics import Metrics, confusion_matrix, metrics_from
from frontends.datasets import Dataset, Splits

TASKS = ("classification", "segmentation")
OPTIMIZERS = ("adam", "sgd")
MONITORS = ("accuracy", "loss")
CHECKPOINT_FORMAT = "aloha-train-checkpoint/1"

Regularizer = Callable[[], torch.Tensor]
AfterStep = Callable[[nn.Module], None]
OnEpoch = Callable[[int, "EpochRecord"], "bool | None"]
Augment = Callable[[nn.Module, torch.Tensor, torch.Tensor], "tuple[torch.Tensor, torch.Tensor]"]
Penalty = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class TrainingDiverged(PassError):
    """The training loss became NaN or infinite."""

    kind = "training diverged"


@dataclass(frozen=True)
class TrainConfig:
    """How to train. `patience` 0 disables early stopping; `subset` 0 trains on all samples.
    `restore_best` False keeps the last epoch's weights instead of the best validated ones, for
    schedules whose later epochs are the point (precision relaxation, sparsification)."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    seed: int = 0
    patience: int = 0
    min_delta: float = 0.0
    monitor: str = "accuracy"
    subset: int = 0
    task: str = "classification"
    checkpoint: str | None = None
    progress: bool = True
    restore_best: bool = True
    label: str = "train"  # what the progress lines call this run ("prune: fine-tune", ...)

    def __post_init__(self):
        rules = [(self.epochs >= 1, "epochs", ">= 1"),
                 (self.batch_size >= 1, "batch_size", ">= 1"), (self.lr > 0, "lr", "> 0"),
                 (self.optimizer in OPTIMIZERS, "optimizer", OPTIMIZERS),
                 (0 <= self.momentum < 1, "momentum", "in [0, 1)"),
                 (self.weight_decay >= 0, "weight_decay", ">= 0"),
                 (0 <= self.seed < 2 ** 32, "seed", "in [0, 2**32)"),
                 (self.patience >= 0, "patience", ">= 0"),
                 (self.min_delta >= 0, "min_delta", ">= 0"),
                 (self.monitor in MONITORS, "monitor", MONITORS),
                 (self.subset >= 0, "subset", ">= 0"), (self.task in TASKS, "task", TASKS)]
        for ok, name, rule in rules:
            if not ok:
                want = "one of " + ", ".join(rule) if isinstance(rule, tuple) else rule
                raise UsageError(f"training {name} must be {want}, got {getattr(self, name)!r}")

    def result_fields(self) -> dict:
        """The fields that decide what each epoch computes; a checkpoint resumes only if they match.
        `epochs` is not one of them, so a finished run can be extended by asking for more."""
        ignored = ("epochs", "checkpoint", "progress", "restore_best", "label")
        return {k: v for k, v in asdict(self).items() if k not in ignored}


def fast(config: TrainConfig, subset: int = 512, epochs: int = 3) -> TrainConfig:
    """The DSE proxy: a few epochs on a seeded subset, enough to rank candidates cheaply. Early
    stopping is off (too few epochs to judge a plateau) and so is the checkpoint (it would clobber
    the full run's)."""
    return replace(config, subset=subset, epochs=epochs, patience=0, checkpoint=None)


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    train_loss: float
    val: Metrics
    lr: float
    seconds: float

    def to_json(self) -> dict:
        val = {f"val_{k}": v for k, v in self.val.to_json().items()}
        return {"epoch": self.epoch, "train_loss": self.train_loss, **val, "lr": self.lr,
                "seconds": self.seconds}

    @staticmethod
    def from_json(data: dict) -> "EpochRecord":
        val = Metrics.from_json({k[4:]: v for k, v in data.items() if k.startswith("val_")})
        return EpochRecord(data["epoch"], data["train_loss"], val, data["lr"], data["seconds"])


@dataclass(frozen=True)
class TrainResult:
    """Per-epoch history; the model ends in the state of `best_epoch`, whose validation is `val`.
    `stop_reason` is "epochs" (ran them all), "patience" (early stop), "on_epoch" (the hook) or,
    in successive halving only, "diverged"."""

    history: list[EpochRecord]
    best_epoch: int
    stop_reason: str
    val: Metrics
    samples: int

    @property
    def stopped_early(self) -> bool:
        return self.stop_reason != "epochs"

    def to_json(self) -> dict:
        return {"best_epoch": self.best_epoch, "stopped_early": self.stopped_early,
                "stop_reason": self.stop_reason, "samples": self.samples, "val": self.val.to_json(),
                "history": [r.to_json() for r in self.history]}


def train(model: nn.Module, splits: Splits, config: TrainConfig, *,
          regularizer: Regularizer | None = None, after_step: AfterStep | None = None,
          on_epoch: OnEpoch | None = None, augment: Augment | None = None,
          penalty: Penalty | None = None) -> TrainResult:
    """Train on `splits.train`, validate on `splits.val` every epoch, and leave the model in the
    best validated state. With `config.checkpoint`, resume from it if present and save it every
    epoch. `augment(model, x, y)` transforms every training batch (adversarial training);
    `penalty(x, logits, y)` adds a term computed from the batch and its logits (x requires a
    gradient, so the term may differentiate through the input: runtime.torch.regularize)."""
    run = _Run(model, splits, config, regularizer, after_step, on_epoch, augment, penalty)
    run.advance(config.epochs)
    return run.finish()


class _Run:
    """One run's state, advanced epoch by epoch; successive halving interleaves several, so each run
    keeps its own RNG state and installs it while it trains."""

    def __init__(self, model: nn.Module, splits: Splits, config: TrainConfig,
                 regularizer: Regularizer | None = None, after_step: AfterStep | None = None,
                 on_epoch: OnEpoch | None = None, augment: Augment | None = None,
                 penalty: Penalty | None = None):
        self.model, self.config, self.val = model, config, splits.val
        self.augment, self.penalty = augment, penalty
        self.regularizer, self.after_step, self.on_epoch = regularizer, after_step, on_epoch
        self.train_set = _training_set(splits.train, config)
        for ds in (self.train_set, self.val):
            if not len(ds):
                raise UsageError(f"dataset '{ds.name}' is empty", hint="training needs train and "
                                 "validation samples")
        torch.manual_seed(config.seed)
        np.random.seed(config.seed)
        self.optimizer = _optimizer(model, config)
        self.epoch, self.history = 0, []
        self.saved_epoch = 0  # the epoch the checkpoint file holds
        self.best_state, self.best_epoch, self.best_score, self.since_best = None, 0, -math.inf, 0
        self.stop_reason: str | None = None
        self.rng = _rng_state()
        self.fingerprint = _fingerprint(config, model, self.train_set, self.val)
        if config.checkpoint and os.path.exists(config.checkpoint):
            self._resume(os.fspath(config.checkpoint))

    def advance(self, until: int) -> int:
        """Train up to epoch `until` unless stopped; returns the number of epochs trained."""
        start = self.epoch
        _set_rng_state(self.rng)
        try:
            with Progress(self.config.label, total=until, enabled=self.config.progress) as bar:
                bar.update(completed=self.epoch)
                while self.epoch < until and self.stop_reason is None:
                    self._epoch(self.epoch + 1, bar)
        except KeyboardInterrupt as e:
            path = self.config.checkpoint
            if not path or isinstance(e, Interrupted):
                raise
            raise Interrupted(f"{path} holds epoch {self.saved_epoch}; run the same command "
                              "again to resume from it" if self.saved_epoch else
                              f"no epoch finished, so {path} was not written") from None
        return self.epoch - start

    def finish(self) -> TrainResult:
        """Restore the best validated state (if an epoch completed) and report."""
        if self.best_state is not None and self.config.restore_best:
            self.model.load_state_dict(self.best_state)
        val = evaluate(self.model, self.val, task=self.config.task)
        return TrainResult(list(self.history), self.best_epoch, self.stop_reason or "epochs", val,
                           len(self.train_set))

    def best_accuracy(self) -> float:
        return max((r.val.accuracy for r in self.history), default=0.0)

    def _epoch(self, epoch: int, bar) -> None:
        t0 = time.perf_counter()
        batches = math.ceil(len(self.train_set) / self.config.batch_size)
        ticks = iter(range(1, batches + 1))
        train_loss = self._train_epoch(epoch, lambda loss: bar.update(
            completed=epoch - 1 + next(ticks) / batches, status=f"epoch {epoch} loss {loss:.4f}"))
        val = evaluate(self.model, self.val, task=self.config.task)
        bar.step(f"epoch {epoch}/{bar.total}: train loss {train_loss:.4f}, validation loss "
                 f"{val.loss:.4f}, accuracy {val.accuracy:.4f}", completed=epoch)
        record = EpochRecord(epoch, train_loss, val, self.optimizer.param_groups[0]["lr"],
                             time.perf_counter() - t0)
        self.history.append(record)
        self._track_best(record)
        stop = self.on_epoch is not None and self.on_epoch(epoch, record)
        self.epoch = epoch
        if stop:
            self.stop_reason = "on_epoch"
        elif self.config.patience and self.since_best >= self.config.patience:
            self.stop_reason = "patience"
        self.rng = _rng_state()
        self._save()

    def _train_epoch(self, epoch: int, tick: Callable[[float], None]) -> float:
        """One pass over the shuffled training set; returns the mean data loss (the regularizer
        excluded, so that it compares with the validation loss)."""
        ds, bs = self.train_set, self.config.batch_size
        order = np.random.default_rng([self.config.seed, epoch]).permutation(len(ds))
        batches = math.ceil(len(ds) / bs)
        self.model.train()
        total = 0.0
        for b in range(batches):
            idx = order[b * bs:(b + 1) * bs]
            x, y = torch.from_numpy(ds.x[idx]), torch.from_numpy(ds.y[idx])
            if self.augment:
                x, y = self.augment(self.model, x, y)
                self.model.train()
            if self.penalty:
                x = x.detach().requires_grad_(True)
            logits = self.model(x)
            if b == 0:
                _check_logits(logits, ds, self.config.task)
            loss = F.cross_entropy(logits, y)
            objective = loss + self.regularizer() if self.regularizer else loss
            if self.penalty:
                objective = objective + self.penalty(x, logits, y)
            if not torch.isfinite(objective):
                raise TrainingDiverged(f"the loss is {objective.item()} at epoch {epoch}, batch "
                                       f"{b + 1} of {batches}", where=ds.name,
                                       hint="lower the learning rate or check the model and data")
            self.optimizer.zero_grad(set_to_none=True)
            objective.backward()
            self.optimizer.step()
            if self.after_step:
                self.after_step(self.model)
            total += loss.item() * len(idx)
            tick(total / min(len(ds), (b + 1) * bs))
        return total / len(ds)

    def _track_best(self, record: EpochRecord) -> None:
        score = record.val.accuracy if self.config.monitor == "accuracy" else -record.val.loss
        if math.isnan(score):
            score = -math.inf
        if self.best_state is None or score > self.best_score + self.config.min_delta:
            self.best_score, self.best_epoch, self.since_best = score, record.epoch, 0
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:
            self.since_best += 1

    def _save(self) -> None:
        if not self.config.checkpoint:
            return
        state = {"format": CHECKPOINT_FORMAT, "fingerprint": self.fingerprint,
                 "config": self.config.result_fields(), "epoch": self.epoch,
                 "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "history": [r.to_json() for r in self.history], "best_state": self.best_state,
                 "best_epoch": self.best_epoch, "best_score": self.best_score,
                 "since_best": self.since_best, "stop_reason": self.stop_reason, "rng": self.rng}
        if hasattr(self.on_epoch, "state_dict"):
            state["callback"] = self.on_epoch.state_dict()
        buf = io.BytesIO()
        torch.save(state, buf)
        write_bytes(os.fspath(self.config.checkpoint), buf.getvalue())  # whole, or the old one
        self.saved_epoch = self.epoch

    def _resume(self, path: str) -> None:
        try:
            ck = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, EOFError, RuntimeError, ValueError, pickle.UnpicklingError) as e:
            raise InputFileError(f"cannot read the training checkpoint: {e}", where=path,
                                 hint="delete it to train from scratch") from None
        if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
            raise InputFileError("not an ALOHA training checkpoint", where=path)
        if ck["fingerprint"] != self.fingerprint:
            differ = [k for k, v in self.config.result_fields().items() if ck["config"].get(k) != v]
            what = f"a different {', '.join(differ)}" if differ else "another model or data set"
            raise UsageError(f"the checkpoint fingerprint does not match this run: it was written "
                             f"with {what}", where=path,
                             hint="use another checkpoint path, or delete this one to start afresh")
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.epoch, self.rng, self.stop_reason = ck["epoch"], ck["rng"], ck["stop_reason"]
        self.history = [EpochRecord.from_json(r) for r in ck["history"]]
        self.best_state, self.best_epoch = ck["best_state"], ck["best_epoch"]
        self.best_score, self.since_best = ck["best_score"], ck["since_best"]
        if hasattr(self.on_epoch, "load_state_dict") and "callback" in ck:
            self.on_epoch.load_state_dict(ck["callback"])
        self.saved_epoch = self.epoch
        print(f"resumed from epoch {self.epoch} ({path})", file=sys.stderr)


def _training_set(ds: Dataset, config: TrainConfig) -> Dataset:
    if config.subset == 0 or config.subset >= len(ds):
        return ds
    idx = np.sort(np.random.default_rng(config.seed).choice(len(ds), config.subset, replace=False))
    return ds.subset(idx, f"{ds.name}[{config.subset} of {len(ds)}]")


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise UsageError("the model has no trainable parameters")
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay)


def _fingerprint(config: TrainConfig, model: nn.Module, train_set: Dataset, val: Dataset) -> str:
    """What a checkpoint must agree on to be resumed: the result-relevant config, the model's
    parameter names and shapes, and the data."""
    facts = {"config": config.result_fields(), "model": type(model).__name__,
             "state": [[k, list(v.shape)] for k, v in model.state_dict().items()],
             "data": [[d.name, len(d)] for d in (train_set, val)]}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]


def _rng_state() -> dict:
    """torch's and numpy's global RNG states as tensors and numbers (loadable with weights_only)."""
    _, key, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy_key": torch.from_numpy(key.astype(np.int64)),
            "numpy_pos": int(pos), "numpy_gauss": [int(has_gauss), float(gauss)]}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    key = state["numpy_key"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", key, state["numpy_pos"], *state["numpy_gauss"]))


def _check_logits(logits: torch.Tensor, ds: Dataset, task: str) -> None:
    """The model's output must suit the task and have an output for every label in the data."""
    spatial = task == "segmentation"
    if ds.y.ndim != (3 if spatial else 1):
        want = "N, H, W" if spatial else "N"
        raise UsageError(f"{task} needs labels [{want}] but '{ds.name}' has labels "
                         f"{list(ds.y.shape)}")
    if logits.dim() != ds.y.ndim + 1 or tuple(logits.shape[2:]) != ds.y.shape[1:]:
        want = ", ".join(["N", "classes", *map(str, ds.y.shape[1:])])
        raise UsageError(f"the model outputs {list(logits.shape)} but {task} of '{ds.name}' needs "
                         f"logits [{want}]")
    top = int(ds.y.max())
    if top >= logits.shape[1]:
        raise UsageError(f"dataset '{ds.name}' has labels up to {top} but the model has "
                         f"{logits.shape[1]} outputs", where=ds.source or ds.name,
                         hint="pick a model whose last layer matches the data")


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode without gradients, then the mode the model was in."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def evaluate(model: nn.Module, dataset: Dataset, batch_size: int = 256,
             task: str = "classification") -> Metrics:
    """Mean cross-entropy, accuracy (per pixel for segmentation) and, for segmentation, mean IoU and
    Dice over the classes present, accumulated in one confusion matrix."""
    if task not in TASKS:
        raise UsageError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    if not len(dataset):
        raise UsageError(f"dataset '{dataset.name}' is empty")
    loss, cm = 0.0, None
    with _eval_mode(model):
        for x, y in dataset.batches(batch_size):
            logits = model(torch.from_numpy(x))
            if cm is None:
                _check_logits(logits, dataset, task)
                cm = np.zeros((logits.shape[1],) * 2, dtype=np.int64)
            loss += F.cross_entropy(logits, torch.from_numpy(y), reduction="sum").item()
            cm += confusion_matrix(y, logits.argmax(1).numpy(), logits.shape[1])
    return metrics_from(loss / dataset.y.size, cm, task == "segmentation")


def predict(model: nn.Module, dataset: Dataset, batch_size: int = 256) -> np.ndarray:
    """Argmax classes: [N] for classification, [N, H, W] for segmentation."""
    with _eval_mode(model):
        out = [model(torch.from_numpy(x)).argmax(1).numpy() for x, _ in dataset.batches(batch_size)]
    return np.concatenate(out) if out else np.zeros((0,), dtype=np.int64)


def save_curves(result: TrainResult, stem: str, title: str = "") -> tuple[str, str]:
    """`stem.json` (the result with its history) and `stem.png` (loss and validation accuracy per
    epoch, best epoch marked, under `title`), each written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    epochs = [r.epoch for r in result.history]
    fig = Figure(figsize=(10, 3.8))
    FigureCanvasAgg(fig)
    loss_ax, acc_ax = fig.subplots(1, 2)
    loss_ax.plot(epochs, [r.train_loss for r in result.history], marker=".", label="train loss")
    loss_ax.plot(epochs, [r.val.loss for r in result.history], marker=".", label="val loss")
    acc_ax.plot(epochs, [r.val.accuracy for r in result.history], marker=".", label="val accuracy")
    if result.val.iou is not None:
        acc_ax.plot(epochs, [r.val.iou for r in result.history], marker=".", label="val mean IoU")
    for ax in (loss_ax, acc_ax):
        ax.axvline(result.best_epoch, color="grey", linestyle="--",
                   label=f"best (epoch {result.best_epoch})")
        ax.set_xlabel("epoch")
        ax.legend()
    loss_ax.set_ylabel("loss (mean cross-entropy)")
    acc_ax.set_ylabel("validation accuracy" if result.val.iou is None else
                      "validation accuracy, mean IoU")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    text = json.dumps(result.to_json(), indent=1) + "\n"
    return (write_bytes(f"{stem}.json", text.encode()),
            write_bytes(f"{stem}.png", png.getvalue()))


@dataclass(frozen=True)
class HalvingResult:
    """`ranking`: best first (survivors, then the eliminated, later rounds before earlier ones);
    `rounds`: per round the extra epochs each survivor trained, their scores and who was kept;
    `results`/`models`: every candidate, left in its best validated state."""

    ranking: list[str]
    rounds: list[dict]
    epochs_spent: int
    budget_epochs: int
    results: dict[str, TrainResult]
    models: dict[str, nn.Module]

    def to_json(self) -> dict:
        return {"ranking": self.ranking, "rounds": self.rounds, "epochs_spent": self.epochs_spent,
                "budget_epochs": self.budget_epochs,
                "results": {k: v.to_json() for k, v in self.results.items()}}


def halving_rounds(n: int, eta: int) -> list[int]:
    """How many candidates train in each round: n, n // eta, ... while more than one is kept."""
    sizes = [n]
    while sizes[-1] // eta > 1:
        sizes.append(sizes[-1] // eta)
    return sizes


def successive_halving(candidates: Sequence[tuple[str, Callable[[], nn.Module], TrainConfig]],
                       budget_epochs: int, eta: int = 2, *, splits: Splits) -> HalvingResult:
    """Successive halving (Jamieson & Talwalkar, 2016): train all candidates a little, keep the best
    1/eta by validation accuracy, give the survivors more epochs, repeat until one is left.

    Budget arithmetic: with n_k candidates in round k (n_0 = n, n_{k+1} = n_k // eta) and R rounds
    (`halving_rounds`), every round gets P = budget_epochs // R epochs, split equally among its
    survivors: each trains e_k = P // n_k more epochs. A round spends n_k * e_k <= P, so the total
    is <= R * P <= budget_epochs; e_0 >= 1 needs budget_epochs >= R * n. Survivors continue their
    training (weights, optimizer and RNG state kept), so one alive in round k has trained
    e_0 + ... + e_k epochs, about eta times more each round. A candidate's score is the best
    validation accuracy it has reached (the state it will be restored to). Its config supplies
    everything but the epochs (patience still applies: a stopped candidate keeps its score and
    trains no more). A candidate whose loss diverges is ranked below all others instead of ending
    the search: a proxy's bad learning rate is a finding, not a failure.
    """
    names = [c[0] for c in candidates]
    if not names or len(set(names)) != len(names):
        raise UsageError("successive halving needs candidates with distinct names")
    if eta < 2:
        raise UsageError(f"successive halving needs eta >= 2, got {eta}")
    sizes = halving_rounds(len(names), eta)
    per_round = budget_epochs // len(sizes)
    if per_round < len(names):
        raise UsageError(f"a budget of {budget_epochs} epochs cannot give {len(names)} candidates "
                         f"one epoch each in {len(sizes)} rounds",
                         hint=f"give at least {len(names) * len(sizes)} epochs")
    runs = {}
    for name, factory, config in candidates:
        torch.manual_seed(config.seed)  # each candidate's initial weights independent of the others
        runs[name] = _Run(factory(), splits, config)
    alive, eliminated, rounds, spent = names, [], [], 0
    for k, size in enumerate(sizes):
        extra = per_round // size
        spent += sum(_advance_or_diverge(runs[n], runs[n].epoch + extra) for n in alive)
        scores = {n: runs[n].best_accuracy() for n in alive}
        diverged = [n for n in alive if runs[n].stop_reason == "diverged"]
        alive = sorted(alive, key=lambda n: (n in diverged, -scores[n]))
        keep = sizes[k + 1] if k + 1 < len(sizes) else 1
        rounds.append({"round": k + 1, "epochs": extra, "scores": scores, "kept": alive[:keep],
                       "diverged": diverged})
        eliminated = alive[keep:] + eliminated
        alive = alive[:keep]
    results = {n: runs[n].finish() for n in names}
    return HalvingResult(alive + eliminated, rounds, spent, budget_epochs, results,
                         {n: runs[n].model for n in names})


def _advance_or_diverge(run: _Run, until: int) -> int:
    """`run.advance`, turning divergence into a stop; returns the epochs completed."""
    start = run.epoch
    try:
        run.advance(until)
    except TrainingDiverged:
        run.stop_reason = "diverged"
    return run.epoch - start
