"""Regimes (`data/regimes.py`): the sparse-probing suite's draws, with one fixed test set per dataset and seed.

The suite's own functions are compared in `test_sae_probes_peer.py`; here, what each regime guarantees.
"""

import numpy as np
import pytest
from omegaconf import OmegaConf

from mosaic.config.schema import RegimeConfig
from mosaic.data import LabelledDocuments, draw_splits
from mosaic.infra.errors import DataError, NotApplicableError


def _data(n_positive=300, n_negative=300, n_classes=2):
    labels = np.array([1] * n_positive + [0] * n_negative) if n_classes == 2 else np.arange(600) % n_classes
    return LabelledDocuments([f"document {i}" for i in range(len(labels))], labels,
                             [str(c) for c in range(max(2, n_classes))])


def _draw(data, seed=42, **regime):
    cfg = OmegaConf.structured(RegimeConfig(**regime))
    return draw_splits(data, OmegaConf.create({"name": "toy", "task": None, "dedup": True}), cfg, seed)


def test_normal_is_a_balanced_pool_with_its_tail_for_validation_and_a_balanced_test_of_the_rest():
    data, splits = _draw(_data(), type="normal")
    pool = np.concatenate([splits.train, splits.val])
    assert len(pool) == 500 and np.bincount(data.labels[pool]).tolist() == [250, 250]  # min(600 - 100, 1024)
    assert len(splits.val) == 100  # min(20% of 500, 100)
    assert len(splits.test) == 99 and np.bincount(data.labels[splits.test]).tolist() == [49, 50]
    assert len(set(pool) | set(splits.test)) == 599
    assert splits.as_dict()["regime"] == {"type": "normal", "balanced_pool": True, "balanced_test": True}


def test_regimes_change_training_rows_only_and_keep_the_normal_test_set():
    data = _data()
    _, normal = _draw(data, type="normal")
    normal_pool = set(normal.train) | set(normal.val)
    for regime in ({"type": "scarcity", "n_train": 16}, {"type": "imbalance", "positive_fraction": 0.1},
                   {"type": "label_noise", "label_noise": 0.3}):
        drawn, splits = _draw(data, **regime)
        assert splits.test.tolist() == normal.test.tolist(), regime
        assert (drawn.labels[splits.test] == data.labels[splits.test]).all(), regime
        assert set(splits.train) | set(splits.val) <= normal_pool, regime


def test_scarcity_draws_balanced_training_rows_and_validates_on_a_fifth_of_each_class():
    data, splits = _draw(_data(), type="scarcity", n_train=16)
    assert len(splits.train) + len(splits.val) == 16
    assert np.bincount(data.labels[splits.val]).tolist() == [1, 1]  # int(0.2 * 8) of each class
    _, tiny = _draw(_data(), type="scarcity", n_train=2)
    assert len(tiny.train) == 2 and len(tiny.val) == 0 and sorted(data.labels[tiny.train]) == [0, 1]


def test_imbalance_keeps_one_training_size_across_fractions():
    data = _data()
    sizes = {}
    for fraction in (0.05, 0.5, 0.95):
        _, splits = _draw(data, type="imbalance", positive_fraction=fraction)
        rows = np.concatenate([splits.train, splits.val])
        sizes[fraction] = len(rows)
        assert data.labels[rows].sum() == int(np.ceil(fraction * len(rows)))
    assert set(sizes.values()) == {int(250 / 0.95)}  # the pool's 250 per class at the extreme fractions


def test_label_noise_flips_exactly_its_fraction_of_the_pool_and_never_a_test_label():
    data = _data()
    noisy, splits = _draw(data, type="label_noise", label_noise=0.2)
    changed = np.flatnonzero(noisy.labels != data.labels)
    assert len(changed) == int(0.2 * 500) and set(changed) <= set(splits.train) | set(splits.val)
    assert splits.regime["flipped"] == 100


def test_a_class_too_small_for_a_balanced_test_gives_all_it_has_and_says_so():
    # Pool 430 + 430 of 1,000 rows (at most 2 x (480 - 50)); the test set wants 70 positives and 69 negatives of
    # the 90 + 50 left.
    data, splits = _draw(_data(n_positive=520, n_negative=480), type="normal")
    assert np.bincount(data.labels[splits.test]).tolist() == [50, 70]
    assert splits.regime["balanced_pool"] is True and splits.regime["balanced_test"] is False
    # 450 and 280: the suite's pool (630) would take 315 negatives of 280; capped at 2 x (280 - 50) = 460 it is
    # balanced, and the test set keeps the other 50 negatives (and 135 of the positives it asks for).
    data, short = _draw(_data(n_positive=450, n_negative=280), type="normal")
    assert len(short.train) + len(short.val) == 460 and short.regime["balanced_pool"] is True
    assert np.bincount(data.labels[short.test]).tolist() == [50, 135] and short.regime["balanced_test"] is False


def test_the_suites_regimes_need_a_binary_task():
    with pytest.raises(NotApplicableError, match="regime=normal follows the sparse-probing suite's binary protocol"):
        _draw(_data(n_classes=3), type="normal")
    with pytest.raises(DataError, match="needs more than 101 documents"):
        _draw(_data(n_positive=40, n_negative=40), type="normal")
    with pytest.raises(DataError, match="at least 51 of each class; this dataset has 350, 50 in its smaller class"):
        _draw(_data(n_positive=300, n_negative=50), type="normal")


def test_covariate_shift_tests_on_the_tasks_out_of_distribution_set():
    from mosaic.config import compose
    from mosaic.data import load_labelled_documents
    from mosaic.data.sources.sae_probes import read_ood

    cfg = compose("dataset=sae_probes", "dataset.task=87_glue_cola", "regime=covariate_shift")
    original = load_labelled_documents(cfg.dataset)
    data, splits = draw_splits(original, cfg.dataset, cfg.regime, cfg.seed)
    shifted = read_ood("87_glue_cola")
    assert [data.documents[i] for i in splits.test] == shifted["prompt"].astype(str).tolist()
    assert data.labels[splits.test].tolist() == shifted["target"].astype(int).tolist()  # classes "0" and "1"
    assert splits.train.max() < len(original.documents)


def test_an_ood_set_with_other_class_names_is_encoded_by_sorted_position_as_the_suite_does():
    from sklearn.preprocessing import LabelEncoder

    from mosaic.config import compose
    from mosaic.data import load_labelled_documents
    from mosaic.data.sources.sae_probes import read_ood

    cfg = compose("dataset=sae_probes", "dataset.task=90_glue_qnli", "regime=covariate_shift")
    data, splits = draw_splits(load_labelled_documents(cfg.dataset), cfg.dataset, cfg.regime, cfg.seed)
    peer_codes = LabelEncoder().fit_transform(read_ood("90_glue_qnli")["target"].astype(str))  # the suite's get_xy_OOD
    assert data.labels[splits.test].tolist() == peer_codes.tolist()
    assert splits.regime["classes_renamed"] == {"1": "0", "not_entailment": "1"}
