"""The behaviour stage: labels from what a model answers, checked against the Hugging Face LM-head model."""

import shutil

import numpy as np
import pytest
import torch

from mosaic.config import validate
from mosaic.data import load_labelled_documents
from mosaic.infra.errors import ConfigError, MosaicError
from mosaic.job.behaviour import ANSWERS_FILE, behaviour_labels
from tests.conftest import compose_config

ARITH = ["model=tiny_gpt2", "layer=1", "features=hidden", "probe=sklearn", "logger=none", "dataset=sae_probes",
         "dataset.task=37_arith_mc", "dataset.limit=40", "behaviour.model=tiny_gpt2",
         "behaviour.options=[' A',' B',' C',' D']"]


def _reference_choices(cfg, documents):
    """Each prompt alone through GPT2LMHeadModel on the answering model's weights: argmax of its option log-probs."""
    import transformers as tf

    from mosaic.activations import load_model
    from mosaic.config.resolved import answering_model_config

    loaded = load_model(answering_model_config(cfg))
    lm = tf.GPT2LMHeadModel(loaded.model.config)
    lm.base_model.load_state_dict(loaded.model.state_dict())
    lm.tie_weights()
    option_ids = [loaded.tokenizer(option, add_special_tokens=False)["input_ids"][0]
                  for option in cfg.behaviour.options]
    rows = []
    with torch.inference_mode():
        for document in documents:
            ids = loaded.tokenizer(cfg.behaviour.template.replace("{document}", document), return_tensors="pt")
            logits = lm.eval()(input_ids=ids["input_ids"]).logits[0, -1]
            rows.append(torch.log_softmax(logits, dim=-1)[option_ids].numpy())
    return np.array(rows)


@pytest.mark.slow
def test_labels_are_whether_the_argmax_over_option_log_probs_is_the_documents_class(private_cache):
    cfg = compose_config(*ARITH)
    validate(cfg)
    data = load_labelled_documents(cfg.dataset)
    relabelled, record = behaviour_labels(cfg, data)
    reference = _reference_choices(cfg, data.documents)
    expected = (reference.argmax(axis=1) == data.labels).astype(int)
    assert relabelled.label_names == ["incorrect", "correct"]
    assert relabelled.labels.tolist() == expected.tolist()
    assert record["accuracy"] == pytest.approx(expected.mean()) and 0 < record["accuracy"] < 1
    assert sum(record["answers"].values()) == len(data.documents) == record["documents"]


def test_answers_are_cached_by_answering_model_template_and_options(private_cache):
    data = load_labelled_documents(compose_config(*ARITH).dataset)
    _, first = behaviour_labels(compose_config(*ARITH), data)
    _, again = behaviour_labels(compose_config(*ARITH), data)
    _, other = behaviour_labels(compose_config(*ARITH, "behaviour.template='Q: {document} A:'"), data)
    assert again["cache"] == {"hit": True, "key": first["cache"]["key"]}
    assert other["cache"]["hit"] is False and other["cache"]["key"] != first["cache"]["key"]


def test_a_job_records_the_answering_models_accuracy_and_the_base_rate(tmp_path, private_cache):
    from mosaic.data import draw_splits
    from mosaic.pipeline import run

    cfg = compose_config(*ARITH)
    results = run(cfg, tmp_path / "job")
    behaviour = results["behaviour"]
    relabelled, again = behaviour_labels(cfg, load_labelled_documents(cfg.dataset))
    _, splits = draw_splits(relabelled, cfg.dataset, cfg.regime, cfg.seed)
    assert set(results["metrics"]["per_class"]) == {"incorrect", "correct"}
    assert behaviour["model"] == "tiny_gpt2" and again["cache"] == {"hit": True, "key": behaviour["cache"]["key"]}
    assert behaviour["test_base_rate"] == pytest.approx(relabelled.labels[splits.test].mean())
    assert behaviour["test_majority_accuracy"] == max(behaviour["test_base_rate"], 1 - behaviour["test_base_rate"])
    from mosaic.report import write_report

    write_report(tmp_path)
    report = (tmp_path / "report.md").read_text()
    base = relabelled.labels[splits.test].mean()
    assert "| base rate (majority accuracy) |" in report and f"| {base:.3f} ({max(base, 1 - base):.3f}) |" in report


