"""The features a linear probe leans on most, per class."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def top_features(
    weight: np.ndarray, label_names: Sequence[str], k: int = 20, feature_names: Sequence[str] | None = None
) -> list[dict]:
    """The `k` (feature, class) pairs with the largest evidence for that class, best first.

    A feature's evidence for class c is its weight for c minus its mean weight over all classes:
    softmax probabilities depend only on such differences, and for two classes it is half the
    log-odds weight, the same for either parameterisation of a binary probe.
    """
    contrast = weight - weight.mean(axis=0, keepdims=True)
    flat = np.argsort(-contrast, axis=None, kind="stable")[:k]
    classes, indices = np.unravel_index(flat, contrast.shape)
    return [
        {
            "index": int(i),
            "class": label_names[c],
            "weight": float(contrast[c, i]),
            **({"name": feature_names[i]} if feature_names is not None else {}),
        }
        for c, i in zip(classes, indices)
    ]
