"""Calibration: a platform's estimated parameters fitted to measurements of whole networks.

    rows = read_measurements("measured.csv")           # model, bits, operating point, fps/GOps/s, power
    model = Predictor(rows, "neuraghe-losa")             # the --target flow of each row, re-runnable
    free = model.free()                                  # the [E] parameters the rows depend on
    fit = calibrate(model, free)                          # least squares within physical bounds
    loo = leave_one_out(model, free)                      # each row predicted by a fit without it

The model is mechanistic: each prediction is the whole `alohac analyze --target` flow (partition,
map, exact steady state, energy) of the row's network on the platform with the trial values, so a
handful of rows determines a handful of physical parameters, and a row the fit has not seen is
predicted by the same mechanisms. The fit minimises the log ratios predicted/measured (a 10%
error weighs the same on 5 fps and on 300 fps) by trust-region least squares within `BOUNDS`
(archdesc.parameters), over values scaled by their bundled ones. A parameter no row's prediction
moves by 0.1% for a 10% step is not fitted: it keeps its value, and the
report says the measurements do not determine it. A faint pull towards the bundled values (1e-3
per unit of relative change, a 0.1% misfit for a factor 2) keeps combinations the rows cannot
separate where the .arch put them, without moving what the rows do determine.

Rows may name different platforms sharing a template (LOSA's and SABINA's rows fit
_neuraghe.arch's job overhead together): a parameter is the line that sets it.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from aloha_ir.errors import AlohaError, InputFileError, UsageError, did_you_mean
from archdesc.loader import resolve
from archdesc.parameters import Parameter, parameters, with_values

COLUMNS = ("model", "bits", "operating_point", "fps", "gops_per_s", "power_w", "gops_per_w",
           "platform")
COARSE_FACTORS = (0.25, 0.5, 0.71, 1.41, 2.0, 4.0)  # the coarse search's steps, per parameter
COARSE_SWEEPS = 2
PRIOR = 1e-3  # the pull towards the bundled values, per unit of relative change
SCREEN_STEP = 0.1  # relative step of the sensitivity screen
SCREEN_MIN = 1e-3  # relative change of a prediction below which a parameter is not determined


class MeasurementError(InputFileError):
    """A measurements file that cannot be read as rows of measured figures."""


@dataclass(frozen=True)
class Measurement:
    """One measured run: a network at a precision and operating point on a platform, its
    throughput (frames/s or GOps/s = 2 x MACs x frames/s) and optionally its power (W, or
    GOps/s/W)."""

    model: str
    bits: int = 0  # 0: the platform's default data type
    opp: str = ""
    fps: float | None = None
    gops_per_s: float | None = None
    power_w: float | None = None
    gops_per_w: float | None = None
    platform: str = ""  # "": the platform calibrated
    where: str = ""  # file:line

    def label(self) -> str:
        bits = f" {self.bits}-bit" if self.bits else ""
        return f"{self.model}{bits}" + (f" @{self.opp}" if self.opp else "") + \
            (f" on {self.platform}" if self.platform else "")


def read_measurements(path: str) -> list[Measurement]:
    """The rows of a measurements CSV (header: `COLUMNS`, any order; `model` and one of `fps`,
    `gops_per_s` required). Every problem names its line and column."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            records = [(reader.line_num, r) for r in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise MeasurementError(f"cannot read: {e.__class__.__name__}: {e}", where=path) from None
    header = [h.strip() for h in header]
    for h in header:
        if h not in COLUMNS:
            raise MeasurementError(f"unknown column '{h}'", where=f"{path}:1",
                                   hint=did_you_mean(h, COLUMNS, "columns"))
    if "model" not in header or not {"fps", "gops_per_s"} & set(header):
        raise MeasurementError("the header needs 'model' and 'fps' or 'gops_per_s'",
                               where=f"{path}:1", hint="columns: " + ", ".join(COLUMNS))
    rows = []
    for line, rec in records:
        rec = {(k or "").strip(): (v or "").strip() for k, v in rec.items() if k is not None}
        if not any(rec.values()):
            continue
        where = f"{path}:{line}"
        rows.append(_row(rec, where))
    if not rows:
        raise MeasurementError("no measurement rows", where=path)
    return rows


