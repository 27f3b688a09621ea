"""Duplicates (`data/duplicates.py`): one copy per content, conflicting labels dropped, no copy across splits;
transfer targets and loaded probes never score what the probe trained or validated on."""

import json

import numpy as np
import pandas as pd
import pytest

from mosaic.data import document_hash, draw_splits, load_labelled_documents
from mosaic.data.duplicates import deduplicate, guard_splits
from mosaic.pipeline import run
from tests.conftest import TINY_HIDDEN, compose_config


def test_one_copy_is_kept_the_first_or_the_most_held_out_and_conflicting_texts_go():
    hashes = ["a", "b", "a", "c", "b", "d", "d", "a"]
    labels = np.array([0, 1, 0, 0, 0, 1, 1, 0])  # b carries labels 1 and 0: both copies go
    keep, found = deduplicate(hashes, labels, None, remove=True)
    assert keep.tolist() == [0, 3, 5]
    assert found == {"dedup": True, "rows": 8, "duplicate_rows": 4, "conflicting_texts": 1, "conflicting_rows": 2,
                     "removed": 5}
    # With the dataset's own splits the training copy gives way: a's test copy (row 7) and d's validation copy stay.
    split = np.array(["train", "train", "val", "test", "test", "train", "val", "test"])
    keep, found = deduplicate(hashes, labels, split, remove=True)
    assert keep.tolist() == [3, 6, 7] and found["removed_by_split"] == {"test": 1, "train": 3, "val": 1}
    # dedup=false keeps every row and still says what is there.
    keep, found = deduplicate(hashes, labels, split, remove=False)
    assert keep.tolist() == list(range(8)) and (found["duplicate_rows"], found["removed"]) == (4, 0)


def test_the_guard_drops_validation_copies_of_training_and_test_copies_of_either():
    hashes = ["a", "b", "c", "a", "d", "b", "e", "c"]
    train, val, test = np.array([0, 1, 2]), np.array([3, 4]), np.array([5, 6, 7])
    # Validation row 3 copies training row 0; test rows 5 and 7 copy training rows 1 and 2.
    kept_val, kept_test, counts = guard_splits(hashes, train, val, test, remove=True)
    assert kept_val.tolist() == [4] and kept_test.tolist() == [6]
    assert counts == {"val_in_train": 1, "test_in_train": 2, "test_in_val": 0, "test_copies": 2, "removed": True}
    # A test row may copy a training row and a validation row at once: counted once among the copies.
    _, _, both = guard_splits(["a", "b", "a", "a"], np.array([0, 1]), np.array([2]), np.array([3]), remove=True)
    assert (both["test_in_train"], both["test_in_val"], both["test_copies"]) == (1, 1, 1)
    kept_val, kept_test, counts = guard_splits(hashes, train, val, test, remove=False)
    assert kept_val.tolist() == [3, 4] and kept_test.tolist() == [5, 6, 7] and counts["test_in_train"] == 2


def _doubled_csv(path, n=200, seed=0):
    """`n` distinct random word strings with random labels (no signal), each written twice."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(300)]
    texts = [" ".join(rng.choice(words, size=8)) for _ in range(n)]
    labels = rng.choice(["no", "yes"], size=n)
    frame = pd.DataFrame({"text": texts + texts, "label": np.concatenate([labels, labels])})
    frame.sample(frac=1, random_state=seed).to_csv(path, index=False)
    return path


def _copies_across(data, splits):
    """Naively: validation rows copied in training; test rows copied in training, in validation, in either."""
    train = {data.documents[i].strip() for i in splits.train}
    val = {data.documents[i].strip() for i in splits.val}
    test = [data.documents[i].strip() for i in splits.test]
    return (sum(data.documents[i].strip() in train for i in splits.val), sum(text in train for text in test),
            sum(text in val for text in test), sum(text in train | val for text in test))


def test_by_default_no_validation_or_test_document_has_a_copy_in_training(tmp_path):
    path = _doubled_csv(tmp_path / "doubled.csv")
    kept = compose_config("dataset=csv", f"dataset.path={path}", "dataset.dedup=false")
    data, splits = draw_splits(load_labelled_documents(kept.dataset), kept.dataset, kept.regime, 0)
    val_in_train, test_in_train, test_in_val, test_copies = _copies_across(data, splits)
    assert test_copies > 60 and splits.duplicates["across_splits"] == {
        "val_in_train": val_in_train, "test_in_train": test_in_train, "test_in_val": test_in_val,
        "test_copies": test_copies, "removed": False}
    default = compose_config("dataset=csv", f"dataset.path={path}")
    data, splits = draw_splits(load_labelled_documents(default.dataset), default.dataset, default.regime, 0)
    assert _copies_across(data, splits) == (0, 0, 0, 0) and len(data.documents) == 200
    assert splits.duplicates["removed"] == 200 and splits.duplicates["duplicate_rows"] == 200


def test_a_memorising_probe_scores_chance_on_labels_without_signal_once_copies_are_gone(tmp_path):
    """kNN on a bag of words finds each test text's training copy: with copies kept it 'learns' random labels."""
    path = _doubled_csv(tmp_path / "doubled.csv")
    base = ["dataset=csv", f"dataset.path={path}", "features=bow", "probe=knn", "logger=none"]
    kept = run(compose_config(*base, "dataset.dedup=false"), tmp_path / "kept")
    removed = run(compose_config(*base), tmp_path / "removed")
    assert kept["metrics"]["macro_f1"] > 0.75 and kept["splits"]["duplicates"]["across_splits"]["test_in_train"] > 40
    assert removed["metrics"]["macro_f1"] < 0.65
    assert removed["splits"]["duplicates"]["across_splits"] == {"val_in_train": 0, "test_in_train": 0,
                                                                 "test_in_val": 0, "test_copies": 0, "removed": True}


