"""The suite report: a sweep over many datasets (the sparse-probing suite, or any) as datasets x methods.

A *method* is what varies across the sweep's cells besides the dataset (the seed is averaged over):
`features.type=sae, probe.k=16`; a method whose features read no SAE is named without the SAE's
keys (its jobs carry their defaults, which cannot change its scores; `cells.job_row`). Its *context*
is the part of it that is not the method proper: every varying key but the feature type, the SAE's
keys, the pooling, the probe type and the probe's own settings (e.g. `probe.k`, the regime's
settings, the layer). Written when a sweep covers two or more datasets:

- `suite.md`: test AUROC per dataset and method (the mean over replicates; its 95% confidence
  interval when seeds replicate), then each SAE method against the comparisons the report declares
  for it, all at its own context (the same k, regime setting, layer): the hidden state with the same
  probe and pooling, and, for a method that reads every latent, the hidden state with each of the
  suite's baseline probes (`BASELINE_PROBES`); each attention method (`pooling=tokens`) against the
  suite's logistic probe on the last token of the same features and, on the hidden state, each
  baseline on the last token. Wins, ties (|difference| <= `TIE`) and losses over the datasets both
  scored, the mean difference, the two-sided Wilcoxon signed-rank test of the paired differences, and
  Holm's adjustment within the method's declared family: the same family, hence the same p-value,
  whatever else the directory holds (a declared comparison that was not run counts as p = 1 and the
  table says so). With several seeds, how many datasets keep their win/tie/loss verdict at every seed.
  Comparisons with a bag of words at the same context follow, unadjusted;
- `suite.csv`: one row per dataset and method;
- `suite_<key>.png`: mean test AUROC over datasets (with its 95% interval) against each of
  `CURVE_KEYS` that the sweep varies, one line per other setting, over the datasets present at
  every point of that line (n in the legend).

Only test scores of cells chosen by the sweep's design appear: nothing here picks a winner per dataset.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from mosaic.features.pooling import TOKEN_READERS
from mosaic.report.cells import Cell, confidence_interval
from mosaic.report.transfer import MISSING

# Two methods tie on a dataset when their test AUROCs differ by at most this much.
TIE = 0.005
# Keys whose values are the x-axis of a suite curve (the suite's k-sparse and regime sweeps).
CURVE_KEYS = ("probe.k", "regime.n_train", "regime.positive_fraction", "regime.label_noise")
# The suite's baselines on the hidden state, each declared as a comparison for an SAE method that reads every latent.
BASELINE_PROBES = ("pca", "knn", "mlp", "boosted_trees", "diff_of_means")
# The suite's own probe: logistic regression (MOSAIC's Lightning one or sklearn's), read on the last token.
LOGISTIC_PROBES = ("linear", "sklearn")
SUITE_PROBE, SUITE_POOLING = "sklearn", "last"


def _is_method_key(key: str) -> bool:
    """Keys that make a method what it is, rather than the context it is compared in: its features, SAE, pooling,
    probe type and the probe's own settings (not its k: a k-sparse method is compared at its k)."""
    return key in ("features.type", "pooling.method") or key.startswith("sae.") or (
        key.startswith("probe.") and key != "probe.k")


def _probe_settings(cell: Cell) -> list[tuple[str, Any]]:
    """The probe's own settings that vary in the sweep (its C grid, its learning rates, ...)."""
    return sorted((key, str(value)) for key, value in cell.setting.items()
                  if key.startswith("probe.") and key not in ("probe.type", "probe.k"))


def _label(setting: dict[str, Any], leave_out: str | None = None) -> str:
    parts = [f"{key}={'all' if key == 'probe.k' and value is None else value}"
             for key, value in sorted(setting.items()) if not key.startswith("dataset.") and key != leave_out]
    return ", ".join(parts) or "(one method)"


def _row(cell: Cell) -> str:
    """A dataset's row name: its name, and any other dataset key that varies (a `limit`, a path)."""
    others = [f"{key}={value}" for key, value in sorted(cell.setting.items())
              if key.startswith("dataset.") and key not in ("dataset.name", "dataset.task")]
    return ", ".join([cell.dataset, *others])


def _context(cell: Cell) -> str:
    return _label({k: v for k, v in cell.setting.items() if not _is_method_key(k)})


def _scores(cells: list[Cell]) -> dict[str, dict[str, Cell]]:
    """method -> dataset row -> cell, methods in sorted order."""
    table: dict[str, dict[str, Cell]] = defaultdict(dict)
    for cell in cells:
        table[_label(cell.setting)][_row(cell)] = cell
    return dict(sorted(table.items()))


