"""The suite report: a sweep over many datasets (the sparse-probing suite, or any) as datasets x methods.

A *method* is what varies across the sweep's cells besides the dataset (the seed is averaged over):
`features.type=sae, probe.k=16`. Written when a sweep covers two or more datasets:

- `suite.md`: test AUROC per dataset and method (the mean over seeds; its 95% confidence interval
  when there are several), then every SAE method against every method on other features (the
  baselines): wins, ties (|difference| <= `TIE`) and losses over the datasets both scored, the mean
  difference, and the two-sided Wilcoxon signed-rank test of the paired differences;
- `suite.csv`: one row per dataset and method;
- `suite_<key>.png`: mean test AUROC over datasets (with its 95% interval) against each of
  `CURVE_KEYS` that the sweep varies, one line per other setting.

Only test scores of cells chosen by the sweep's design appear: nothing here picks a winner per dataset.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from mosaic.report.cells import Cell, confidence_interval
from mosaic.report.transfer import MISSING

# Two methods tie on a dataset when their test AUROCs differ by at most this much.
TIE = 0.005
# Keys whose values are the x-axis of a suite curve (the suite's k-sparse and regime sweeps).
CURVE_KEYS = ("probe.k", "regime.n_train", "regime.positive_fraction", "regime.label_noise")


def _label(setting: dict[str, Any], leave_out: str | None = None) -> str:
    parts = [f"{key}={'all' if key == 'probe.k' and value is None else value}"
             for key, value in sorted(setting.items()) if not key.startswith("dataset.") and key != leave_out]
    return ", ".join(parts) or "(one method)"


def _row(cell: Cell) -> str:
    """A dataset's row name: its name, and any other dataset key that varies (a `limit`, a path)."""
    others = [f"{key}={value}" for key, value in sorted(cell.setting.items())
              if key.startswith("dataset.") and key not in ("dataset.name", "dataset.task")]
    return ", ".join([cell.dataset, *others])


def _scores(cells: list[Cell]) -> dict[str, dict[str, Cell]]:
    """method -> dataset row -> cell, methods in sorted order."""
    table: dict[str, dict[str, Cell]] = defaultdict(dict)
    for cell in cells:
        table[_label(cell.setting)][_row(cell)] = cell
    return dict(sorted(table.items()))


def _paired(ours: dict[str, Cell], theirs: dict[str, Cell]) -> dict[str, Any] | None:
    """Wins, ties and losses of `ours` against `theirs` over the datasets both scored, and the paired test."""
    from scipy.stats import wilcoxon

    common = [d for d in ours if d in theirs and ours[d].auroc is not None and theirs[d].auroc is not None]
    if not common:
        return None
    differences = np.array([ours[d].auroc - theirs[d].auroc for d in common])
    # The test sees what the counts see: a difference within the tie band is no difference.
    beyond_tie = differences[abs(differences) > TIE]
    p_value = float(wilcoxon(beyond_tie).pvalue) if len(beyond_tie) else 1.0
    return {"datasets": len(common), "wins": int((differences > TIE).sum()),
            "ties": int((abs(differences) <= TIE).sum()), "losses": int((differences < -TIE).sum()),
            "mean_difference": float(differences.mean()), "p_value": p_value}


def _holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment: each comparison's p-value, corrected for all of them being tested."""
    order = np.argsort(p_values)
    adjusted, running = np.empty(len(p_values)), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted.tolist()


def _comparisons(table: dict[str, dict[str, Cell]]) -> list[dict[str, Any]]:
    def is_sae(method: str) -> bool:
        return next(iter(table[method].values())).first("features") == "sae"

    found = [{"sae": ours, "baseline": theirs, **paired}
             for ours in table if is_sae(ours) for theirs in table if not is_sae(theirs)
             if (paired := _paired(table[ours], table[theirs])) is not None]
    for comparison, adjusted in zip(found, _holm([c["p_value"] for c in found]), strict=True):
        comparison["p_holm"] = adjusted
    return found


