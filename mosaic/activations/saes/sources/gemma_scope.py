"""`sae.source=gemma_scope`: Gemma Scope's residual-stream SAEs through SAELens, by release, layer and width.

The release is `sae.release`, else the model's `gemma_scope_release`; the SAE id at a layer and width
is its canonical one (`releases.gemma_scope_sae_id`). Which layers and widths exist is read from the
release table packaged inside SAELens, offline, before anything loads. The weights (`params.npz`,
the file SAELens reads) are fetched into the hub cache like a model and identified by their SHA-256;
latents link to Neuronpedia where the table names a page.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from mosaic.activations.encoder import Encoder
from mosaic.activations.saes.releases import canonical_widths, gemma_scope_sae_id, neuronpedia_url_prefix
from mosaic.activations.saes.sources.base import EncoderInputs, SAESource


def sae_release(cfg: DictConfig) -> str:
    """The Gemma Scope release a job's SAEs come from: `sae.release`, else the model's own."""
    return cfg.sae.release or cfg.model.gemma_scope_release


def gemma_scope_sae(cfg: DictConfig, layer: int | None = None, width: str | None = None) -> tuple[str, str]:
    """The Gemma Scope release and SAE id read at `layer` and `width` (default: the job's own)."""
    return sae_release(cfg), gemma_scope_sae_id(cfg.layer if layer is None else layer, width or cfg.sae.width)


class _ReleaseEncoder(Encoder):
    """A Gemma Scope SAE: identified by its release, id and the SHA-256 of its weights file in the hub cache."""

    def __init__(self, release: str, sae_id: str, device: str):
        self.release, self.sae_id, self.device = release, sae_id, device

    def resolve(self) -> dict[str, Any]:
        from mosaic.activations.saes.load import release_sae_file
        from mosaic.infra.cache import fingerprint

        return {"type": "sae", "source": "gemma_scope", "release": self.release, "id": self.sae_id,
                "sha256": fingerprint([release_sae_file(self.release, self.sae_id)])}

    def load(self):
        from mosaic.activations.saes.load import load_release_sae

        return load_release_sae(self.release, self.sae_id, device=self.device)

    def ready(self) -> bool:
        from mosaic.activations.saes.load import cached_release_sae_file

        return cached_release_sae_file(self.release, self.sae_id) is not None

    def planned(self) -> dict[str, Any]:
        return {"release": self.release, "id": self.sae_id}


class GemmaScope(SAESource):
    def validate(self, cfg: DictConfig) -> None:
        from mosaic.activations.saes.releases import check_gemma_scope
        from mosaic.infra.errors import require

        release = sae_release(cfg)
        require(release is not None, "sae.release", None,
                f"model {cfg.model.name} has no Gemma Scope release; set sae.release or use sae=trained")
        check_gemma_scope(release, cfg.layer, cfg.sae.width)

    def widths(self, cfg: DictConfig, layer: int) -> list[str]:
        return canonical_widths(sae_release(cfg)).get(layer, [])

    def encoder(self, inputs: EncoderInputs, layer: int, width: str) -> Encoder:
        return _ReleaseEncoder(*gemma_scope_sae(inputs.cfg, layer, width), str(inputs.device))

    def name(self, identity: dict[str, Any]) -> str:
        return f"{identity['release']} {identity['id']}"

    def described(self, cfg: DictConfig, identity: dict[str, Any], width: int) -> dict[str, Any]:
        return {**super().described(cfg, identity, width), "width": cfg.sae.width,
                "neuronpedia": neuronpedia_url_prefix(identity["release"], identity["id"])}

    def hub_items(self, cfg: DictConfig) -> list:
        from mosaic.activations.saes.load import release_repo_file
        from mosaic.infra.hub import HubItem

        release, sae_id = gemma_scope_sae(cfg)
        repo_id, filename = release_repo_file(release, sae_id)
        return [HubItem("sae", repo_id, filename, f"SAE {release} / {sae_id}")]

    def plan_label(self, cfg: DictConfig) -> str:
        return "Gemma Scope {} / {}".format(*gemma_scope_sae(cfg))

    def planned_l0(self, cfg: DictConfig) -> int | None:
        """The average L0 the release records in the SAE's file path (`average_l0_N`), where it does."""
        from mosaic.activations.saes.load import release_repo_file

        _, filename = release_repo_file(*gemma_scope_sae(cfg))
        recorded = [part for part in filename.split("/") if part.startswith("average_l0_")]
        return int(recorded[0].removeprefix("average_l0_")) if recorded else None
