"""Probes: the Lightning probe agrees with sklearn's LogisticRegression and restores its best epoch."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from omegaconf import OmegaConf
from sklearn.datasets import make_classification
from sklearn.metrics import f1_score

from mosaic.bench.probes import penalised_objective
from mosaic.config import ProbeConfig
from mosaic.probes import fit_probe
from mosaic.probes.lightning_trainer import LinearProbe
from tests.conftest import compose_config


def _sparse_problem(seed, n_classes=3):
    features, labels = make_classification(n_samples=1500, n_features=300, n_informative=15, n_classes=n_classes,
                                           class_sep=1.5, random_state=seed)
    features = sp.csr_matrix(np.maximum(features, 0).astype(np.float32))
    return features, labels, np.arange(800), np.arange(800, 1000), np.arange(1000, 1500)


def _fit(probe_type, features, labels, train, val, penalty="l2", **changes):
    cfg = OmegaConf.structured(ProbeConfig(type=probe_type, penalty=penalty, **changes))
    n_classes = len(np.unique(labels))
    return fit_probe(features[train], labels[train], features[val], labels[val], n_classes, cfg, seed=0)


def _well_conditioned_problem(seed, n_classes):
    features, labels = make_classification(n_samples=600, n_features=40, n_informative=8, n_redundant=0,
                                           n_classes=n_classes, random_state=seed)
    return features.astype(np.float32), labels, np.arange(400), np.arange(400, 500), np.arange(500, 600)


@pytest.mark.parametrize(("penalty", "n_classes", "problem"),
                         [("l2", 3, _sparse_problem), ("l2", 2, _sparse_problem),
                          ("l1", 3, _well_conditioned_problem), ("l1", 2, _well_conditioned_problem)])
def test_lightning_probe_reaches_sklearns_optimum(penalty, n_classes, problem):
    """Same objective, same optimum: macro F1 within 0.01, objective within 1e-3, L1 zeros where saga's are."""
    from sklearn.linear_model import LogisticRegression

    features, labels, train, val, test = problem(0, n_classes)
    C = 0.1 if penalty == "l2" else 0.2
    probe = _fit("linear", features, labels, train, val, penalty, C=C, scale=False)
    reference = LogisticRegression(C=C, l1_ratio=1.0 if penalty == "l1" else 0.0,
                                   solver="saga" if penalty == "l1" else "lbfgs", class_weight="balanced",
                                   tol=1e-6, max_iter=20000).fit(features[train], labels[train])
    assert probe.summary["converged"] and reference.n_iter_.max() < 20000
    ours = f1_score(labels[test], probe.predict(features[test]), average="macro")
    theirs = f1_score(labels[test], reference.predict(features[test]), average="macro")
    assert theirs > 0.6 and abs(ours - theirs) <= 0.01
    coef = reference.coef_ if n_classes > 2 else np.vstack([np.zeros_like(reference.coef_), reference.coef_])
    intercept = reference.intercept_ if n_classes > 2 else np.array([0.0, reference.intercept_[0]])
    x, y = features[train].astype(np.float64), labels[train]
    objective = penalised_objective(probe.weight.astype(np.float64), probe.bias, x, y, C, penalty)
    optimum = penalised_objective(coef, intercept, x, y, C, penalty)
    assert abs(objective - optimum) / optimum <= 1e-3
    if penalty == "l1":
        zeros = reference.coef_ == 0
        assert 0.2 < zeros.mean() < 0.95  # a sparse optimum, but not an empty one
        ours_zero = probe.weight[1:] == 0 if n_classes == 2 else probe.weight == 0
        np.testing.assert_array_equal(ours_zero, zeros)


