"""Load SAEs through SAELens: a SAELens-format directory, or a published release such as Gemma Scope."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mosaic.infra.cache import fingerprint
from mosaic.infra.errors import MosaicError, first_line

# A SAELens-format SAE directory: its config and weights.
SAE_FILES = ("cfg.json", "sae_weights.safetensors")

# TransformerLens residual-stream hooks: `resid_post` of block L is the output of block L (MOSAIC's layer L),
# `resid_pre` of block L is the input of block L, the output of block L-1.
_RESID_HOOK = re.compile(r"^blocks\.(\d+)\.hook_resid_(pre|post)$")


def load_sae(path: str | Path, device: str = "cpu"):
    """An inference SAE from a SAELens-format directory (`cfg.json` + `sae_weights.safetensors`)."""
    from sae_lens import SAE

    path = Path(path)
    if not all((path / name).is_file() for name in SAE_FILES):
        raise MosaicError(f"{path} is not a SAELens SAE directory: it needs cfg.json and sae_weights.safetensors")
    return SAE.load_from_disk(str(path), device=device).eval()


def sae_files_identity(directory: Path) -> dict[str, str]:
    """The SHA-256 of an SAE directory's SAELens files: a moved copy keeps it, an SAE rewritten in place does not."""
    return fingerprint([directory / name for name in SAE_FILES if (directory / name).is_file()])


def release_repo_path(release: str, sae_id: str) -> tuple[str, str]:
    """The hub repository and the path (a folder, or one file) of a release SAE, from SAELens's release table."""
    from sae_lens.loading.pretrained_saes_directory import get_repo_id_and_folder_name

    try:
        repo_id, path = get_repo_id_and_folder_name(release, sae_id)
    except ValueError as error:  # an id the release does not have
        raise MosaicError(f"SAELens release {release}: {first_line(error)}") from None
    return repo_id, str(path)


def cached_release_sae_files(release: str, sae_id: str) -> list[Path] | None:
    """The fetched files of a release SAE in the hub cache (its folder's files, or its one file); None: not fetched."""
    from mosaic.infra import hub

    return hub.cached_files(*release_repo_path(release, sae_id))


def release_sae_files(release: str, sae_id: str) -> list[Path]:
    """A release SAE's files in the hub cache, where SAELens's loaders read them: fetched first where the hub is
    reachable, refused in one line naming `mosaic fetch` where it is off. Their bytes key the activation cache."""
    from mosaic.infra import hub

    return hub.files(f"SAE {release} / {sae_id}", *release_repo_path(release, sae_id))


@contextmanager
def _tensor_shapes_from_cache() -> Iterator[None]:
    """SAELens reads a safetensors file's shapes with an HTTP range request to the hub, even where the file is
    cached (Gemma Scope 2's loader, SAELens 6.54); inside, it reads them from the fetched file's header instead."""
    from sae_lens.loading import pretrained_sae_loaders
    from safetensors import safe_open

    from mosaic.infra import hub

    def shapes(repo_id: str, filename: str) -> dict[str, list[int]]:
        found = hub.cached_file(repo_id, filename)
        if found is None:
            raise hub.not_fetched(f"{repo_id}/{filename}")
        with safe_open(str(found), framework="numpy") as weights:
            return {name: list(weights.get_slice(name).get_shape()) for name in weights.keys()}  # noqa: SIM118

    before = pretrained_sae_loaders.get_safetensors_tensor_shapes
    pretrained_sae_loaders.get_safetensors_tensor_shapes = shapes
    try:
        yield
    finally:
        pretrained_sae_loaders.get_safetensors_tensor_shapes = before


def load_release_sae(release: str, sae_id: str, device: str = "cpu"):
    """A published SAE by SAELens release and id, through SAELens's own loader, from the hub cache (fetched first
    where the hub is reachable)."""
    from sae_lens import SAE

    from mosaic.infra import hub

    release_sae_files(release, sae_id)
    with hub.local_only(), _tensor_shapes_from_cache():
        return SAE.from_pretrained(release, sae_id, device=device).eval()


def sae_layer(hook: str | None) -> int | None:
    """The layer (output of block L) a residual-stream hook reads; None for any other hook.

    `blocks.L.hook_resid_post` is layer L; `blocks.L.hook_resid_pre` is the input of block L, so
    layer L-1 (and `blocks.0.hook_resid_pre`, the embeddings, is no block's output).
    """
    match = _RESID_HOOK.match(hook or "")
    if match is None:
        return None
    block, where = int(match.group(1)), match.group(2)
    return block if where == "post" else block - 1


def check_sae_fits(sae, d_model: int, layer: int, allow_any_hook: bool = False) -> None:
    """Refuse an SAE whose input width or recorded hook does not match the model and layer read.

    MOSAIC reads the residual stream after block `layer`; an SAE trained on another hook point
    (an MLP or attention output, the embeddings, or one that records none) reads other vectors, and
    is refused unless the job sets `sae.allow_any_hook=true`.
    """
    if sae.cfg.d_in != d_model:
        raise MosaicError(
            f"the SAE reads vectors of width {sae.cfg.d_in} but the model's residual stream has width {d_model}"
        )
    hook = getattr(sae.cfg.metadata, "hook_name", None)
    read = sae_layer(hook)
    if read is None or read < 0:
        if allow_any_hook:
            return
        raise MosaicError(f"the SAE was trained on hook {hook!r}, not on the residual stream after a block "
                          "(blocks.L.hook_resid_post, or blocks.L+1.hook_resid_pre): set sae.allow_any_hook=true "
                          f"to read layer {layer}'s residual stream with it anyway")
    if read != layer:
        raise MosaicError(f"the SAE was trained on {hook} but layer={layer}: use layer={read}")
