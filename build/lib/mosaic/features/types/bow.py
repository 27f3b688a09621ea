"""`features.type=bow`: TF-IDF word n-grams, the baseline that reads no activations.

It reads each document as the model does (`features.truncate`: cut to the model's `max_length`
tokens on its truncation side, `activations.forward.read_texts`), so every feature type of a job
sees the same input; vocabulary and IDF are fitted on the training split (and refitted per CV fold).
It needs the model's tokenizer and nothing else of it, is not defined on images, and cannot be read
on transfer targets or new texts (its vocabulary is the training dataset's).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from omegaconf import DictConfig

from mosaic.features.types.base import NO_CACHE, Features, FeatureType
from mosaic.infra.errors import NotApplicableError


def _texts(cfg: DictConfig, documents: list[str]) -> tuple[list[str], dict[str, Any]]:
    """What the bag of words reads: each document as the model reads it (`features.truncate`: its first, or
    last, `max_length` tokens), or whole; and how results.json describes it."""
    from mosaic.activations.forward import read_texts
    from mosaic.activations.models import load_tokenizer

    if not cfg.features.truncate:
        return documents, {"read": "whole documents"}
    texts, cut = read_texts(load_tokenizer(cfg.model), documents, cfg.max_length)
    return texts, {"read": f"{cfg.model.name}'s tokens", "max_length": cfg.max_length,
                   "truncation_side": cfg.model.truncation_side, "truncated_documents": cut}


class BagOfWords(FeatureType):
    reads_model = False
    transfers = False

    def validate(self, cfg: DictConfig) -> None:
        from mosaic.infra.errors import require

        require(cfg.dataset.modality != "image", "features.type", "bow", "images have no words: choose sae or hidden",
                NotApplicableError)
        require(not (cfg.transfer.datasets or cfg.transfer.models), "features.type", "bow",
                "transfer needs sae or hidden features (a bag of words is the training dataset's vocabulary)",
                NotApplicableError)

    def build(self, cfg: DictConfig, data, splits, context, planned) -> Features:
        from mosaic.features import bow_features

        with context.watch.time("pool"):
            texts, read = _texts(cfg, data.documents)

            def fitted(train: np.ndarray):
                return bow_features(texts, train, cfg.pooling.method, cfg.features.ngram_max, cfg.features.min_df)

            matrix, names = fitted(splits.train)
        return Features(matrix, {"type": "bow", "n_features": matrix.shape[1], "text": read}, names, NO_CACHE,
                        refit=lambda train: fitted(train)[0], refitted=("bag-of-words vocabulary and IDF",))

    def hub_items(self, cfg: DictConfig) -> list:
        """The model's files for its tokenizer, when it reads what the model reads."""
        return super().hub_items(cfg) if cfg.features.truncate else []