def test_early_stopping_returns_the_weights_of_the_best_validation_epoch():
    features, labels, train, val, _ = _sparse_problem(1)
    probe = _fit("linear", features, labels, train, val, early_stopping=True, patience=5, max_epochs=60)
    val_f1 = f1_score(labels[val], probe.predict(features[val]), average="macro")
    assert probe.summary["best_val_macro_f1"] == pytest.approx(val_f1, abs=1e-6)
    # Early stopping ended training `patience` epochs after the best one, well before max_epochs.
    assert probe.summary["epochs"] == probe.summary["best_epoch"] + 5 + 1
    assert probe.summary["epochs"] < 60


@pytest.mark.parametrize("n_classes", [2, 3])
def test_sklearns_optimum_is_a_stationary_point_of_the_lightning_objective(n_classes):
    """Same objective up to a constant factor: sklearn's solution has zero gradient under ours."""
    from sklearn.linear_model import LogisticRegression

    features, labels = make_classification(n_samples=300, n_features=12, n_informative=6, n_classes=n_classes,
                                           random_state=n_classes)
    C = 0.3
    reference = LogisticRegression(C=C, class_weight="balanced", tol=1e-12, max_iter=10000).fit(features, labels)
    weights = len(labels) / (n_classes * np.bincount(labels))
    probe = LinearProbe(features.shape[1], n_classes, torch.tensor(weights), "l2", 1.0 / (C * len(labels)), lr=0.1)
    with torch.no_grad():
        probe.linear.weight.copy_(torch.tensor(reference.coef_))
        probe.linear.bias.copy_(torch.tensor(reference.intercept_))
    x, y = torch.tensor(features, dtype=torch.float32), torch.tensor(labels)
    loss = probe.weighted_loss(probe(x), y) + probe._penalty()
    loss.backward()
    assert probe.linear.weight.grad.abs().max() < 1e-4
    assert probe.linear.bias.grad.abs().max() < 1e-4
    # Moving away from the optimum raises the objective: the gradient test is not vacuous.
    with torch.no_grad():
        probe.linear.weight.mul_(1.5)
        assert probe.weighted_loss(probe(x), y) + probe._penalty() > loss


def test_sklearn_probe_probabilities_are_sklearns():
    from sklearn.linear_model import LogisticRegression

    features, labels, train, val, test = _sparse_problem(3, n_classes=2)
    probe = _fit("sklearn", features, labels, train, val, scale=False)
    reference = LogisticRegression(C=1.0, class_weight="balanced", max_iter=5000).fit(features[train], labels[train])
    # Both stop at lbfgs's tolerance from slightly different (float32 vs float64) class weights.
    ours, theirs = probe.predict_proba(features[test]), reference.predict_proba(features[test])
    np.testing.assert_allclose(ours, theirs, atol=0.05)
    assert (ours.argmax(axis=1) == theirs.argmax(axis=1)).mean() > 0.99


def test_column_scaling_is_folded_into_the_returned_weights():
    features, labels, train, val, test = _sparse_problem(0)
    stretched = sp.csr_matrix(features @ sp.diags(np.linspace(1, 1000, features.shape[1])))
    plain = _fit("sklearn", features, labels, train, val)
    scaled = _fit("sklearn", stretched, labels, train, val)
    # Scaling columns by constants is undone by max-abs scaling: same predictions on the raw inputs.
    np.testing.assert_allclose(plain.predict_proba(features[test]), scaled.predict_proba(stretched[test]),
                               atol=1e-3)


def test_dense_and_sparse_inputs_train_the_same_lightning_probe():
    features, labels, train, val, test = _sparse_problem(0)
    sparse_probe = _fit("linear", features, labels, train, val)
    dense_probe = _fit("linear", features.toarray(), labels, train, val)
    np.testing.assert_allclose(sparse_probe.weight, dense_probe.weight, atol=1e-5)


