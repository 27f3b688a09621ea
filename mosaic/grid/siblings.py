"""What the running multirun sweeps over, so one job's forward can also cache its siblings' activations.

Hydra writes the sweep's composed config, with the command-line sweep overrides and any
`hydra.sweeper.params` of an experiment config, to `multirun.yaml` in the sweep directory before
launching jobs (locally and through submitit alike). Reading it back lets the job for `layer=5`
extract layers 12 and 19 in the same forward when the sweep is `layer=5,12,19`.
"""

from __future__ import annotations

from pathlib import Path

from mosaic.activations.plan import Sweep


def _swept(overrides: list[str]) -> dict[str, list[str]]:
    """Key -> swept values, later overrides winning as in Hydra's basic sweeper (a plain value ends a sweep).

    Sweeps that need Hydra's config loader (`glob(...)`) or are not discrete (`interval(...)`) are
    left out: the sibling cache is an optimisation, never a reason for a job to fail.
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


def current_sweep() -> Sweep:
    """The sweep this Hydra job belongs to, read from the sweep directory's `multirun.yaml`."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return Sweep()
    saved = Path(HydraConfig.get().sweep.dir) / "multirun.yaml"
    if not saved.is_file():
        return Sweep()
    hydra_cfg = OmegaConf.load(saved).hydra
    params = hydra_cfg.sweeper.get("params") or {}
    values = _swept([*(f"{key}={value}" for key, value in params.items()), *hydra_cfg.overrides.task])
    return Sweep(
        layers=tuple(int(v) for v in values.get("layer", [])),
        widths=tuple(values.get("sae.width", [])),
        features=tuple(values.get("features", [])),
    )
