"""The decision-tree probe the paper reports beside the linear one, with its depth chosen on validation.

The fitted tree is kept as plain arrays (children, split feature, threshold, class distribution per
node) rather than sklearn's estimator object, so it is saved as safetensors and predicts without
pickle, the same way the linear probe does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.tree import DecisionTreeClassifier

from mosaic.probes.selection import best_on_validation
from mosaic.probes.storage import write_probe

# sklearn's marker for "no child": the node is a leaf.
_LEAF = -1
_ARRAYS = ("children_left", "children_right", "feature", "threshold", "value", "split_evidence")


@dataclass
class TreeProbe:
    """A fitted decision tree: node `i` sends a row left when `x[feature[i]] <= threshold[i]`.

    `value[i]` is the class distribution of the training rows reaching node `i` (weighted as the
    tree was fitted), which is what a leaf predicts. `split_evidence` (classes x features) credits each
    split's impurity decrease to the class whose share grows most on the split's high side, so the
    top features say which class a high value of the feature points to.
    """

    children_left: np.ndarray
    children_right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    value: np.ndarray
    split_evidence: np.ndarray
    summary: dict = field(default_factory=dict)

    kind = "tree"

    @property
    def n_features(self) -> int:
        return self.split_evidence.shape[1]

    def evidence(self) -> np.ndarray:
        return self.split_evidence

    def leaves(self, features) -> np.ndarray:
        """The leaf each row of `features` (dense or CSR) ends in."""
        node = np.zeros(features.shape[0], dtype=np.int64)
        rows = np.arange(features.shape[0])
        active = self.children_left[node] != _LEAF
        while active.any():
            at = node[active]
            values = features[rows[active], self.feature[at]]
            values = np.asarray(values).ravel()
            node[active] = np.where(values <= self.threshold[at], self.children_left[at], self.children_right[at])
            active = self.children_left[node] != _LEAF
        return node

    def predict_proba(self, features) -> np.ndarray:
        return self.value[self.leaves(features)]

    def predict(self, features) -> np.ndarray:
        return self.predict_proba(features).argmax(axis=1)

    def save(self, directory: Path, metadata: dict[str, Any]) -> None:
        """`weights.safetensors` (the node arrays) and `probe.json` (`metadata`, kind, summary)."""
        write_probe(directory, {name: getattr(self, name) for name in _ARRAYS},
                    {**metadata, "kind": self.kind, "summary": self.summary})

    def widened(self, columns: np.ndarray, width: int) -> TreeProbe:
        split = self.children_left != _LEAF
        feature = self.feature.copy()
        feature[split] = np.asarray(columns)[self.feature[split]]
        evidence = np.zeros((self.split_evidence.shape[0], width))
        evidence[:, columns] = self.split_evidence
        return TreeProbe(self.children_left, self.children_right, feature, self.threshold, self.value, evidence,
                         dict(self.summary))

    @classmethod
    def from_tensors(cls, tensors: dict[str, np.ndarray], summary: dict) -> TreeProbe:
        return cls(**{name: tensors[name] for name in _ARRAYS}, summary=summary)


def _from_sklearn(tree: DecisionTreeClassifier, n_classes: int, n_features: int) -> TreeProbe:
    """The arrays of a fitted sklearn tree, with classes it never saw given probability 0."""
    nodes = tree.tree_
    value = np.zeros((nodes.node_count, n_classes))
    # sklearn >= 1.4 stores per-node class fractions for classifiers.
    value[:, tree.classes_] = nodes.value[:, 0, :]
    left, right = nodes.children_left, nodes.children_right
    evidence = np.zeros((n_classes, n_features))
    weighted = nodes.weighted_n_node_samples
    for node in np.flatnonzero(left != _LEAF):
        decrease = (weighted[node] * nodes.impurity[node] - weighted[left[node]] * nodes.impurity[left[node]]
                    - weighted[right[node]] * nodes.impurity[right[node]]) / weighted[0]
        evidence[np.argmax(value[right[node]] - value[node]), nodes.feature[node]] += decrease
    return TreeProbe(
        children_left=left.astype(np.int64),
        children_right=right.astype(np.int64),
        feature=nodes.feature.astype(np.int64),
        threshold=nodes.threshold.astype(np.float64),
        value=value,
        split_evidence=evidence,
    )


def fit_tree_probe(x_train, y_train, x_val, y_val, n_classes: int, cfg, seed: int, logger=False,
                   only: int | None = None) -> TreeProbe:
    """Fit one tree per depth of `cfg.depth_grid`; keep the best on validation macro F1 (shallowest on ties).

    Trees split on thresholds and need no feature scaling; they log no training curve (`logger`).
    """
    def fit_at(depth: int) -> TreeProbe:
        tree = DecisionTreeClassifier(max_depth=depth, min_samples_leaf=cfg.min_samples_leaf,
                                      class_weight="balanced" if cfg.class_weight == "balanced" else None,
                                      random_state=seed)
        tree.fit(x_train, y_train)
        probe = _from_sklearn(tree, n_classes, x_train.shape[1])
        probe.summary = {"max_depth": depth, "depth": int(tree.get_depth()), "leaves": int(tree.get_n_leaves())}
        return probe

    grid = [only] if only is not None else sorted(cfg.depth_grid)
    _, probe, scores = best_on_validation(grid, fit_at, x_val, y_val, cfg.select_by)
    probe.summary[f"val_{cfg.select_by}_by_depth"] = scores
    return probe