def _cell_text(cell: Cell | None) -> str:
    if cell is None or cell.auroc is None:
        return MISSING
    interval = cell.auroc_ci95
    return f"{cell.auroc:.3f}" + ("" if interval is None else f" ({interval[0]:.3f}–{interval[1]:.3f})")


def _markdown(table: dict[str, dict[str, Cell]], comparisons: list[dict[str, Any]]) -> str:
    methods = list(table)
    datasets = sorted({dataset for column in table.values() for dataset in column})
    lines = ["# Suite report", "", f"Test AUROC, mean over seeds (95% confidence interval when seeds vary); "
             f"{len(datasets)} datasets, {len(methods)} methods.", "",
             "| dataset | " + " | ".join(methods) + " |", "| --- |" + " --- |" * len(methods)]
    lines += ["| " + " | ".join([dataset, *(_cell_text(table[m].get(dataset)) for m in methods)]) + " |"
              for dataset in datasets]
    lines += ["", f"## SAE methods against the baselines (tie: |AUROC difference| <= {TIE})", ""]
    if not comparisons:
        return "\n".join(lines + ["No SAE method and baseline scored a dataset in common.", ""])
    lines += ["Wilcoxon p: two-sided signed-rank test of the paired differences beyond the tie band; Holm: the "
              f"same, adjusted for all {len(comparisons)} comparisons of this table.", "",
              "| SAE method | baseline | datasets | wins / ties / losses | mean difference | Wilcoxon p | Holm p |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {c['sae']} | {c['baseline']} | {c['datasets']} | {c['wins']} / {c['ties']} / {c['losses']} | "
              f"{c['mean_difference']:+.3f} | {c['p_value']:.3g} | {c['p_holm']:.3g} |" for c in comparisons]
    return "\n".join(lines + [""])


def _curve(cells: list[Cell], key: str, path: Path) -> Path | None:
    """Mean test AUROC over datasets against `key`, one line per other setting; None if `key` does not vary."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for cell in cells:
        x = cell.setting.get(key)
        if isinstance(x, (int, float)) and not isinstance(x, bool) and cell.auroc is not None:
            lines[_label(cell.setting, leave_out=key)][x].append(cell.auroc)
    if len({x for points in lines.values() for x in points}) < 2:
        return None
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name, points in sorted(lines.items()):
        xs = sorted(points)
        means = [np.mean(points[x]) for x in xs]
        intervals = [confidence_interval(points[x]) or (np.mean(points[x]),) * 2 for x in xs]
        axes.plot(xs, means, marker="o", label=name)
        axes.fill_between(xs, [max(0, low) for low, _ in intervals], [min(1, high) for _, high in intervals],
                          alpha=0.15)
    if key in ("probe.k", "regime.n_train"):
        axes.set_xscale("log", base=2)
    axes.set(xlabel=key, ylabel="test AUROC (mean over datasets, 95% interval)", title=f"Suite: AUROC against {key}")
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_suite(cells: list[Cell], out_dir: Path) -> tuple[dict[str, Path], list[dict[str, Any]]]:
    """suite.md, suite.csv and the suite curves for cells spanning several datasets; also the CSV rows."""
    table = _scores(cells)
    comparisons = _comparisons(table)
    written = {"suite_markdown": out_dir / "suite.md", "suite_csv": out_dir / "suite.csv"}
    written["suite_markdown"].write_text(_markdown(table, comparisons))
    rows = [{"dataset": dataset, "method": method, "n": cell.n, "auroc": cell.auroc,
             "auroc_ci95_low": (cell.auroc_ci95 or (None, None))[0],
             "auroc_ci95_high": (cell.auroc_ci95 or (None, None))[1], "macro_f1": cell.test}
            for method, column in table.items() for dataset, cell in sorted(column.items())]
    with written["suite_csv"].open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for key in CURVE_KEYS:
        if (path := _curve(cells, key, out_dir / f"suite_{key.replace('.', '_')}.png")) is not None:
            written[path.stem] = path
    return written, rows