def _row(rec: dict[str, str], where: str) -> Measurement:
    def number(col: str) -> float | None:
        text = rec.get(col, "")
        if not text:
            return None
        try:
            v = float(text)
        except ValueError:
            raise MeasurementError(f"{col} '{text}' is not a number", where=where) from None
        if not (math.isfinite(v) and v > 0):
            raise MeasurementError(f"{col} must be a positive finite number, got '{text}'",
                                   where=where)
        return v

    if not rec.get("model"):
        raise MeasurementError("the row names no model", where=where)
    bits = rec.get("bits", "")
    if bits and bits not in ("8", "16", "32"):
        raise MeasurementError(f"bits '{bits}': 8, 16 or 32 (empty: the platform's default)",
                               where=where)
    fps, gops = number("fps"), number("gops_per_s")
    if (fps is None) == (gops is None):
        raise MeasurementError("give the throughput once: fps or gops_per_s", where=where)
    power, per_w = number("power_w"), number("gops_per_w")
    if power is not None and per_w is not None:
        raise MeasurementError("give the power once: power_w or gops_per_w", where=where)
    return Measurement(rec["model"], int(bits or 0), rec.get("operating_point", ""), fps, gops,
                       power, per_w, rec.get("platform", ""), where)


@dataclass(frozen=True)
class Prediction:
    fps: float
    power_w: float
    macs: int

    def throughput(self, row: Measurement) -> tuple[float, float]:
        """(predicted, measured) in the unit the row measured."""
        if row.fps is not None:
            return self.fps, row.fps
        return 2 * self.macs * self.fps / 1e9, row.gops_per_s

    def power(self, row: Measurement) -> tuple[float, float] | None:
        """(predicted, measured) watts, when the row measured power."""
        if row.power_w is not None:
            return self.power_w, row.power_w
        if row.gops_per_w is not None:
            measured_gops = row.gops_per_s if row.gops_per_s is not None else \
                2 * self.macs * row.fps / 1e9
            return self.power_w, measured_gops / row.gops_per_w
        return None


class Predictor:
    """Predictions of measurement rows on their platforms with trial parameter values: each row's
    model is imported and canonicalized once; every trial runs the rest of the --target flow."""

    def __init__(self, rows: list[Measurement], platform: str):
        self.rows = [r if r.platform else replace(r, platform=platform) for r in rows]
        self.platform = platform
        self._trees = {platform: resolve(platform)}
        for r in self.rows:
            if r.platform not in self._trees:
                self._trees[r.platform] = resolve(r.platform)
        self._params = {name: parameters(tree) for name, (tree, _) in self._trees.items()}
        self._modules: dict[str, object] = {}
        self._verified: dict[Measurement, bool] = {}
        self.evaluations = 0
        self.on_evaluation: Callable[[int], None] | None = None

    def parameters(self) -> list[Parameter]:
        """Every fittable parameter the rows' platforms have, one per line that sets it."""
        seen: dict[str, Parameter] = {}
        for ps in self._params.values():
            for p in ps:
                seen.setdefault(key(p), p)
        return list(seen.values())

    def predict(self, values: dict[str, float] | None = None,
                rows: list[int] | None = None) -> list[Prediction]:
        """Predictions of the rows (indices; all by default) with `values` (parameter key ->
        SI value, `key(p)`) replacing the .arch files' own."""
        values = values or {}
        platforms = {}
        for name, (tree, path) in self._trees.items():
            mine = {p.name: values[key(p)] for p in self._params[name] if key(p) in values}
            platforms[name] = with_values(tree, path, mine)
        out = []
        for i in (range(len(self.rows)) if rows is None else rows):
            out.append(self._one(self.rows[i], platforms[self.rows[i].platform]))
        self.evaluations += 1
        if self.on_evaluation is not None:
            self.on_evaluation(self.evaluations)
        return out

    def _one(self, row: Measurement, platform) -> Prediction:
        from aloha_ir.passmanager import PassManager
        from flows.report import TargetReport
        from flows.target import TargetFlow
        flow = TargetFlow(platform, row.bits, row.opp, allow_overflow=True)
        stages = flow.stages()
        module = self._canonical(row, stages[0]).clone()
        try:
            # verified once per row already (the first trial); a trial runs the same pipeline
            res = PassManager(stages[1:], verify_each=not self._verified.get(row, False)).run(
                module, flow.context(quiet=True))
            self._verified[row] = True
            fig = TargetReport.from_analyses(res.analyses).to_json()
        except AlohaError as e:
            e.args = (f"{row.label()} ({row.where}): {e.one_line()}",)
            raise
        fps = fig["throughput_fps"] or 0.0
        return Prediction(fps, fig["energy_j"] * fps, fig["macs"])

    def _canonical(self, row: Measurement, canonicalize):
        if row.model not in self._modules:
            from aloha_ir.passmanager import PassManager
            from frontends.loader import load_model
            try:
                m = load_model(row.model, {})
            except AlohaError as e:
                raise MeasurementError(f"model '{row.model}': {e.one_line()}", where=row.where,
                                       hint="a model as alohac takes it: zoo:NAME or a file")
            PassManager([canonicalize]).run(m)
            self._modules[row.model] = m
        return self._modules[row.model]


