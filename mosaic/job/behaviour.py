"""Labels from what a model answers: a causal language model answers each document of a question dataset,
and whether its answer is the document's own class becomes the label (`correct` / `incorrect`).

`behaviour.model` names a `model` option: the answering model, the same as the job's `model` (whose
features the probe reads; then with the job's own model settings) or another (read from its
conf/model YAML as it is). Scorers (`SCORERS`):

- `choice`: each document is put in `behaviour.template` at `{document}`; `behaviour.options` holds one
  answer per class of the dataset, in its class order, each a single token of the answering model's
  tokenizer (`" A"`, `" True"`). The answer is the option whose token the model rates most likely as the
  next token after the prompt: no sampling, one forward per document, deterministic. Prompts longer than
  `max_length` lose their beginning, so the question's end and the answer cue are always read. The options
  default to the dataset's `answer_options`.

Open questions and refusals (generated answers judged by a scorer) are not offered: they need generation,
which base models without their LM head cannot do here. Answers are cached under `behaviour`, keyed by
the answering model's weights, the documents, the template, the options, the scorer and the batch size
(batching can move near-ties in bfloat16); `results.json`
records the answering model's accuracy.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from mosaic.config.resolved import answer_options, answering_model_config
from mosaic.data import LabelledDocuments
from mosaic.infra.cache import Checkpoints
from mosaic.infra.errors import MosaicError

OUTCOMES = ["incorrect", "correct"]
ANSWERS_FILE = "option_log_probs.npy"
# The cache kind (folder under the MOSAIC cache) the answers are kept in.
ANSWERS_KIND = "behaviour"
# Part of the answers' cache key: bump it when scoring changes.
BEHAVIOUR_VERSION = 1


def option_token_ids(tokenizer, options: Sequence[str], model_name: str) -> list[int]:
    """Each option's token id; refused when an option is not exactly one token of this tokenizer."""
    ids = []
    for option in options:
        tokens = tokenizer(option, add_special_tokens=False)["input_ids"]
        if len(tokens) != 1:
            raise MosaicError(f"behaviour.options: {option!r} is {len(tokens)} tokens for {model_name}'s tokenizer; "
                              "the choice scorer reads one next token per option (e.g. ' A', ' B', ' True')")
        ids.append(tokens[0])
    if len(set(ids)) != len(ids):
        raise MosaicError(f"behaviour.options {list(options)} share a token for {model_name}'s tokenizer")
    return ids


def choice_log_probs(loaded, prompts: Sequence[str], token_ids: list[int], batch_size: int, max_length: int,
                     checkpoints: Checkpoints | None = None, checkpoint_seconds: float = 300.0) -> np.ndarray:
    """(prompts x options) next-token log-probabilities of the options' tokens after each prompt's last token.

    With `checkpoints`, the rows scored so far are saved there every `checkpoint_seconds` (at a batch
    boundary), and scoring continues after the newest saved rows: each batch's answers depend only on
    its own prompts, so a resumed scoring equals an uninterrupted one.
    """
    import torch

    from mosaic.activations.forward import text_inputs, to_model
    from mosaic.activations.models import next_token_log_probs

    side = loaded.tokenizer.truncation_side
    loaded.tokenizer.truncation_side = "left"  # keep the answer cue at the end of a long prompt
    state = checkpoints.latest() if checkpoints is not None else None
    rows = [np.load(state / ANSWERS_FILE, allow_pickle=False)] if state else []
    last_saved = time.monotonic()
    try:
        with torch.inference_mode():
            for start in range(len(rows[0]) if rows else 0, len(prompts), batch_size):
                if checkpoints is not None and rows and time.monotonic() - last_saved >= checkpoint_seconds:
                    _save_rows(checkpoints, start, np.concatenate(rows))
                    last_saved = time.monotonic()
                inputs, _ = text_inputs(loaded, prompts[start : start + batch_size], max_length)
                inputs = to_model(loaded, inputs)
                hidden = loaded.model(**inputs).last_hidden_state
                # The last attended position: the cumulative count first reaches its maximum there, on either side
                # of any padding.
                last = inputs["attention_mask"].cumsum(dim=1).argmax(dim=1)
                final = hidden[torch.arange(len(last), device=hidden.device), last]
                rows.append(next_token_log_probs(loaded, final)[:, token_ids].cpu().numpy())
    finally:
        loaded.tokenizer.truncation_side = side
    return np.concatenate(rows) if rows else np.zeros((0, len(token_ids)), dtype=np.float32)


