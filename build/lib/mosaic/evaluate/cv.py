"""Stratified k-fold cross-validation of a probe over the training and validation documents only.

Everything fitted on training data is refitted on each fold's training part: the probe and its
feature scaling (inside `fit`), and, through `features_for`, features that are themselves fitted
(a bag of words' vocabulary and IDF). What cannot be refitted per fold is named in the result's
`not_held_out`, so a CV score that is not fully held out never poses as one.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split

from mosaic.probes.selection import macro_f1


def cross_validate(
    features_for: Callable[[np.ndarray], object],
    labels: np.ndarray,
    documents: np.ndarray,
    fit: Callable,
    folds: int,
    seed: int,
    val_size: float = 0.15,
    refit: tuple[str, ...] = ("probe", "feature scaling"),
    not_held_out: str | None = None,
) -> dict:
    """Macro F1 mean and std over `folds` stratified folds of `documents` (never the test split).

    `features_for(train_index)` returns the feature matrix of every document with whatever is fitted
    on training documents fitted on `train_index` alone; `fit(x_train, y_train, x_val, y_val)`
    returns a probe with `predict`. Each fold's training part gives up `val_size` of its documents
    as the validation set a probe selects on, so the fold being scored is never seen while training.
    `refit` names what is refitted per fold and `not_held_out` what is not (None: nothing).
    """
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = []
    for train_part, scored_part in splitter.split(documents, labels[documents]):
        train, scored = documents[train_part], documents[scored_part]
        train, val = train_test_split(train, test_size=val_size, stratify=labels[train], random_state=seed)
        features = features_for(train)
        probe = fit(features[train], labels[train], features[val], labels[val])
        scores.append(macro_f1(labels[scored], probe.predict(features[scored])))
    return {"macro_f1_mean": float(np.mean(scores)), "macro_f1_std": float(np.std(scores, ddof=1)),
            "folds": folds, "fold_macro_f1": scores, "data": "train+val", "refit_per_fold": list(refit),
            "held_out": not_held_out is None, "not_held_out": not_held_out}
