"""What the running multirun sweeps over, so one job's forward can also cache its siblings' activations.

Reading the sweep's `multirun.yaml` back (`config.sweeps`) lets the job for `layer=5` extract
layers 12 and 19 in the same forward when the sweep is `layer=5,12,19`.
"""

from __future__ import annotations

from pathlib import Path

from mosaic.config.sweeps import sweep_overrides, swept_values
from mosaic.features.types import Sweep


def current_sweep() -> Sweep:
    """The sweep this Hydra job belongs to, read from the sweep directory's `multirun.yaml`."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return Sweep()
    overrides = sweep_overrides(Path(HydraConfig.get().sweep.dir))
    return Sweep() if overrides is None else sweep_of(overrides)


def sweep_of(overrides: list[str]) -> Sweep:
    """The siblings a sweep's overrides (experiment sweeper params first) cover, as each of its jobs reads them."""
    values = swept_values(overrides)
    return Sweep(
        layers=tuple(int(v) for v in values.get("layer", [])),
        features=tuple(values.get("features", [])),
        sae_values={key: tuple(found) for key, found in values.items() if key.startswith("sae.")},
        poolings=tuple(values.get("pooling", [])),
    )