def test_C_is_chosen_on_validation_data_only():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import MaxAbsScaler

    features, labels, train, val, test = _sparse_problem(0)
    grid = [1e-4, 0.1, 10.0]
    probe = _fit("sklearn", features, labels, train, val, C_grid=grid)
    # Validation macro F1 of each C, recomputed with sklearn alone on the same max-abs scaled features.
    scaler = MaxAbsScaler().fit(features[train])
    expected = {}
    for C in grid:
        model = LogisticRegression(C=C, class_weight="balanced", max_iter=5000, tol=1e-6)
        model.fit(scaler.transform(features[train]), labels[train])
        expected[C] = f1_score(labels[val], model.predict(scaler.transform(features[val])), average="macro")
    assert probe.summary["val_macro_f1_by_C"] == pytest.approx({str(C): f for C, f in expected.items()}, abs=1e-9)
    assert probe.summary["C"] == max(grid, key=lambda C: expected[C])
    assert expected[1e-4] < max(expected.values())  # the grid has a loser, so the choice is not vacuous
    # The chosen probe is the one fitted with that C alone.
    alone = _fit("sklearn", features, labels, train, val, C=probe.summary["C"])
    np.testing.assert_allclose(probe.weight, alone.weight, rtol=1e-5, atol=1e-6)


def test_top_features_rank_by_fitted_space_weight_not_raw_units():
    """A latent that barely fires gets a huge raw-unit weight; ranking must use weight times its scale."""
    from mosaic.evaluate import top_features

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 200)
    strong = labels * 4.0 + rng.normal(size=400)  # fires on every document, separates the classes
    weak = np.where(rng.random(400) < 0.3, 1e-3 * (labels + 0.2), 0.0)  # tiny values, weakly informative
    noise = rng.normal(size=400)
    features = np.column_stack([noise, strong, weak]).astype(np.float32)
    probe = _fit("sklearn", features, labels, np.arange(400), np.arange(400), scale=True)
    raw = probe.weight - probe.weight.mean(axis=0)
    # In raw units the weak latent's weight is the largest: that is the ranking this test rules out.
    assert np.argmax(np.abs(raw[1])) == 2
    top = top_features(probe.evidence(), ["a", "b"], k=1)
    assert (top[0]["index"], top[0]["class"]) == (1, "b")


def _sklearn_tree(features, labels, train, depth):
    from sklearn.tree import DecisionTreeClassifier

    return DecisionTreeClassifier(max_depth=depth, class_weight="balanced", random_state=0).fit(
        features[train], labels[train])


def test_tree_probe_predicts_what_sklearns_tree_predicts_on_sparse_and_dense_rows():
    features, labels, train, val, test = _sparse_problem(1)
    probe = _fit("tree", features, labels, train, val, depth_grid=[5])
    reference = _sklearn_tree(features, labels, train, depth=5)
    np.testing.assert_allclose(probe.predict_proba(features[test]), reference.predict_proba(features[test]))
    np.testing.assert_allclose(probe.predict_proba(features[test].toarray()),
                               reference.predict_proba(features[test]))
    # Evidence sums the impurity decreases, i.e. sklearn's (unnormalised) feature importances.
    np.testing.assert_allclose(probe.evidence().sum(axis=0),
                               reference.tree_.compute_feature_importances(normalize=False))


def test_tree_depth_is_chosen_on_validation_data_only():
    features, labels, train, val, test = _sparse_problem(0)
    probe = _fit("tree", features, labels, train, val, depth_grid=[8, 1, 3])
    scores = probe.summary["val_macro_f1_by_depth"]
    assert set(scores) == {"1", "3", "8"}
    best = max(scores.values())
    assert probe.summary["max_depth"] == min(int(depth) for depth, score in scores.items() if score == best)
    reference = _sklearn_tree(features, labels, train, depth=probe.summary["max_depth"])
    assert f1_score(labels[val], reference.predict(features[val]), average="macro") == pytest.approx(best)
    assert scores["1"] < best  # a stump cannot separate three classes


