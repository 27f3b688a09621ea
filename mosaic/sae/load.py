"""Load SAEs through SAELens: a SAELens-format directory, or a published release such as Gemma Scope."""

from __future__ import annotations

import re
from pathlib import Path

from mosaic.errors import MosaicError, first_line

_RESID_POST_HOOK = re.compile(r"^blocks\.(\d+)\.hook_resid_post$")


def load_sae(path: str | Path, device: str = "cpu"):
    """An inference SAE from a SAELens-format directory (`cfg.json` + `sae_weights.safetensors`)."""
    from sae_lens import SAE

    path = Path(path)
    if not (path / "cfg.json").is_file() or not (path / "sae_weights.safetensors").is_file():
        raise MosaicError(f"{path} is not a SAELens SAE directory: it needs cfg.json and sae_weights.safetensors")
    return SAE.load_from_disk(str(path), device=device).eval()


def load_release_sae(release: str, sae_id: str, device: str = "cpu"):
    """A published SAE by SAELens release and id; downloads through the hub cache like SAELens does."""
    from sae_lens import SAE

    try:
        return SAE.from_pretrained(release, sae_id, device=device).eval()
    except OSError as error:
        reason = first_line(error)
        raise MosaicError(
            f"SAE {release} / {sae_id} is not available ({reason}); the hub may be unreachable: fetch it where "
            "it is reachable, save it with SAELens (sae.save_model(dir)) and use sae=local sae.path=dir"
        ) from None


def check_sae_fits(sae, d_model: int, layer: int) -> None:
    """Refuse an SAE whose input width or recorded hook does not match the model and layer read."""
    if sae.cfg.d_in != d_model:
        raise MosaicError(
            f"the SAE reads vectors of width {sae.cfg.d_in} but the model's residual stream has width {d_model}"
        )
    hook = getattr(sae.cfg.metadata, "hook_name", None)
    match = _RESID_POST_HOOK.match(hook or "")
    if match and int(match.group(1)) != layer:
        raise MosaicError(f"the SAE was trained on {hook} but layer={layer}: use layer={match.group(1)}")
