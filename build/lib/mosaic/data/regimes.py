"""Regimes: how a job's training, validation and test documents are drawn.

`regime=none` is MOSAIC's stratified split (`dataset.val_size`, `dataset.test_size`). The others follow
the sparse-probing suite (Kantamneni et al. 2025; sae-probes' `get_train_test_indices`,
`corrupt_ytrain`, `get_classimabalance_num_train`, `get_cv`) on binary tasks, drawn with NumPy's
`RandomState(seed)` as the suite draws them, so the suite's seed 42 gives its own rows:

- `normal`: the first `max_rows` rows; a class-balanced training pool of min(rows - 100, `max_train`)
  (and at most twice the smaller class less 50, so 50 of each class remain to test) and a
  class-balanced test set of every other row but one. The last min(20%, `max_val`) rows of the
  pool, in its random order, are the validation rows (the suite chooses C on them).
- `scarcity`, `imbalance`, `label_noise` change the training rows only: `n_train` balanced rows drawn
  from the normal pool; training rows at `positive_fraction` (as many as the pool allows at the most
  extreme fraction, 0.05 or 0.95, so the size does not move with the fraction); the normal pool with
  `label_noise` of its labels flipped (validation included, as in the suite).
- `covariate_shift`: a balanced pool of `max_train` rows drawn from the task's first 1,500 (the
  suite's `get_OOD_traintest`), tested on the task's out-of-distribution set.

Deliberate differences from the suite, so that one dataset and seed has one test set: the test set
is always the normal one (the suite redraws it for scarcity and imbalance, at the training fraction),
and a regime never touches test labels. Where a class is too small for a balanced test set, MOSAIC
takes every remaining row of it (the suite raises) and says so in `results.json`. Below 128 training
rows the suite cross-validates C; MOSAIC holds out a class-balanced 20% (none below 4 rows: the probe
then keeps its configured hyper-parameters).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from mosaic.data.datasets import LabelledDocuments
from mosaic.data.duplicates import guard_splits
from mosaic.data.splits import Splits, make_splits, with_keys
from mosaic.infra.errors import DataError, NotApplicableError

# The suite's class-imbalance range: the training size is the largest that both extremes allow.
_EXTREME_FRACTIONS = (0.05, 0.95)
# The suite keeps at least this many rows out of training for testing.
_MIN_TEST = 100
# The suite's covariate-shift training draw reads only a task's first rows.
_SHIFT_ROWS = 1500


def _draw_balanced(rng: np.random.RandomState, positives: np.ndarray, negatives: np.ndarray, size: int,
                   positive_fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray, bool]:
    """`size` rows at `positive_fraction` (the positive count rounded up), as the suite draws them.

    A class with too few rows gives all it has; the flag says whether the draw was complete.
    """
    n_positive = int(np.ceil(positive_fraction * size))
    n_negative = size - n_positive
    complete = n_positive <= len(positives) and n_negative <= len(negatives)
    drawn_positive = rng.choice(positives, size=min(n_positive, len(positives)), replace=False)
    drawn_negative = rng.choice(negatives, size=min(n_negative, len(negatives)), replace=False)
    return drawn_positive, drawn_negative, complete


def normal_indices(labels: np.ndarray, seed: int, max_train: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """The suite's normal draw: the training pool in its random order, and the test rows.

    The pool is also small enough to leave half of the suite's `_MIN_TEST` held-out rows in each class, so
    the pool is balanced and the test set holds both classes. On every suite task as shipped this changes
    nothing (the peer's rows); it binds where removing duplicates left a small task unbalanced (95_toxic_is:
    343 and 238 distinct prompts, where the suite's 481-row pool would take every positive).
    """
    n_rows = len(labels)
    minority = int(np.bincount(labels, minlength=2).min())
    n_train = min(n_rows - _MIN_TEST, max_train, 2 * (minority - _MIN_TEST // 2))
    if n_train < 2:
        raise DataError(f"the suite's protocol needs more than {_MIN_TEST + 1} documents, at least "
                        f"{_MIN_TEST // 2 + 1} of each class; this dataset has {n_rows}, {minority} in its smaller "
                        "class: use regime=none")
    return balanced_indices(labels, seed, n_train, n_rows - n_train - 1)


def balanced_indices(labels: np.ndarray, seed: int, n_train: int, n_test: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """The suite's `get_train_test_indices` at a positive fraction of 0.5: a balanced training pool in random
    order, then a balanced test set from the other rows (as far as each class allows)."""
    rng = np.random.RandomState(seed)
    positives, negatives = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    train_positive, train_negative, balanced_pool = _draw_balanced(rng, positives, negatives, n_train)
    rest_positive, rest_negative = np.setdiff1d(positives, train_positive), np.setdiff1d(negatives, train_negative)
    test_positive, test_negative, balanced = _draw_balanced(rng, rest_positive, rest_negative, n_test)
    pool = rng.permutation(np.concatenate([train_positive, train_negative]))
    test = rng.permutation(np.concatenate([test_positive, test_negative]))
    return pool, test, {"balanced_pool": balanced_pool, "balanced_test": balanced}


def validation_tail(pool: np.ndarray, labels: np.ndarray, max_val: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation rows of a pool in random order: the suite's last min(20%, `max_val`) rows
    from 128 rows up; below, the last 20% of each class (at least one each); none below 4 rows."""
    if len(pool) >= 128:
        n_val = min(int(0.2 * len(pool)), max_val)
        return pool[: len(pool) - n_val], pool[len(pool) - n_val:]
    if len(pool) < 4:
        return pool, pool[:0]
    held = [rows[-max(1, int(0.2 * len(rows))):] for rows in (pool[labels[pool] == c] for c in (0, 1))]
    val = np.concatenate(held)
    return pool[~np.isin(pool, val)], val


def _subsample(pool: np.ndarray, labels: np.ndarray, seed: int, size: int, positive_fraction: float) -> np.ndarray:
    rng = np.random.RandomState(seed)
    positive, negative, complete = _draw_balanced(rng, pool[labels[pool] == 1], pool[labels[pool] == 0], size,
                                                  positive_fraction)
    if not complete:
        raise DataError(f"the training pool ({len(pool)} documents) cannot give {size} at positive fraction "
                        f"{positive_fraction}: choose a smaller regime.n_train")
    return rng.permutation(np.concatenate([positive, negative]))


def _flip(labels: np.ndarray, rows: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """`labels` with `fraction` of `rows` (in their order) flipped, as the suite's `corrupt_ytrain` flips them."""
    rng = np.random.RandomState(seed)
    flipped = rows[rng.choice(len(rows), size=int(len(rows) * fraction), replace=False)]
    noisy = labels.copy()
    noisy[flipped] = 1 - noisy[flipped]
    return noisy


def _splits(data: LabelledDocuments, pool: np.ndarray, test: np.ndarray, cfg, notes: dict) -> Splits:
    train, val = validation_tail(pool, data.labels, cfg.max_val)
    return Splits(np.sort(train), np.sort(val), np.sort(test), notes)


def _none(data: LabelledDocuments, dataset_cfg, cfg, seed: int) -> tuple[LabelledDocuments, Splits]:
    return data, make_splits(data.labels, seed, dataset_cfg.val_size, dataset_cfg.test_size, data.split)


def _normal(data, dataset_cfg, cfg, seed):
    pool, test, notes = normal_indices(data.labels[: cfg.max_rows], seed, cfg.max_train)
    return data, _splits(data, pool, test, cfg, {"type": "normal", **notes})


def _scarcity(data, dataset_cfg, cfg, seed):
    pool, test, notes = normal_indices(data.labels[: cfg.max_rows], seed, cfg.max_train)
    train = _subsample(pool, data.labels, seed, cfg.n_train, 0.5)
    return data, _splits(data, train, test, cfg, {"type": "scarcity", "n_train": cfg.n_train, **notes})


def _imbalance(data, dataset_cfg, cfg, seed):
    pool, test, notes = normal_indices(data.labels[: cfg.max_rows], seed, cfg.max_train)
    counts = np.bincount(data.labels[pool], minlength=2)
    size = int(min(counts[0] / (1 - _EXTREME_FRACTIONS[0]), counts[1] / _EXTREME_FRACTIONS[1]))
    train = _subsample(pool, data.labels, seed, size, cfg.positive_fraction)
    return data, _splits(data, train, test, cfg, {"type": "imbalance", "positive_fraction": cfg.positive_fraction,
                                                   "n_train": size, **notes})


def _label_noise(data, dataset_cfg, cfg, seed):
    pool, test, notes = normal_indices(data.labels[: cfg.max_rows], seed, cfg.max_train)
    noisy = replace(data, labels=_flip(data.labels, pool, cfg.label_noise, seed))
    flipped = int((noisy.labels != data.labels).sum())
    return noisy, _splits(noisy, pool, test, cfg, {"type": "label_noise", "label_noise": cfg.label_noise,
                                                    "flipped": flipped, **notes})


def _covariate_shift(data, dataset_cfg, cfg, seed):
    from mosaic.data.sources.sae_probes import read_ood

    rows = data.labels[:_SHIFT_ROWS]
    pool, _, notes = balanced_indices(rows, seed, min(cfg.max_train, len(rows)), 0)
    shifted = read_ood(dataset_cfg.task)
    targets = shifted["target"].astype(str)
    classes = _ood_classes(sorted(set(targets)), data.label_names, dataset_cfg.task)
    codes = np.array([data.label_names.index(classes[t]) for t in targets])
    joined = replace(data, documents=[*data.documents, *shifted["prompt"].astype(str)],
                     labels=np.concatenate([data.labels, codes]), split=None)
    test = np.arange(len(data.documents), len(joined.documents))
    renamed = {name: task_name for name, task_name in classes.items() if name != task_name}
    return joined, _splits(joined, pool, test, cfg, {"type": "covariate_shift", "test": "out-of-distribution set",
                                                     "balanced_pool": notes["balanced_pool"],
                                                     **({"classes_renamed": renamed} if renamed else {})})


def _ood_classes(ood_names: list[str], task_names: list[str], task: str) -> dict[str, str]:
    """Which task class each class of an out-of-distribution set is.

    By name where the names agree; otherwise by sorted position, as the suite's own code does (it label-encodes
    each file on its own): 90_glue_qnli's OOD set is labelled "1" / "not_entailment" where the task says "0" / "1".
    """
    if set(ood_names) <= set(task_names):
        return {name: name for name in ood_names}
    if len(ood_names) != len(task_names):
        raise DataError(f"the out-of-distribution set of {task} has classes {ood_names}, which cannot be matched "
                        f"to the task's {task_names}")
    return dict(zip(ood_names, sorted(task_names)))


# regime.type -> how documents are drawn.
REGIMES: dict[str, Callable[..., tuple[LabelledDocuments, Splits]]] = {
    "none": _none,
    "normal": _normal,
    "scarcity": _scarcity,
    "imbalance": _imbalance,
    "label_noise": _label_noise,
    "covariate_shift": _covariate_shift,
}


def validate_regime(cfg) -> None:
    """Refuse, in one line, a regime whose settings or dataset cannot give it (before anything loads)."""
    from mosaic.data.sources import dataset_source
    from mosaic.infra.errors import require

    regime = cfg.regime
    if regime.type == "scarcity":
        require(regime.n_train is not None and 2 <= regime.n_train <= regime.max_train, "regime.n_train",
                regime.n_train, f"regime=scarcity needs a training size from 2 to regime.max_train={regime.max_train}")
    if tests_on_other_documents(regime):
        require(dataset_source(cfg.dataset).shifted_test_sets, "regime", regime.type,
                "needs a sparse-probing task with an out-of-distribution set (dataset=sae_probes; "
                "`python -m mosaic tasks` marks them)", NotApplicableError)


def tests_on_other_documents(regime) -> bool:
    """Whether the regime's test set is another dataset's documents (a covariate-shifted one)."""
    return regime.type == "covariate_shift"


def draws_documents(regime) -> bool:
    """Whether the regime draws the job's rows (and so, for some, its documents and labels) from the seed: every
    regime but MOSAIC's own split, whose documents are the dataset's whatever the seed."""
    return regime.type != "none"


def draw_splits(data: LabelledDocuments, dataset_cfg, cfg, seed: int) -> tuple[LabelledDocuments, Splits]:
    """The documents a job uses (labels noised, a shifted test set appended, as its regime says) and its splits.

    No validation document has a copy in training, and no test document one in training or validation,
    unless `dataset.dedup` is off (`duplicates.guard_splits`); the splits record what was found.
    """
    if cfg.type != "none" and len(data.label_names) != 2:
        raise NotApplicableError(f"regime={cfg.type} follows the sparse-probing suite's binary protocol, but "
                                 f"{dataset_cfg.name} has {len(data.label_names)} classes: use regime=none")
    data, splits = REGIMES[cfg.type](data, dataset_cfg, cfg, seed)
    hashes = data.hashes()
    splits.val, splits.test, across = guard_splits(hashes, splits.train, splits.val, splits.test, dataset_cfg.dedup)
    if len(splits.test) == 0:
        raise DataError(f"every test document of {dataset_cfg.name} has a copy in training or validation: "
                        "nothing is left to test on")
    splits.duplicates = {**(data.duplicates or {}), "across_splits": across}
    return data, with_keys(splits, hashes, data.labels)
