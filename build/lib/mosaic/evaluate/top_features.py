"""The features a probe leans on most, per class, with how strongly each class activates them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _class_means(features, labels: np.ndarray, columns: np.ndarray, n_classes: int) -> np.ndarray:
    """Mean value of each chosen column per class (classes x columns); works on CSR or dense rows."""
    chosen = features[:, columns]
    chosen = chosen.toarray() if hasattr(chosen, "toarray") else np.asarray(chosen)
    return np.stack([chosen[labels == c].mean(axis=0) if np.any(labels == c) else np.zeros(len(columns))
                     for c in range(n_classes)])


def top_features(
    evidence: np.ndarray,
    label_names: Sequence[str],
    k: int = 20,
    feature_names: Sequence[str] | None = None,
    features=None,
    labels: np.ndarray | None = None,
    url_prefix: str | None = None,
) -> list[dict]:
    """The `k` (feature, class) pairs with the largest evidence for that class, best first.

    `evidence` (classes x features) is the probe's own measure (`probe.evidence()`). With
    `features` and `labels` (the training rows), each entry also gives the feature's mean value per
    class; with `url_prefix` (e.g. a Neuronpedia SAE page), a link to the feature.
    """
    flat = np.argsort(-evidence, axis=None, kind="stable")[:k]
    classes, indices = np.unravel_index(flat, evidence.shape)
    means = None if features is None else _class_means(features, labels, indices, len(label_names))
    entries = []
    for position, (c, i) in enumerate(zip(classes, indices)):
        entry = {"index": int(i), "class": label_names[c], "evidence": float(evidence[c, i])}
        if feature_names is not None:
            entry["name"] = feature_names[i]
        if means is not None:
            entry["mean_by_class"] = {name: float(means[j, position]) for j, name in enumerate(label_names)}
        if url_prefix is not None:
            entry["url"] = f"{url_prefix}{int(i)}"
        entries.append(entry)
    return entries
