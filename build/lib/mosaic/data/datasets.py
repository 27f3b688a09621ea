"""Check a dataset source's table (read in `sources/`) and turn it into documents and integer labels.

A document is a text (`str`) or, for `dataset.modality=image`, one encoded image file (`bytes`:
PNG, JPEG, ...), decoded only when a model reads it, so a large image dataset stays compressed in
memory and has a stable fingerprint for the activation cache.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mosaic.data.duplicates import deduplicate
from mosaic.data.sources import dataset_source
from mosaic.data.sources.hub import HUB_SPLIT_COLUMN
from mosaic.infra.errors import DataError

_SPLIT_ALIASES = {"train": "train", "val": "val", "validation": "val", "dev": "val", "test": "test"}


@dataclass
class LabelledDocuments:
    """Documents (texts or encoded images) with integer labels; `split` holds train/val/test when the data has one.

    `duplicates` says what loading found and removed (`duplicates.deduplicate`).
    """

    documents: list[str] | list[bytes]
    labels: np.ndarray
    label_names: list[str]
    split: np.ndarray | None = None
    duplicates: dict | None = None

    def hashes(self) -> list[str]:
        """Each document's `document_hash`, in order."""
        return [document_hash(document) for document in self.documents]


def _texts(table: pd.DataFrame, cfg) -> list[str]:
    """The text of each row: `text_column`, or `text_template` filled with the row's columns."""
    if cfg.text_template is None:
        return _require_column(table, "dataset.text_column", cfg.text_column, cfg.name).astype(str).tolist()
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(cfg.text_template) if name is not None]
    except ValueError as error:
        raise DataError(f"dataset.text_template={cfg.text_template!r} is not a format string ({error}): "
                        "name columns in braces, e.g. '{question} {passage}'") from None
    if missing := [name for name in fields if name not in table.columns]:
        raise DataError(f"dataset.text_template names columns {missing} that dataset {cfg.name} does not have "
                        f"(columns: {', '.join(map(str, table.columns))})")
    columns = {name: table[name].astype(str).tolist() for name in fields}
    return [cfg.text_template.format(**{name: values[i] for name, values in columns.items()})
            for i in range(len(table))]


def _image_bytes(values: pd.Series, name: str, base: Path | None) -> list[bytes]:
    """Encoded image files from a column of bytes, `datasets` image dicts ({bytes, path}) or file paths.

    Relative paths are read from `base` (the folder of a CSV/JSONL file) when given.
    """
    def one(value) -> bytes:
        if isinstance(value, bytes):
            return value
        if isinstance(value, dict) and value.get("bytes"):
            return value["bytes"]
        path = value.get("path") if isinstance(value, dict) else value
        if not isinstance(path, str):
            raise DataError(f"dataset.image_column of dataset {name} holds {type(value).__name__} values, not images "
                            "(encoded bytes, a datasets Image, or a file path)")
        file = base / path if base is not None and not Path(path).is_absolute() else Path(path)
        if not file.is_file():
            raise DataError(f"dataset {name}: image file {str(file)!r} (from dataset.image_column) does not exist")
        return file.read_bytes()

    return [one(value) for value in values]


def _require_column(table: pd.DataFrame, key: str, column: str, name: str) -> pd.Series:
    if column not in table.columns:
        raise DataError(
            f"{key}={column!r} is not a column of dataset {name}: columns are " + ", ".join(map(str, table.columns))
        )
    values = table[column]
    missing = int(values.isna().sum())
    if missing:
        raise DataError(f"{key}={column!r} has {missing} missing values in dataset {name}: every document needs one")
    return values


def _label_strings(values: pd.Series, cfg) -> pd.Series:
    """Labels as strings; integer labels index into `label_names` when those are given."""
    if not cfg.label_names or not pd.api.types.is_integer_dtype(values):
        return values.astype(str)
    names = list(cfg.label_names)
    outside = sorted(set(values) - set(range(len(names))))
    if outside:
        raise DataError(f"dataset.label_column={cfg.label_column!r} has integer labels {outside[:5]} outside "
                        f"0..{len(names) - 1}, the indices of dataset.label_names={names}")
    return values.map(dict(enumerate(names)))


