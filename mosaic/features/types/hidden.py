"""`features.type=hidden`: the residual stream at `layer`, pooled over each document's real tokens.

Its cache entry holds the document pooled every way a later job may ask (`activations.store.HIDDEN`),
since token-level hidden states of a large model rarely fit on disk. Only `pooling=tokens` (a probe
that learns its pooling) asks for them: an entry of their own (`HIDDEN_TOKENS`, variant "tokens"),
in bfloat16, read as a memory map.
"""

from __future__ import annotations

import numpy as np
from omegaconf import DictConfig

from mosaic.activations.encoder import Encoder
from mosaic.features.pooling import POOLING_METHODS, keeps_tokens
from mosaic.features.tokens import TokenFeatures
from mosaic.features.types._activations import cached_entry, described
from mosaic.features.types.base import Features, FeatureType

# The variant of a hidden-state slot that keeps every token.
TOKENS = "tokens"


class HiddenState(FeatureType):
    def build(self, cfg: DictConfig, data, splits, context, planned) -> Features:
        from mosaic.activations.store import read_hidden, read_hidden_tokens

        entry, cache, own = cached_entry(cfg, context, planned)
        with context.watch.time("pool"):
            if keeps_tokens(cfg.pooling.method):
                rows, offsets = read_hidden_tokens(entry, cfg.model.d_model)
                matrix = TokenFeatures(rows, offsets)
            else:
                matrix = read_hidden(entry, cfg.pooling.method)
                offsets = np.load(entry / "offsets.npy")
        return Features(matrix, described(cfg, matrix, offsets), None, cache, own)

    def variant(self, cfg: DictConfig) -> str | None:
        return TOKENS if keeps_tokens(cfg.pooling.method) else None

    def slots(self, cfg: DictConfig, layer: int, sweep) -> list[tuple[str, str | None]]:
        """The pooled entry, the token entry, or both, as the job and its sweep's poolings ask (a sweep's pooling
        that does not exist is its own cell's error, never this one's)."""
        kept = {keeps_tokens(method) for method in {cfg.pooling.method, *sweep.poolings} if method in POOLING_METHODS}
        return [("hidden", variant) for variant, tokens in ((None, False), (TOKENS, True)) if tokens in kept]

    def encoder(self, inputs, layer: int, variant: str | None) -> Encoder:
        from mosaic.activations.store import HIDDEN, HIDDEN_TOKENS

        return HIDDEN_TOKENS if variant == TOKENS else HIDDEN

    def entry_bytes(self, cfg: DictConfig, documents) -> int | None:
        """Float32 poolings of every document, or bfloat16 rows of every token."""
        from mosaic.activations.forward import estimated_tokens
        from mosaic.activations.store import HIDDEN_POOLINGS

        if keeps_tokens(cfg.pooling.method):
            tokens = estimated_tokens(documents, cfg.max_length)
            return None if tokens is None else tokens * cfg.model.d_model * 2
        return len(documents) * cfg.model.d_model * 4 * len(HIDDEN_POOLINGS)
