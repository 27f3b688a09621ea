"""Gemma Scope as SAELens catalogues it: which releases, layers and widths exist, checked offline.

SAELens ships its table of published SAEs as `pretrained_saes.yaml`. Reading that file directly
(rather than importing `sae_lens`, which takes seconds) lets a config be validated before any heavy
import: `sae.width=32k` on gemma2_2b fails at once, naming the widths that exist at that layer.
"""

from __future__ import annotations

import importlib.util
import re
from functools import cache
from pathlib import Path

from mosaic.infra.errors import ConfigError

_CANONICAL_ID = re.compile(r"^layer_(\d+)/width_(\w+)/canonical$")


@cache
def saelens_release_table() -> dict:
    """The parsed `pretrained_saes.yaml` of the installed SAELens: release -> entry."""
    import yaml

    spec = importlib.util.find_spec("sae_lens")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("sae.source=gemma_scope needs the sae-lens package: pip install sae-lens")
    table = Path(spec.submodule_search_locations[0]) / "pretrained_saes.yaml"
    with table.open() as stream:
        return yaml.load(stream, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def gemma_scope_sae_id(layer: int, width: str) -> str:
    """Gemma Scope's canonical SAE id for a residual-stream layer and a width such as `16k`."""
    return f"layer_{layer}/width_{width}/canonical"


def _width_size(width: str) -> float:
    """`16k` -> 16000, `1m` -> 1e6: Gemma Scope widths always carry a k or m suffix."""
    return float(width[:-1]) * {"k": 1e3, "m": 1e6}[width[-1]]


def canonical_widths(release: str) -> dict[int, list[str]]:
    """Layer -> widths (smallest first) with a canonical SAE in `release`."""
    widths: dict[int, list[str]] = {}
    for entry in saelens_release_table()[release]["saes"]:
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



def neuronpedia_url_prefix(release: str, sae_id: str) -> str | None:
    """`https://www.neuronpedia.org/<model>/<sae>/` for an SAE SAELens knows a Neuronpedia id for; append an index."""
    for entry in saelens_release_table().get(release, {}).get("saes", []):
        if entry["id"] == sae_id and entry.get("neuronpedia"):
            return f"https://www.neuronpedia.org/{entry['neuronpedia']}/"
    return None
