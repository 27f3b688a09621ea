"""Turn a sweep directory into tables and plots: `python -m mosaic report multirun/DATE/TIME`.

Reads every `results.json` below the directory (and nothing else: a report never reruns a job)
and writes `report.md` (a table per dataset: rows = features x pooling x binarize, columns =
model / layer / width, cells = macro F1 with the cross-validation std when jobs ran CV, the best
cell in bold), `report.csv` (one row per
job) and PNG plots. A cell that no job filled is shown as missing ("—"), never as zero.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

MISSING = "—"


def load_results(sweep_dir: Path) -> list[dict[str, Any]]:
    """Every readable `results.json` under `sweep_dir`, in path order."""
    found = []
    for path in sorted(sweep_dir.rglob("results.json")):
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


def _plots(rows: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for dataset in sorted({r["dataset"] for r in rows}):
        subset = [r for r in rows if r["dataset"] == dataset]
        figure, axes = plt.subplots(1, 2, figsize=(11, 4))
        series: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for r in subset:
            if r["features"] != "bow":
                series[f"{r['model']} {r['features']} {r['width']}".strip()][r["layer"]].append(r["macro_f1"])
        for label, points in sorted(series.items()):
            layers = sorted(points)
            axes[0].plot(layers, [max(points[x]) for x in layers], marker="o", label=label)
        axes[0].set(title=f"{dataset}: best macro F1 by layer (over pooling, binarize)", xlabel="layer",
                    ylabel="macro F1", ylim=(0, 1))
        if series:
            axes[0].legend(fontsize=7)
        groups: dict[str, list[float]] = defaultdict(list)
        for r in subset:
            groups[f"{r['features']}\n{r['pooling']}/{r['binarize']}"].append(r["macro_f1"])
        labels = sorted(groups)
        axes[1].bar(range(len(labels)), [_mean(groups[k]) for k in labels])
        axes[1].set_xticks(range(len(labels)), labels, fontsize=6, rotation=60)
        axes[1].set(title=f"{dataset}: features x pooling x binarize", ylabel="macro F1", ylim=(0, 1))
        figure.tight_layout()
        path = out_dir / f"report_{dataset}.png"
        figure.savefig(path, dpi=120)
        plt.close(figure)
        written.append(path)
    return written


def write_report(sweep_dir: Path, out_dir: Path | None = None) -> dict[str, Path]:
    """Write report.md, report.csv and PNG plots for every job under `sweep_dir`; returns their paths."""
    out_dir = out_dir or sweep_dir
    rows = [_row(r) for r in load_results(sweep_dir)]
    if not rows:
        raise FileNotFoundError(f"no results.json under {sweep_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = out_dir / "report.md"
    markdown.write_text(_tables(rows))
    table = out_dir / "report.csv"
    with table.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plots = _plots(rows, out_dir)
    return {"markdown": markdown, "csv": table, **{p.stem: p for p in plots}}
