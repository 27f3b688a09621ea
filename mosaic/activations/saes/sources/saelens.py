"""`sae.source=saelens`: any residual-stream SAE in SAELens's release table, by `sae.release` and `sae.id`.

Everything is read from the table packaged inside SAELens, offline, before anything loads: that the
release and id exist, the model the release was trained on (it must be the job's: `model.hf_id`, its
last part, or `model.sae_model`), and the hook where the table tells it (a residual stream after the
job's layer, unless `sae.allow_any_hook`). The SAE's files (its folder in the release's repository)
are fetched into the hub cache like a model, identified by their SHA-256 and loaded by SAELens's own
loader; latents link to Neuronpedia where the table names a page. Gemma Scope and Gemma Scope 2 are
this source with ids chosen from a layer, a width and an L0 (`gemma_scope.py`, `gemma_scope_2.py`).
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from mosaic.activations.encoder import Encoder
from mosaic.activations.saes.releases import (
    neuronpedia_url_prefix,
    release_model_matches,
    release_sae,
    table_hook,
    table_width,
)
from mosaic.activations.saes.sources.base import EncoderInputs, SAESource


def model_names(model: DictConfig) -> set[str]:
    """The names a release table may give the job's model: its hub id, the id's last part, `model.sae_model`."""
    names = {model.get("sae_model"), model.get("hf_id")}
    if model.get("hf_id"):
        names.add(model.hf_id.split("/")[-1])
    return {name for name in names if name}


class ReleaseEncoder(Encoder):
    """An SAE of a SAELens release: identified by its release, id and the SHA-256 of its files in the hub cache."""

    def __init__(self, source: str, release: str, sae_id: str, device: str):
        self.source, self.release, self.sae_id, self.device = source, release, sae_id, device

    def resolve(self) -> dict[str, Any]:
        from mosaic.activations.saes.load import release_sae_files
        from mosaic.infra.cache import fingerprint

        return {"type": "sae", "source": self.source, "release": self.release, "id": self.sae_id,
                "sha256": fingerprint(release_sae_files(self.release, self.sae_id))}

    def load(self):
        from mosaic.activations.saes.load import load_release_sae

        return load_release_sae(self.release, self.sae_id, device=self.device)

    def ready(self) -> bool:
        from mosaic.activations.saes.load import cached_release_sae_files

        return cached_release_sae_files(self.release, self.sae_id) is not None

    def planned(self) -> dict[str, Any]:
        return {"release": self.release, "id": self.sae_id}


class SAELensRelease(SAESource):
    """An SAE named by a SAELens release and id. Subclasses choose the id from the job's layer and width."""

    key = "saelens"

    def release_and_id(self, cfg: DictConfig, layer: int | None = None, variant: str | None = None) -> tuple[str, str]:
        """The release and SAE id read at `layer` and `variant` (default: the job's own)."""
        return cfg.sae.release, cfg.sae.id

    def validate(self, cfg: DictConfig) -> None:
        from mosaic.activations.saes.load import sae_layer
        from mosaic.infra.errors import ConfigError, require

        require(cfg.sae.release is not None and cfg.sae.id is not None, "sae.release/sae.id",
                (cfg.sae.release, cfg.sae.id), "a release and an id of SAELens's table (sae_lens pretrained_saes.yaml)")
        self.check_release(cfg)

        release, sae_id = self.release_and_id(cfg)
        hook = table_hook(release, sae_id)
        read = sae_layer(hook)
        if hook is not None and (read is None or read < 0) and not cfg.sae.allow_any_hook:
            raise ConfigError(f"{release} / {sae_id} reads {hook}, not the residual stream after a block: pick a "
                              "residual-stream SAE (hook_resid_post / hook_resid_pre), or set sae.allow_any_hook=true")
        if read is not None and read >= 0 and read != cfg.layer:
            raise ConfigError(f"{release} / {sae_id} reads {hook}, the residual stream after block {read}, but "
                              f"layer={cfg.layer}: use layer={read}")

    def check_release(self, cfg: DictConfig) -> None:
        """The release and id exist, and the release's model is the job's."""
        release, sae_id = self.release_and_id(cfg)
        release_sae(release, sae_id)
        release_model_matches(release, model_names(cfg.model))

    def variants(self, cfg: DictConfig, layer: int) -> list[str]:
        return [self.variant(cfg)] if layer == cfg.layer else []

    def encoder(self, inputs: EncoderInputs, layer: int, variant: str) -> Encoder:
        return ReleaseEncoder(self.key, *self.release_and_id(inputs.cfg, layer, variant), str(inputs.device))

    def name(self, identity: dict[str, Any]) -> str:
        return f"{identity['release']} {identity['id']}"

    def described(self, cfg: DictConfig, identity: dict[str, Any], width: int) -> dict[str, Any]:
        release, sae_id = identity["release"], identity["id"]
        named = table_width(sae_id, str(release_sae(release, sae_id)["path"]))
        return {**super().described(cfg, identity, width), "width": named or str(width),
                "neuronpedia": neuronpedia_url_prefix(release, sae_id)}

    def hub_items(self, cfg: DictConfig) -> list:
        from mosaic.activations.saes.load import release_repo_path
        from mosaic.infra.hub import HubItem

        release, sae_id = self.release_and_id(cfg)
        return [HubItem("sae", *release_repo_path(release, sae_id), f"SAE {release} / {sae_id}")]

    def plan_label(self, cfg: DictConfig) -> str:
        return "SAELens {} / {}".format(*self.release_and_id(cfg))

    def planned_l0(self, cfg: DictConfig) -> int | None:
        """The L0 the release table records for the SAE, where it does."""
        l0 = release_sae(*self.release_and_id(cfg)).get("l0")
        return None if l0 is None else round(float(l0))
