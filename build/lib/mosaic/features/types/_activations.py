"""What the two feature types read from the model share: the activation cache entry of the job's own encoder."""

from __future__ import annotations

from typing import Any

import numpy as np
from omegaconf import DictConfig


def cached_entry(cfg: DictConfig, context, planned):
    """The activation cache entry of this job's own encoder (built, with its siblings, on a miss, from `planned`:
    the store's request and the job's encoder); the cache record for results.json; the encoder itself."""
    from mosaic.activations.models import resolve_device
    from mosaic.activations.store import cached_features

    request, encoder = planned
    entry, hit = cached_features(cfg.model, resolve_device(cfg.model.device).type, request, (cfg.layer, encoder),
                                 cfg.max_length, cfg.batch_size, cfg.sae.encode_batch_tokens, context.model,
                                 context.watch, cfg.sae.allow_any_hook)
    return entry, {"hit": hit, "key": entry.name}, encoder


def described(cfg: DictConfig, matrix, offsets: np.ndarray) -> dict[str, Any]:
    return {"type": cfg.features.type, "n_features": matrix.shape[1], "layer": cfg.layer, "tokens": int(offsets[-1])}