def _stratified_sample(labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Indices of `limit` documents keeping class proportions, every class represented at least once."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.maximum(1, np.floor(counts / counts.sum() * limit).astype(int))
    while quota.sum() < min(limit, counts.sum()):
        room = counts - quota
        quota[np.argmax(room / counts)] += 1
    chosen = [rng.choice(np.flatnonzero(labels == c), size=min(q, n), replace=False)
              for c, q, n in zip(classes, quota, counts)]
    return np.sort(np.concatenate(chosen))


def _own_split(table: pd.DataFrame, cfg) -> np.ndarray | None:
    """train/val/test per document from `dataset.split_column` (or a hub dataset's splits), else None."""
    split_column = cfg.split_column or (HUB_SPLIT_COLUMN if HUB_SPLIT_COLUMN in table else None)
    if split_column is None:
        return None
    raw_split = _require_column(table, "dataset.split_column", split_column, cfg.name).astype(str)
    bad = sorted(set(raw_split) - set(_SPLIT_ALIASES))
    if bad:
        raise DataError(f"dataset.split_column={split_column!r} has values {bad}: allowed are "
                        + ", ".join(_SPLIT_ALIASES))
    return raw_split.map(_SPLIT_ALIASES).to_numpy()


def load_labelled_documents(cfg) -> LabelledDocuments:
    """Load and check the dataset described by a `DatasetConfig`.

    Duplicates are removed first (`dedup`, `duplicates.deduplicate`). `limit` then draws its stratified
    sample with a fixed seed, not the job's: every job of a grid, whatever its `seed`, sees the same
    documents (and shares their cached activations).

    Labels are mapped to integers in the order of `label_names` when given (so class 1 is the
    positive class of a binary task), else in sorted order.
    """
    table = dataset_source(cfg).read(cfg)
    if len(table) == 0:
        raise DataError(f"dataset {cfg.name} has no documents")
    if cfg.modality == "image":
        base = Path(cfg.path).parent if cfg.path is not None else None  # relative image paths in a file
        documents = _image_bytes(_require_column(table, "dataset.image_column", cfg.image_column, cfg.name), cfg.name,
                                 base)
    else:
        documents = _texts(table, cfg)
    raw_labels = _label_strings(_require_column(table, "dataset.label_column", cfg.label_column, cfg.name), cfg)

    present = sorted(raw_labels.unique())
    names = list(cfg.label_names) if cfg.label_names else present
    unknown = sorted(set(present) - set(names))
    if unknown:
        raise DataError(
            f"dataset.label_names={names} does not cover labels {unknown} found in column {cfg.label_column!r}"
        )
    if len(present) < 2:
        raise DataError(
            f"dataset.label_column={cfg.label_column!r} of dataset {cfg.name} has one class ({present[0]}): "
            "a probe needs at least two"
        )
    labels = raw_labels.map({name: i for i, name in enumerate(names)}).to_numpy(dtype=np.int64)

    split = _own_split(table, cfg)
    keep, duplicates = deduplicate([document_hash(d) for d in documents], labels, split, cfg.dedup)
    if cfg.limit is not None and cfg.limit < len(present):
        raise DataError(f"dataset.limit={cfg.limit} is smaller than the {len(present)} classes of dataset {cfg.name}")
    if cfg.limit is not None and cfg.limit < len(keep):
        keep = keep[_stratified_sample(labels[keep], cfg.limit, seed=0)]
    if len(np.unique(labels[keep])) < 2:
        raise DataError(f"dataset {cfg.name} has one class left once duplicates are removed "
                        f"({duplicates['removed']} rows): a probe needs two (dataset.dedup=false keeps them)")
    return LabelledDocuments(
        documents=[documents[i] for i in keep],
        labels=labels[keep],
        label_names=names,
        split=None if split is None else split[keep],
        duplicates=duplicates,
    )


def document_hash(document: str | bytes) -> str:
    """What makes two documents the same for leak checks: the SHA-256 of the text (ends stripped) or image bytes."""
    raw = document.strip().encode() if isinstance(document, str) else document
    return hashlib.sha256(raw).hexdigest()
