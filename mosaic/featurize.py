"""A job's document features from its config: the activation cache (hidden state or SAE codes) or a bag of words,
pooled and binarized as configured.

The pipeline, transfer targets and `predict` all build features here, so a document is turned
into a feature row the same way wherever it is scored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from omegaconf import DictConfig

from mosaic.activations import LoadedModel
from mosaic.activations.forward import read_texts
from mosaic.activations.models import load_tokenizer, resolve_device
from mosaic.activations.plan import Sweep, plan_encoders, training_record, trains_on_training_split
from mosaic.activations.store import HIDDEN, Encoder, Request, cached_features, read_codes, read_hidden, read_quality
from mosaic.data import LabelledDocuments, Splits
from mosaic.features import BINARIZE_METHODS, bow_features, pool
from mosaic.timing import Stopwatch

# What results.json says about caching when the job's features use no cache.
NO_CACHE: dict[str, Any] = {"hit": None, "key": None}


@dataclass
class Features:
    """A job's document features and what produced them.

    `encoder` is the job's own (hidden state or SAE): transfer targets and predictions are read
    through exactly this one, never one rebuilt or retrained elsewhere.
    """

    matrix: Any
    described: dict[str, Any]
    names: list[str] | None
    cache: dict[str, Any]
    encoder: Encoder | None = None
    refit: Callable[[np.ndarray], Any] | None = None
    refitted: tuple[str, ...] = ()

    def for_training_rows(self, train: np.ndarray):
        """The matrix with whatever these features fit on training documents (`refitted`) fitted on `train`
        instead: cross-validation refits it per fold. Features that fit nothing are the same matrix."""
        return self.matrix if self.refit is None else self.refit(train)


@dataclass
class FeatureContext:
    """What building features needs besides the config and documents.

    `protected` holds the content hashes of every document the job (and its transfer targets)
    validates, tests or cross-validates on: no SAE MOSAIC trains may see them. `model` loads the
    job's model once, on first use.
    """

    watch: Stopwatch
    model: Callable[[], LoadedModel]
    protected: frozenset[str]
    sweep: Sweep = Sweep()


def build_features(cfg: DictConfig, data: LabelledDocuments, splits: Splits, context: FeatureContext,
                   encoder: Encoder | None = None) -> Features:
    """Pooled (and, if configured, binarized) features of every document.

    With `encoder`, activations are read through that encoder (the training job's SAE, for transfer
    and prediction) instead of the one `cfg` plans.
    """
    features = FEATURE_TYPES[cfg.features.type](cfg, data, splits, context, encoder)
    features.matrix = binarized(cfg, features.matrix)
    if (refit := features.refit) is not None:
        features.refit = lambda train: binarized(cfg, refit(train))
    return features


def binarized(cfg: DictConfig, matrix):
    """`matrix` binarized as `cfg.binarize` says (unchanged for `binarize=none`)."""
    return BINARIZE_METHODS[cfg.binarize.method](matrix, cfg.binarize.threshold)


def _bag_of_words_texts(cfg: DictConfig, documents: list[str]) -> tuple[list[str], dict[str, Any]]:
    """What the bag of words reads: each document as the model reads it (`features.truncate`: its first, or
    last, `max_length` tokens), or whole; and how results.json describes it."""
    if not cfg.features.truncate:
        return documents, {"read": "whole documents"}
    texts, cut = read_texts(load_tokenizer(cfg.model), documents, cfg.max_length)
    return texts, {"read": f"{cfg.model.name}'s tokens", "max_length": cfg.max_length,
                   "truncation_side": cfg.model.truncation_side, "truncated_documents": cut}


def _bag_of_words(cfg: DictConfig, data: LabelledDocuments, splits: Splits, context: FeatureContext,
                  encoder: Encoder | None) -> Features:
    """TF-IDF n-grams of what the model reads, vocabulary and IDF fitted on the training split (needs only the
    model's tokenizer)."""
    with context.watch.time("pool"):
        texts, read = _bag_of_words_texts(cfg, data.documents)

        def fitted(train: np.ndarray):
            return bow_features(texts, train, cfg.pooling.method, cfg.features.ngram_max, cfg.features.min_df)

        matrix, names = fitted(splits.train)
    return Features(matrix, {"type": "bow", "n_features": matrix.shape[1], "text": read}, names, NO_CACHE,
                    refit=lambda train: fitted(train)[0], refitted=("bag-of-words vocabulary and IDF",))


def _cached_entry(cfg: DictConfig, data: LabelledDocuments, splits: Splits, context: FeatureContext,
                  encoder: Encoder | None):
    """The activation cache entry of this job's own encoder (built, with its siblings, on a miss)."""
    if encoder is None:
        request, own = plan_encoders(cfg, data, splits, context.sweep, context.protected, context.model)
    else:
        own = HIDDEN if cfg.features.type == "hidden" else encoder
        request = Request(data.documents, {cfg.layer: [own]})
    entry, hit = cached_features(cfg.model, resolve_device(cfg.model.device).type, request, (cfg.layer, own),
                                 cfg.max_length, cfg.batch_size, cfg.sae.encode_batch_tokens, context.model,
                                 context.watch, cfg.sae.allow_any_hook)
    return entry, {"hit": hit, "key": entry.name}, own


def _described(cfg: DictConfig, matrix, offsets: np.ndarray) -> dict[str, Any]:
    return {"type": cfg.features.type, "n_features": matrix.shape[1], "layer": cfg.layer, "tokens": int(offsets[-1])}


def _hidden_state(cfg: DictConfig, data: LabelledDocuments, splits: Splits, context: FeatureContext,
                  encoder: Encoder | None) -> Features:
    """The residual stream at `layer`, pooled over each document's real tokens."""
    entry, cache, own = _cached_entry(cfg, data, splits, context, encoder)
    with context.watch.time("pool"):
        matrix = read_hidden(entry, cfg.pooling.method)
        offsets = np.load(entry / "offsets.npy")
    return Features(matrix, _described(cfg, matrix, offsets), None, cache, own)


def _sae_codes(cfg: DictConfig, data: LabelledDocuments, splits: Splits, context: FeatureContext,
               encoder: Encoder | None) -> Features:
    """The SAE's latent codes of the residual stream at `layer`, pooled over each document's real tokens."""
    entry, cache, own = _cached_entry(cfg, data, splits, context, encoder)
    with context.watch.time("pool"):
        codes, offsets = read_codes(entry)
        matrix = pool(codes, offsets, cfg.pooling.method, top_n=cfg.pooling.top_n)
    sae_identity = {k: v for k, v in own.resolve().items() if k != "type"}
    if cfg.sae.source == "local":
        sae_identity["path"] = cfg.sae.path
    described = {**_described(cfg, matrix, offsets), "width": matrix.shape[1], "sae": sae_identity,
                 "l0_per_token": float(codes.getnnz() / max(1, codes.shape[0])), "sae_quality": _quality(cfg, entry),
                 "sae_training": training_record(sae_identity)}
    return Features(matrix, described, None, cache, own)


def _quality(cfg: DictConfig, entry) -> dict[str, Any]:
    """The SAE's quality on this job's documents, and whether they were held out from its training."""
    return {**read_quality(entry), "held_out": not trains_on_training_split(cfg)}


# features.type -> how its pooled document features are built.
FEATURE_TYPES: dict[str, Callable[..., Features]] = {"bow": _bag_of_words, "hidden": _hidden_state, "sae": _sae_codes}


def unsplit(n_documents: int) -> Splits:
    """Documents that are only scored, never trained on: one unsplit set, as `build_features` expects."""
    everything = np.arange(n_documents)
    return Splits(train=everything, val=everything[:0], test=everything[:0])