def _save_rows(checkpoints: Checkpoints, start: int, rows: np.ndarray) -> None:
    checkpoints.save(start, lambda directory: np.save(directory / ANSWERS_FILE, rows, allow_pickle=False))


def _score_choice(cfg: DictConfig, answering: DictConfig, documents: Sequence[str],
                  checkpoints: Checkpoints) -> np.ndarray:
    from mosaic.activations import load_model
    from mosaic.activations.models import lm_head_weight

    loaded = load_model(answering)
    if lm_head_weight(loaded) is None:
        raise MosaicError(f"behaviour.model={answering.name} cannot answer: it needs a decoder whose LM head is its "
                          "tied input embedding (Gemma 2 and 3, GPT-2)")
    token_ids = option_token_ids(loaded.tokenizer, answer_options(cfg), answering.name)
    prompts = [cfg.behaviour.template.replace("{document}", document) for document in documents]
    return choice_log_probs(loaded, prompts, token_ids, cfg.batch_size, cfg.max_length, checkpoints,
                            60 * cfg.sweep.checkpoint_minutes)


# behaviour.scorer -> (prompts' documents, where to keep partial answers -> documents x options log-probabilities
# of the answering model).
SCORERS: dict[str, Callable[[DictConfig, DictConfig, Sequence[str], Checkpoints], np.ndarray]] = {
    "choice": _score_choice}


def answers_fields(cfg: DictConfig, answering: DictConfig, documents: Sequence[str], device_type: str) -> dict:
    """The key fields of the answers' cache entry (kind `behaviour`)."""
    from mosaic.activations.store import documents_key, library_versions, model_identity

    return {"model": model_identity(answering, device_type),
            "documents": documents_key(documents), "scorer": cfg.behaviour.scorer,
            "template": cfg.behaviour.template, "options": answer_options(cfg),
            "max_length": cfg.max_length, "batch_size": cfg.batch_size, "code": BEHAVIOUR_VERSION,
            "libraries": library_versions()}


