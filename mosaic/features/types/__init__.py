"""A job's document features (`features.type`): one module per type, each answering everything MOSAIC asks of it.

| `features.type` | module | a document is |
| --- | --- | --- |
| `sae` | `sae.py` | its SAE codes at `layer` (the job's `sae.source`), pooled |
| `hidden` | `hidden.py` | its residual stream at `layer`, pooled |
| `bow` | `bow.py` | TF-IDF word n-grams of what the model reads, fitted on the training split |

The pipeline, transfer targets and `predict` all build features here (`build_features`), so a document
becomes a feature row the same way wherever it is scored. What one forward computes for a job and its
sweep's siblings (`forward_slots`, `plan_encoders`) is asked of each type too (`slots`, `encoder`), as
are its checks (`validate`), what it reads from the hub (`hub_items`), its SAE (`sae`), and its size in
the activation cache (`entry_bytes`, for a grid's plan). Nothing else compares `features.type` with a
value. A new type is its module, one line in `FEATURE_TYPES`, its YAML in `conf/features/` and its test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from omegaconf import DictConfig

from mosaic.activations.encoder import Encoder
from mosaic.activations.saes.sources import EncoderInputs, SAESource
from mosaic.data.splits import Splits
from mosaic.features import BINARIZE_METHODS
from mosaic.features.types.base import NO_CACHE, FeatureContext, Features, FeatureType, Sweep
from mosaic.features.types.bow import BagOfWords
from mosaic.features.types.hidden import HiddenState
from mosaic.features.types.sae import SAECodes

# features.type -> how a document's features are built.
FEATURE_TYPES: dict[str, FeatureType] = {"bow": BagOfWords(), "hidden": HiddenState(), "sae": SAECodes()}


def feature_type(cfg: DictConfig) -> FeatureType:
    return FEATURE_TYPES[cfg.features.type]


def job_sae(cfg: DictConfig) -> SAESource | None:
    """The SAE source the job's features read, if they read one."""
    return feature_type(cfg).sae(cfg)


def trains_on_training_split(cfg: DictConfig) -> bool:
    """Whether the job's features come from an SAE trained on the job's own training split: its features
    of those documents are then not held out, and the SAE cannot be rebuilt without the job's data."""
    source = job_sae(cfg)
    return source is not None and source.trains_on_training_split(cfg)


def trains_sae(cfg: DictConfig) -> bool:
    """Whether the job's features come from an SAE MOSAIC trains for it (not one a loaded probe brings)."""
    source = job_sae(cfg)
    return source is not None and source.trains and not cfg.probe.load


def build_features(cfg: DictConfig, data, splits: Splits, context: FeatureContext,
                   encoder: Encoder | None = None) -> Features:
    """Pooled (and, if configured, binarized) features of every document.

    With `encoder`, activations are read through that encoder (the training job's SAE, for transfer
    and prediction) instead of the one `cfg` plans.
    """
    kind = feature_type(cfg)
    planned = None
    if kind.reads_model:
        from mosaic.activations.store import Request

        planned = (plan_encoders(cfg, data, splits, context.sweep, context.protected, context.model)
                   if encoder is None else (Request(data.documents, {cfg.layer: [encoder]}), encoder))
    features = kind.build(cfg, data, splits, context, planned)
    features.matrix = binarized(cfg, features.matrix)
    if (refit := features.refit) is not None:
        features.refit = lambda train: binarized(cfg, refit(train))
    return features


def binarized(cfg: DictConfig, matrix):
    """`matrix` binarized as `cfg.binarize` says (unchanged for `binarize=none`)."""
    return BINARIZE_METHODS[cfg.binarize.method](matrix, cfg.binarize.threshold)


def unsplit(n_documents: int) -> Splits:
    """Documents that are only scored, never trained on: one unsplit set, as `build_features` expects."""
    everything = np.arange(n_documents)
    return Splits(train=everything, val=everything[:0], test=everything[:0])


def forward_slots(cfg: DictConfig, sweep: Sweep) -> dict[int, list[tuple[str, str | None]]]:
    """What one forward of this job computes, by layer: each feature type's slots, e.g. `("hidden", None)`
    and `("sae", variant)` (the SAE source's `variant`: a width such as `16k`, or `16k/small`).

    Its own layer, SAE and feature type, and the sweep's where they are valid: inside the model,
    and where the SAE source has that SAE at that layer, so a sweep never fails on a neighbour's
    behalf. A grid's plan reads the same slots to count forwards.
    """
    layers = sorted({cfg.layer, *(x for x in sweep.layers if 0 <= x < cfg.model.n_layers)})
    kinds = {cfg.features.type, *(kind for kind in sweep.features if kind in FEATURE_TYPES)}
    slots: dict[int, list[tuple[str, str | None]]] = {}
    for layer in layers:
        found = [slot for kind, kinds_type in FEATURE_TYPES.items() if kind in kinds
                 for slot in kinds_type.slots(cfg, layer, sweep)]
        if found:
            slots[layer] = found
    return slots


def plan_encoders(cfg: DictConfig, data, splits: Splits, sweep: Sweep, protected: frozenset[str],
                  model: Callable[[], Any], device=None):
    """What one forward should compute: this job's encoder at its layer, and those its sweep will want
    (`forward_slots`), as the activation store's `Request` and the job's own `Encoder`.

    `device` is where the job runs (default: here, as `model.device` says); a grid's plan names the
    compute nodes' device, since a trained SAE's key holds it.
    """
    from mosaic.activations.models import resolve_device
    from mosaic.activations.store import Request

    inputs = EncoderInputs(cfg, data, splits, protected, model, device or resolve_device(cfg.model.device))
    built: dict[tuple[int, str, str | None], Encoder] = {}

    def encoder(layer: int, kind: str, variant: str | None) -> Encoder:
        if (layer, kind, variant) not in built:
            built[(layer, kind, variant)] = FEATURE_TYPES[kind].encoder(inputs, layer, variant)
        return built[(layer, kind, variant)]

    own = encoder(cfg.layer, cfg.features.type, feature_type(cfg).variant(cfg))
    encoders = {layer: [encoder(layer, kind, variant) for kind, variant in found]
                for layer, found in forward_slots(cfg, sweep).items()}
    return Request(data.documents, encoders), own


__all__ = ["FEATURE_TYPES", "NO_CACHE", "FeatureContext", "FeatureType", "Features", "Sweep", "binarized",
           "build_features", "feature_type", "forward_slots", "job_sae", "plan_encoders", "trains_on_training_split",
           "trains_sae", "unsplit"]
