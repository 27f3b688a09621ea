"""Choosing a probe's hyper-parameters on validation data, and the one macro F1 MOSAIC uses.

Macro F1 has one definition everywhere MOSAIC prints or selects on it (test, validation, CV folds,
transfer targets, C and depth selection, early stopping): scikit-learn's `f1_score(average="macro")`
over the classes that occur in the true labels or in the predictions. A class that is neither in a
split nor predicted has no F1 (0/0) and does not enter the average, so a perfect prediction scores
1.0 even on a split that lacks a class. It lives here, the earliest stage that needs it, so that
selection and evaluation cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from sklearn.metrics import f1_score, roc_auc_score


def macro_f1(labels: np.ndarray, predictions: np.ndarray) -> float:
    """The unweighted mean F1 over the classes present in `labels` or `predictions`."""
    return float(f1_score(labels, predictions, average="macro", zero_division=0))


def auroc(labels: np.ndarray, proba: np.ndarray) -> float | None:
    """Binary AUROC, or one-vs-rest macro AUROC; None when the test labels hold a single class."""
    present = np.unique(labels)
    if len(present) < 2:
        return None
    if proba.shape[1] == 2:
        return float(roc_auc_score(labels, proba[:, 1]))
    if len(present) < proba.shape[1]:
        # One-vs-rest over the classes that occur, each against all the others.
        scores = [roc_auc_score(labels == c, proba[:, c]) for c in present]
        return float(np.mean(scores))
    return float(roc_auc_score(labels, proba, multi_class="ovr", average="macro"))


# probe.select_by -> a probe's score on validation rows (higher is better).
SELECTION_METRICS: dict[str, Callable[[Any, Any, np.ndarray], float | None]] = {
    "macro_f1": lambda probe, x, y: macro_f1(y, probe.predict(x)),
    "auroc": lambda probe, x, y: auroc(y, probe.predict_proba(x)),
}


def best_on_validation(candidates: Iterable[Any], fit: Callable[[Any], Any], x_val, y_val,
                       metric: str = "macro_f1") -> tuple[Any, Any, dict]:
    """Fit one probe per candidate value and keep the best by its validation `metric` (the first on ties).

    Returns the winning value, its probe and every candidate's validation score (keyed by
    `str(value)`; None where the metric is undefined, e.g. AUROC on one class); the test split
    plays no part. A single candidate, or any candidates without validation rows to score them on,
    gives the first candidate, unscored. Where `metric` is undefined for every candidate (AUROC on a
    validation split with one class), macro F1 chooses, and the scores say so under "selected_by".
    """
    candidates = list(candidates)
    if len(candidates) == 1 or len(y_val) == 0:
        return candidates[0], fit(candidates[0]), {}
    probes = [fit(value) for value in candidates]
    scores = [SELECTION_METRICS[metric](probe, x_val, y_val) for probe in probes]
    note = {}
    if all(score is None for score in scores):
        scores = [SELECTION_METRICS["macro_f1"](probe, x_val, y_val) for probe in probes]
        note = {"selected_by": f"macro_f1 ({metric} is undefined on this validation split)"}
    ranked = [-np.inf if score is None else score for score in scores]
    best = int(np.argmax(ranked))  # the first best on ties
    return candidates[best], probes[best], {**{str(v): s for v, s in zip(candidates, scores, strict=True)}, **note}
