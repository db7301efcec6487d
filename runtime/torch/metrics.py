"""Classification and segmentation metrics from a confusion matrix (numpy only, no torch).

Everything derives from one confusion matrix, so metrics accumulated batch by batch equal metrics
computed on the whole set. Per-class IoU and Dice are NaN for a class absent from both prediction
and truth (0/0): such a class says nothing about the model, so the means skip it instead of
counting it as a perfect 1 or a failed 0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from aloha_ir.errors import UsageError


@dataclass(frozen=True)
class Metrics:
    """Loss (mean cross-entropy per sample or pixel), accuracy; for segmentation mean IoU, Dice."""

    loss: float
    accuracy: float
    iou: float | None = None
    dice: float | None = None

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @staticmethod
    def from_json(data: dict) -> "Metrics":
        return Metrics(**data)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, classes: int) -> np.ndarray:
    """classes x classes counts, rows = truth, columns = prediction (sklearn's convention)."""
    t = np.asarray(y_true, dtype=np.int64).ravel()
    p = np.asarray(y_pred, dtype=np.int64).ravel()
    if t.shape != p.shape:
        raise UsageError(f"{t.size} labels but {p.size} predictions")
    for name, v in (("labels", t), ("predictions", p)):
        if v.size and (v.min() < 0 or v.max() >= classes):
            raise UsageError(f"{name} span [{v.min()}, {v.max()}], outside 0..{classes - 1}")
    return np.bincount(t * classes + p, minlength=classes * classes).reshape(classes, classes)


def accuracy(cm: np.ndarray) -> float:
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def iou_per_class(cm: np.ndarray) -> np.ndarray:
    """Jaccard index TP / (TP + FP + FN) per class; NaN where the class is in neither."""
    tp = np.diag(cm).astype(np.float64)
    return _ratio(tp, cm.sum(0) + cm.sum(1) - tp)


def dice_per_class(cm: np.ndarray) -> np.ndarray:
    """Dice (F1) 2 TP / (2 TP + FP + FN) per class; NaN where the class is in neither."""
    tp = np.diag(cm).astype(np.float64)
    return _ratio(2 * tp, cm.sum(0) + cm.sum(1))


def mean_present(per_class: np.ndarray) -> float:
    """Mean over the classes that occur in prediction or truth (NaN if none does)."""
    present = per_class[~np.isnan(per_class)]
    return float(present.mean()) if present.size else float("nan")


def metrics_from(loss: float, cm: np.ndarray, segmentation: bool) -> Metrics:
    if not segmentation:
        return Metrics(loss, accuracy(cm))
    return Metrics(loss, accuracy(cm), mean_present(iou_per_class(cm)),
                   mean_present(dice_per_class(cm)))
