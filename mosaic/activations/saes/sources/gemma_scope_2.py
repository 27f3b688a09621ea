"""`sae.source=gemma_scope_2`: Gemma Scope 2's residual-stream SAEs (the Gemma 3 family), by layer, width and L0.

A SAELens release (`saelens.py`) whose id is chosen from the job's layer, `sae.width` (16k, 65k,
262k, 1m) and `sae.l0` (small, medium, big: about 20, 60 and 150 active latents per token): the
release is `sae.release`, else the model's `gemma_scope_2_release` (its `-all` variant has every
layer, with fewer widths and L0s). Only the combinations the release table has are allowed, checked
offline before anything loads.
"""

from __future__ import annotations

from omegaconf import DictConfig

from mosaic.activations.saes.releases import check_gemma_scope_2, gemma_scope_2_grid, gemma_scope_2_sae_id
from mosaic.activations.saes.sources.saelens import SAELensRelease


class GemmaScope2(SAELensRelease):
    key = "gemma_scope_2"

    # A sweep over widths and L0s (and layers) is served by one forward.
    sibling_keys = ("sae.width", "sae.l0")

    def release_and_id(self, cfg: DictConfig, layer: int | None = None, variant: str | None = None) -> tuple[str, str]:
        release = cfg.sae.release or cfg.model.gemma_scope_2_release
        width, l0 = (variant or self.variant(cfg)).split("/")
        return release, gemma_scope_2_sae_id(cfg.layer if layer is None else layer, width, l0)

    def validate(self, cfg: DictConfig) -> None:
        from mosaic.infra.errors import require

        release, _ = self.release_and_id(cfg)
        require(release is not None, "sae.release", None,
                f"model {cfg.model.name} has no Gemma Scope 2 release; set sae.release or use sae=trained")
        check_gemma_scope_2(release, cfg.layer, cfg.sae.width, cfg.sae.l0)
        self.check_release(cfg)

    def variants(self, cfg: DictConfig, layer: int) -> list[str]:
        offered = gemma_scope_2_grid(self.release_and_id(cfg)[0]).get(layer, {})
        return [f"{width}/{l0}" for width, l0s in offered.items() for l0 in l0s]

    def plan_label(self, cfg: DictConfig) -> str:
        return "Gemma Scope 2 {} / {}".format(*self.release_and_id(cfg))
