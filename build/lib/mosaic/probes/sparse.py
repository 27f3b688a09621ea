"""k-sparse probes: keep the k features whose class means differ most on the training split, fit a probe on them.

The ranking is the sparse-probing suite's (Kantamneni et al. 2025; sae-probes' `get_sorted_indices` with
its default `mean` normalisation): each feature is divided by its mean absolute value over the training
rows where it is non-zero, then features are ranked by the absolute difference between the two class
means. With more than two classes a feature's score is its largest one-vs-rest difference. Only
training rows are read, so the selection is fitted like the probe and never sees validation or test.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

# The peer's guard against an all-zero feature (added to the count and to the mean).
_EPSILON = 1e-6


def _column_sums(matrix) -> np.ndarray:
    return np.asarray(matrix.sum(axis=0), dtype=np.float64).ravel()


def rank_features(x_train, y_train: np.ndarray) -> np.ndarray:
    """Every feature index, the largest normalised class-mean difference first (ties: lower index first)."""
    x = sp.csr_matrix(x_train, dtype=np.float64) if sp.issparse(x_train) else np.asarray(x_train, dtype=np.float64)
    magnitude = abs(x)
    nonzero = (x != 0).astype(np.float64)
    scale = _column_sums(magnitude) / (_column_sums(nonzero) + _EPSILON) + _EPSILON
    classes = np.unique(y_train)

    def mean_of(rows: np.ndarray) -> np.ndarray:
        return _column_sums(x[rows]) / max(1, int(rows.sum())) / scale

    if len(classes) == 2:
        score = np.abs(mean_of(y_train == classes[1]) - mean_of(y_train == classes[0]))
    else:
        score = np.max([np.abs(mean_of(y_train == c) - mean_of(y_train != c)) for c in classes], axis=0)
    return np.argsort(-score, kind="stable")


def fit_k_sparse(fitter, k: int, x_train, y_train, x_val, y_val, n_classes: int, cfg, seed: int, logger=False,
                 columns: list[int] | None = None, **options):
    """`fitter`'s probe on the top `k` features only, widened back to read every feature (the rest weigh 0).

    Its summary records `k` and the selected features in rank order; `options` go to `fitter`. Given
    `columns` (a refit of a selected probe), those are kept instead of ranking again: the setting chosen
    on validation was chosen for them. (The suite ranks once, on training and validation rows together.)
    """
    width = x_train.shape[1]
    columns = rank_features(x_train, y_train)[: min(k, width)] if columns is None else np.asarray(columns)
    probe = fitter(x_train[:, columns], y_train, x_val[:, columns], y_val, n_classes, cfg, seed, logger=logger,
                   **options)
    widened = probe.widened(columns, width)
    widened.summary = {**probe.summary, "k": len(columns), "selected_features": columns.tolist()}
    return widened
