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


def test_cross_validation_scores_each_fold_on_rows_no_fitting_step_saw():
    labels = np.array([0, 1] * 30)
    test = np.arange(0, 60, 5)
    documents = np.setdiff1d(np.arange(60), test)
    rows = np.arange(60, dtype=float)[:, None]  # each row carries its own index
    fitted_on, trained, predicted = [], [], []

    def features_for(train_index):
        fitted_on.append(set(train_index))  # what a fitted featurizer (TF-IDF) would be fitted on
        return rows

    class Majority:
        def predict(self, x):
            predicted.append(set(x[:, 0].astype(int)))
            return np.zeros(len(x), dtype=int)

    def fit(x_train, y_train, x_val, y_val):
        trained.append((set(x_train[:, 0].astype(int)), set(x_val[:, 0].astype(int))))
        return Majority()

    cv = cross_validate(features_for, labels, documents, fit, folds=4, seed=0)
    assert cv["folds"] == 4 and len(predicted) == 4 and cv["held_out"] and cv["data"] == "train+val"
    # The scored folds partition the non-test documents; none was fitted on, trained on or validated on.
    assert set().union(*predicted) == set(documents) and sum(map(len, predicted)) == len(documents)
    for scored, featurized, (train, val) in zip(predicted, fitted_on, trained):
        assert not scored & (featurized | train | val) and featurized == train
        assert not (train | val | scored) & set(test)
    # Predicting class 0 everywhere on balanced folds: F1 2/3 for class 0, 0 for class 1.
    np.testing.assert_allclose(cv["fold_macro_f1"], 1 / 3, atol=0.02)


@pytest.mark.parametrize(("labels", "predictions"), [
    ([0, 0, 1, 1], [0, 0, 1, 1]),        # perfect, a class of the dataset absent from the split
    ([0, 1, 1, 0], [0, 1, 2, 0]),        # a class predicted that the split does not hold
    ([2, 2, 2, 2], [2, 2, 2, 2]),        # a single class, perfect
    ([0, 1, 2, 2], [1, 1, 1, 1]),        # one class predicted for everything
])
@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_macro_f1_is_one_definition_and_it_is_sklearns(labels, predictions):
    from sklearn.metrics import f1_score

    from mosaic.probes.selection import macro_f1

    labels, predictions = np.array(labels), np.array(predictions)
    expected = f1_score(labels, predictions, average="macro", zero_division=0)
    proba = np.eye(3)[predictions]
    # The test metrics, the CV folds and validation selection all use the same number.
    assert classification_metrics(labels, proba, ["a", "b", "c"])["macro_f1"] == pytest.approx(expected)
    assert macro_f1(labels, predictions) == pytest.approx(expected)


def test_perfect_predictions_score_one_on_a_split_that_lacks_a_class():
    labels = np.array([0, 0, 1, 1])
    metrics = classification_metrics(labels, np.eye(3)[labels], ["a", "b", "c"])
    assert metrics["macro_f1"] == 1.0 and metrics["per_class"]["c"]["support"] == 0
