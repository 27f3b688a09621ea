"""Report plots as PNG files: the best cell (chosen on validation or CV) by layer, per pooling, per feature type.

Every plotted number is the test macro F1 of a cell chosen on its selection score, never a maximum
taken over test scores, and only among cells that validate on the same documents and labels
(`cells.comparable_groups`): a dataset whose cells validate on several sets (a regime sweep) gets one
figure per set, and a set too small to rank gets none.
"""

from __future__ import annotations

from pathlib import Path

from mosaic.report.cells import Cell, Comparable, best_by, comparable_groups

# Each feature type's colour in every plot (a type without one gets matplotlib's next).
FEATURE_COLOURS = {"sae": "tab:orange", "hidden": "tab:blue", "bow": "tab:green"}


def pyplot():
    """matplotlib's pyplot on the file-only backend (reports run on headless nodes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot().close(figure)
    return path


def _by_layer(axes, group: Comparable, dataset: str) -> None:
    """Per model / feature type / width, the best cell of each layer (solid for SAE latents); features that read no
    layer (a bag of words) as a flat line at their best cell."""
    chosen = best_by(group, "model", "features", "width", "layer", "reads_sae")
    series: dict[tuple, dict[int, float]] = {}
    for (model, features, width, layer, reads_sae), cell in chosen.items():
        if layer is None:
            axes.axhline(cell.test, color=FEATURE_COLOURS.get(features), linestyle=":", label=f"{features} ({model})")
        else:
            series.setdefault((model, features, width, reads_sae), {})[layer] = cell.test
    layers = sorted({layer for points in series.values() for layer in points})
    for (model, features, width, reads_sae), points in sorted(series.items()):
        xs = sorted(points)
        axes.plot(xs, [points[x] for x in xs], marker="o", color=FEATURE_COLOURS.get(features),
                  linestyle="-" if reads_sae else "--", label=f"{model} {features} {width}".strip())
    if layers:
        axes.set_xticks(layers)
        axes.set_xlim(layers[0] - 0.5, layers[-1] + 0.5)
    axes.set(title=f"{dataset}: best cell by layer", xlabel="layer", ylabel="test macro F1", ylim=(0, 1))
    axes.legend(fontsize=7, loc="lower right")


def _binarize_by_pooling(axes, group: Comparable, dataset: str) -> None:
    """With and without binarization, the best cell of each feature type and pooling."""
    chosen = best_by(group, "features", "pooling", "binarize")
    groups = sorted({(features, pooling) for features, pooling, _ in chosen})
    for offset, method in ((-0.2, "none"), (0.2, "threshold")):
        bars = [(i + offset, chosen[(*group, method)].test) for i, group in enumerate(groups)
                if (*group, method) in chosen]
        axes.bar([x for x, _ in bars], [y for _, y in bars], width=0.4, label=f"binarize={method}",
                 color="tab:gray" if method == "none" else "tab:purple")
    axes.set_xticks(range(len(groups)), [f"{f}\n{p}" for f, p in groups], fontsize=7)
    axes.set(title=f"{dataset}: binarize on/off per pooling (best cell)", ylabel="test macro F1", ylim=(0, 1))
    axes.legend(fontsize=7, loc="lower right")


def _feature_types(axes, group: Comparable, dataset: str) -> None:
    """The best cell of each feature type: SAE vs hidden state vs bag of words."""
    chosen = best_by(group, "features")
    kinds = [*(k for k in FEATURE_COLOURS if (k,) in chosen), *sorted(k for (k,) in chosen if k not in FEATURE_COLOURS)]
    bars = axes.bar(kinds, [chosen[(k,)].test for k in kinds], color=[FEATURE_COLOURS.get(k) for k in kinds])
    axes.bar_label(bars, fmt="%.3f", fontsize=8)
    axes.set(title=f"{dataset}: best cell per feature type", ylabel="test macro F1", ylim=(0, 1))


def dataset_plots(cells: list[Cell], out_dir: Path) -> list[Path]:
    """One PNG of three panels per dataset and set of comparable cells with a best: `report_DATASET.png`, or
    `report_DATASET_A.png`, `_B`, ... (the report table's selection sets) when its cells validate on several."""
    plt = pyplot()
    written = []
    for dataset in sorted({cell.dataset for cell in cells}):
        groups = comparable_groups([cell for cell in cells if cell.dataset == dataset])
        for index, group in enumerate(groups):
            if group.best is None:
                continue
            name = dataset if len(groups) == 1 else f"{dataset}_{chr(ord('A') + index)}"
            figure, axes = plt.subplots(1, 3, figsize=(15, 4.2), width_ratios=[1.1, 1.4, 0.7])
            _by_layer(axes[0], group, name)
            _binarize_by_pooling(axes[1], group, name)
            _feature_types(axes[2], group, name)
            figure.suptitle(f"test macro F1 of the cell chosen on {'CV' if group.basis == 'cv' else 'validation'} "
                            "macro F1, among cells validated on the same documents", fontsize=8)
            written.append(save(figure, out_dir / f"report_{name}.png"))
    return written
