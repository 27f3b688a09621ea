"""A grid's cells before it runs: the jobs `python run.py -m OVERRIDES` would launch, in Hydra's order.

Hydra's own code expands the grid: the config loader composes it in multirun mode (so an
experiment's `hydra.sweeper.params` count), its override parser reads the sweeps, and the basic
sweeper's `split_arguments` takes their product. Cell N is job number N, written to
`SWEEP_DIR/N`. `plan` and `fetch` read grids through here, so they see the cells a launch would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mosaic.config import CONF_DIR, check_group_overrides, check_value_overrides, register_configs
from mosaic.features.types import Sweep
from mosaic.infra.errors import ConfigError, first_line


@dataclass
class Grid:
    """Each cell's overrides and composed config (numbered as Hydra numbers the jobs), the launcher's settings,
    and the siblings each job's forward also serves (`grid.siblings`)."""

    overrides: list[list[str]]
    configs: list[DictConfig]
    launcher: dict[str, Any]
    sweep: Sweep

    def uses_gpus(self) -> bool:
        """Whether the cells run on GPU nodes: a SLURM launcher that asks for GPUs."""
        return "slurm" in str(self.launcher.get("_target_", "")).lower() and bool(self.launcher.get("gpus_per_node"))


def expand_grid(overrides: list[str], progress: bool = True) -> Grid:
    """The grid `python run.py -m OVERRIDES` would run (a bad override, option or value: one-line `ConfigError`)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    check_group_overrides(overrides, CONF_DIR)
    check_value_overrides(overrides, CONF_DIR)
    register_configs()
    try:
        return _expand(overrides, progress)
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError(f"cannot expand the grid {' '.join(overrides)}: {first_line(error)}") from None


def _expand(overrides: list[str], progress: bool) -> Grid:
    from hydra import compose, initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode
    from tqdm.auto import tqdm

    from mosaic.cluster.siblings import sweep_of

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        grid_cfg = loader.load_configuration("config", list(overrides), run_mode=RunMode.MULTIRUN)
        params = grid_cfg.hydra.sweeper.get("params") or {}
        swept = [f"{key}={value}" for key, value in params.items()] + list(overrides)
        parsed = OverridesParser.create(config_loader=loader).parse_overrides(swept)
        cells = [cell for batch in BasicSweeper.split_arguments(parsed, None) for cell in batch]
        configs = [compose(config_name="config", overrides=cell)
                   for cell in tqdm(cells, desc="compose cells", unit="cell", disable=not progress or len(cells) < 50)]
    launcher = OmegaConf.to_container(grid_cfg.hydra.launcher, resolve=False)
    return Grid(cells, configs, launcher, sweep_of(swept))
