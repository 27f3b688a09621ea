"""Classification metrics with macro F1 as the headline, computed with scikit-learn.

Macro F1 and AUROC are `mosaic.probes.selection`'s, the definitions validation selection uses too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
)

from mosaic.probes.selection import auroc, macro_f1


def classification_metrics(labels: np.ndarray, proba: np.ndarray, label_names: Sequence[str]) -> dict:
    """Macro F1, accuracy, balanced accuracy, AUROC, per-class precision/recall/F1/support, confusion."""
    predictions = proba.argmax(axis=1)
    classes = np.arange(len(label_names))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=classes, zero_division=0
    )
    return {
        "macro_f1": macro_f1(labels, predictions),
        "accuracy": float(accuracy_score(labels, predictions)),
        "balanced_accuracy": float(balanced_accuracy_score(labels, predictions)),
        "auroc": auroc(labels, proba),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(label_names, precision, recall, f1, support)
        },
        "confusion": confusion_matrix(labels, predictions, labels=classes).tolist(),
    }
