"""Which SAE makes the best probe: each SAE of a sweep over several datasets, its quality beside its probes' scores.

Written when a sweep's SAE jobs cover two or more datasets, for each *context* (every varying key but the
dataset, the seed, the features, the SAE and `probe.k`: a layer, a pooling, a probe type):

- `## SAEs compared` in report.md: per SAE, its architecture, width and build minutes, its mean FVU,
  L0 and dead fraction (on the reference token budget) over the datasets, and its probes' mean test
  AUROC, with a 95% interval over datasets, at each `probe.k`; the hidden state's at the same k below;
  then, at each k, the SAE with the best mean *validation* AUROC (the score that chose each probe's C):
  the SAE to take further, picked without reading a test score;
- `sae_tradeoff.png` (`sae_tradeoff_2.png`, ... for further contexts): mean test AUROC against mean FVU,
  one point per SAE, one panel per `probe.k`, the hidden state's mean as a line.

Seeds are averaged within a dataset first, over the replicates the report's cells count
(`Cell.replicates`). At each k every method is averaged over the same datasets, those that every SAE (and
the hidden state, where the sweep has it) scored at that k; the table says how many.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from statistics import mean
from typing import Any

from mosaic.record import Results, sae_name
from mosaic.report.cells import Cell, cells_of, confidence_interval, flatten, job_row, varying_keys
from mosaic.report.jobs import hidden_state
from mosaic.report.plots import pyplot, save
from mosaic.report.quality import quality_rows
from mosaic.report.transfer import MISSING

HIDDEN = "hidden state"
# Keys that tell methods and datasets apart rather than the context the SAEs are compared in.
_COMPARED = ("dataset.", "seed", "features.", "sae.", "probe.k")


def _context(result: Results, keys: list[str]) -> str:
    flat = flatten(result.config)
    return json.dumps({key: flat.get(key) for key in keys if not key.startswith(_COMPARED)}, sort_keys=True,
                      default=str)


def _method(result: Results) -> str | None:
    if result.features.sae is not None:
        return sae_name(result.features.sae.model_dump(exclude_unset=True))
    return HIDDEN if hidden_state(result) else None


def _k_label(k: int | None) -> str:
    return "all" if k is None else str(k)


def _scores(results: list[Results], keys: list[str]) -> dict[Any, dict[str, dict[str, Cell]]]:
    """probe.k -> method -> dataset -> its report cell (test and validation AUROC: means over its replicates)."""
    rows = [{**job_row(result, keys), "method": _method(result)} for result in results]
    found: dict[Any, dict[str, dict[str, Cell]]] = defaultdict(lambda: defaultdict(dict))
    for cell in cells_of(rows):
        if cell.first("method") is not None and cell.auroc is not None:
            found[cell.first("k")][cell.first("method")][cell.dataset] = cell
    return found


def _compared(scores: dict[str, dict[str, Cell]]) -> tuple[list[str], dict[str, tuple[float, Any]],
                                                            tuple[str, float] | None]:
    """The datasets every method scored; each method's mean test AUROC over them with its 95% interval; and the
    SAE with the best mean validation AUROC over them (None where one lacks validation scores): the one to take
    further, chosen without reading a test score."""
    common = sorted(set.intersection(*(set(by_dataset) for by_dataset in scores.values())))
    means = {method: (mean(by_dataset[d].auroc for d in common),
                      confidence_interval([by_dataset[d].auroc for d in common]))
             for method, by_dataset in scores.items() if common}
    validation = {method: [by_dataset[d].val_auroc for d in common] for method, by_dataset in scores.items()
                  if method != HIDDEN}
    complete = common and all(None not in values for values in validation.values())
    best = max(((method, mean(values)) for method, values in validation.items()), key=lambda item: item[1],
               default=None) if complete else None
    return common, means, best


def _quality(results: list[Results]) -> dict[str, dict[str, Any]]:
    """Each SAE's architecture, width, build minutes and mean FVU, L0 and dead fraction over its datasets."""
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in quality_rows(results):
        rows[row["sae"]].append(row)

    def average(found: list[dict[str, Any]], column: str) -> float | None:
        values = [row[column] for row in found if row.get(column) is not None]
        return mean(values) if values else None

    return {sae: {"architecture": found[0]["architecture"], "width": found[0]["width"],
                  "build_minutes": found[0]["build_minutes"], "datasets": len(found),
                  **{column: average(found, column) for column in ("fvu", "l0", "reference_dead_fraction")}}
            for sae, found in rows.items()}


def _number(value: Any, pattern: str = "{:.3f}") -> str:
    return MISSING if value is None else pattern.format(value)


