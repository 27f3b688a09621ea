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
from sklearn.metrics import f1_score


def macro_f1(labels: np.ndarray, predictions: np.ndarray) -> float:
    """The unweighted mean F1 over the classes present in `labels` or `predictions`."""
    return float(f1_score(labels, predictions, average="macro", zero_division=0))


def best_on_validation(candidates: Iterable[Any], fit: Callable[[Any], Any], x_val, y_val) -> tuple[Any, Any, dict]:
    """Fit one probe per candidate value and keep the best by validation macro F1 (the first on ties).

    Returns the winning value, its probe and every candidate's validation macro F1 (keyed by
    `str(value)`); the test split plays no part.
    """
    best, scores = None, {}
    for value in candidates:
        probe = fit(value)
        scores[str(value)] = macro_f1(y_val, probe.predict(x_val))
        if best is None or scores[str(value)] > scores[str(best[0])]:
            best = (value, probe)
    return best[0], best[1], scores