def key(p: Parameter) -> str:
    """A parameter's identity across platforms: the line that sets it (and its data type)."""
    return p.origin + "#" + (p.entry or "")


def residuals(rows: list[Measurement], preds: list[Prediction], power: bool = True
              ) -> list[float]:
    """log(predicted / measured) of every measured throughput, then (`power`) of every measured
    power, in row order."""
    out = []
    for r, p in zip(rows, preds, strict=True):
        got, want = p.throughput(r)
        out.append(math.log(max(got, 1e-300) / want))
    for r, p in zip(rows, preds, strict=True):
        pw = p.power(r) if power else None
        if pw is not None:
            out.append(math.log(max(pw[0], 1e-300) / pw[1]))
    return out


@dataclass
class Fit:
    values: dict[str, float]  # parameter key -> fitted SI value
    free: list[Parameter]  # the parameters fitted
    fixed: list[Parameter]  # asked for, but no row's prediction depends on them
    predictions: list[Prediction]
    residuals: list[float]
    at_bound: list[str] = field(default_factory=list)  # keys of values fitted onto a bound
    evaluations: int = 0


def is_power(p: Parameter) -> bool:
    """Power and energy parameters change the energy, never the timing: they are fitted second,
    to the power rows, with the timing fitted first."""
    return p.dimension in ("power", "energy")


def _scale(p: Parameter) -> float:
    if p.value > 0:
        return p.value
    lo, hi = p.bounds
    return max(lo, hi * 1e-3)


def _step(p: Parameter) -> float:
    """A trial value SCREEN_STEP away from the bundled one, inside the bounds."""
    v = _scale(p) * (1 + SCREEN_STEP) if p.value > 0 else _scale(p)
    return v if v <= p.bounds[1] else p.value * (1 - SCREEN_STEP)


def calibrate(model: Predictor, candidates: list[Parameter], rows: list[int] | None = None,
              on_step: Callable[[str], None] | None = None) -> Fit:
    """The values of `candidates` that best predict `rows` (indices; all by default) within
    their physical bounds: the timing parameters to the throughputs (trust-region least squares
    on log ratios), then the power parameters to the powers (energy is linear in them: bounded
    linear least squares on relative errors, from one trial per parameter)."""
    use = list(range(len(model.rows))) if rows is None else rows
    if not use:
        raise UsageError("no rows to fit")
    before = model.evaluations
    target = [model.rows[i] for i in use]
    timing = [p for p in candidates if not is_power(p)]
    power = [p for p in candidates if is_power(p)]
    say = on_step or (lambda text: None)
    say(f"timing: {len(timing)} parameter(s) against {len(use)} throughput(s)")
    values, free, fixed, at = _fit_timing(model, timing, use, target)
    if power and any(r.power_w is not None or r.gops_per_w is not None for r in target):
        say(f"power: {len(power)} parameter(s) against the measured powers")
        v2, f2, x2, a2 = _fit_power(model, power, use, target, values)
        values.update(v2)
        free, fixed, at = free + f2, fixed + x2, at + a2
    else:
        fixed += power
    values = {k: float(f"{v:.6g}") for k, v in values.items()}  # as the .arch file writes them
    preds = model.predict(values, use)
    return Fit(values, free, fixed, preds, residuals(target, preds), at,
               model.evaluations - before)