def _answers(cfg: DictConfig, answering: DictConfig, documents: Sequence[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """The option log-probabilities of every document, from the cache or scored now; and the cache entry."""
    from mosaic.activations.models import resolve_device
    from mosaic.infra.cache import cached_directory, content_key

    fields = answers_fields(cfg, answering, documents, resolve_device(answering.device).type)
    def build(target: Path) -> None:
        checkpoints = Checkpoints(ANSWERS_KIND, content_key(fields))
        log_probs = SCORERS[cfg.behaviour.scorer](cfg, answering, documents, checkpoints).astype(np.float32)
        np.save(target / ANSWERS_FILE, log_probs, allow_pickle=False)

    entry, hit = cached_directory(ANSWERS_KIND, fields, build)
    return np.load(entry / ANSWERS_FILE, allow_pickle=False), {"hit": hit, "key": entry.name}


def cached_answers(cfg: DictConfig, answering: DictConfig, documents: Sequence[str],
                   device_type: str) -> tuple[str, tuple[np.ndarray, dict[str, Any]] | None]:
    """The answers' cache key, and their log-probabilities and cache record if the cache holds them (scored on
    `device_type`); never scores (a grid's plan reads them)."""
    from mosaic.infra.cache import cache_root, content_key, read_entry

    key = content_key(answers_fields(cfg, answering, documents, device_type))
    entry = read_entry(cache_root() / ANSWERS_KIND / key)
    if entry is None:
        return key, None
    return key, (np.load(entry.path / ANSWERS_FILE, allow_pickle=False), {"hit": True, "key": key})


class BehaviourRefused(MosaicError):
    """A behaviour job that cannot be run on this dataset (its options, its documents, its answers)."""


class AnswersNotScored(MosaicError):
    """A dry run (a grid's plan) found the answering model's answers not in the cache; `key` is their cache key."""

    def __init__(self, message: str, key: str):
        super().__init__(message)
        self.key = key


def check_answerable(cfg: DictConfig, data: LabelledDocuments) -> None:
    """Refuse a dataset the answering model cannot be asked about: one option per class, texts only."""
    options = answer_options(cfg) or []
    if len(options) != len(data.label_names):
        raise BehaviourRefused(f"behaviour.options has {len(options)} options but dataset {cfg.dataset.name} has "
                          f"{len(data.label_names)} classes {data.label_names}: give one per class, in that order")
    if not all(isinstance(document, str) for document in data.documents):
        raise BehaviourRefused("behaviour labels come from a language model's answers to texts: choose a text dataset")


def behaviour_labels(cfg: DictConfig, data: LabelledDocuments,
                     dry_run_device: str | None = None) -> tuple[LabelledDocuments, dict[str, Any] | None]:
    """The dataset relabelled by what `behaviour.model` answers (correct / incorrect), and what it answered;
    the dataset unchanged and None while `behaviour.model` is null.

    With `dry_run_device` nothing is scored: the answers cached for that device, or `AnswersNotScored`.
    """
    if cfg.behaviour.model is None:
        return data, None
    check_answerable(cfg, data)
    answering = answering_model_config(cfg)
    if dry_run_device is None:
        return relabelled(cfg, data, *_answers(cfg, answering, data.documents))
    key, found = cached_answers(cfg, answering, data.documents, dry_run_device)
    if found is None:
        raise AnswersNotScored(f"its labels are {answering.name}'s answers, not scored yet", key)
    return relabelled(cfg, data, *found)


def relabelled(cfg: DictConfig, data: LabelledDocuments, log_probs: np.ndarray,
               cache: dict[str, Any]) -> tuple[LabelledDocuments, dict[str, Any]]:
    """The dataset relabelled by the answering model's option log-probabilities, and the answers' record."""
    answering = answering_model_config(cfg)
    options = answer_options(cfg) or []
    chosen = log_probs.argmax(axis=1)
    correct = (chosen == data.labels).astype(np.int64)
    accuracy = float(correct.mean())
    if accuracy in (0.0, 1.0):
        raise BehaviourRefused(f"behaviour.model={answering.name} answered every document "
                          f"{'correctly' if accuracy else 'incorrectly'}: there is no outcome to predict")
    record = {
        "model": answering.name, "scorer": cfg.behaviour.scorer, "template": cfg.behaviour.template,
        "options": dict(zip(data.label_names, options)), "documents": len(correct), "accuracy": accuracy,
        "accuracy_by_class": {name: float(correct[data.labels == k].mean()) for k, name in enumerate(data.label_names)
                              if (data.labels == k).any()},
        "answers": {name: int((chosen == k).sum()) for k, name in enumerate(data.label_names)},
        "cache": cache,
    }
    return replace(data, labels=correct, label_names=list(OUTCOMES)), record


def with_base_rate(record: dict[str, Any] | None, labels: np.ndarray, test: np.ndarray) -> dict[str, Any] | None:
    """The record with the test split's base rate: the share the answering model got right there, and the
    accuracy of always predicting the majority outcome (what a probe's accuracy is to be read against)."""
    if record is None:
        return None
    correct = float(labels[test].mean()) if len(test) else float("nan")
    return {**record, "test_base_rate": correct, "test_majority_accuracy": max(correct, 1 - correct)}

