"""Turn a sweep directory into tables and plots: `python -m mosaic report multirun/DATE/TIME`.

Reads every `results.json` below the directory (and nothing else: a report never reruns a job)
and writes `report.md` (a table per dataset: rows = features x pooling x binarize, columns =
model / layer / width, cells = macro F1 with the cross-validation std when jobs ran CV, the best
cell in bold), `report.csv` (one row per
job) and PNG plots. A cell that no job filled is shown as missing ("—"), never as zero.

Jobs that scored their probe on `transfer` targets also give train x test matrices (rows: the
dataset or model a probe was trained on; columns: where it was scored), one per setting, in
`transfer.json`, in report.md and as heatmaps.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from mosaic.errors import MosaicError
from mosaic.record import FAILURE_FILE

MISSING = "—"


def load_results(sweep_dir: Path, job_dirs: list[Path] | None = None) -> list[dict[str, Any]]:
    """Every readable `results.json` under `sweep_dir` (or in `job_dirs`), in path order.

    A job directory whose last attempt failed (`failure.json`) is left out, whatever it held before.
    """
    paths = sorted(sweep_dir.rglob("results.json")) if job_dirs is None else [d / "results.json" for d in job_dirs]
    found = []
    for path in paths:
        if (path.parent / FAILURE_FILE).exists():
            continue
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return found


def _row(results: dict[str, Any]) -> dict[str, Any]:
    cfg, features = results["config"], results["features"]
    sae = features.get("sae") or {}
    width = cfg["sae"]["width"] if sae.get("source") == "gemma_scope" else features.get("width")
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
        "macro_f1": results["metrics"]["macro_f1"],
        "accuracy": results["metrics"]["accuracy"],
        "auroc": results["metrics"]["auroc"],
        "cv_macro_f1_std": (results["metrics"].get("cv") or {}).get("macro_f1_std"),
    }


def _column(row: dict[str, Any]) -> str:
    layer = "" if row["features"] == "bow" else f" L{row['layer']}"
    width = f" {row['width']}" if row["width"] else ""
    return f"{row['model']}{layer}{width}"


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _tables(rows: list[dict[str, Any]]) -> str:
    lines = ["# MOSAIC report", ""]
    for dataset in sorted({r["dataset"] for r in rows}):
        subset = [r for r in rows if r["dataset"] == dataset]
        cells: dict[tuple[str, str], list[float]] = defaultdict(list)
        spreads: dict[tuple[str, str], list[float | None]] = defaultdict(list)
        for r in subset:
            key = (f"{r['features']} / {r['pooling']} / {r['binarize']}", _column(r))
            cells[key].append(r["macro_f1"])
            spreads[key].append(r["cv_macro_f1_std"])
        row_keys = sorted({k[0] for k in cells})
        columns = sorted({k[1] for k in cells})
        best = max(_mean(v) for v in cells.values())
        lines += [f"## {dataset}", "", "macro F1 on the test split (mean over seeds and probes where several ran; "
                  "± the cross-validation std where the jobs ran CV; best in bold)", "",
                  "| features / pooling / binarize | " + " | ".join(columns) + " |",
                  "| --- |" + " --- |" * len(columns)]
        for key in row_keys:
            values = []
            for column in columns:
                if (key, column) not in cells:
                    values.append(MISSING)
                    continue
                value = _mean(cells[(key, column)])
                text = f"{value:.3f}"
                if None not in spreads[(key, column)]:
                    text += f" ± {_mean(spreads[(key, column)]):.3f}"
                values.append(f"**{text}**" if value == best else text)
            lines.append(f"| {key} | " + " | ".join(values) + " |")
        lines.append("")
    return "\n".join(lines)


_FEATURE_COLOURS = {"sae": "tab:orange", "hidden": "tab:blue", "bow": "tab:green"}


def _by_layer(axes, rows: list[dict[str, Any]], dataset: str) -> None:
    """Best macro F1 per layer for each model / feature type / width; bag of words as a flat line."""
    series: dict[tuple[str, str, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["features"] != "bow":
            series[(r["model"], r["features"], r["width"])][r["layer"]].append(r["macro_f1"])
    layers = sorted({layer for points in series.values() for layer in points})
    for (model, features, width), points in sorted(series.items()):
        xs = sorted(points)
        axes.plot(xs, [max(points[x]) for x in xs], marker="o", color=_FEATURE_COLOURS[features],
                  linestyle="-" if features == "sae" else "--", label=f"{model} {features} {width}".strip())
    for model in sorted({r["model"] for r in rows if r["features"] == "bow"}):
        best = max(r["macro_f1"] for r in rows if r["features"] == "bow" and r["model"] == model)
        axes.axhline(best, color=_FEATURE_COLOURS["bow"], linestyle=":", label="bag of words")
    if layers:
        axes.set_xticks(layers)
        axes.set_xlim(layers[0] - 0.5, layers[-1] + 0.5)
    axes.set(title=f"{dataset}: best macro F1 by layer", xlabel="layer", ylabel="macro F1", ylim=(0, 1))
    axes.legend(fontsize=7, loc="lower right")


def _binarize_by_pooling(axes, rows: list[dict[str, Any]], dataset: str) -> None:
    """Mean macro F1 with and without binarization, per feature type and pooling."""
    groups = sorted({(r["features"], r["pooling"]) for r in rows})
    for offset, method in ((-0.2, "none"), (0.2, "threshold")):
        values = [[r["macro_f1"] for r in rows if (r["features"], r["pooling"]) == g and r["binarize"] == method]
                  for g in groups]
        xs = [i + offset for i, v in enumerate(values) if v]
        axes.bar(xs, [_mean(v) for v in values if v], width=0.4, label=f"binarize={method}",
                 color="tab:gray" if method == "none" else "tab:purple")
    axes.set_xticks(range(len(groups)), [f"{f}\n{p}" for f, p in groups], fontsize=7)
    axes.set(title=f"{dataset}: binarize on/off per pooling", ylabel="macro F1", ylim=(0, 1))
    axes.legend(fontsize=7, loc="lower right")


def _feature_types(axes, rows: list[dict[str, Any]], dataset: str) -> None:
    """The best cell of each feature type: SAE vs hidden state vs bag of words."""
    kinds = [k for k in _FEATURE_COLOURS if any(r["features"] == k for r in rows)]
    best = [max(r["macro_f1"] for r in rows if r["features"] == k) for k in kinds]
    bars = axes.bar(kinds, best, color=[_FEATURE_COLOURS[k] for k in kinds])
    axes.bar_label(bars, fmt="%.3f", fontsize=8)
    axes.set(title=f"{dataset}: best cell per feature type", ylabel="macro F1", ylim=(0, 1))


def _pyplot():
    """matplotlib's pyplot on the file-only backend (reports run on headless nodes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    _pyplot().close(figure)
    return path