def test_a_dataset_with_its_own_splits_keeps_its_test_copy_and_drops_the_training_one(tmp_path):
    rows = [("shared text", "x", "train"), ("shared text", "x", "test"), ("only train", "y", "train"),
            ("another", "y", "train"), ("third", "x", "train"), ("test only", "y", "test"),
            ("clash", "x", "train"), ("clash", "y", "test")]
    path = tmp_path / "own.csv"
    pd.DataFrame(rows, columns=["text", "label", "split"]).to_csv(path, index=False)
    data = load_labelled_documents(compose_config("dataset=csv", f"dataset.path={path}",
                                                  "dataset.split_column=split").dataset)
    assert list(zip(data.documents, data.split)) == [("shared text", "test"), ("only train", "train"),
                                                      ("another", "train"), ("third", "train"), ("test only", "test")]
    assert data.duplicates["removed_by_split"] == {"test": 1, "train": 2}
    assert (data.duplicates["conflicting_texts"], data.duplicates["conflicting_rows"]) == (1, 2)


def test_the_jobs_own_dataset_as_a_transfer_target_is_scored_on_the_jobs_own_test_rows(tmp_path):
    base = ["model=tiny_gpt2", "layer=1", "features=hidden", "logger=none", "probe=sklearn", "regime=normal",
            "+dataset@transfer.datasets.same=bastion"]
    results = run(compose_config(*base), tmp_path)
    same = results["transfer"]["datasets"]["same"]
    # The same probe on the same rows: the job's own test metrics, not a split drawn without the regime.
    assert same["seen_by_probe_removed"] == 0
    assert {k: same[k] for k in ("macro_f1", "auroc", "confusion")} == {
        k: results["metrics"][k] for k in ("macro_f1", "auroc", "confusion")}


def test_another_dataset_sharing_documents_with_the_job_is_scored_only_on_documents_the_probe_never_saw(tmp_path):
    cfg = compose_config()
    data, splits = draw_splits(load_labelled_documents(cfg.dataset), cfg.dataset, cfg.regime, cfg.seed)
    # The same prompts, shuffled, under another name: its test split holds documents the job's probe trained on.
    path = tmp_path / "copy.csv"
    frame = pd.DataFrame({"text": data.documents, "label": [data.label_names[i] for i in data.labels]})
    frame.sample(frac=1, random_state=1).to_csv(path, index=False)
    target = ["+dataset@transfer.datasets.copy=csv", f"transfer.datasets.copy.path={path}",
              "transfer.datasets.copy.name=copy", "transfer.datasets.copy.label_names=[benign,malicious]"]
    results = run(compose_config(*TINY_HIDDEN[:3], "logger=none", *target), tmp_path / "job")
    copy = load_labelled_documents(compose_config("dataset=csv", f"dataset.path={path}",
                                                  "dataset.label_names=[benign,malicious]").dataset)
    from mosaic.data import make_splits

    target_test = make_splits(copy.labels, cfg.seed, 0.15, 0.25).test
    seen = {document_hash(data.documents[i]) for i in (*splits.train, *splits.val)}
    expected = sum(document_hash(copy.documents[i]) in seen for i in target_test)
    scored = results["transfer"]["datasets"]["copy"]
    assert expected > 0 and scored["seen_by_probe_removed"] == expected
    assert sum(sum(row) for row in scored["confusion"]) == len(target_test) - expected


