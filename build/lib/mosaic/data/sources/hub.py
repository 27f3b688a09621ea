"""`dataset.source=hub`: a Hugging Face hub dataset (`hub_id`, `hub_config`, `revision`), its repository fetched into
the hub cache (`mosaic.infra.hub`) and read by `datasets` from there; one split (`hub_split`), or all splits with their
names in a column. Identified by the commit its revision pointed at when fetched."""

from __future__ import annotations

from typing import Any

import pandas as pd
from omegaconf import DictConfig

from mosaic.data.sources.base import DatasetSource
from mosaic.infra.errors import DataError, MosaicError, first_line

# Column holding each row's hub split name when a hub dataset is loaded with all its splits.
HUB_SPLIT_COLUMN = "_mosaic_split"


def _read(cfg) -> pd.DataFrame:
    """A hub dataset: its repository fetched into the hub cache (`mosaic.infra.hub`), read by `datasets` from there.

    One split, or all splits with their names in a column.
    """
    import datasets

    from mosaic.infra import hub

    try:
        folder = hub.snapshot("dataset", cfg.hub_id, cfg.revision or "main")
    except MosaicError as error:
        raise DataError(f"dataset {cfg.name}: {error}") from None
    try:
        with hub.local_only():
            loaded = datasets.load_dataset(str(folder), cfg.hub_config, split=cfg.hub_split)
    except Exception as error:  # datasets raises many unrelated types; all mean "not readable as configured"
        raise DataError(f"dataset {cfg.name}: cannot read {cfg.hub_id!r} ({type(error).__name__}: "
                        f"{first_line(error)[:200]}); check dataset.hub_config and dataset.hub_split") from None
    parts = {None: loaded} if isinstance(loaded, datasets.Dataset) else dict(loaded)
    first = next(iter(parts.values()))
    label_feature = first.features.get(cfg.label_column)
    tables = []
    for name, part in parts.items():
        table = part.to_pandas()
        if isinstance(label_feature, datasets.ClassLabel) and not cfg.label_names and cfg.label_column in table:
            # The dataset names its classes: use them rather than bare indices.
            table[cfg.label_column] = table[cfg.label_column].map(dict(enumerate(label_feature.names)))
        tables.append(table if name is None else table.assign(**{HUB_SPLIT_COLUMN: name}))
    return tables[0] if len(tables) == 1 and HUB_SPLIT_COLUMN not in tables[0] else pd.concat(tables, ignore_index=True)


class HubDataset(DatasetSource):
    def read(self, cfg: DictConfig) -> pd.DataFrame:
        return _read(cfg)

    def identity(self, cfg: DictConfig) -> dict[str, Any]:
        from mosaic.infra import hub

        revision = cfg.revision or "main"
        return {"hub": cfg.hub_id, "config": cfg.hub_config, "revision": cfg.revision,
                "commit": hub.local_commit("dataset", cfg.hub_id, revision)}

    def validate(self, cfg: DictConfig, key: str) -> None:
        from mosaic.infra.errors import require

        require(cfg.hub_id is not None, f"{key}.hub_id", None, f"{key}.source=hub needs a dataset id")

    def hub_items(self, cfg: DictConfig) -> list:
        from mosaic.infra.hub import HubItem

        return [HubItem("dataset", cfg.hub_id, cfg.revision or "main", f"dataset {cfg.name}")]