def _verdict(difference: float) -> int:
    return 0 if abs(difference) <= TIE else int(np.sign(difference))


def _stable(ours: Cell, theirs: Cell) -> bool | None:
    """Whether every seed both cells ran gives the same win / tie / loss; None with fewer than two shared seeds."""
    mine = {row["seed"]: row["auroc"] for row in ours.rows if row["auroc"] is not None}
    other = {row["seed"]: row["auroc"] for row in theirs.rows if row["auroc"] is not None}
    shared = sorted(set(mine) & set(other))
    if len(shared) < 2 or (ours.n < 2 and theirs.n < 2):
        return None
    return len({_verdict(mine[seed] - other[seed]) for seed in shared}) == 1


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
    stable = [found for d in common if (found := _stable(ours[d], theirs[d])) is not None]
    return {"datasets": len(common), "wins": int((differences > TIE).sum()),
            "ties": int((abs(differences) <= TIE).sum()), "losses": int((differences < -TIE).sum()),
            "mean_difference": float(differences.mean()), "p_value": p_value,
            "stable_verdicts": None if not stable else f"{sum(stable)} of {len(stable)}"}


def holm(p_values: list[float], family_size: int) -> list[float]:
    """Holm's step-down adjustment of `p_values` within a family of `family_size` comparisons; members of the
    family that were not run count as p = 1, so they rank last and change nothing but the size."""
    order = np.argsort(p_values)
    adjusted, running = np.empty(len(p_values)), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (family_size - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted.tolist()


def _declared(cell: Cell) -> list[tuple[str, str, str]]:
    """The (features, probe, pooling) baselines a method is compared with, each at the method's own context.

    An SAE method: the hidden state with the same probe and pooling, and, for the logistic probe on every
    latent, the hidden state with each suite baseline. A method that learns its pooling over every token
    (`TOKEN_READERS`): the suite's own probe (logistic regression on the last token) on the same features,
    and, on the hidden state, each suite baseline on the last token too.
    """
    probe, pooling, features = cell.first("probe"), cell.first("pooling"), cell.first("features")
    own = []
    if cell.first("reads_sae"):
        own.append(("hidden", probe, pooling))
        if cell.first("k") is None and probe in LOGISTIC_PROBES:
            own += [("hidden", baseline, pooling) for baseline in BASELINE_PROBES]
    if probe in TOKEN_READERS:
        own.append((features, SUITE_PROBE, SUITE_POOLING))
        if not cell.first("reads_sae"):
            own += [("hidden", baseline, SUITE_POOLING) for baseline in BASELINE_PROBES]
    return own


def _comparisons(table: dict[str, dict[str, Cell]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each method's declared comparisons (Holm within the method's family), and each SAE method's comparison with
    a bag of words at the same context (not adjusted)."""
    def first(method: str) -> Cell:
        return next(iter(table[method].values()))

    candidates: dict[tuple[str, str, str, str], list[str]] = defaultdict(list)
    for method in table:
        cell = first(method)
        candidates[(_context(cell), cell.first("features"), cell.first("probe"), cell.first("pooling"))].append(method)

    def baseline(cell: Cell, features: str, probe: str, pooling: str) -> str | None:
        """The method run at `cell`'s context with these features, probe and pooling (with the same probe, at the
        same probe settings)."""
        found = candidates.get((_context(cell), features, probe, pooling), [])
        if probe == cell.first("probe"):
            found = [method for method in found if _probe_settings(first(method)) == _probe_settings(cell)]
        return found[0] if found else None

    declared, exploratory = [], []
    for ours in table:
        cell = first(ours)
        family = []
        for features, probe, pooling in _declared(cell):
            theirs = baseline(cell, features, probe, pooling)
            paired = None if theirs is None else _paired(table[ours], table[theirs])
            pooled = "" if pooling == cell.first("pooling") else f", pooling={pooling}"
            family.append({"sae": ours, "baseline": theirs or f"features={features}, probe={probe}{pooled} (not run)",
                           **(paired or {"datasets": 0})})
        ran = [c for c in family if "p_value" in c]
        for comparison, adjusted in zip(ran, holm([c["p_value"] for c in ran], len(family)), strict=True):
            comparison["p_holm"] = adjusted
        for comparison in family:
            comparison["family"] = f"{len(ran)} of {len(family)}"
        declared += family
        bow = baseline(cell, "bow", cell.first("probe"), cell.first("pooling")) if cell.first("reads_sae") else None
        if bow is not None and (paired := _paired(table[ours], table[bow])) is not None:
            exploratory.append({"sae": ours, "baseline": bow, **paired})
    return declared, exploratory


def _cell_text(cell: Cell | None) -> str:
    if cell is None or cell.auroc is None:
        return MISSING
    interval = cell.auroc_ci95
    return f"{cell.auroc:.3f}" + ("" if interval is None else f" ({interval[0]:.3f}–{interval[1]:.3f})")


def _comparison_row(c: dict[str, Any]) -> str:
    if "p_value" not in c:
        return f"| {c['sae']} | {c['baseline']} | 0 | {MISSING} | {MISSING} | {MISSING} | {MISSING} | {MISSING} |"
    adjusted = f"{c['p_holm']:.3g}" if "p_holm" in c else MISSING
    return (f"| {c['sae']} | {c['baseline']} | {c['datasets']} | {c['wins']} / {c['ties']} / {c['losses']} | "
            f"{c['mean_difference']:+.3f} | {c['p_value']:.3g} | {adjusted} | {c['stable_verdicts'] or MISSING} |")


def _markdown(table: dict[str, dict[str, Cell]], declared: list[dict[str, Any]],
              exploratory: list[dict[str, Any]]) -> str:
    methods = list(table)
    datasets = sorted({dataset for column in table.values() for dataset in column})
    lines = ["# Suite report", "", f"Test AUROC, mean over replicates (95% confidence interval when seeds replicate); "
             f"{len(datasets)} datasets, {len(methods)} methods.", "",
             "| dataset | " + " | ".join(methods) + " |", "| --- |" + " --- |" * len(methods)]
    lines += ["| " + " | ".join([dataset, *(_cell_text(table[m].get(dataset)) for m in methods)]) + " |"
              for dataset in datasets]
    lines += ["", f"## Methods against their declared baselines (tie: |AUROC difference| <= {TIE})", ""]
    if not declared:
        return "\n".join(lines + ["No SAE or attention method in this sweep.", ""])
    header = ["| method | baseline | datasets | wins / ties / losses | mean difference | Wilcoxon p | Holm p | "
              "verdict stable across seeds |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines += ["Each SAE method is compared, at its own settings (k, regime, layer), with the hidden state under the "
              "same probe and, when it reads every latent, under each suite baseline "
              f"({', '.join(BASELINE_PROBES)}). Each attention method (pooling=tokens) is compared with the suite's "
              "logistic probe on the last token of the same features and, on the hidden state, with each baseline "
              "on the last token. Wilcoxon p: two-sided signed-rank test of the paired differences "
              "beyond the tie band. Holm: adjusted within the method's declared comparisons (its family), a "
              "comparison not run counting as p = 1. Verdict stable: datasets whose win / tie / loss is the same "
              "at every seed both methods ran.", "", *header]
    lines += [_comparison_row(c) for c in declared]
    incomplete = sorted({c["sae"] for c in declared if "p_value" not in c})
    if incomplete:
        lines += ["", f"Families not complete for {len(incomplete)} method(s): their Holm p-values would change once "
                  "the missing comparisons ran."]
    if exploratory:
        lines += ["", "## SAE methods against a bag of words (not in a declared family: p not adjusted)", "", *header]
        lines += [_comparison_row(c) for c in exploratory]
    return "\n".join(lines + [""])


def _curve(cells: list[Cell], key: str, path: Path) -> Path | None:
    """Mean test AUROC over datasets against `key`, one line per other setting, each over the datasets it has at
    every point; None if `key` does not vary."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines: dict[str, dict[float, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for cell in cells:
        x = cell.setting.get(key)
        if isinstance(x, (int, float)) and not isinstance(x, bool) and cell.auroc is not None:
            lines[_label(cell.setting, leave_out=key)][x][_row(cell)] = cell.auroc
    if len({x for points in lines.values() for x in points}) < 2:
        return None
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name, points in sorted(lines.items()):
        xs = sorted(points)
        everywhere = set.intersection(*(set(points[x]) for x in xs))
        if not everywhere:
            continue
        values = {x: [points[x][dataset] for dataset in sorted(everywhere)] for x in xs}
        intervals = [confidence_interval(values[x]) or (np.mean(values[x]),) * 2 for x in xs]
        axes.plot(xs, [np.mean(values[x]) for x in xs], marker="o", label=f"{name} (n={len(everywhere)})")
        axes.fill_between(xs, [low for low, _ in intervals], [high for _, high in intervals], alpha=0.15)
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
    declared, exploratory = _comparisons(table)
    written = {"suite_markdown": out_dir / "suite.md", "suite_csv": out_dir / "suite.csv"}
    written["suite_markdown"].write_text(_markdown(table, declared, exploratory))
    rows = [{"dataset": dataset, "method": method, "n": cell.n, "seeds": cell.seeds, "auroc": cell.auroc,
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
