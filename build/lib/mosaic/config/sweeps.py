"""What a multirun sweeps over, read back from the `multirun.yaml` Hydra writes in the sweep directory.

Hydra saves the sweep's composed config, with the command-line overrides and any
`hydra.sweeper.params` of an experiment config, before launching jobs (locally and through
submitit alike). A job reads it to cache its siblings' activations (`grid.siblings`) and to name
its W&B run by the keys the sweep varies (`record`).
"""

from __future__ import annotations

from pathlib import Path

MULTIRUN_FILE = "multirun.yaml"


def sweep_overrides(sweep_dir: Path) -> list[str] | None:
    """The sweep's overrides, experiment sweeper params first; None when `sweep_dir` holds no multirun."""
    from omegaconf import OmegaConf

    saved = sweep_dir / MULTIRUN_FILE
    if not saved.is_file():
        return None
    hydra_cfg = OmegaConf.load(saved).hydra
    params = hydra_cfg.sweeper.get("params") or {}
    return [*(f"{key}={value}" for key, value in params.items()), *hydra_cfg.overrides.task]


def swept_values(overrides: list[str]) -> dict[str, list[str]]:
    """Key -> swept values, later overrides winning as in Hydra's basic sweeper (a plain value ends a sweep).

    Sweeps that need Hydra's config loader (`glob(...)`) or are not discrete (`interval(...)`) are
    left out: what a sweep covers only ever refines a job, never makes it fail.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    values: dict[str, list[str]] = {}
    for text in overrides:
        try:
            [override] = parser.parse_overrides([text])
            key = override.key_or_group.lstrip("+")
            values.pop(key, None)
            if override.is_sweep_override():
                values[key] = list(override.sweep_string_iterator())
        except Exception:  # noqa: BLE001 - any sweep Hydra alone can expand
            continue
    return values
