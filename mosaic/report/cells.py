"""Report cells: one configuration each, its seeds averaged, and the best chosen on validation data.

What varies across a sweep's jobs is read from their configs (every key whose value differs,
not a fixed list), so two jobs share a cell only when they differ by `seed` alone. The best cell of
a table, of a layer or of a feature type is the one with the best selection score, cross-validation
macro F1 on train+val where every cell has it, else validation macro F1; its test score is what is
reported for it. The test split never picks a winner.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from statistics import mean, pstdev
from typing import Any

import numpy as np

# Config keys that never tell two experiments apart: the seed is averaged over, and how a job is
# logged or resumed does not change its numbers.
NOT_AN_EXPERIMENT = ("seed", "logger.", "sweep.")


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


def latest_runs(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One result per config (seed included): a job run again (a reused sweep directory, a report over
    several sweeps) counts once, by its newest run, so n counts seeds and not repeats."""
    newest: dict[str, dict[str, Any]] = {}
    for result in results:
        key = result.get("config_hash") or json.dumps(result["config"], sort_keys=True)
        finished = (result.get("run") or {}).get("finished", "")
        if key not in newest or finished >= (newest[key].get("run") or {}).get("finished", ""):
            newest[key] = result
    return list(newest.values())


def varying_keys(configs: list[dict[str, Any]]) -> list[str]:
    """The dotted config keys whose values differ between jobs (a key some jobs lack counts as differing)."""
    flats = [flatten(config) for config in configs]
    keys = sorted({key for flat in flats for key in flat})
    return [key for key in keys if not key.startswith(NOT_AN_EXPERIMENT)
            and len({json.dumps(flat.get(key), sort_keys=True) for flat in flats}) > 1]


def shown_keys(keys: list[str]) -> list[str]:
    """The varying keys a reader needs to tell cells apart: a model or dataset by its name, not its fields."""
    named = {key.split(".")[0] for key in keys if key.endswith(".name") and key.count(".") == 1}
    return [key for key in keys if key.split(".")[0] not in named or key == f"{key.split('.')[0]}.name"]


def job_row(results: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """One job as a flat row: what the plots need, the varying keys, and its scores."""
    cfg, features, metrics = results["config"], results["features"], results["metrics"]
    flat = flatten(cfg)
    sae = features.get("sae") or {}
    width = cfg["sae"]["width"] if sae.get("source") == "gemma_scope" else features.get("width")
    cv = metrics.get("cv") or {}
    chosen = {name: value["chosen"] for name, value in (results.get("hyperparameters") or {}).items()}
    return {
        "dataset": cfg["dataset"]["name"],
        "model": cfg["model"]["name"],
        "layer": cfg["layer"],
        "width": "" if features["type"] != "sae" else str(width),
        "features": features["type"],
        "pooling": cfg["pooling"]["method"],
        "binarize": cfg["binarize"]["method"],
        "probe": cfg["probe"]["type"],
        "seed": cfg["seed"],
        "cell": {key: flat.get(key) for key in keys},
        "macro_f1": metrics["macro_f1"],
        "val_macro_f1": (metrics.get("val") or {}).get("macro_f1"),
        "cv_macro_f1_mean": cv.get("macro_f1_mean"),
        "cv_macro_f1_std": cv.get("macro_f1_std"),
        "cv_held_out": cv.get("held_out"),
        "chosen": ", ".join(f"{name}={value}" for name, value in chosen.items()),
        "accuracy": metrics["accuracy"],
        "auroc": metrics["auroc"],
        # Behaviour labels: the share of test documents the answering model got right, and the accuracy of
        # always predicting the majority outcome, to read the probe's scores against.
        "base_rate": (results.get("behaviour") or {}).get("test_base_rate"),
        "majority_accuracy": (results.get("behaviour") or {}).get("test_majority_accuracy"),
    }


def confidence_interval(values: list[float], level: float = 0.95) -> tuple[float, float] | None:
    """The `level` confidence interval of the mean of `values` (seeds), from Student's t; None below two values."""
    from scipy import stats

    if len(values) < 2:
        return None
    centre, spread = float(np.mean(values)), float(stats.sem(values))
    if spread == 0:
        return centre, centre
    low, high = stats.t.interval(level, len(values) - 1, loc=centre, scale=spread)
    return float(low), float(high)


@dataclass
class Cell:
    """The jobs of one configuration (differing only by seed) and their averaged scores."""

    dataset: str
    setting: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.rows)

    def _mean(self, key: str) -> float | None:
        values = [row[key] for row in self.rows]
        return None if any(v is None for v in values) else mean(values)

    @property
    def test(self) -> float:
        return mean(row["macro_f1"] for row in self.rows)

    @property
    def test_std(self) -> float | None:
        return pstdev(row["macro_f1"] for row in self.rows) if self.n > 1 else None

    @property
    def test_ci95(self) -> tuple[float, float] | None:
        """The 95% confidence interval of the mean test macro F1 over seeds (Student's t; None for one seed)."""
        return confidence_interval([row["macro_f1"] for row in self.rows])

    @property
    def auroc(self) -> float | None:
        return self._mean("auroc")

    @property
    def auroc_ci95(self) -> tuple[float, float] | None:
        values = [row["auroc"] for row in self.rows]
        return None if any(v is None for v in values) else confidence_interval(values)

    @property
    def accuracy(self) -> float:
        return mean(row["accuracy"] for row in self.rows)

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
    """Rows grouped into cells: same dataset, same value of every varying key; in first-seen order."""
    cells: dict[str, Cell] = {}
    for row in rows:
        key = json.dumps([row["dataset"], row["cell"]], sort_keys=True, default=str)
        cells.setdefault(key, Cell(row["dataset"], row["cell"])).rows.append(row)
    return list(cells.values())


def selection_basis(cells: list[Cell]) -> str:
    """What "best" is chosen on: `cv` when every cell has held-out cross-validation scores, else `val`.

    A CV score that is not held out (an SAE trained on the folds it scores) is optimistic, so one
    such cell sends the whole table back to validation scores.
    """
    held_out_cv = cells and all(cell.cv is not None and cell.cv_held_out for cell in cells)
    return "cv" if held_out_cv else "val"


def best(cells: list[Cell], basis: str) -> Cell | None:
    """The cell with the best selection score (the first on ties); None when no cell has one."""
    scored = [cell for cell in cells if getattr(cell, basis) is not None]
    return max(scored, key=lambda cell: getattr(cell, basis), default=None)


def best_by(cells: list[Cell], basis: str, *keys: str) -> dict[tuple, Cell]:
    """The best cell (on `basis`) for each combination of the plain fields `keys` (e.g. layer, features)."""
    groups: dict[tuple, list[Cell]] = defaultdict(list)
    for cell in cells:
        groups[tuple(cell.first(key) for key in keys)].append(cell)
    return {group: chosen for group, members in groups.items() if (chosen := best(members, basis)) is not None}
