"""Train / validation / test splits: the dataset's own, or stratified ones drawn from the seed."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from mosaic.infra.errors import DataError


@dataclass
class Splits:
    """Disjoint index arrays into the dataset's documents; `regime` says how a regime drew them (`regimes.py`).

    `seeded` says whether the job's seed drew them (a dataset's own train/val/test does not);
    `duplicates` what was found and removed by content (`duplicates.py`); `keys` identify the
    validation documents with their labels (`val`), and train + validation (`train_val`): the report
    only compares cells chosen on the same ones.
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    regime: dict[str, Any] = field(default_factory=dict)
    seeded: bool = True
    duplicates: dict[str, Any] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        counts = {"train": len(self.train), "val": len(self.val), "test": len(self.test)}
        extra = {"duplicates": self.duplicates, "keys": self.keys}
        return {**counts, **({"regime": self.regime} if self.regime else {}),
                **{name: value for name, value in extra.items() if value}}


def documents_and_labels_key(hashes: list[str], labels: np.ndarray, rows: np.ndarray) -> str:
    """What identifies a set of rows for comparing selections: their documents' hashes with their labels, unordered."""
    pairs = sorted(f"{hashes[row]}:{int(labels[row])}" for row in rows)
    return hashlib.sha256("\n".join(pairs).encode()).hexdigest()


def with_keys(splits: Splits, hashes: list[str], labels: np.ndarray) -> Splits:
    """`splits` with `keys` computed from the rows they hold now: validation, and train + validation."""
    train_val = np.concatenate([splits.train, splits.val])
    splits.keys = {"val": documents_and_labels_key(hashes, labels, splits.val),
                   "train_val": documents_and_labels_key(hashes, labels, train_val)}
    return splits


def _stratified(indices: np.ndarray, labels: np.ndarray, size: int, seed: int, what: str):
    try:
        return train_test_split(indices, test_size=size, stratify=labels[indices], random_state=seed)
    except ValueError as error:
        classes, counts = np.unique(labels[indices], return_counts=True)
        raise DataError(
            f"cannot draw a stratified {what} split ({error}); documents per class: "
            + ", ".join(f"{c}={n}" for c, n in zip(classes, counts))
        ) from None


def make_splits(
    labels: np.ndarray,
    seed: int,
    val_size: float,
    test_size: float,
    split: np.ndarray | None = None,
) -> Splits:
    """Split documents for probing.

    With `split` (train/val/test per document) the dataset's own test set is kept as is and, if
    the dataset has no validation set, `val_size / (1 - test_size)` of its train set becomes one.
    Otherwise test is `test_size` of all documents and validation `val_size` of all, rounded to
    whole documents, both stratified by label.
    """
    indices = np.arange(len(labels))
    seeded = True
    if split is not None:
        train, val, test = (indices[split == name] for name in ("train", "val", "test"))
        if len(train) == 0 or len(test) == 0:
            raise DataError("dataset.split_column must mark at least one train and one test document")
        seeded = len(val) == 0
        if seeded:
            n_val = max(1, round(len(train) * val_size / (1 - test_size)))
            train, val = _stratified(train, labels, n_val, seed, "validation")
    else:
        rest, test = _stratified(indices, labels, max(1, round(test_size * len(labels))), seed, "test")
        train, val = _stratified(rest, labels, max(1, round(val_size * len(labels))), seed, "validation")
    if len(np.unique(labels[train])) < 2:
        raise DataError("the training split has a single class: a probe needs at least two")
    return Splits(train=np.sort(train), val=np.sort(val), test=np.sort(test), seeded=seeded)
