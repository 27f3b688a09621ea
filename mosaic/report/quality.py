"""One SAE-quality table per sweep: each SAE its jobs used, measured on each dataset's documents.

Rows come from `results.json` (`features.sae_quality`), one per activation cache entry (model, layer,
SAE and the exact documents): the same SAE measured on the same documents gives the same numbers
whatever probe or pooling a job used, so repeated jobs collapse to one row.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from mosaic.activations.saes.sources.trained import build_seconds
from mosaic.record import Results, sae_name, sae_quality_scalars
from mosaic.report.transfer import MISSING

COLUMNS = ("model", "layer", "sae", "architecture", "width", "build_minutes", "dataset", "tokens", "fvu", "l0",
           "reference_tokens", "reference_dead_fraction", "reference_always_on_fraction", "dead_fraction",
           "always_on_fraction", "ce_increase", "kl", "loss_recovered", "held_out")
# The markdown table compares latent health only on the fixed reference budget; the CSV also has it on every token.
SHOWN = tuple(c for c in COLUMNS if c not in ("dead_fraction", "always_on_fraction"))


def quality_rows(results: list[Results]) -> list[dict[str, Any]]:
    """One row per activation entry whose jobs recorded the SAE's quality, by model, layer, SAE and dataset."""
    rows: dict[tuple, dict[str, Any]] = {}
    for result in results:
        quality = result.features.sae_quality
        if quality is None:
            continue
        config, sae, training = result.config, result.features.sae, result.features.sae_training or {}
        row = {"model": config["model"]["name"], "layer": config["layer"],
               "sae": sae_name(sae.model_dump(exclude_unset=True)), "architecture": sae.architecture,
               "width": sae.width, "build_minutes": build_seconds(training) / 60 if training else None,
               "dataset": config["dataset"]["name"], "tokens": quality.tokens,
               "reference_tokens": None if quality.reference is None else quality.reference.tokens,
               **sae_quality_scalars(result.features.model_dump(mode="json", exclude_unset=True)),
               "held_out": quality.held_out}
        rows.setdefault(result.cache.key, row)
    return sorted(rows.values(), key=lambda row: tuple(str(row[k]) for k in ("model", "layer", "sae", "dataset")))


def _cell(value: Any, column: str) -> str:
    if value is None:
        return MISSING
    if column.endswith(("dead_fraction", "always_on_fraction", "loss_recovered")):
        return f"{value:.1%}"
    if column == "build_minutes":
        return f"{value:.1f}"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def write_quality(results: list[Results], out_dir: Path) -> tuple[str, dict[str, Path]]:
    """The markdown section and `sae_quality.csv`; nothing when no job used an SAE."""
    rows = quality_rows(results)
    if not rows:
        return "", {}
    path = out_dir / "sae_quality.csv"
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({column: row.get(column) for column in COLUMNS} for row in rows)
    # The budget the jobs recorded (`sae_quality.reference.tokens`); a dataset with fewer tokens has less.
    budget = max((row["reference_tokens"] or 0 for row in rows), default=0)
    short = sorted({row["reference_tokens"] or 0 for row in rows if (row["reference_tokens"] or 0) < budget})
    lines = ["## SAE quality", "",
             "Each SAE on each dataset's documents (`tokens`): fraction of variance unexplained (FVU), mean active "
             "latents per token (L0), latents that never fire (dead) or fire on over 90% of tokens (always on), and "
             "for decoders the next-token loss increase when the SAE's reconstruction replaces the residual stream, "
             "its KL from the clean predictions and the share of the zero-ablation loss recovered. Held out: the SAE "
             "never trained on these documents. Dead and always-on fractions depend on how many tokens are seen, so "
             f"they are shown on the first {budget:,} tokens of each dataset (`reference_tokens`), the "
             "same budget for every row; `sae_quality.csv` also has them on every token.", ""]
    if short:
        lines += [f"Rows with fewer than {budget:,} reference tokens ({', '.join(map(str, short))}) do not "
                  "compare with the others on dead and always-on latents.", ""]
    lines += ["| " + " | ".join(SHOWN) + " |", "|" + " --- |" * len(SHOWN)]
    lines += ["| " + " | ".join(_cell(row.get(column), column) for column in SHOWN) + " |" for row in rows]
    return "\n".join(lines) + "\n", {"sae_quality": path}