def test_a_loaded_probe_never_scores_a_document_it_trained_or_validated_on(tmp_path):
    first = run(compose_config(*TINY_HIDDEN), tmp_path / "first")
    trained_on = set(json.loads((tmp_path / "first" / "probe" / "probe.json").read_text())["trained_on"])
    # The same documents drawn with another seed: many of its test rows were the first probe's training rows.
    again = run(compose_config(*TINY_HIDDEN, "seed=1", f"probe.load={tmp_path / 'first' / 'probe'}"),
                tmp_path / "again")
    cfg = compose_config(*TINY_HIDDEN, "seed=1")
    data, splits = draw_splits(load_labelled_documents(cfg.dataset), cfg.dataset, cfg.regime, 1)
    seen_test = sum(document_hash(data.documents[i]) in trained_on for i in splits.test)
    seen_val = sum(document_hash(data.documents[i]) in trained_on for i in splits.val)
    assert seen_test > 0 and seen_val > 0
    assert again["splits"]["duplicates"]["seen_by_loaded_probe"] == {"val": seen_val, "test": seen_test}
    assert (again["splits"]["val"], again["splits"]["test"]) == (len(splits.val) - seen_val,
                                                                  len(splits.test) - seen_test)
    assert len(trained_on) == first["splits"]["train"] + first["splits"]["val"]
    # Its validation documents are others than a probe trained in this job would validate on: not comparable.
    assert again["splits"]["keys"]["val"] != run(compose_config(*TINY_HIDDEN, "seed=1"), tmp_path / "own")[
        "splits"]["keys"]["val"]


def test_a_loaded_probes_transfer_targets_drop_what_it_trained_on_not_what_this_job_did(tmp_path):
    run(compose_config(*TINY_HIDDEN), tmp_path / "first")
    trained_on = set(json.loads((tmp_path / "first" / "probe" / "probe.json").read_text())["trained_on"])
    # A job on another dataset (a few invented prompts), scoring the loaded probe on bastion as a transfer target:
    # the target's test rows drawn at seed 1 hold many of the prompts the probe trained on at seed 0.
    path = tmp_path / "other.csv"
    pd.DataFrame({"text": [f"prompt number {i}" for i in range(40)],
                  "label": ["benign", "malicious"] * 20}).to_csv(path, index=False)
    target = ["+dataset@transfer.datasets.orig=bastion", "transfer.datasets.orig.name=orig",
              "transfer.datasets.orig.limit=60"]
    again = run(compose_config(*TINY_HIDDEN[:3], "logger=none", "dataset=csv", f"dataset.path={path}",
                               "dataset.label_names=[benign,malicious]", "seed=1",
                               f"probe.load={tmp_path / 'first' / 'probe'}", *target), tmp_path / "again")
    cfg = compose_config(*TINY_HIDDEN)
    from mosaic.data import make_splits

    original = load_labelled_documents(cfg.dataset)
    target_test = make_splits(original.labels, 1, 0.15, 0.25).test
    expected = sum(document_hash(original.documents[i]) in trained_on for i in target_test)
    assert expected > 0 and again["transfer"]["datasets"]["orig"]["seen_by_probe_removed"] == expected


@pytest.mark.parametrize("regime", ["none", "normal"])
def test_results_record_the_split_keys_the_report_compares_selections_by(tmp_path, regime):
    overrides = [*TINY_HIDDEN, f"regime={regime}", *(["dataset.limit=null"] if regime == "normal" else [])]
    one = run(compose_config(*overrides), tmp_path / "one")
    other_probe = run(compose_config(*overrides, "probe=sklearn"), tmp_path / "two")
    other_seed = run(compose_config(*overrides, "seed=1"), tmp_path / "three")
    assert one["splits"]["keys"] == other_probe["splits"]["keys"]
    assert one["splits"]["keys"]["val"] != other_seed["splits"]["keys"]["val"]
    assert one["randomness"] == {"seed": 0, "seeded": ["splits"], "pinned": {"dataset.limit sample": (
        "seed 0: every job reads the same documents")} if regime == "none" else {}}
