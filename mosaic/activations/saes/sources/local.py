"""`sae.source=local`: any SAELens-format directory (`cfg.json` + `sae_weights.safetensors`) at `sae.path`.

It is one SAE for one layer; it is identified by the content of its files, not its path, so a moved
copy still hits the cache and an SAE rewritten in place does not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from mosaic.activations.encoder import Encoder
from mosaic.activations.saes.load import SAE_FILES, sae_files_identity
from mosaic.activations.saes.sources.base import EncoderInputs, SAESource


class _LocalEncoder(Encoder):
    def __init__(self, directory: Path, device: str):
        self.directory, self.device = directory, device

    def resolve(self) -> dict[str, Any]:
        return {"type": "sae", "source": "local", "sha256": sae_files_identity(self.directory)}

    def load(self):
        from mosaic.activations.saes.load import load_sae

        return load_sae(self.directory, device=self.device)


class LocalDirectory(SAESource):
    def validate(self, cfg: DictConfig) -> None:
        from mosaic.infra.errors import require

        path = cfg.sae.path
        require(path is not None and all((Path(path) / name).is_file() for name in SAE_FILES), "sae.path", path,
                "sae=local needs a SAELens SAE directory (cfg.json + sae_weights.safetensors)")

    def variants(self, cfg: DictConfig, layer: int) -> list[str]:
        return [self.variant(cfg)] if layer == cfg.layer else []

    def encoder(self, inputs: EncoderInputs, layer: int, variant: str) -> Encoder:
        return _LocalEncoder(Path(inputs.cfg.sae.path), str(inputs.device))

    def name(self, identity: dict[str, Any]) -> str:
        return f"local {identity.get('path')}"

    def described(self, cfg: DictConfig, identity: dict[str, Any], width: int) -> dict[str, Any]:
        return super().described(cfg, {**identity, "path": cfg.sae.path}, width)

    def input_fingerprint(self, cfg: DictConfig) -> Any:
        from mosaic.infra.cache import directory_fingerprint

        return directory_fingerprint(Path(cfg.sae.path))

    def plan_label(self, cfg: DictConfig) -> str:
        return f"SAE {cfg.sae.path}"
