"""Report plots as PNG files: the best cell (chosen on validation or CV) by layer, per pooling, per feature type.

Every plotted number is the test macro F1 of a cell chosen on its selection score, never a maximum
taken over test scores.
"""

from __future__ import annotations

from pathlib import Path

from mosaic.report.cells import Cell, best_by, selection_basis

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


def _by_layer(axes, cells: list[Cell], dataset: str, basis: str) -> None:
    """Per model / feature type / width, the best cell of each layer; the best bag of words as a flat line."""
    chosen = best_by([c for c in cells if c.first("features") != "bow"], basis, "model", "features", "width", "layer")
    series: dict[tuple, dict[int, float]] = {}
    for (model, features, width, layer), cell in chosen.items():
        series.setdefault((model, features, width), {})[layer] = cell.test
    layers = sorted({layer for points in series.values() for layer in points})
    for (model, features, width), points in sorted(series.items()):
        xs = sorted(points)
        axes.plot(xs, [points[x] for x in xs], marker="o", color=FEATURE_COLOURS[features],
                  linestyle="-" if features == "sae" else "--", label=f"{model} {features} {width}".strip())
    for (model,), cell in sorted(best_by([c for c in cells if c.first("features") == "bow"], basis, "model").items()):
        axes.axhline(cell.test, color=FEATURE_COLOURS["bow"], linestyle=":", label=f"bag of words ({model})")
    if layers:
        axes.set_xticks(layers)
        axes.set_xlim(layers[0] - 0.5, layers[-1] + 0.5)
    axes.set(title=f"{dataset}: best cell by layer", xlabel="layer", ylabel="test macro F1", ylim=(0, 1))
    axes.legend(fontsize=7, loc="lower right")


def _binarize_by_pooling(axes, cells: list[Cell], dataset: str, basis: str) -> None:
    """With and without binarization, the best cell of each feature type and pooling."""
    chosen = best_by(cells, basis, "features", "pooling", "binarize")
    groups = sorted({(features, pooling) for features, pooling, _ in chosen})
    for offset, method in ((-0.2, "none"), (0.2, "threshold")):
        bars = [(i + offset, chosen[(*group, method)].test) for i, group in enumerate(groups)
                if (*group, method) in chosen]
        axes.bar([x for x, _ in bars], [y for _, y in bars], width=0.4, label=f"binarize={method}",
                 color="tab:gray" if method == "none" else "tab:purple")
    axes.set_xticks(range(len(groups)), [f"{f}\n{p}" for f, p in groups], fontsize=7)
    axes.set(title=f"{dataset}: binarize on/off per pooling (best cell)", ylabel="test macro F1", ylim=(0, 1))
    axes.legend(fontsize=7, loc="lower right")


def _feature_types(axes, cells: list[Cell], dataset: str, basis: str) -> None:
    """The best cell of each feature type: SAE vs hidden state vs bag of words."""
    chosen = best_by(cells, basis, "features")
    kinds = [k for k in FEATURE_COLOURS if (k,) in chosen]
    bars = axes.bar(kinds, [chosen[(k,)].test for k in kinds], color=[FEATURE_COLOURS[k] for k in kinds])
    axes.bar_label(bars, fmt="%.3f", fontsize=8)
    axes.set(title=f"{dataset}: best cell per feature type", ylabel="test macro F1", ylim=(0, 1))


def dataset_plots(cells: list[Cell], out_dir: Path) -> list[Path]:
    """One PNG of three panels per dataset."""
    plt = pyplot()
    written = []
    for dataset in sorted({cell.dataset for cell in cells}):
        subset = [cell for cell in cells if cell.dataset == dataset]
        basis = selection_basis(subset)
        figure, axes = plt.subplots(1, 3, figsize=(15, 4.2), width_ratios=[1.1, 1.4, 0.7])
        _by_layer(axes[0], subset, dataset, basis)
        _binarize_by_pooling(axes[1], subset, dataset, basis)
        _feature_types(axes[2], subset, dataset, basis)
        figure.suptitle(f"test macro F1 of the cell chosen on {'CV' if basis == 'cv' else 'validation'} macro F1",
                        fontsize=8)
        written.append(save(figure, out_dir / f"report_{dataset}.png"))
    return written