def _auroc(found: tuple[float, Any] | None) -> str:
    if found is None:
        return MISSING
    centre, interval = found
    return f"{centre:.3f}" + ("" if interval is None else f" [{interval[0]:.3f}, {interval[1]:.3f}]")


def _table(quality: dict[str, dict[str, Any]], by_k: dict[Any, tuple]) -> list[str]:
    ks = list(by_k)
    header = ["SAE", "architecture", "width", "build min", "FVU", "L0", "dead",
              *(f"AUROC k={_k_label(k)} ({len(by_k[k][0])} datasets)" for k in ks)]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for sae, found in sorted(quality.items(), key=lambda item: (item[1]["fvu"] is None, item[1]["fvu"] or 0)):
        cells = [sae, found["architecture"] or MISSING, found["width"] or MISSING,
                 _number(found["build_minutes"], "{:.1f}"), _number(found["fvu"]), _number(found["l0"], "{:.1f}"),
                 _number(found["reference_dead_fraction"], "{:.1%}"),
                 *(_auroc(by_k[k][1].get(sae)) for k in ks)]
        lines.append("| " + " | ".join(cells) + " |")
    if any(HIDDEN in by_k[k][1] for k in ks):
        lines.append("| " + " | ".join([HIDDEN, *[MISSING] * 6, *(_auroc(by_k[k][1].get(HIDDEN)) for k in ks)]) + " |")
    chosen = [f"k={_k_label(k)}: {best[0]} ({best[1]:.3f})" for k in ks if (best := by_k[k][2]) is not None]
    if chosen:
        lines += ["", "Best SAE on validation (mean validation AUROC of the chosen C, same datasets): "
                  + "; ".join(chosen) + "."]
    return lines


def _plot(quality: dict[str, dict[str, Any]], by_k: dict[Any, tuple], path: Path) -> Path:
    plt = pyplot()
    figure, panels = plt.subplots(1, len(by_k), figsize=(4.2 * len(by_k), 3.8), squeeze=False, sharey=True)
    for axes, (k, (common, means, _)) in zip(panels[0], by_k.items(), strict=True):
        for sae, found in quality.items():
            if sae in means and found["fvu"] is not None:
                centre, interval = means[sae]
                error = None if interval is None else [[centre - interval[0]], [interval[1] - centre]]
                # A legend, not labels beside the points: SAEs of similar FVU and AUROC would overwrite each other.
                label = ", ".join(str(part) for part in (found["architecture"] or sae, found["width"]) if part)
                axes.errorbar(found["fvu"], centre, yerr=error, fmt="o", capsize=3, label=label)
        if HIDDEN in means:
            axes.axhline(means[HIDDEN][0], color="black", linestyle="--", label=HIDDEN)
        axes.set_title(f"k = {_k_label(k)} ({len(common)} datasets)")
        axes.set_xlabel("SAE FVU (mean over datasets)")
    panels[0][0].set_ylabel("mean test AUROC")
    panels[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return save(figure, path)


def write_sae_comparison(results: list[Results], out_dir: Path) -> tuple[str, dict[str, Path]]:
    """The markdown section and a trade-off plot per context; nothing unless SAE jobs cover two datasets."""
    keys = varying_keys([result.config for result in results])
    contexts: dict[str, list[Results]] = defaultdict(list)
    for result in results:
        if _method(result) is not None:
            contexts[_context(result, keys)].append(result)
    sections, written = [], {}
    for context, members in sorted(contexts.items()):
        quality = _quality(members)
        if not quality or len({result.config["dataset"]["name"] for result in members}) < 2:
            continue
        by_k = {k: _compared(scores) for k, scores in sorted(_scores(members, keys).items(), key=lambda item: (
            item[0] is None, item[0] or 0))}
        name = "sae_tradeoff" if not written else f"sae_tradeoff_{len(written) + 1}"
        written[name] = _plot(quality, by_k, out_dir / f"{name}.png")
        shown = ", ".join(f"{key}={value}" for key, value in json.loads(context).items()) or "the whole sweep"
        sections += [f"### {shown}", "", *_table(quality, by_k), "", f"![SAE trade-off]({name}.png)", ""]
    if not sections:
        return "", {}
    intro = ("## SAEs compared\n\nEach SAE's quality (means over the datasets its jobs encoded; dead latents on the "
             "reference token budget) beside its probes' mean test AUROC with a 95% interval over datasets, at each "
             "probe.k over the datasets every method scored at that k (seeds averaged first).\n")
    return intro + "\n" + "\n".join(sections), written
