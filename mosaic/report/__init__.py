"""Turn a sweep directory into tables and plots: `python -m mosaic report multirun/DATE/TIME`.

Reads every `results.json` below the directory (and nothing else: a report never reruns a job)
and writes `report.md` (a table per dataset, one row per configuration: the keys that vary across
the sweep's jobs, the number of seeds averaged, the hyper-parameters the probe chose, validation,
test and cross-validation macro F1; the best row, chosen on CV or validation scores, in bold),
`report.csv` (one row per job) and PNG plots (`mosaic.report.plots`). Jobs that scored transfer
targets also give train x test matrices (`mosaic.report.transfer`); a sweep over several datasets
also gives the suite report (`mosaic.report.suite`); jobs that used an SAE give its quality table
(`mosaic.report.quality`, `sae_quality.csv`), and over several datasets each SAE's quality beside
its probes' scores (`mosaic.report.saes`, `sae_tradeoff.png`). Beside them, `explore.html`
(`mosaic.report.explore`): the sweep's jobs with each SAE probe's top latents and the contexts
where they fire. How cells are formed and the best is chosen is `mosaic.report.cells`.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

from mosaic.infra.errors import first_line
from mosaic.record import Results
from mosaic.report.attended import attended_section
from mosaic.report.cells import (
    Cell,
    Comparable,
    cells_of,
    comparable_groups,
    job_row,
    shown_keys,
    varying_keys,
)
from mosaic.report.explore import PAGE_FILE, context_rows, write_page
from mosaic.report.jobs import finished_jobs
from mosaic.report.plots import dataset_plots
from mosaic.report.quality import quality_rows, write_quality
from mosaic.report.saes import write_sae_comparison
from mosaic.report.suite import write_suite
from mosaic.report.transfer import MISSING, transfer_heatmaps, transfer_matrices, transfer_tables

_BASIS_TEXT = {"cv": "cross-validation macro F1 on train+val", "val": "validation macro F1"}


def _score(value: float | None, spread: float | None = None) -> str:
    if value is None:
        return MISSING
    return f"{value:.3f}" + ("" if spread is None else f" ± {spread:.3f}")


def _interval(bounds: tuple[float, float] | None) -> str:
    return MISSING if bounds is None else f"{bounds[0]:.3f}–{bounds[1]:.3f}"


def _configuration(cell: Cell, keys: list[str]) -> str:
    """The cell's values of the table's varying keys, less those it does not have (a hidden state's SAE keys)."""
    return (", ".join(f"{key}={cell.setting[key]}" for key in keys if key in cell.setting)
            or "(the sweep's only configuration)")


def _selection_text(groups: list[Comparable], names: dict[int, str]) -> list[str]:
    """How the bold rows were chosen: one sentence per group of comparable rows (or why a group has none)."""
    if len(groups) == 1:
        group = groups[0]
        if group.best is None:
            return [f"No row is bold: {group.why_none}."]
        return [f"**Bold**: the best row, chosen on {_BASIS_TEXT[group.basis]} (the test split picks nothing)."]
    lines = [f"The rows validate on {len(groups)} different sets of documents or labels (column `selection set`), "
             "so each set has its own best (**bold**), chosen on its own scores; rows of different sets are not "
             "ranked against each other, and the test split picks nothing."]
    lines += [f"- set {names[id(group)]}: " + (f"chosen on {_BASIS_TEXT[group.basis]}" if group.best is not None
                                               else f"no best, {group.why_none}") for group in groups]
    return lines


def _duplicates_text(cells: list[Cell]) -> list[str]:
    """What a table's jobs kept of the dataset's duplicates, and texts whose copies disagree on the label."""
    rows = [row for cell in cells for row in cell.rows]
    lines = []
    kept = [row for row in rows if row["dedup"] is False and row["test_copies"] is not None]
    if kept:
        worst = max(kept, key=lambda row: row["test_copies"] / max(1, row["test_documents"] or 0))
        lines.append(f"Duplicates kept (`dataset.dedup=false`, e.g. the peer's protocol): in the job where they are "
                     f"most, {worst['test_copies']} of {worst['test_documents']} test documents have a copy in "
                     "training or validation, which favours probes that memorise.")
    conflicting = max((row["conflicting_texts"] or 0 for row in rows), default=0)
    if conflicting:
        lines.append(f"{conflicting} texts appear with conflicting labels"
                     + (" (dropped)." if any(row["dedup"] for row in rows) else " (kept)."))
    return lines


def _tables(cells: list[Cell], keys: list[str]) -> str:
    lines = ["# MOSAIC report", ""]
    for dataset in sorted({cell.dataset for cell in cells}):
        in_table = [c for c in cells if c.dataset == dataset]
        # Within a table, only the keys that vary between its own cells.
        shown = shown_keys([key for key in varying_keys([c.setting for c in in_table]) if key in keys])
        groups = comparable_groups(in_table)
        names = {id(group): chr(ord("A") + i) for i, group in enumerate(groups)}
        group_of = {id(cell): group for group in groups for cell in group.cells}
        several = len(groups) > 1
        subset = sorted(in_table, key=lambda c: (names[id(group_of[id(c)])], _configuration(c, shown)))
        lines += [f"## {dataset}", "",
                  "One row per configuration (the keys that vary across the sweep). n counts replicates: seeds whose "
                  "results can differ (a seed that reaches no random draw repeats the same result). Test macro F1 is "
                  "the mean ± sample std over replicates, with the 95% confidence interval of that mean (Student's "
                  "t, two or more replicates, clipped to [0, 1]); AUROC is the mean over replicates. CV: stratified "
                  "k-fold on train+val, mean ± std over folds († not held out: the SAE saw the folds it scores).", "",
                  *_selection_text(groups, names), "", *_duplicates_text(in_table)]
        if lines[-1] != "":
            lines.append("")
        lines += ["| configuration | " + ("selection set | " if several else "") + "n | chosen | validation macro F1 "
                  "| test macro F1 | test 95% CI | test AUROC | CV macro F1 (train+val) |",
                  "| --- | " + ("--- | " if several else "") + "--- | --- | --- | --- | --- | --- | --- |"]
        behaviour = any(cell.base_rate is not None for cell in subset)
        if behaviour:  # labels are an answering model's outcomes: the base rate goes next to every score
            lines[-2] += " test accuracy | base rate (majority accuracy) |"
            lines[-1] += " --- | --- |"
            lines[-2:-2] = ["Labels: whether the answering model answered correctly. Base rate: the share of test "
                            "documents it got right; majority accuracy: always predicting the commoner outcome.", ""]
        for cell in subset:
            cv = _score(cell.cv, cell.cv_std) + ("" if cell.cv_held_out or cell.cv is None else " †")
            group = group_of[id(cell)]
            values = [_configuration(cell, shown), cell.n_text, cell.chosen or MISSING, _score(cell.val),
                      _score(cell.test, cell.test_std), _interval(cell.test_ci95), _score(cell.auroc), cv]
            if behaviour:
                values += [_score(cell.accuracy), f"{_score(cell.base_rate)} ({_score(cell.majority_accuracy)})"]
            if cell is group.best:
                values[0], values[4] = f"**{values[0]}**", f"**{values[4]}**"
            if several:
                values.insert(1, names[id(group)])
            lines.append("| " + " | ".join(values) + " |")
        lines.append("")
    return "\n".join(lines)


def write_report(sweep_dir: Path, out_dir: Path | None = None, job_dirs: list[Path] | None = None) -> dict[str, Path]:
    """Write report.md, report.csv and PNG plots for every job under `sweep_dir` (or `job_dirs` only).

    Returns the written paths by name.
    """
    out_dir = out_dir or sweep_dir
    jobs = finished_jobs(sweep_dir, job_dirs)
    results = [result for _, result in jobs]
    if not results:
        raise FileNotFoundError(f"no results.json under {sweep_dir}")
    keys = varying_keys([r.config for r in results])
    rows = [job_row(r, keys) for r in results]
    cells = cells_of(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    matrices = transfer_matrices(results, rows)
    markdown = out_dir / "report.md"
    quality, quality_files = write_quality(results, out_dir)
    compared, tradeoffs = write_sae_comparison(results, out_dir)
    markdown.write_text("\n".join([_tables(cells, keys), transfer_tables(matrices), quality, compared,
                                   attended_section(results)]).rstrip() + "\n")
    table_rows = [{**{k: v for k, v in row.items() if k != "cell"}, **row["cell"]} for row in rows]
    table = out_dir / "report.csv"
    with table.open("w", newline="") as stream:
        # Every row's keys, in first-seen order: a hidden state's row has no SAE columns (left empty).
        writer = csv.DictWriter(stream, fieldnames=list(dict.fromkeys(key for row in table_rows for key in row)))
        writer.writeheader()
        writer.writerows(table_rows)
    plots = dataset_plots(cells, out_dir)
    written = {"markdown": markdown, "csv": table, **quality_files, **tradeoffs}
    if matrices:
        written["transfer"] = out_dir / "transfer.json"
        written["transfer"].write_text(json.dumps(matrices, indent=2))
        plots += transfer_heatmaps(matrices, out_dir)
    written.update({p.stem: p for p in plots})
    tables = {"report": table_rows, "sae_quality": quality_rows(results)}
    try:
        written["explore"], page = write_page(sweep_dir, out_dir / PAGE_FILE, jobs=jobs)
        tables["latent_contexts"] = context_rows(page)
    except Exception as error:  # noqa: BLE001 - the page is rebuilt by `mosaic explore`; the tables stand
        print(f"mosaic: report: explore.html not written ({first_line(error)}); rerun `python -m mosaic explore "
              f"{sweep_dir}`", file=sys.stderr)
    if len({cell.dataset for cell in cells}) >= 2:
        suite, tables["suite"] = write_suite(cells, out_dir)
        written.update(suite)
    _log_to_wandb(results, {name: rows for name, rows in tables.items() if rows}, written, sweep_dir, out_dir)
    return written


def _log_to_wandb(results: list[Results], tables: dict[str, list[dict[str, Any]]], written: dict[str, Path],
                  sweep_dir: Path, out_dir: Path) -> None:
    """The same plots into a W&B run of the sweep's project, when its jobs logged to W&B."""
    from omegaconf import OmegaConf

    from mosaic.record import RunLabels, Tracker, keeps_runs, sweep_group

    logged = [r.config["logger"] for r in results if keeps_runs(r.config.get("logger", {}))]
    if not logged:
        return
    group = sweep_group(sweep_dir)
    tracker = Tracker(OmegaConf.create(logged[0]), {"sweep_dir": str(sweep_dir), "jobs": len(results)}, out_dir,
                      RunLabels("report", group, ("report",)), job_type="report")
    try:
        tracker.log_report(written, tables)
    finally:
        tracker.finish()
