"""MOSAIC's configuration: the schema (`schema.py`), the options `conf/` declares (`options.py`), their
validation (`validate.py`), and composing them.

`register_configs()` puts the schema in Hydra's ConfigStore; `run.py` calls it before Hydra composes,
and `compose` (tests, the benchmark) calls it too. Importing this package registers nothing.
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.config_store import ConfigStore

from mosaic.config.options import CONF_DIR, OPTION_KEYS, declared_options
from mosaic.config.overrides import check_group_overrides, check_value_overrides
from mosaic.config.schema import (
    BehaviourConfig,
    BinarizeConfig,
    DatasetConfig,
    FeaturesConfig,
    LoggerConfig,
    ModelConfig,
    MosaicConfig,
    PoolingConfig,
    ProbeConfig,
    SAEConfig,
    SweepConfig,
    TransferConfig,
)
from mosaic.config.validate import CHOICES, get_dotted, validate


def register_configs() -> None:
    """Register the schema so `conf/config.yaml` can list `mosaic_schema` first in its defaults."""
    ConfigStore.instance().store(name="mosaic_schema", node=MosaicConfig)


def saved_config(saved: dict):
    """A config an earlier job saved, on today's schema: a key added since reads its default."""
    from omegaconf import OmegaConf

    return OmegaConf.merge(OmegaConf.structured(MosaicConfig), saved)


def compose(*overrides: str, config_dir: Path | None = None, with_hydra: bool = False):
    """The job config `run.py` would compose for these command-line overrides (for tests and the benchmark).

    `with_hydra` also returns the `hydra` node (sweeper params, launcher settings).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register_configs()
    with initialize_config_dir(config_dir=str(config_dir or CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides), return_hydra_config=with_hydra)


__all__ = ["CHOICES", "CONF_DIR", "OPTION_KEYS", "BehaviourConfig", "BinarizeConfig", "DatasetConfig", "FeaturesConfig",
           "LoggerConfig", "ModelConfig", "MosaicConfig", "PoolingConfig", "ProbeConfig", "SAEConfig", "SweepConfig",
           "TransferConfig", "check_group_overrides", "check_value_overrides", "compose", "declared_options",
           "get_dotted", "register_configs", "saved_config", "validate"]
