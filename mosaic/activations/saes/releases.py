"""SAELens's table of published SAEs, read as data: which releases and ids exist, their model, hook, width and L0.

SAELens ships the table as `pretrained_saes.yaml`. Reading that file directly (rather than importing
`sae_lens`, which takes seconds) lets a config be validated before any heavy import: an unknown
release, an id of another model or an MLP hook fails at once, in one line. Gemma Scope's canonical
ids and Gemma Scope 2's (layer, width, L0) ids are read from the same table.
"""

from __future__ import annotations

import importlib.util
import re
from functools import cache
from pathlib import Path
from typing import Any

from mosaic.infra.errors import ConfigError

_CANONICAL_ID = re.compile(r"^layer_(\d+)/width_(\w+)/canonical$")
_GEMMA_SCOPE_2_ID = re.compile(r"^layer_(\d+)_width_(\w+)_l0_(small|medium|big)$")
# Gemma Scope 2's L0 axis, fewest active latents first (about 20, 60 and 150 per token).
GEMMA_SCOPE_2_L0S = ("small", "medium", "big")
_TRANSFORMERLENS_HOOK = re.compile(r"blocks\.(\d+)\.((?:attn\.)?hook_[a-z_]+?)(?:__|$|\W)")
_LAYER = re.compile(r"layer_(\d+)")
_WIDTH = re.compile(r"width_(\d+[km])(?![a-z0-9])")
# What a Gemma Scope folder reads, by the folder's first part (Gemma Scope 2) or the release's suffix (Gemma Scope).
_GEMMA_SCOPE_HOOKS = {"resid_post": "hook_resid_post", "res": "hook_resid_post", "mlp_out": "hook_mlp_out",
                      "mlp": "hook_mlp_out", "attn_out": "attn.hook_z", "att": "attn.hook_z",
                      "transcoder": "hook_mlp_in", "transcoders": "hook_mlp_in", "clt": "hook_mlp_in"}


