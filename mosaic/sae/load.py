"""Load an SAE saved in SAELens's disk format (`cfg.json` + `sae_weights.safetensors`)."""

from __future__ import annotations

from pathlib import Path

from mosaic.errors import MosaicError


def load_sae(path: str | Path, device: str = "cpu"):
    """An inference SAE from a SAELens-format directory, in eval mode."""
    from sae_lens import SAE

    path = Path(path)
    if not (path / "cfg.json").is_file() or not (path / "sae_weights.safetensors").is_file():
        raise MosaicError(f"{path} is not a SAELens SAE directory: it needs cfg.json and sae_weights.safetensors")
    return SAE.load_from_disk(str(path), device=device).eval()