def test_tree_evidence_points_at_the_class_a_high_value_indicates():
    # Feature 1 is high for class 2 only; feature 0 is noise.
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 50)
    features = np.column_stack([rng.normal(size=150), (labels == 2) * 5.0 + rng.normal(size=150) * 0.1])
    probe = _fit("tree", features, labels, np.arange(150), np.arange(150), depth_grid=[1], scale=False)
    assert np.unravel_index(np.argmax(probe.evidence()), probe.evidence().shape) == (2, 1)


@pytest.mark.parametrize("probe_type", ["sklearn", "tree"])
@pytest.mark.parametrize("k", [None, 16])
def test_saved_probe_round_trip_gives_identical_predictions(tmp_path, probe_type, k):
    from mosaic.probes import load_probe

    features, labels, train, val, test = _sparse_problem(2)
    probe = _fit(probe_type, features, labels, train, val, depth_grid=[6], k=k)
    probe.save(tmp_path / "probe", {"label_names": ["a", "b", "c"]})
    loaded, metadata = load_probe(tmp_path / "probe")
    assert type(loaded) is type(probe) and metadata["label_names"] == ["a", "b", "c"]
    np.testing.assert_array_equal(loaded.predict_proba(features[test]), probe.predict_proba(features[test]))
    assert loaded.summary == probe.summary


@pytest.mark.slow
@pytest.mark.parametrize("features", ["features=hidden", "features=bow"])
def test_lightning_and_sklearn_probes_reach_one_optimum_on_real_features(tmp_path, features):
    """MiniLM's residual stream (and TF-IDF) of the packaged prompts: the benchmark's parity goal as a test."""
    from mosaic.activations.store import lazy_model
    from mosaic.data import load_labelled_documents, make_splits
    from mosaic.features.types import FeatureContext, build_features
    from mosaic.infra.timing import Stopwatch
    from mosaic.pipeline import run
    from mosaic.probes import load_probe
    from tests.conftest import compose_config

    scored, fitted = {}, {}
    for probe in ("linear", "sklearn"):
        cfg = compose_config(features, "logger=none", f"probe={probe}", "probe.C=0.5")
        scored[probe] = run(cfg, tmp_path / probe)["metrics"]["macro_f1"]
        fitted[probe], _ = load_probe(tmp_path / probe / "probe")
    assert abs(scored["linear"] - scored["sklearn"]) <= 0.01
    # Both objectives on the same scaled training features, written out independently of either probe.
    data = load_labelled_documents(cfg.dataset)
    splits = make_splits(data.labels, cfg.seed, cfg.dataset.val_size, cfg.dataset.test_size)
    matrix = build_features(cfg, data, splits, FeatureContext(Stopwatch(), lazy_model(cfg.model), frozenset())).matrix
    scale = fitted["sklearn"].scale
    np.testing.assert_array_equal(fitted["linear"].scale, scale)
    x = sp.csr_matrix(sp.csr_matrix(matrix[splits.train]) @ sp.diags(1.0 / scale))
    objective = {name: penalised_objective(p.weight * p.scale, p.bias, x, data.labels[splits.train], 0.5, "l2")
                 for name, p in fitted.items()}
    assert abs(objective["linear"] - objective["sklearn"]) / objective["sklearn"] <= 1e-3


def test_features_rank_by_normalised_class_mean_difference_hand_computed():
    from mosaic.probes.sparse import rank_features

    # Column scales (mean |value| where non-zero): 2, 2, 1. Normalised class means, class 1 then 0:
    # column 0: 1 and 0.5 (difference 0.5); column 1: 0 and 1 (1); column 2: 0.5 and 0.5 (0).
    x = np.array([[2, 0, 1], [2, 0, 0], [2, 1, 1], [0, 3, 0]], dtype=np.float32)
    y = np.array([1, 1, 0, 0])
    assert rank_features(x, y).tolist() == [1, 0, 2]
    assert rank_features(sp.csr_matrix(x), y).tolist() == [1, 0, 2]
    # Three classes, a feature's largest one-vs-rest difference: feature 0, 1 - 0.25 (class 0);
    # feature 1, 1 - 0 (class 1); feature 2, fires on one of class 2's rows, 0.5 - 0.
    x3 = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 4], [0, 0, 0]], dtype=np.float32)
    assert rank_features(x3, np.array([0, 0, 1, 1, 2, 2])).tolist() == [1, 0, 2]