@cache
def saelens_release_table() -> dict:
    """The parsed `pretrained_saes.yaml` of the installed SAELens: release -> entry."""
    import yaml

    spec = importlib.util.find_spec("sae_lens")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("SAEs from SAELens releases need the sae-lens package: pip install sae-lens")
    table = Path(spec.submodule_search_locations[0]) / "pretrained_saes.yaml"
    with table.open() as stream:
        return yaml.load(stream, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def release_entry(release: str) -> dict[str, Any]:
    """A release's row of the table (repo_id, model, conversion_func, saes), or one line saying it is not there."""
    table = saelens_release_table()
    if release not in table:
        close = sorted(name for name in table if name.split("-")[:2] == release.split("-")[:2])[:8]
        raise ConfigError(f"sae.release={release!r} is not in SAELens's release table ({len(table)} releases"
                          + (f"; similar: {', '.join(close)}" if close else "") + ")")
    return table[release]


def release_sae(release: str, sae_id: str) -> dict[str, Any]:
    """One SAE's row of a release (id, path, l0, neuronpedia), or one line naming a few ids that exist."""
    saes = release_entry(release)["saes"]
    for entry in saes:
        if entry["id"] == sae_id:
            return entry
    examples = ", ".join(entry["id"] for entry in saes[:4])
    raise ConfigError(f"sae.id={sae_id!r} is not in SAELens release {release} ({len(saes)} ids, e.g. {examples})")


def table_hook(release: str, sae_id: str) -> str | None:
    """The TransformerLens hook an SAE reads, as far as its table row tells (None: only its loaded config does).

    An id or path that names a hook (`blocks.8.hook_resid_pre`) says it; a Gemma Scope folder says it by
    its first part (`resid_post/`, `mlp_out/`, ...) or its release's suffix (`-res`, `-mlp`, `-att`);
    dictionary_learning folders by `resid_post_layer_L`.
    """
    entry = release_sae(release, sae_id)
    path = str(entry["path"])
    for text in (sae_id, path):
        named = _TRANSFORMERLENS_HOOK.search(text)
        if named:
            return f"blocks.{named.group(1)}.{named.group(2)}"
    layer = _LAYER.search(sae_id) or _LAYER.search(path)
    if layer is None:
        return None
    if "resid_post_layer_" in path:
        return f"blocks.{layer.group(1)}.hook_resid_post"
    conversion = release_entry(release)["conversion_func"] or ""
    if conversion.startswith("gemma_3"):
        kind = path.split("/")[0].removesuffix("_all")
    elif conversion == "gemma_2":
        kind = release.removesuffix("-canonical").rsplit("-", 1)[-1]
    elif conversion == "gemma_2_transcoder":
        kind = "transcoder"
    else:
        return None
    hook = _GEMMA_SCOPE_HOOKS.get(kind)
    return f"blocks.{layer.group(1)}.{hook}" if hook else None


def table_width(sae_id: str, path: str) -> str | None:
    """The width an id or path names (`16k`, `1m`), where it names one."""
    named = _WIDTH.search(sae_id) or _WIDTH.search(path)
    return named.group(1) if named else None


def release_model_matches(release: str, model_names: set[str]) -> None:
    """Refuse, in one line, a release whose SAEs were trained on a model other than the job's."""
    trained_on = release_entry(release)["model"]
    if trained_on not in model_names:
        raise ConfigError(f"SAELens release {release} holds SAEs of model {trained_on}, but the job's model is "
                          f"{' / '.join(sorted(model_names))}: pick a release of this model or "
                          "model.sae_model if it is the same network under another name")


def _width_size(width: str) -> float:
    """`16k` -> 16000, `1m` -> 1e6: Gemma Scope widths always carry a k or m suffix."""
    return float(width[:-1]) * {"k": 1e3, "m": 1e6}[width[-1]]


def gemma_scope_sae_id(layer: int, width: str) -> str:
    """Gemma Scope's canonical SAE id for a residual-stream layer and a width such as `16k`."""
    return f"layer_{layer}/width_{width}/canonical"


def canonical_widths(release: str) -> dict[int, list[str]]:
    """Layer -> widths (smallest first) with a canonical SAE in `release`."""
    widths: dict[int, list[str]] = {}
    for entry in release_entry(release)["saes"]:
        match = _CANONICAL_ID.match(entry["id"])
        if match:
            widths.setdefault(int(match.group(1)), []).append(match.group(2))
    return {layer: sorted(found, key=_width_size) for layer, found in widths.items()}


def check_gemma_scope(release: str, layer: int, width: str) -> None:
    """Raise a one-line `ConfigError` unless `release` has a canonical SAE at `layer` and `width`."""
    table = saelens_release_table()
    if release not in table:
        known = sorted(name for name in table if name.startswith("gemma-scope") and name.endswith("-canonical"))
        raise ConfigError(f"sae.release={release!r} is not a SAELens release: Gemma Scope has " + ", ".join(known))
    widths = canonical_widths(release)
    if layer not in widths:
        raise ConfigError(f"layer={layer} is not allowed: {release} has SAEs at layers "
                          + ", ".join(map(str, sorted(widths))))
    if width not in widths[layer]:
        raise ConfigError(f"sae.width={width!r} is not allowed: {release} has widths "
                          + ", ".join(widths[layer]) + f" at layer {layer}")


def gemma_scope_2_sae_id(layer: int, width: str, l0: str) -> str:
    """Gemma Scope 2's SAE id for a layer, a width such as `16k` and an L0 of `small`, `medium` or `big`."""
    return f"layer_{layer}_width_{width}_l0_{l0}"


def gemma_scope_2_grid(release: str) -> dict[int, dict[str, list[str]]]:
    """Layer -> width (smallest first) -> L0s (fewest first) that `release` has an SAE for."""
    grid: dict[int, dict[str, list[str]]] = {}
    for entry in release_entry(release)["saes"]:
        match = _GEMMA_SCOPE_2_ID.match(entry["id"])
        if match:
            grid.setdefault(int(match.group(1)), {}).setdefault(match.group(2), []).append(match.group(3))
    return {layer: {width: sorted(l0s, key=GEMMA_SCOPE_2_L0S.index)
                    for width, l0s in sorted(widths.items(), key=lambda item: _width_size(item[0]))}
            for layer, widths in grid.items()}


def check_gemma_scope_2(release: str, layer: int, width: str, l0: str) -> None:
    """Raise a one-line `ConfigError` unless `release` has an SAE at `layer`, `width` and `l0`, listing what it has."""
    grid = gemma_scope_2_grid(release)
    if not grid:
        raise ConfigError(f"sae.release={release!r} holds no Gemma Scope 2 SAEs (ids layer_L_width_W_l0_S)")
    if layer not in grid:
        raise ConfigError(f"layer={layer} is not allowed: {release} has SAEs at layers "
                          + ", ".join(map(str, sorted(grid))))
    if (width, l0) not in {(w, s) for w, l0s in grid[layer].items() for s in l0s}:
        offered = "; ".join(f"{w}: {', '.join(l0s)}" for w, l0s in grid[layer].items())
        raise ConfigError(f"sae.width={width} sae.l0={l0} is not in {release} at layer {layer}, which has {offered}")


def neuronpedia_url_prefix(release: str, sae_id: str) -> str | None:
    """`https://www.neuronpedia.org/<model>/<sae>/` for an SAE SAELens knows a Neuronpedia id for; append an index."""
    for entry in saelens_release_table().get(release, {}).get("saes", []):
        if entry["id"] == sae_id and entry.get("neuronpedia"):
            return f"https://www.neuronpedia.org/{entry['neuronpedia']}/"
    return None
