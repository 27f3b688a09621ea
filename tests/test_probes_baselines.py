"""The baselines (`probes/linear_baselines.py`, `probes/nonlinear.py`) against scikit-learn and XGBoost fitted
directly on the same standardised rows, and their storage."""

import numpy as np
import pytest
import scipy.sparse as sp
from omegaconf import OmegaConf
from sklearn.datasets import make_classification
from sklearn.preprocessing import StandardScaler

from mosaic.config import ProbeConfig
from mosaic.probes import PROBE_TYPES, fit_probe, load_probe


def _problem(seed=0, n_classes=2):
    features, labels = make_classification(n_samples=500, n_features=30, n_informative=6, n_classes=n_classes,
                                           random_state=seed)
    features[:, 5] = 0.0  # a constant column: standardisation must not divide by zero
    return features.astype(np.float32), labels, np.arange(300), np.arange(300, 400), np.arange(400, 500)


def _cfg(probe_type, **changes):
    return OmegaConf.structured(ProbeConfig(type=probe_type, select_by="auroc", **changes))


def _standardised(features, train):
    scaler = StandardScaler().fit(features[train].astype(np.float64))
    scale = np.where(scaler.scale_ == 0, 1.0, scaler.scale_)
    return (features.astype(np.float64) - scaler.mean_) / scale


def test_pca_probe_is_scaler_pca_and_logistic_regression_composed_into_one_linear_map():
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    features, labels, train, val, test = _problem()
    probe = fit_probe(features[train], labels[train], features[val], labels[val], 2, _cfg("pca"), seed=0)
    z = _standardised(features, train)
    pca = PCA(n_components=30, random_state=0).fit(z[train])
    scores = {}
    for n in np.unique(np.logspace(0, np.log2(30), num=10, base=2, dtype=int)):
        model = LogisticRegression(max_iter=1000, random_state=0).fit(pca.transform(z[train])[:, :n], labels[train])
        scores[int(n)] = roc_auc_score(labels[val], model.predict_proba(pca.transform(z[val])[:, :n])[:, 1])
        if n == probe.summary["n_components"]:
            expected = model.predict_proba(pca.transform(z[test])[:, :n])
    assert probe.summary["n_components"] == max(scores, key=scores.get)
    np.testing.assert_allclose(probe.predict_proba(features[test]), expected, atol=1e-4)


def test_difference_of_means_projects_on_the_class_mean_directions():
    from sklearn.linear_model import LogisticRegression

    features, labels, train, val, test = _problem(1)
    probe = fit_probe(features[train], labels[train], features[val], labels[val], 2, _cfg("diff_of_means"), seed=0)
    x = features[train].astype(np.float64)
    overall = x.mean(axis=0)
    directions = np.stack([x[labels[train] == c].mean(axis=0) - overall for c in (0, 1)])
    reference = LogisticRegression(max_iter=1000, random_state=0).fit((x - overall) @ directions.T, labels[train])
    expected = reference.predict_proba((features[test] - overall) @ directions.T)
    np.testing.assert_allclose(probe.predict_proba(features[test]), expected, atol=1e-5)
    difference = probe.weight[1] - probe.weight[0]
    mean_gap = directions[1] - directions[0]
    assert difference @ mean_gap / np.linalg.norm(difference) / np.linalg.norm(mean_gap) == pytest.approx(1, abs=1e-6)


@pytest.mark.slow
def test_knn_mlp_and_boosted_trees_predict_what_their_libraries_predict():
    import xgboost
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier

    from mosaic.probes.nonlinear import boosted_draws, mlp_draws

    features, labels, train, val, test = _problem(2, n_classes=3)
    z = _standardised(features, train)
    fitted = {name: fit_probe(features[train], labels[train], features[val], labels[val], 3, _cfg(name), seed=0)
              for name in ("knn", "mlp", "boosted_trees")}
    knn = KNeighborsClassifier(n_neighbors=fitted["knn"].summary["n_neighbors"]).fit(z[train], labels[train])
    np.testing.assert_allclose(fitted["knn"].predict_proba(features[test]), knn.predict_proba(z[test]))
    mlp_setting = mlp_draws(1, 0)[fitted["mlp"].summary["draw"]]
    mlp = MLPClassifier(max_iter=1000, random_state=0, **mlp_setting).fit(z[train], labels[train])
    np.testing.assert_allclose(fitted["mlp"].predict_proba(features[test]), mlp.predict_proba(z[test]), atol=1e-6)
    boosted_setting = boosted_draws(10, 0)[fitted["boosted_trees"].summary["draw"]]
    boosted = xgboost.XGBClassifier(**boosted_setting, eval_metric="logloss", random_state=0, n_jobs=1)
    boosted.fit(z[train], labels[train])
    np.testing.assert_allclose(fitted["boosted_trees"].predict_proba(features[test]), boosted.predict_proba(z[test]),
                               atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("probe_type", ["pca", "diff_of_means", "knn", "mlp", "boosted_trees"])
@pytest.mark.parametrize("k", [None, 8])
def test_every_baseline_saves_loads_refits_and_goes_k_sparse(tmp_path, probe_type, k):
    features, labels, train, val, test = _problem(3)
    sparse = sp.csr_matrix(np.maximum(features, 0))
    cfg = _cfg(probe_type, k=k, refit=True)
    probe = fit_probe(sparse[train], labels[train], sparse[val], labels[val], 2, cfg, seed=0)
    assert probe.n_features == 30 and probe.summary["refit_on"] == "train+val"
    if k:
        assert np.flatnonzero(np.abs(probe.evidence()).sum(axis=0)).size <= k
    probe.save(tmp_path / "probe", {"label_names": ["a", "b"]})
    loaded, _ = load_probe(tmp_path / "probe")
    np.testing.assert_array_equal(loaded.predict_proba(sparse[test]), probe.predict_proba(sparse[test]))
    chooses = PROBE_TYPES[probe_type].chooses
    assert chooses is None or loaded.summary[chooses] == probe.summary[chooses]
