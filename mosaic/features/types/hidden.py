"""`features.type=hidden`: the residual stream at `layer`, pooled over each document's real tokens.

Its cache entry holds the document pooled every way a later job may ask (`activations.store.HIDDEN`),
since token-level hidden states of a large model would not fit on disk.
"""

from __future__ import annotations

import numpy as np
from omegaconf import DictConfig

from mosaic.activations.encoder import Encoder
from mosaic.features.types._activations import cached_entry, described
from mosaic.features.types.base import Features, FeatureType


class HiddenState(FeatureType):
    def build(self, cfg: DictConfig, data, splits, context, planned) -> Features:
        from mosaic.activations.store import read_hidden

        entry, cache, own = cached_entry(cfg, context, planned)
        with context.watch.time("pool"):
            matrix = read_hidden(entry, cfg.pooling.method)
            offsets = np.load(entry / "offsets.npy")
        return Features(matrix, described(cfg, matrix, offsets), None, cache, own)

    def slots(self, cfg: DictConfig, layer: int, sweep) -> list[tuple[str, str | None]]:
        return [("hidden", None)]

    def encoder(self, inputs, layer: int, variant: str | None) -> Encoder:
        from mosaic.activations.store import HIDDEN

        return HIDDEN

    def entry_bytes(self, cfg: DictConfig, documents) -> int | None:
        """Float32 poolings of every document."""
        from mosaic.activations.store import HIDDEN_POOLINGS

        return len(documents) * cfg.model.d_model * 4 * len(HIDDEN_POOLINGS)
