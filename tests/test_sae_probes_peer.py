"""MOSAIC against the sparse-probing suite's own code (the installed `sae-probes` package), called, not re-implemented.

Importing the peer reads every dataset and loads TransformerLens (about 10 s), so these tests are `slow`.
"""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def peer():
    """The peer's modules by name (its package namespace shadows `run_sae_evals` with a function)."""
    import importlib
    from types import SimpleNamespace

    return SimpleNamespace(**{name: importlib.import_module(f"sae_probes.{name}")
                              for name in ("run_sae_evals", "utils_data", "utils_training")})


def test_the_binary_tasks_are_the_peers(peer):
    from mosaic.data.sources.sae_probes import tasks

    assert [task for task, kind in tasks().items() if kind == "binary"] == peer.utils_data.get_numbered_binary_tags()


def test_k_sparse_ranking_is_the_peers(peer):
    from mosaic.probes.sparse import rank_features

    rng = np.random.default_rng(0)
    codes = sp.random(400, 300, density=0.05, random_state=1, data_rvs=lambda n: rng.exponential(size=n)).tocsr()
    labels = rng.integers(0, 2, size=400)
    theirs = peer.run_sae_evals.get_sorted_indices(torch.tensor(codes.toarray()), torch.tensor(labels),
                                                   peer.run_sae_evals.mean_act_normalization)
    ours = rank_features(codes, labels)
    assert ours[:128].tolist() == theirs[:128].tolist()


@pytest.mark.parametrize("task", ["95_toxic_is", "41_truthqa_tf", "100_news_fake"])
def test_the_normal_regime_draws_the_peers_rows_validation_and_flipped_labels(peer, task):
    from mosaic.config import compose
    from mosaic.data import draw_splits, load_labelled_documents
    from mosaic.data.regimes import normal_indices, validation_tail

    labels = peer.utils_data.get_yvals(task)
    n_train = min(len(labels) - 100, 1024)
    their_train, their_test = peer.utils_data.get_train_test_indices(labels, n_train, len(labels) - n_train - 1,
                                                                     pos_ratio=0.5, seed=42)
    pool, test, notes = normal_indices(labels, seed=42, max_train=1024)
    assert pool.tolist() == their_train.tolist() and test.tolist() == their_test.tolist()
    assert notes == {"balanced_pool": True, "balanced_test": True}

    (their_fit, their_val), = peer.utils_training.get_cv(np.zeros((len(pool), 1)))
    fit, val = validation_tail(pool, labels, max_val=100)
    assert fit.tolist() == pool[their_fit].tolist() and val.tolist() == pool[their_val].tolist()

    cfg = compose("dataset=sae_probes", f"dataset.task={task}", "regime=label_noise", "regime.label_noise=0.3",
                  "seed=42", "dataset.dedup=false")  # the peer's rows, duplicates and all
    noisy, _ = draw_splits(load_labelled_documents(cfg.dataset), cfg.dataset, cfg.regime, cfg.seed)
    assert noisy.labels[pool].tolist() == peer.utils_data.corrupt_ytrain(labels[pool], 0.3, seed=42).tolist()


def test_mosaics_suite_protocol_gives_the_peers_test_auroc_on_the_same_activations(tmp_path):
    """The peer's own `logreg` baseline on the activations MOSAIC's job used, written in the peer's layout."""
    from mosaic.bench.parity import compare

    rows = compare(["95_toxic_is", "41_truthqa_tf"], ("model=tiny_gpt2", "layer=1"), workdir=tmp_path)
    for row in rows:
        assert row["gap"] <= 0.01, row
        assert np.isclose(row["mosaic_C"], row["peer_C"]), row  # the same selection, not just a close score
        assert 0.5 < row["peer_auroc"] < 1  # the tiny random model still separates somewhat: not a degenerate case


def test_the_covariate_shift_pool_is_the_peers_ood_training_draw(peer):
    from mosaic.config import compose
    from mosaic.data import draw_splits, load_labelled_documents

    cfg = compose("dataset=sae_probes", "dataset.task=87_glue_cola", "regime=covariate_shift", "seed=42",
                  "dataset.dedup=false")
    data, splits = draw_splits(load_labelled_documents(cfg.dataset), cfg.dataset, cfg.regime, cfg.seed)
    labels = peer.utils_data.get_yvals("87_glue_cola")[:1500]  # what get_OOD_traintest reads
    their_train, _ = peer.utils_data.get_train_test_indices(labels, 1024, 0, pos_ratio=0.5, seed=42)
    assert sorted(np.concatenate([splits.train, splits.val]).tolist()) == sorted(their_train.tolist())


def test_the_mlp_and_xgboost_settings_are_the_peers_draws(peer):
    from mosaic.probes.nonlinear import BOOSTED_SEARCH, boosted_draws, mlp_draws

    rng = np.random.default_rng(0)
    features, labels = rng.normal(size=(200, 8)).astype(np.float32), np.tile([0, 1], 100)
    found = peer.utils_training.find_best_mlp(features[:150], labels[:150], features[150:], labels[150:], seed=42)
    theirs = found.classifier.get_params()
    ours = mlp_draws(1, 42)[0]
    assert tuple(theirs["hidden_layer_sizes"]) == ours["hidden_layer_sizes"]
    assert theirs["learning_rate_init"] == pytest.approx(ours["learning_rate_init"])
    assert theirs["alpha"] == pytest.approx(ours["alpha"])
    boosted = peer.utils_training.find_best_xgboost(features[:150], labels[:150], features[150:], labels[150:],
                                                   seed=42).classifier.get_params()
    assert any(all(boosted[name] == pytest.approx(value) for name, value in draw.items())
               for draw in boosted_draws(BOOSTED_SEARCH, 42))
