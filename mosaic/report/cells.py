"""Report cells: one configuration each, its seeds averaged, and the best chosen on validation data.

What varies across a sweep's jobs is read from their configs (every key whose value differs,
not a fixed list), so two jobs share a cell only when they differ by `seed` alone (or by SAE keys,
where their features read no SAE: `job_row`). Seeds are *replicates* only when the seed reached one
of the job's random draws (results.json's `randomness`); where it reached none, the jobs are one
result run several times, and a cell says so (n = 1) instead of showing a spread of zero.

The best cell of a table, of a layer or of a feature type is chosen only among *comparable* cells:
those whose selection scores were computed on the same documents with the same labels, seed by
seed (results.json's `splits.keys`). Cells of a regime sweep validate on different rows (or on
labels of different noise), so each regime setting gets its own best. Within a group, the score is
cross-validation macro F1 on train+val where every cell has it held out, else validation macro F1;
a group whose selection set has fewer than `MIN_SELECTION_DOCUMENTS` documents gets no best. The
chosen cell's test score is what is reported for it: the test split never picks a winner.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from statistics import mean, stdev
from typing import Any

import numpy as np

from mosaic.record.results import Duplicates, Results

# How a job is logged or resumed does not change its numbers: one run is one result however it was logged.
NOT_A_SETTING = ("logger.", "sweep.")
# Config keys that never tell two experiments apart: the seed is averaged over, and the keys above.
NOT_AN_EXPERIMENT = ("seed", *NOT_A_SETTING)
# The random draws (results.json's `randomness.seeded`) that can change a job's validation and test scores; cross-
# validation folds and transfer targets' splits change only their own columns.
SCORED_DRAWS = ("splits", "probe", "SAE training")
# A selection set (validation documents, or train+val for cross-validation) smaller than this ranks nothing:
# with 20 documents one document moves macro F1 by about 0.05.
MIN_SELECTION_DOCUMENTS = 20


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys to leaf values (lists and empty dicts as JSON text, so they compare and print)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = json.dumps(value) if isinstance(value, (list, dict)) else value
    return flat


def varying_keys(configs: list[dict[str, Any]]) -> list[str]:
    """The dotted config keys whose values differ between jobs (a key some jobs lack counts as differing), less the
    probe settings that only tell probe types apart (`_set_by_probe_type`)."""
    flats = [flatten(config) for config in configs]
    keys = sorted({key for flat in flats for key in flat})
    return [key for key in keys if not key.startswith(NOT_AN_EXPERIMENT)
            and len({json.dumps(flat.get(key), sort_keys=True) for flat in flats}) > 1
            and not _set_by_probe_type(key, flats)]


def _set_by_probe_type(key: str, flats: list[dict[str, Any]]) -> bool:
    """Whether a probe setting has one value per probe type (each type's YAML sets its own: attention's batch size,
    its learning rates), so that naming the probe type says it. `probe.k` is always shown: the suite compares at it."""
    if not key.startswith("probe.") or key in ("probe.type", "probe.k"):
        return False
    by_type: dict[Any, str] = {}
    for flat in flats:
        value = json.dumps(flat.get(key), sort_keys=True)
        if by_type.setdefault(flat.get("probe.type"), value) != value:
            return False
    return len(by_type) > 1


def shown_keys(keys: list[str]) -> list[str]:
    """The varying keys a reader needs to tell cells apart: a model or dataset by its name, not its fields."""
    named = {key.split(".")[0] for key in keys if key.endswith(".name") and key.count(".") == 1}
    return [key for key in keys if key.split(".")[0] not in named or key == f"{key.split('.')[0]}.name"]


def job_row(results: Results, keys: list[str]) -> dict[str, Any]:
    """One job as a flat row: what the plots need, the varying keys, and its scores."""
    cfg, features, metrics, splits = results.config, results.features, results.metrics, results.splits
    flat = flatten(cfg)
    sae, cv, behaviour = features.sae, metrics.cv, results.behaviour
    keyed = splits.keys
    duplicates = splits.duplicates
    chosen = {name: value.chosen for name, value in results.hyperparameters.items()}
    return {
        "dataset": cfg["dataset"]["name"],
        "model": cfg["model"]["name"],
        # The layer the features read (None for features that read none, e.g. a bag of words).
        "layer": features.layer,
        # The width as the SAE's source names it (`features.sae.width`: Gemma Scope's 16k), else its latent count.
        "width": "" if sae is None else str(sae.width or features.width),
        "reads_sae": sae is not None,
        "features": features.type,
        "pooling": cfg["pooling"]["method"],
        "binarize": cfg["binarize"]["method"],
        "probe": cfg["probe"]["type"],
        "seed": cfg["seed"],
        # A job whose features read no SAE is named without the SAE's keys: its config carries their defaults, which
        # cannot change its scores, so a hidden state run beside several SAEs is one cell, not one per SAE.
        "cell": {key: flat.get(key) for key in keys if sae is not None or not key.startswith("sae.")},
        "macro_f1": metrics.macro_f1,
        "val_macro_f1": None if metrics.val is None else metrics.val.macro_f1,
        "val_auroc": None if metrics.val is None else metrics.val.auroc,
        "cv_macro_f1_mean": None if cv is None else cv.macro_f1_mean,
        "cv_macro_f1_std": None if cv is None else cv.macro_f1_std,
        "cv_held_out": None if cv is None else cv.held_out,
        "chosen": ", ".join(f"{name}={value}" for name, value in chosen.items()),
        "accuracy": metrics.accuracy,
        "auroc": metrics.auroc,
        # Behaviour labels: the share of test documents the answering model got right, and the accuracy of
        # always predicting the majority outcome, to read the probe's scores against.
        "base_rate": None if behaviour is None else behaviour.test_base_rate,
        "majority_accuracy": None if behaviour is None else behaviour.test_majority_accuracy,
        "k": cfg["probe"].get("k"),
        # Whether the seed reached a draw that changes the scores (None: a job written before results said so).
        "seeded": None if results.randomness is None else bool(set(results.randomness.seeded) & set(SCORED_DRAWS)),
        "val_key": None if keyed is None else keyed.val,
        "train_val_key": None if keyed is None else keyed.train_val,
        "val_documents": splits.val,
        "train_val_documents": splits.train + splits.val,
        "test_documents": splits.test,
        # Duplicates a job kept (`dataset.dedup=false`): test documents with a copy in training or validation.
        "dedup": None if duplicates is None else duplicates.dedup,
        "test_copies": _test_copies(duplicates),
        "conflicting_texts": None if duplicates is None else duplicates.conflicting_texts,
    }


def _test_copies(duplicates: Duplicates | None) -> int | None:
    """Test documents with a copy in training or validation (at least the larger count, for older results)."""
    if duplicates is None:
        return None
    across = duplicates.across_splits
    return across.test_copies if across.test_copies is not None else max(across.test_in_train, across.test_in_val)


def confidence_interval(values: list[float], level: float = 0.95) -> tuple[float, float] | None:
    """The `level` confidence interval of the mean of `values` (replicates), from Student's t with the sample
    standard deviation, clipped to [0, 1] where every score lives; None below two values."""
    from scipy import stats

    if len(values) < 2:
        return None
    centre, spread = float(np.mean(values)), float(stats.sem(values))
    if spread == 0:
        return centre, centre
    low, high = stats.t.interval(level, len(values) - 1, loc=centre, scale=spread)
    return max(0.0, float(low)), min(1.0, float(high))


@dataclass
class Cell:
    """The jobs of one configuration (differing only by seed) and their averaged scores.

    `replicates` are the rows whose results can differ: every row when the seed reached a random draw,
    one row when it reached none (the other seeds repeat it). Spreads and intervals are over replicates.
    """

    dataset: str
    setting: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def seeds(self) -> int:
        return len(self.rows)

    @property
    def replicates(self) -> list[dict[str, Any]]:
        if self.rows and all(row["seeded"] is False for row in self.rows):
            return self.rows[:1]
        return self.rows

    @property
    def n(self) -> int:
        return len(self.replicates)

    @property
    def n_text(self) -> str:
        """n for a table: the replicates, and why there are fewer than seeds."""
        if self.n == self.seeds:
            return str(self.n)
        return f"1 ({self.seeds} seeds identical: the seed reaches no random draw)"

    def _mean(self, key: str) -> float | None:
        values = [row[key] for row in self.replicates]
        return None if any(v is None for v in values) else mean(values)

    def _interval(self, key: str) -> tuple[float, float] | None:
        values = [row[key] for row in self.replicates]
        return None if any(v is None for v in values) else confidence_interval(values)

    @property
    def test(self) -> float:
        return mean(row["macro_f1"] for row in self.replicates)

    @property
    def test_std(self) -> float | None:
        """The sample standard deviation of test macro F1 over replicates (None for one)."""
        return stdev(row["macro_f1"] for row in self.replicates) if self.n > 1 else None

    @property
    def test_ci95(self) -> tuple[float, float] | None:
        """The 95% confidence interval of the mean test macro F1 over replicates (Student's t; None for one)."""
        return self._interval("macro_f1")

    @property
    def auroc(self) -> float | None:
        return self._mean("auroc")

    @property
    def auroc_ci95(self) -> tuple[float, float] | None:
        return self._interval("auroc")

    def selection_set(self, basis: str) -> tuple:
        """What this cell's `basis` scores were computed on, seed by seed: cells compare only where it is equal."""
        key = "val_key" if basis == "val" else "train_val_key"
        return tuple(sorted((row["seed"], row[key]) for row in self.rows))

    def selection_documents(self, basis: str) -> int | None:
        """The fewest documents any of its jobs scored its selection on (None where no job recorded it)."""
        counts = [row["val_documents" if basis == "val" else "train_val_documents"] for row in self.rows]
        return min((count for count in counts if count is not None), default=None)

    @property
    def accuracy(self) -> float:
        return mean(row["accuracy"] for row in self.replicates)

    @property
    def base_rate(self) -> float | None:
        return self._mean("base_rate")

    @property
    def majority_accuracy(self) -> float | None:
        return self._mean("majority_accuracy")

    @property
    def val(self) -> float | None:
        return self._mean("val_macro_f1")

    @property
    def val_auroc(self) -> float | None:
        return self._mean("val_auroc")

    @property
    def cv(self) -> float | None:
        return self._mean("cv_macro_f1_mean")

    @property
    def cv_std(self) -> float | None:
        return self._mean("cv_macro_f1_std")

    @property
    def cv_held_out(self) -> bool:
        return all(row["cv_held_out"] is not False for row in self.rows)

    @property
    def chosen(self) -> str:
        return "; ".join(dict.fromkeys(row["chosen"] for row in self.rows if row["chosen"]))

    def first(self, key: str) -> Any:
        return self.rows[0][key]


def cells_of(rows: list[dict[str, Any]]) -> list[Cell]:
    """Rows grouped into cells: same dataset, same value of every varying key; in first-seen order.

    A cell keeps one row per seed: a second job with the same seed is the same experiment run again (a hidden state
    swept beside several SAEs, a job rerun into another sweep directory), not a replicate."""
    cells: dict[str, Cell] = {}
    for row in rows:
        key = json.dumps([row["dataset"], row["cell"]], sort_keys=True, default=str)
        cell = cells.setdefault(key, Cell(row["dataset"], row["cell"]))
        if all(kept["seed"] != row["seed"] for kept in cell.rows):
            cell.rows.append(row)
    return list(cells.values())


def selection_basis(cells: list[Cell]) -> str:
    """What "best" is chosen on: `cv` when every cell has held-out cross-validation scores, else `val`.

    A CV score that is not held out (an SAE trained on the folds it scores) is optimistic, so one
    such cell sends the whole group back to validation scores.
    """
    held_out_cv = cells and all(cell.cv is not None and cell.cv_held_out for cell in cells)
    return "cv" if held_out_cv else "val"


@dataclass
class Comparable:
    """Cells whose selection scores were computed on the same documents and labels, seed by seed; their best
    (None, with `why_none`, when their selection set is too small to rank or no cell has a score)."""

    cells: list[Cell]
    basis: str
    best: Cell | None
    why_none: str | None = None


def _best(cells: list[Cell], basis: str) -> Cell | None:
    """The cell with the best selection score (the first on ties); None when no cell has one."""
    scored = [cell for cell in cells if getattr(cell, basis) is not None]
    return max(scored, key=lambda cell: getattr(cell, basis), default=None)


def comparable_groups(cells: list[Cell]) -> list[Comparable]:
    """`cells` grouped by the documents and labels their selection scores were computed on, each with its best.

    Each group picks its own basis (CV where all its cells have held-out CV). A group that scores fewer
    than `MIN_SELECTION_DOCUMENTS` documents has no best.
    """
    by_set: dict[tuple, list[Cell]] = defaultdict(list)
    for cell in cells:
        by_set[cell.selection_set("val")].append(cell)
    groups = []
    for members in by_set.values():
        basis = selection_basis(members)
        if basis == "cv" and len({cell.selection_set("cv") for cell in members}) > 1:
            basis = "val"  # same validation rows, different train+val: only validation scores compare
        documents = min((n for cell in members if (n := cell.selection_documents(basis)) is not None), default=None)
        if documents is not None and documents < MIN_SELECTION_DOCUMENTS:
            groups.append(Comparable(members, basis, None, f"{_BASIS_SET[basis]} has {documents} documents, fewer "
                                     f"than the {MIN_SELECTION_DOCUMENTS} needed to rank cells"))
            continue
        chosen = _best(members, basis)
        groups.append(Comparable(members, basis, chosen, None if chosen else "no cell has a selection score"))
    return groups


_BASIS_SET = {"val": "the validation split", "cv": "train+val (cross-validation)"}


def best_by(group: Comparable, *keys: str) -> dict[tuple, Cell]:
    """Within one comparable group with a best, the best cell for each combination of the plain fields `keys`
    (e.g. layer, features); nothing for a group too small to rank."""
    if group.best is None:
        return {}
    by_key: dict[tuple, list[Cell]] = defaultdict(list)
    for cell in group.cells:
        by_key[tuple(cell.first(key) for key in keys)].append(cell)
    return {key: chosen for key, members in by_key.items() if (chosen := _best(members, group.basis)) is not None}
