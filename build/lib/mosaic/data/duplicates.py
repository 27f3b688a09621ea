"""Duplicate documents: found by content, removed before splits are drawn, and checked across splits after.

A document that appears twice can land on both sides of a split; a probe that memorises (kNN,
boosted trees, a wide SAE code) then scores it from its own training copy, and test scores rise
without the probe having learnt anything. The sparse-probing suite's files repeat many prompts
(64% of 41_truthqa_tf's rows have a copy), so by default (`dataset.dedup=true`):

- `deduplicate` keeps one row per content (`document_hash`): the first, or, where the dataset has
  its own splits, the copy in the most held-out one (test, then validation, then train), so the
  training side gives way and a benchmark's own test set keeps its rows. Every copy of a text
  whose copies carry different labels is dropped: no label is right for it. This runs before
  `dataset.limit` and before any regime, so a regime's row counts (the suite's 5,000 rows, 1,024
  training rows) are counts of distinct documents.
- `guard_splits` then drops any validation document with a copy in training and any test document
  with a copy in training or validation: what a regime adds after loading (the suite's
  out-of-distribution test sets) is checked too.

`dataset.dedup=false` keeps every row (the peer's protocol, for parity), and both steps still count
what they find, so `results.json` says how many test documents had a copy in training.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

# Which copy survives when a dataset has its own splits: the most held-out one.
_KEEP_FIRST = {"test": 0, "val": 1, "train": 2}


def deduplicate(hashes: Sequence[str], labels: np.ndarray, split: np.ndarray | None, remove: bool
                ) -> tuple[np.ndarray, dict[str, Any]]:
    """The rows to keep (sorted) and what was found: duplicate rows and texts whose copies disagree on the label.

    With `remove` false every row is kept and the counts still say what is there.
    """
    groups: dict[str, list[int]] = defaultdict(list)
    for row, digest in enumerate(hashes):
        groups[digest].append(row)
    keep, conflicting_rows, conflicting_texts = [], 0, 0
    removed_by_split: dict[str, int] = defaultdict(int)
    for rows in groups.values():
        if len({int(labels[row]) for row in rows}) > 1:
            conflicting_texts += 1
            conflicting_rows += len(rows)
            kept = []
        elif split is None:
            kept = rows[:1]
        else:
            kept = [min(rows, key=lambda row: (_KEEP_FIRST[split[row]], row))]
        if not remove:
            kept = rows
        keep += kept
        if split is not None:
            for row in set(rows) - set(kept):
                removed_by_split[str(split[row])] += 1
    found = {
        "dedup": remove,
        "rows": len(hashes),
        "duplicate_rows": len(hashes) - len(groups),
        "conflicting_texts": conflicting_texts,
        "conflicting_rows": conflicting_rows,
        "removed": len(hashes) - len(keep),
    }
    if split is not None and remove:
        found["removed_by_split"] = dict(sorted(removed_by_split.items()))
    return np.array(sorted(keep), dtype=np.int64), found


def guard_splits(hashes: Sequence[str], train: np.ndarray, val: np.ndarray, test: np.ndarray, remove: bool
                 ) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Validation rows without a copy in training and test rows without a copy in training or validation
    (with `remove`), and how many copies there were: `val_in_train`, `test_in_train`, `test_in_val`, and
    `test_copies` (test rows with a copy in either)."""
    in_train = {hashes[row] for row in train}
    in_val = {hashes[row] for row in val}
    val_copies = np.array([hashes[row] in in_train for row in val], dtype=bool)
    test_in_train = np.array([hashes[row] in in_train for row in test], dtype=bool)
    test_in_val = np.array([hashes[row] in in_val for row in test], dtype=bool)
    counts = {"val_in_train": int(val_copies.sum()), "test_in_train": int(test_in_train.sum()),
              "test_in_val": int(test_in_val.sum()), "test_copies": int((test_in_train | test_in_val).sum()),
              "removed": remove}
    if not remove:
        return val, test, counts
    # A test copy of a removed validation row is a copy of its training twin too: one pass suffices.
    return val[~val_copies], test[~(test_in_train | test_in_val)], counts