def test_a_k_sparse_logistic_probe_is_sklearns_on_the_top_k_training_features():
    from sklearn.linear_model import LogisticRegression

    from mosaic.probes.sparse import rank_features

    features, labels, train, val, test = _sparse_problem(3, n_classes=2)
    probe = _fit("sklearn", features, labels, train, val, scale=False, k=8)
    chosen = rank_features(features[train], labels[train])[:8]
    assert probe.summary["k"] == 8 and probe.summary["selected_features"] == chosen.tolist()
    assert np.flatnonzero(np.abs(probe.evidence()).sum(axis=0)).tolist() == sorted(chosen.tolist())
    reference = LogisticRegression(C=1.0, class_weight="balanced", max_iter=5000).fit(
        features[train][:, chosen], labels[train])
    np.testing.assert_allclose(probe.predict_proba(features[test]), reference.predict_proba(features[test][:, chosen]),
                               atol=0.02)


def test_k_sparse_selection_reads_training_rows_only():
    """Validation and test rows can be anything: the features chosen depend on the training rows alone."""
    features, labels, train, val, test = _sparse_problem(4, n_classes=2)
    scrambled = features.tolil()
    scrambled[1000:] = sp.random(500, 300, density=0.3, random_state=0)
    first = _fit("tree", features, labels, train, val, k=4, depth_grid=[3])
    second = _fit("tree", scrambled.tocsr(), labels, train, val, k=4, depth_grid=[3])
    assert first.summary["selected_features"] == second.summary["selected_features"]
    reference = _sklearn_tree(features[:, first.summary["selected_features"]], labels, train, depth=3)
    np.testing.assert_allclose(first.predict_proba(features[test]),
                               reference.predict_proba(features[test][:, first.summary["selected_features"]]))