def _fit_timing(model: Predictor, cands: list[Parameter], use: list[int],
                target: list[Measurement]):
    from scipy.optimize import least_squares

    def r_of(values):
        return np.array(residuals(target, model.predict(values, use), power=False))

    base = r_of({})
    free, fixed = [], []
    for p in cands:  # which parameters the throughputs depend on
        moved = np.max(np.abs(r_of({key(p): _step(p)}) - base)) >= SCREEN_MIN
        (free if moved else fixed).append(p)
    if not free:
        return {}, free, fixed, []
    scale = np.array([_scale(p) for p in free])
    prior = np.array([p.value for p in free]) / scale
    lo = np.array([p.bounds[0] for p in free]) / scale
    hi = np.array([p.bounds[1] for p in free]) / scale

    def values_of(x) -> dict[str, float]:
        return {key(p): float(v) for p, v in zip(free, x * scale, strict=True)}

    def f(x):
        return np.concatenate([r_of(values_of(x)), PRIOR * (x - prior)])

    # The predictions are piecewise smooth in the parameters (a tiling, a mapping, a critical
    # cycle changes at a kink, and the greedy mapper may move work when a cost grows), so a local
    # method alone stalls where the slopes of two rows disagree: a coarse search first, each
    # parameter over factors of 1/4..4 of the best so far, then trust-region least squares.
    x = np.clip(prior, lo, hi)
    best = float(np.sum(f(x) ** 2))
    for _ in range(COARSE_SWEEPS):
        swept = best
        for i in range(len(free)):
            for factor in COARSE_FACTORS:
                y = x.copy()
                y[i] = np.clip(x[i] * factor, lo[i], hi[i])
                if y[i] == x[i]:
                    continue
                cost = float(np.sum(f(y) ** 2))
                if cost < best:
                    best, x = cost, y
        if best == swept:
            break
    # tolerances: 1e-5 relative in the values is far below what measurements determine
    sol = least_squares(f, x, bounds=(lo, hi), diff_step=1e-2, xtol=1e-5,
                        ftol=1e-8, gtol=1e-8, max_nfev=20 * (len(free) + 1))
    values = values_of(sol.x)
    for p in free:  # the .arch file writes cycles as integers: fit what will be written
        if p.dimension == "cycles":
            values[key(p)] = float(round(values[key(p)]))
    return values, free, fixed, _at_bounds(free, sol.x, lo, hi)


def _fit_power(model: Predictor, cands: list[Parameter], use: list[int],
               target: list[Measurement], timing: dict[str, float]):
    from scipy.optimize import lsq_linear
    measured = [(i, r) for i, r in zip(use, target, strict=True)
                if r.power_w is not None or r.gops_per_w is not None]
    rows = [i for i, _ in measured]

    def watts(values) -> tuple[np.ndarray, np.ndarray]:  # (predicted, measured)
        preds = model.predict({**timing, **values}, rows)
        pairs = [p.power(r) for p, (_, r) in zip(preds, measured, strict=True)]
        return np.array([a for a, _ in pairs]), np.array([b for _, b in pairs])

    base, want = watts({})
    cols, free, fixed = [], [], []
    for p in cands:
        v = _step(p)
        col = (watts({key(p): v})[0] - base) / (v - p.value)  # watts per SI unit of p
        if np.max(np.abs(col) * abs(v - p.value) / base) >= SCREEN_MIN:
            cols.append(col)
            free.append(p)
        else:
            fixed.append(p)
    if not free:
        return {}, free, fixed, []
    scale = np.array([_scale(p) for p in free])
    p0 = np.array([p.value for p in free])
    # relative error of (base + J (x scale - p0)) / want, and the faint pull to the bundled values
    a = np.vstack([np.column_stack(cols) * scale / want[:, None], PRIOR * np.eye(len(free))])
    b = np.concatenate([want / want - base / want + (np.column_stack(cols) @ p0) / want,
                        PRIOR * p0 / scale])
    lo = np.array([p.bounds[0] for p in free]) / scale
    hi = np.array([p.bounds[1] for p in free]) / scale
    sol = lsq_linear(a, b, bounds=(lo, hi))
    values = {key(p): float(v) for p, v in zip(free, sol.x * scale, strict=True)}
    return values, free, fixed, _at_bounds(free, sol.x, lo, hi)


def _at_bounds(free, x, lo, hi) -> list[str]:
    return [key(p) for p, v, a, b in zip(free, x, lo, hi, strict=True)
            if math.isclose(v, a, rel_tol=1e-6, abs_tol=1e-9) or math.isclose(v, b, rel_tol=1e-6)]


@dataclass(frozen=True)
class HeldOut:
    row: int
    prediction: Prediction  # by a fit without the row
    throughput_error: float  # predicted / measured - 1
    power_error: float | None


def leave_one_out(model: Predictor, candidates: list[Parameter],
                  on_step: Callable[[str], None] | None = None) -> list[HeldOut]:
    """Each row predicted by the parameters fitted to the other rows (every candidate refitted)."""
    out = []
    n = len(model.rows)
    if n < 2:
        raise UsageError("leave-one-out needs at least two rows")
    for i in range(n):
        others = [j for j in range(n) if j != i]
        if on_step is not None:
            on_step(f"leave-one-out {i + 1}/{n}: without {model.rows[i].label()}")
        fit = calibrate(model, candidates, others)
        (pred,) = model.predict(fit.values, [i])
        got, want = pred.throughput(model.rows[i])
        pw = pred.power(model.rows[i])
        out.append(HeldOut(i, pred, got / want - 1, pw[0] / pw[1] - 1 if pw else None))
    return out
