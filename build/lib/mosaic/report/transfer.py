"""Train x test transfer matrices from jobs that scored their probe on other datasets or models.

Rows are what a probe was trained on (the `dataset` or `model` name), columns where it was scored.
A matrix holds one setting: every other varying key of the sweep fixed, seeds averaged, so probes
of different experiments are never averaged into one cell. A pair no job scored is None.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mosaic.infra.errors import MosaicError
from mosaic.record import Results
from mosaic.report.plots import pyplot, save

MISSING = "—"
# What a transfer matrix's rows are, per kind of target: the config group a probe was trained with.
TRANSFER_SOURCE = {"datasets": "dataset", "models": "model"}


def transfer_matrices(results: list[Results], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Train x test macro F1 matrices, one per kind and setting (`rows` are the jobs' report rows)."""
    groups: dict[tuple, dict[str, Any]] = {}
    sources: dict[tuple[str, str], str] = {}
    for result, row in zip(results, rows):
        for kind, source_key in TRANSFER_SOURCE.items():
            targets = {} if result.transfer is None else getattr(result.transfer, kind)
            if not targets:
                continue
            # A row is named by the config's name: two different configs under one name would be averaged.
            identity = json.dumps(result.config[source_key], sort_keys=True)
            if sources.setdefault((source_key, row[source_key]), identity) != identity:
                raise MosaicError(f"two jobs trained on different {source_key} configs are both named "
                                  f"{row[source_key]!r}: give each its own {source_key}.name")
            # Every other varying key is part of the setting (seeds aside): experiments never share a matrix.
            setting = {key: value for key, value in row["cell"].items() if key.split(".")[0] != source_key}
            group = groups.setdefault((kind, json.dumps(setting, sort_keys=True, default=str)),
                                      {"kind": kind, "setting": setting, "cells": {}})
            for target, metrics in targets.items():
                group["cells"].setdefault((row[source_key], target), []).append(metrics.macro_f1)
    matrices = []
    for group in groups.values():
        tests = list(dict.fromkeys(target for _, target in group["cells"]))
        trains = list(dict.fromkeys(source for source, _ in group["cells"]))
        trains.sort(key=lambda name: tests.index(name) if name in tests else len(tests))
        matrix = [[float(np.mean(group["cells"][(a, b)])) if (a, b) in group["cells"] else None for b in tests]
                  for a in trains]
        matrices.append({"kind": group["kind"], "setting": group["setting"], "train": trains, "test": tests,
                         "macro_f1": matrix})
    return matrices


def setting_text(setting: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in setting.items()) or "the sweep's one setting"


def transfer_tables(matrices: list[dict[str, Any]]) -> str:
    lines = []
    for matrix in matrices:
        lines += [f"## Transfer across {matrix['kind']}: {setting_text(matrix['setting'])}", "",
                  "test macro F1 of the probe trained on the row's data, scored on the column's test split "
                  "(mean over seeds)", "",
                  "| trained on | " + " | ".join(matrix["test"]) + " |", "| --- |" + " --- |" * len(matrix["test"])]
        for name, values in zip(matrix["train"], matrix["macro_f1"]):
            lines.append(f"| {name} | " + " | ".join(MISSING if v is None else f"{v:.3f}" for v in values) + " |")
        lines.append("")
    return "\n".join(lines)


def transfer_heatmaps(matrices: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    plt = pyplot()
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
        axes.set(xlabel="tested on", ylabel="trained on", title=setting_text(matrix["setting"]))
        axes.title.set_fontsize(7)
        figure.colorbar(image, ax=axes, label="macro F1")
        written.append(save(figure, out_dir / f"transfer_{matrix['kind']}_{number}.png"))
    return written