@pytest.mark.slow
def test_select_by_auroc_then_refit_is_the_suites_logistic_regression():
    """The sparse-probing suite's `find_best_reg`, written with sklearn alone: C over logspace(5, -5, 10) by
    validation AUROC (first best on ties), then one fit on train + validation, unscaled and unweighted."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    features, labels, train, val, test = _sparse_problem(5, n_classes=2)
    features = features.astype(np.float64)  # float32 probabilities of a confident probe tie, and ties move AUROC
    grid = np.logspace(5, -5, 10).tolist()
    probe = _fit("sklearn", features, labels, train, val, C_grid=grid, select_by="auroc", refit=True, scale=False,
                 class_weight="none", tol=1e-4, max_iter=1000)
    scores = [roc_auc_score(labels[val], LogisticRegression(C=C, max_iter=1000).fit(features[train], labels[train])
                            .predict_proba(features[val])[:, 1]) for C in grid]
    chosen = grid[int(np.argmax(scores))]
    assert probe.summary["C"] == chosen and probe.summary["refit_on"] == "train+val"
    # Both stop at lbfgs's tol=1e-4, so their scores agree to its precision, not to the last digit.
    assert probe.summary["val_auroc_by_C"] == pytest.approx({str(C): s for C, s in zip(grid, scores)}, abs=2e-3)
    both = np.concatenate([train, val])
    reference = LogisticRegression(C=chosen, max_iter=1000).fit(features[both], labels[both])
    np.testing.assert_allclose(probe.predict_proba(features[test]), reference.predict_proba(features[test]), atol=1e-3)


@pytest.mark.parametrize("probe_type", ["linear", "sklearn", "tree"])
def test_without_validation_rows_a_probe_keeps_its_configured_setting(probe_type):
    features, labels, train, _, test = _sparse_problem(6, n_classes=2)
    no_val = np.array([], dtype=int)
    probe = _fit(probe_type, features, labels, train, no_val, C=0.5, C_grid=[0.01, 100.0], depth_grid=[3, 9],
                 refit=True)
    if probe_type == "tree":
        assert probe.summary["max_depth"] == 3
    else:
        assert probe.summary["C"] == 0.5
        alone = _fit(probe_type, features, labels, train, no_val, C=0.5)
        np.testing.assert_allclose(probe.weight, alone.weight, rtol=1e-5, atol=1e-6)


def test_a_k_sparse_refit_keeps_the_features_it_was_selected_with():
    from mosaic.probes.sparse import rank_features

    features, labels, train, val, test = _sparse_problem(8, n_classes=2)  # train+val would rank another top 8
    probe = _fit("sklearn", features, labels, train, val, k=8, refit=True, C_grid=[0.1, 10.0])
    assert probe.summary["refit_on"] == "train+val"
    assert probe.summary["selected_features"] == rank_features(features[train], labels[train])[:8].tolist()
    both = np.concatenate([train, val])
    assert set(probe.summary["selected_features"]) != set(rank_features(features[both], labels[both])[:8].tolist())


def test_auroc_undefined_on_a_one_class_validation_split_falls_back_to_macro_f1():
    from mosaic.probes.selection import best_on_validation, macro_f1

    features, labels, train, val, test = _sparse_problem(8, n_classes=2)
    one_class = val[labels[val] == 1]
    probes = {}

    def fit(C):
        probes[C] = _fit("sklearn", features, labels, train, train[:0], C=C)
        return probes[C]

    chosen, _, scores = best_on_validation([0.001, 10.0], fit, features[one_class], labels[one_class], "auroc")
    expected = {C: macro_f1(labels[one_class], probe.predict(features[one_class])) for C, probe in probes.items()}
    assert scores["selected_by"].startswith("macro_f1")
    assert chosen == max(expected, key=expected.get)


@pytest.mark.parametrize("probe_type", ["sklearn", "pca", "knn"])
def test_a_probe_without_validation_rows_records_that_it_selected_nothing(probe_type):
    from mosaic.probes import effective_hyperparameters, select_probe

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 6)).astype(np.float32), np.tile([0, 1], 20)
    cfg = compose_config(f"probe={probe_type}", "probe.C_grid=[0.1,1,10]").probe
    probe = select_probe(x, y, x[:0], y[:0], 2, cfg, seed=0)
    chosen = effective_hyperparameters(probe, cfg)
    [(name, entry)] = chosen.items()
    assert entry["not_selected"].startswith("no validation rows")
    # With validation rows the same call selects, and says nothing of the kind.
    selected = effective_hyperparameters(select_probe(x[:30], y[:30], x[30:], y[30:], 2, cfg, seed=0), cfg)
    assert "not_selected" not in selected[name]


def test_the_sklearn_probe_fits_on_one_blas_thread_to_the_same_probe(monkeypatch):
    """BLAS threads are limited to one inside the fit (speed, `make bench`), and the probe is the one sklearn
    fits outside that limit."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import MaxAbsScaler
    from threadpoolctl import threadpool_info

    features, labels, train, val, test = _well_conditioned_problem(3, n_classes=3)
    seen, real_fit = [], LogisticRegression.fit

    def recording(self, *args, **kwargs):
        seen.append({pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"})
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(LogisticRegression, "fit", recording)
    probe = _fit("sklearn", features, labels, train, val, C=0.5)
    assert seen == [{1}]
    scaler = MaxAbsScaler().fit(features[train])
    reference = real_fit(LogisticRegression(C=0.5, class_weight="balanced", max_iter=5000, tol=1e-6),
                         scaler.transform(features[train]), labels[train])
    np.testing.assert_allclose(probe.predict_proba(features[test]),
                               reference.predict_proba(scaler.transform(features[test])), atol=1e-6)
