"""Probes: classifiers on document features, trained on train, tuned on validation.

`fit_probe` is the stage's one entry point; `probe.type` picks its `ProbeType` in `PROBE_TYPES`: the
logistic probe (`linear`, `sklearn`), the decision tree (`tree`), the baselines the field compares
against (`pca`, `diff_of_means`, `knn`, `mlp`, `boosted_trees`) and the attention probe (`attention`),
which reads every token of a document (`pooling=tokens`) instead of one pooled row. Every fitted probe is a `Probe`
(`base.py`): `predict_proba`, `predict`, `n_features`, `evidence()`, `save` and `widened`, and
`load_probe` reads any of them back by the kind its `probe.json` records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from mosaic.features.tokens import stack_rows
from mosaic.probes.attention import AttentionProbe, fit_attention_probe
from mosaic.probes.base import Probe
from mosaic.probes.linear_baselines import fit_diff_of_means_probe, fit_pca_probe
from mosaic.probes.logistic import TrainedProbe, fit_logistic_probe
from mosaic.probes.nonlinear import BoostedProbe, KNNProbe, MLPProbe, fit_boosted_probe, fit_knn_probe, fit_mlp_probe
from mosaic.probes.sparse import fit_k_sparse
from mosaic.probes.storage import read_probe
from mosaic.probes.tree import TreeProbe, fit_tree_probe


@dataclass(frozen=True)
class ProbeType:
    """One `probe.type`: its fitter, the summary key of the hyper-parameter it chooses on validation (None:
    it chooses nothing), how that choice is configured (for results.json), and whether the job's seed
    changes its fit (`stochastic`: a seeded initialisation, batch order or search; for results.json's
    `randomness`, which tells the report whether seeds are replicates).

    A fitter is `fit(x_train, y_train, x_val, y_val, n_classes, cfg, seed, logger=..., only=...)`; `only`
    fixes the chosen value, for the refit on train + validation.
    """

    fit: Callable[..., Probe]
    chooses: str | None
    configured: Callable[[Any], Any]
    stochastic: Callable[[Any], bool]


def _search(cfg) -> str:
    return "the sparse-probing suite's grid"


def _always(cfg) -> bool:
    return True


def _never(cfg) -> bool:
    return False


# probe.type -> how it is fitted; probe.json's kind -> how it is read back. The exact logistic solvers
# (L-BFGS, FISTA) are deterministic; mini-batch Adam and saga draw; a tree breaks ties between equally good
# splits by a seeded feature order; PCA may use a randomised SVD.
PROBE_TYPES: dict[str, ProbeType] = {
    "linear": ProbeType(fit_logistic_probe, "C", lambda cfg: list(cfg.C_grid) or cfg.C,
                        lambda cfg: cfg.early_stopping),
    "sklearn": ProbeType(fit_logistic_probe, "C", lambda cfg: list(cfg.C_grid) or cfg.C,
                         lambda cfg: cfg.penalty == "l1"),
    "tree": ProbeType(fit_tree_probe, "max_depth", lambda cfg: list(cfg.depth_grid), _always),
    "pca": ProbeType(fit_pca_probe, "n_components", _search, _always),
    "diff_of_means": ProbeType(fit_diff_of_means_probe, None, _search, _never),
    "knn": ProbeType(fit_knn_probe, "n_neighbors", _search, _never),
    "mlp": ProbeType(fit_mlp_probe, "draw", _search, _always),
    "boosted_trees": ProbeType(fit_boosted_probe, "draw", _search, _always),
    "attention": ProbeType(fit_attention_probe, "setting", lambda cfg: {
        "lr": list(cfg.lr_grid) or cfg.lr, "weight_decay": list(cfg.weight_decay_grid) or cfg.weight_decay},
        _always),
}
KINDS = {kind.kind: kind for kind in (TrainedProbe, TreeProbe, KNNProbe, MLPProbe, BoostedProbe, AttentionProbe)}


def _fit(x_train, y_train, x_val, y_val, n_classes: int, cfg, seed: int, logger, only=None, columns=None) -> Probe:
    fitter = PROBE_TYPES[cfg.type].fit
    if cfg.k is not None:
        return fit_k_sparse(fitter, cfg.k, x_train, y_train, x_val, y_val, n_classes, cfg, seed, logger=logger,
                            columns=columns, only=only)
    return fitter(x_train, y_train, x_val, y_val, n_classes, cfg, seed, logger=logger, only=only)


def select_probe(x_train, y_train, x_val, y_val, n_classes: int, cfg, seed: int, logger=False) -> Probe:
    """Train the probe described by a `ProbeConfig` on train, selecting its grids on validation.

    With `cfg.k`, only the k features ranked highest on the training split are used (`sparse.py`).
    Without validation rows nothing is selected: grids give way to the configured C, the first depth or the
    search's first candidate, and the probe's summary says so (`not_selected`).
    """
    if x_val.shape[0] > 0:
        return _fit(x_train, y_train, x_val, y_val, n_classes, cfg, seed, logger)
    probe = _fit(x_train, y_train, x_val, y_val, n_classes,
                 OmegaConf.merge(cfg, {"C_grid": [], "depth_grid": [cfg.depth_grid[0]]}), seed, logger)
    if PROBE_TYPES[cfg.type].chooses:
        probe.summary["not_selected"] = ("no validation rows: the configured value, or the first candidate of "
                                         "the search, was used unscored")
    return probe


def refit_probe(selected: Probe, x_train, y_train, x_val, y_val, n_classes: int, cfg, seed: int,
                logger=False) -> Probe:
    """The setting `selected` chose, fitted once more on train + validation (`probe.refit`, the suite's final fit).

    A k-sparse probe keeps the features it was selected with. Its validation scores are no longer held
    out: report those of `selected`.
    """
    if x_val.shape[0] == 0:
        return selected
    chooses = PROBE_TYPES[cfg.type].chooses
    refitted = _fit(stack_rows(x_train, x_val), np.concatenate([y_train, y_val]), x_val[:0], y_val[:0], n_classes,
                    cfg, seed, logger, only=selected.summary.get(chooses) if chooses else None,
                    columns=selected.summary.get("selected_features"))
    refitted.summary = {**selected.summary, **refitted.summary, "refit_on": "train+val"}
    return refitted


def fit_probe(x_train, y_train, x_val, y_val, n_classes: int, cfg, seed: int, logger=False) -> Probe:
    """The probe a `ProbeConfig` describes: selected on validation, then refitted on train + validation if asked."""
    selected = select_probe(x_train, y_train, x_val, y_val, n_classes, cfg, seed, logger)
    if not cfg.refit:
        return selected
    return refit_probe(selected, x_train, y_train, x_val, y_val, n_classes, cfg, seed, logger)


def load_probe(directory: str | Path) -> tuple[Probe, dict[str, Any]]:
    """A probe saved by its `save`, and its metadata (probes saved before kinds existed are logistic)."""
    tensors, metadata = read_probe(directory)
    return KINDS[metadata.get("kind", TrainedProbe.kind)].from_tensors(tensors, metadata.get("summary", {})), metadata


def effective_hyperparameters(probe: Probe, cfg) -> dict[str, dict[str, Any]]:
    """Each selected hyper-parameter as configured (a value or a grid) and as the fitted probe uses it.

    For results.json, reports and W&B, so a reader sees the C (or tree depth) a grid chose beside
    the configured value. `cfg` is the probe settings `probe` was trained with: a loaded probe's own.
    """
    probe_type = PROBE_TYPES[cfg.type]
    chosen = {}
    if probe_type.chooses:
        chosen[probe_type.chooses] = {"configured": probe_type.configured(cfg),
                                      "chosen": probe.summary.get(probe_type.chooses)}
        if "not_selected" in probe.summary:
            chosen[probe_type.chooses]["not_selected"] = probe.summary["not_selected"]
    if "k" in probe.summary:
        chosen["k"] = {"configured": cfg.k, "chosen": probe.summary["k"]}
    return chosen


__all__ = ["PROBE_TYPES", "Probe", "TrainedProbe", "TreeProbe", "effective_hyperparameters", "fit_probe", "load_probe",
           "refit_probe", "select_probe"]