@pytest.mark.parametrize("change, message", [
    (["behaviour.options=[' A',' B']"], "has 2 options but dataset"),
    (["behaviour.options=[' A',' B',' C',' Dog days']"], "tokens for tiny_gpt2's tokenizer"),
])
def test_options_that_cannot_be_scored_stop_the_job_in_one_line(change, message, private_cache):
    cfg = compose_config(*ARITH, *change)
    with pytest.raises(MosaicError, match=message):
        behaviour_labels(cfg, load_labelled_documents(cfg.dataset))


@pytest.mark.parametrize("change, key", [
    (["behaviour.model=minilm"], "behaviour.model"),
    (["behaviour.template='no slot'"], "behaviour.template"),
    (["behaviour.scorer=judge"], "behaviour.scorer"),
    (["regime=covariate_shift"], "regime"),  # its test set is another dataset, never answered
])
def test_bad_behaviour_settings_fail_validation(change, key):
    with pytest.raises(ConfigError, match=key):
        validate(compose_config(*ARITH, *change))


def test_an_unknown_answering_model_names_the_options():
    with pytest.raises(MosaicError, match="is not a model option: choose one of .*gemma3_270m"):
        validate(compose_config(*ARITH, "behaviour.model=gpt5"))


@pytest.mark.parametrize("dataset", ["boolq", "piqa", "pubmedqa"])
def test_the_papers_behaviour_grid_composes_here_and_fails_in_one_line_without_the_hub(dataset, tmp_path):
    """Gemma 2 9B-IT answering hub question datasets: a valid config offline, stopped at the dataset's download."""
    from mosaic.infra.errors import DataError
    from mosaic.pipeline import run

    cfg = compose_config("experiment=paper_behaviour", f"dataset={dataset}")
    validate(cfg)
    assert cfg.behaviour.model == "gemma2_9b_it" and len(cfg.dataset.answer_options) >= 2
    with pytest.raises(DataError, match=f"dataset {cfg.dataset.hub_id}@main is not fetched.*"
                                        "python -m mosaic fetch") as error:
        run(cfg, tmp_path / "job")
    assert "\n" not in str(error.value)


def test_answers_scoring_stopped_mid_way_continues_from_its_checkpoint_to_the_same_answers(private_cache, monkeypatch):
    import mosaic.activations.forward as forward
    from mosaic.infra.cache import Checkpoints, cache_root

    settings = [*ARITH, "batch_size=8", "sweep.checkpoint_minutes=0"]
    data = load_labelled_documents(compose_config(*settings).dataset)
    uninterrupted, first = behaviour_labels(compose_config(*settings), data)
    entry = cache_root() / "behaviour" / first["cache"]["key"]
    expected = np.load(entry / ANSWERS_FILE)
    shutil.rmtree(entry)

    saves, save = [], Checkpoints.save

    def stopped_after_the_second_save(self, step, fill):
        saved = save(self, step, fill)
        saves.append(step)
        if len(saves) == 2:
            raise KeyboardInterrupt
        return saved

    monkeypatch.setattr(Checkpoints, "save", stopped_after_the_second_save)
    with pytest.raises(KeyboardInterrupt):
        behaviour_labels(compose_config(*settings), data)
    assert saves == [8, 16]  # rows of the first one and two batches, saved before the next batch
    monkeypatch.setattr(Checkpoints, "save", save)
    scored, text_inputs = [], forward.text_inputs
    monkeypatch.setattr(forward, "text_inputs", lambda loaded, texts, *rest: scored.append(len(texts))
                        or text_inputs(loaded, texts, *rest))
    resumed, record = behaviour_labels(compose_config(*settings), data)
    assert sum(scored) == len(data.documents) - 16 and record["cache"]["hit"] is False
    assert np.array_equal(np.load(entry / ANSWERS_FILE), expected)
    assert resumed.labels.tolist() == uninterrupted.labels.tolist()
    assert list((cache_root() / "checkpoints" / "behaviour").iterdir()) == []  # cleared once the answers are in