def _plots(rows: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    plt = _pyplot()

    written = []
    for dataset in sorted({r["dataset"] for r in rows}):
        subset = [r for r in rows if r["dataset"] == dataset]
        figure, axes = plt.subplots(1, 3, figsize=(15, 4.2), width_ratios=[1.1, 1.4, 0.7])
        _by_layer(axes[0], subset, dataset)
        _binarize_by_pooling(axes[1], subset, dataset)
        _feature_types(axes[2], subset, dataset)
        written.append(_save(figure, out_dir / f"report_{dataset}.png"))
    return written


# What a transfer matrix's rows are, per kind of target: the config key a probe was trained with.
_TRANSFER_SOURCE = {"datasets": "dataset", "models": "model"}


def transfer_matrices(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Train x test macro F1 matrices from jobs with transfer scores, one per kind and setting.

    A setting is everything but the varied axis (model or dataset, layer, width, features,
    pooling, binarize, probe); cells average over seeds; a pair no job scored is None.
    """
    groups: dict[tuple, dict[str, Any]] = {}
    sources: dict[tuple[str, str], str] = {}
    for result in results:
        row = _row(result)
        for kind, source_key in _TRANSFER_SOURCE.items():
            targets = (result.get("transfer") or {}).get(kind) or {}
            if not targets:
                continue
            # A row is named by the config's name: two different configs under one name would be averaged.
            identity = json.dumps(result["config"][source_key], sort_keys=True)
            if sources.setdefault((source_key, row[source_key]), identity) != identity:
                raise MosaicError(f"two jobs trained on different {source_key} configs are both named "
                                  f"{row[source_key]!r}: give each its own {source_key}.name")
            setting = {k: v for k, v in row.items() if k in ("dataset", "model", "layer", "width", "features",
                                                             "pooling", "binarize", "probe") and k != source_key}
            group = groups.setdefault((kind, *setting.values()), {"kind": kind, "setting": setting, "cells": {}})
            for target, metrics in targets.items():
                group["cells"].setdefault((row[source_key], target), []).append(metrics["macro_f1"])
    matrices = []
    for group in groups.values():
        tests = list(dict.fromkeys(target for _, target in group["cells"]))
        trains = list(dict.fromkeys(source for source, _ in group["cells"]))
        trains.sort(key=lambda name: tests.index(name) if name in tests else len(tests))
        matrix = [[_mean(group["cells"][(a, b)]) if (a, b) in group["cells"] else None for b in tests] for a in trains]
        matrices.append({"kind": group["kind"], "setting": group["setting"], "train": trains, "test": tests,
                         "macro_f1": matrix})
    return matrices


def _setting_text(setting: dict[str, Any]) -> str:
    return " / ".join(f"{k} {v}" for k, v in setting.items() if v != "")


def _transfer_tables(matrices: list[dict[str, Any]]) -> str:
    lines = []
    for matrix in matrices:
        lines += [f"## Transfer across {matrix['kind']}: {_setting_text(matrix['setting'])}", "",
                  "macro F1 of the probe trained on the row's data, scored on the column's test split", "",
                  "| trained on | " + " | ".join(matrix["test"]) + " |", "| --- |" + " --- |" * len(matrix["test"])]
        for name, values in zip(matrix["train"], matrix["macro_f1"]):
            lines.append(f"| {name} | " + " | ".join(MISSING if v is None else f"{v:.3f}" for v in values) + " |")
        lines.append("")
    return "\n".join(lines)


def _transfer_heatmaps(matrices: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    import numpy as np

    plt = _pyplot()

    written = []
    for number, matrix in enumerate(matrices):
        values = np.array([[np.nan if v is None else v for v in row] for row in matrix["macro_f1"]])
        figure, axes = plt.subplots(figsize=(1.2 * len(matrix["test"]) + 3, 0.8 * len(matrix["train"]) + 2))
        image = axes.imshow(values, vmin=0, vmax=1, cmap="viridis")
        for (i, j), value in np.ndenumerate(values):
            axes.text(j, i, MISSING if np.isnan(value) else f"{value:.2f}", ha="center", va="center",
                      color="white" if np.isnan(value) or value < 0.6 else "black", fontsize=8)
        axes.set_xticks(range(len(matrix["test"])), matrix["test"], rotation=45, ha="right", fontsize=8)
        axes.set_yticks(range(len(matrix["train"])), matrix["train"], fontsize=8)
        axes.set(xlabel="tested on", ylabel="trained on", title=_setting_text(matrix["setting"]))
        axes.title.set_fontsize(7)
        figure.colorbar(image, ax=axes, label="macro F1")
        written.append(_save(figure, out_dir / f"transfer_{matrix['kind']}_{number}.png"))
    return written


def write_report(sweep_dir: Path, out_dir: Path | None = None, job_dirs: list[Path] | None = None) -> dict[str, Path]:
    """Write report.md, report.csv and PNG plots for every job under `sweep_dir` (or `job_dirs` only).

    Returns the written paths by name.
    """
    out_dir = out_dir or sweep_dir
    results = load_results(sweep_dir, job_dirs)
    rows = [_row(r) for r in results]
    if not rows:
        raise FileNotFoundError(f"no results.json under {sweep_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    matrices = transfer_matrices(results)
    markdown = out_dir / "report.md"
    markdown.write_text("\n".join([_tables(rows), _transfer_tables(matrices)]).rstrip() + "\n")
    table = out_dir / "report.csv"
    with table.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plots = _plots(rows, out_dir)
    written = {"markdown": markdown, "csv": table}
    if matrices:
        written["transfer"] = out_dir / "transfer.json"
        written["transfer"].write_text(json.dumps(matrices, indent=2))
        plots += _transfer_heatmaps(matrices, out_dir)
    written.update({p.stem: p for p in plots})
    _log_to_wandb(results, rows, written, sweep_dir, out_dir)
    return written


def _log_to_wandb(results: list[dict[str, Any]], rows: list[dict[str, Any]], written: dict[str, Path],
                  sweep_dir: Path, out_dir: Path) -> None:
    """The same plots into a W&B run of the sweep's project, when its jobs logged to W&B."""
    from omegaconf import OmegaConf

    from mosaic.record import Tracker

    logged = [r["config"]["logger"] for r in results if r["config"].get("logger", {}).get("type") == "wandb"]
    if not logged:
        return
    tracker = Tracker(OmegaConf.create(logged[0]), {"sweep_dir": str(sweep_dir), "jobs": len(results)}, out_dir,
                      name=f"report {sweep_dir.name}", job_type="report")
    try:
        tracker.log_report(written, rows)
    finally:
        tracker.finish()
