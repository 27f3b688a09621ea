"""The options each config group declares, read from its YAML files in `conf/`.

A group's options are its files (`conf/pooling/mean.yaml` is `pooling=mean`), and each file sets
its group's option key (`pooling.method`, `model.source`, ...) to a value that the implementing
module's registry maps to code (`POOLING_METHODS`, `MODEL_SOURCES`, ... listed in
docs/architecture.md). Validation allows exactly the declared values, so a new option is its YAML
plus one registry entry; `tests/test_options.py` checks that the two agree.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from omegaconf import OmegaConf

# The config tree ships inside the package (package data), so an installed MOSAIC reads the same options.
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

# Config group -> the key whose value names the implementation its options use.
OPTION_KEYS = {
    "dataset": "source",
    "regime": "type",
    "model": "source",
    "sae": "source",
    "features": "type",
    "pooling": "method",
    "binarize": "method",
    "probe": "type",
    "logger": "type",
}


@cache
def declared_options(conf_dir: Path = CONF_DIR) -> dict[str, tuple[str, ...]]:
    """For each option key (`model.source`, ...), the values the group's YAML files give it, sorted."""
    def values(group: str, key: str) -> tuple[str, ...]:
        return tuple(sorted({str(OmegaConf.load(path)[key]) for path in (conf_dir / group).glob("*.yaml")}))

    return {f"{group}.{key}": values(group, key) for group, key in OPTION_KEYS.items()}
