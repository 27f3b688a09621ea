"""Stratified k-fold cross-validation of a probe over the training and validation documents only."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold, train_test_split


def cross_validate(
    features,
    labels: np.ndarray,
    documents: np.ndarray,
    fit: Callable,
    folds: int,
    seed: int,
    val_size: float = 0.15,
) -> dict:
    """Macro F1 mean and std over `folds` stratified folds of `documents` (never the test split).

    `fit(x_train, y_train, x_val, y_val)` returns a probe with `predict`. Each fold's training
    part gives up `val_size` of its documents as the validation set early stopping needs, so the
    fold being scored is never seen while training.
    """
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = []
    for train_part, scored_part in splitter.split(documents, labels[documents]):
        train, scored = documents[train_part], documents[scored_part]
        train, val = train_test_split(train, test_size=val_size, stratify=labels[train], random_state=seed)
        probe = fit(features[train], labels[train], features[val], labels[val])
        scores.append(float(f1_score(labels[scored], probe.predict(features[scored]), average="macro")))
    return {"macro_f1_mean": float(np.mean(scores)), "macro_f1_std": float(np.std(scores)), "folds": folds,
            "fold_macro_f1": scores}
