"""Metrics against hand-computed cases, and top features from a known weight matrix."""

import numpy as np
import pytest

from mosaic.evaluate import classification_metrics, cross_validate, top_features
from mosaic.probes import TrainedProbe


def test_metrics_of_a_hand_computed_binary_case():
    labels = np.array([0, 0, 0, 1, 1])
    proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8], [0.7, 0.3]])
    metrics = classification_metrics(labels, proba, ["benign", "malicious"])
    # Predictions 0 0 1 1 0: class 0 has P=2/3 R=2/3, class 1 has P=1/2 R=1/2.
    assert metrics["confusion"] == [[2, 1], [1, 1]]
    assert metrics["accuracy"] == pytest.approx(3 / 5)
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert metrics["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    # Positive scores 0.8, 0.3 against negatives 0.1, 0.4, 0.7: 4 of 6 pairs ranked right.
    assert metrics["auroc"] == pytest.approx(4 / 6)
    assert metrics["per_class"]["malicious"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}


def test_auroc_is_missing_not_zero_when_the_test_split_has_one_class():
    metrics = classification_metrics(np.array([1, 1]), np.array([[0.4, 0.6], [0.1, 0.9]]), ["a", "b"])
    assert metrics["auroc"] is None


def test_three_class_auroc_is_one_vs_rest_macro():
    labels = np.array([0, 1, 2, 0, 1, 2])
    proba = np.eye(3)[[0, 1, 2, 1, 1, 2]] * 0.8 + 0.2 / 3
    metrics = classification_metrics(labels, proba, ["a", "b", "c"])
    # Each class against the rest, by counting correctly ranked (positive, negative) pairs; ties count half.
    expected = np.mean([
        np.mean([(p > n) + 0.5 * (p == n) for p in proba[labels == c, c] for n in proba[labels != c, c]])
        for c in range(3)
    ])
    assert metrics["auroc"] == pytest.approx(expected)
    assert metrics["confusion"] == [[1, 1, 0], [0, 2, 0], [0, 0, 2]]


def test_top_features_rank_evidence_per_class_and_carry_names():
    weight = np.array([[0.0, 2.0, -1.0, 0.0], [0.0, -2.0, 1.0, 3.0]])
    evidence = TrainedProbe(weight, np.zeros(2)).evidence()
    top = top_features(evidence, ["neg", "pos"], k=3, feature_names=["a", "b", "c", "d"])
    # Evidence = weight minus the mean over classes: d for pos is 1.5, b for neg 2.0, c for pos 1.0.
    assert [(f["name"], f["class"]) for f in top] == [("b", "neg"), ("d", "pos"), ("c", "pos")]
    assert [f["evidence"] for f in top] == [2.0, 1.5, 1.0]


def test_top_features_give_mean_activation_per_class_and_links():
    weight = np.array([[0.0, 1.0, 0.0], [0.0, -1.0, 3.0]])  # evidence: feature 2 for b 1.5, feature 1 for a 1.0
    features = np.array([[1.0, 4.0, 0.0], [3.0, 2.0, 1.0], [5.0, 0.0, 6.0]])
    labels = np.array([0, 0, 1])
    top = top_features(TrainedProbe(weight, np.zeros(2)).evidence(), ["a", "b"], k=2, features=features,
                       labels=labels, url_prefix="https://x/y/")
    assert [(f["index"], f["class"]) for f in top] == [(2, "b"), (1, "a")]
    # Feature 2: class a rows have 0 and 1 (mean 0.5), class b has 6; feature 1: a 4 and 2 (3), b 0.
    assert top[0]["mean_by_class"] == {"a": 0.5, "b": 6.0} and top[1]["mean_by_class"] == {"a": 3.0, "b": 0.0}
    assert top[0]["url"] == "https://x/y/2"


def test_cross_validation_never_sees_test_documents():
    labels = np.array([0, 1] * 30)
    test = np.arange(0, 60, 5)
    documents = np.setdiff1d(np.arange(60), test)
    features = np.arange(60, dtype=float)[:, None]  # each row carries its own index
    seen = []

    class Majority:
        def predict(self, rows):
            return np.zeros(len(rows), dtype=int)

    def fit(x_train, y_train, x_val, y_val):
        seen.append((x_train[:, 0].astype(int), x_val[:, 0].astype(int)))
        return Majority()

    cv = cross_validate(features, labels, documents, fit, folds=4, seed=0)
    assert cv["folds"] == 4 and len(cv["fold_macro_f1"]) == 4
    for train, val in seen:
        assert not set(train) & set(test) and not set(val) & set(test) and not set(train) & set(val)
    # Predicting class 0 everywhere on balanced folds: F1 2/3 for class 0, 0 for class 1.
    assert cv["macro_f1_mean"] == pytest.approx(np.mean(cv["fold_macro_f1"]))
    assert all(0.3 <= f <= 0.35 for f in cv["fold_macro_f1"])
