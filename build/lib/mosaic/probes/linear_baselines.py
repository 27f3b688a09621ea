"""Two baselines the field compares probes against, both linear in the features, so both are `TrainedProbe`s.

- `pca`: standardise, project on the first n principal components of the training rows, logistic
  regression on the projection (the sparse-probing suite's `find_best_pcareg`: n over
  unique(logspace(0, log2(min(rows, features, 100)), 10, base 2)), chosen on validation).
- `diff_of_means`: each class's mean minus the mean of all training rows is a direction; a logistic
  regression on the projections onto those directions calibrates them (binary: one direction, the
  difference of the two class means, up to scale).

Composed back into one weight matrix and bias over the input features, they save, load, transfer and
explain themselves as the logistic probe does.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from mosaic.probes.logistic import TrainedProbe
from mosaic.probes.selection import best_on_validation

# The suite's ceiling on principal components.
_MAX_COMPONENTS = 100


def dense(matrix) -> np.ndarray:
    """A float64 array: the baselines standardise (centre) their inputs, which a sparse matrix cannot keep."""
    return matrix.toarray().astype(np.float64) if sp.issparse(matrix) else np.asarray(matrix, dtype=np.float64)


def _logistic_weights(model: LogisticRegression, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-class logit weights and biases of a fitted sklearn model, classes it never saw at -inf-like 0 rows."""
    weight = np.zeros((n_classes, model.coef_.shape[1]))
    bias = np.full(n_classes, -1e9) if len(model.classes_) < n_classes else np.zeros(n_classes)
    if model.coef_.shape[0] == 1:
        bias[model.classes_[0]] = 0.0
        weight[model.classes_[1]], bias[model.classes_[1]] = model.coef_[0], model.intercept_[0]
    else:
        weight[model.classes_], bias[model.classes_] = model.coef_, model.intercept_
    return weight, bias


def _composed(projection: np.ndarray, offset: np.ndarray, model: LogisticRegression, n_classes: int,
              summary: dict) -> TrainedProbe:
    """logits = ((x - offset) @ projection.T) @ W.T + b, as one weight matrix and bias over x."""
    weight, bias = _logistic_weights(model, n_classes)
    full = weight @ projection
    return TrainedProbe(full.astype(np.float32), (bias - full @ offset).astype(np.float32), summary)


def fit_pca_probe(x_train, y_train, x_val, y_val, n_classes: int, cfg, seed: int, logger=False,
                  only: int | None = None) -> TrainedProbe:
    """Standardise, PCA on the training rows, logistic regression on the first n components; n on validation."""
    x_train = dense(x_train)
    scaler = StandardScaler().fit(x_train)
    scale = np.where(scaler.scale_ == 0, 1.0, scaler.scale_)
    most = min(x_train.shape[0], x_train.shape[1], _MAX_COMPONENTS)
    pca = PCA(n_components=most, random_state=seed).fit((x_train - scaler.mean_) / scale)
    # x -> standardised -> centred by PCA's mean -> components: one affine map.
    projection_all = pca.components_ / scale
    offset = scaler.mean_ + pca.mean_ * scale

    def fit_at(n: int) -> TrainedProbe:
        projected = (x_train - offset) @ projection_all[:n].T
        model = LogisticRegression(max_iter=1000, random_state=seed).fit(projected, y_train)
        return _composed(projection_all[:n], offset, model, n_classes, {"n_components": int(n)})

    grid = [only] if only is not None else np.unique(np.logspace(0, np.log2(most), num=10, base=2, dtype=int)).tolist()
    _, probe, scores = best_on_validation(grid, fit_at, dense(x_val), y_val, cfg.select_by)
    probe.summary[f"val_{cfg.select_by}_by_n_components"] = scores
    return probe


def fit_diff_of_means_probe(x_train, y_train, x_val, y_val, n_classes: int, cfg, seed: int,
                            logger=False, only=None) -> TrainedProbe:
    """Class-mean directions from the training rows, calibrated by a logistic regression on the projections."""
    x_train = dense(x_train)
    overall = x_train.mean(axis=0)
    classes = np.unique(y_train)
    directions = np.zeros((n_classes, x_train.shape[1]))
    for c in classes:
        directions[c] = x_train[y_train == c].mean(axis=0) - overall
    directions = directions[classes]
    model = LogisticRegression(max_iter=1000, random_state=seed).fit((x_train - overall) @ directions.T, y_train)
    return _composed(directions, overall, model, n_classes, {"directions": int(len(classes))})
