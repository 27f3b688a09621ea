"""`sae.source=gemma_scope`: Gemma Scope's residual-stream SAEs (Gemma 2), by release, layer and width.

A SAELens release (`saelens.py`) whose id is chosen from the job's layer and `sae.width`: the
release is `sae.release`, else the model's `gemma_scope_release`; the id at a layer and width is its
canonical one (`releases.gemma_scope_sae_id`). Which layers and widths exist is read from SAELens's
release table, offline, before anything loads.
"""

from __future__ import annotations

from omegaconf import DictConfig

from mosaic.activations.saes.releases import canonical_widths, check_gemma_scope, gemma_scope_sae_id
from mosaic.activations.saes.sources.saelens import SAELensRelease


class GemmaScope(SAELensRelease):
    key = "gemma_scope"

    def release_and_id(self, cfg: DictConfig, layer: int | None = None, variant: str | None = None) -> tuple[str, str]:
        release = cfg.sae.release or cfg.model.gemma_scope_release
        return release, gemma_scope_sae_id(cfg.layer if layer is None else layer, variant or cfg.sae.width)

    def validate(self, cfg: DictConfig) -> None:
        from mosaic.infra.errors import require

        release, _ = self.release_and_id(cfg)
        require(release is not None, "sae.release", None,
                f"model {cfg.model.name} has no Gemma Scope release; set sae.release or use sae=trained")
        check_gemma_scope(release, cfg.layer, cfg.sae.width)
        self.check_release(cfg)

    def variants(self, cfg: DictConfig, layer: int) -> list[str]:
        return canonical_widths(self.release_and_id(cfg)[0]).get(layer, [])

    def plan_label(self, cfg: DictConfig) -> str:
        return "Gemma Scope {} / {}".format(*self.release_and_id(cfg))

    def planned_l0(self, cfg: DictConfig) -> int | None:
        """The average L0 the release records in the SAE's folder name (`average_l0_N`)."""
        from mosaic.activations.saes.releases import release_sae

        recorded = [part for part in str(release_sae(*self.release_and_id(cfg))["path"]).split("/")
                    if part.startswith("average_l0_")]
        return int(recorded[0].removeprefix("average_l0_")) if recorded else None
