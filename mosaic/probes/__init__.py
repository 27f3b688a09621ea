"""Probes: classifiers on document features, trained on train, tuned on validation.

`fit_probe` is the stage's one entry point; `probe.type` picks the fitter in `PROBE_TYPES` (the
logistic probe for `linear` and `sklearn`, the decision tree for `tree`). Every fitted probe is a
`Probe` (`base.py`): `predict_proba`, `predict`, `n_features`, `evidence()` and `save`, and
`load_probe` reads any of them back by the kind its `probe.json` records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from omegaconf import OmegaConf

from mosaic.probes.base import Probe
from mosaic.probes.logistic import TrainedProbe, fit_logistic_probe
from mosaic.probes.sparse import fit_k_sparse
from mosaic.probes.storage import read_probe
from mosaic.probes.tree import TreeProbe, fit_tree_probe

# probe.type -> how it is fitted; probe.json's kind -> how it is read back.
PROBE_TYPES = {"linear": fit_logistic_probe, "sklearn": fit_logistic_probe, "tree": fit_tree_probe}
KINDS = {TrainedProbe.kind: TrainedProbe, TreeProbe.kind: TreeProbe}


def _fit(x_train, y_train, x_val, y_val, n_classes: int, cfg, seed: int, logger) -> Probe:
    fitter = PROBE_TYPES[cfg.type]
    if cfg.k is not None:
        return fit_k_sparse(fitter, cfg.k, x_train, y_train, x_val, y_val, n_classes, cfg, seed, logger=logger)
    return fitter(x_train, y_train, x_val, y_val, n_classes, cfg, seed, logger=logger)


def _as_chosen(cfg, probe: Probe):
    """`cfg` with each grid collapsed to the value `probe` chose (or, with nothing to choose on, its configured C
    and its first depth)."""
    chosen = {name: value["chosen"] for name, value in effective_hyperparameters(probe, cfg).items()}
    depth = chosen.get("max_depth") or cfg.depth_grid[0]
    return OmegaConf.merge(cfg, {"C": chosen.get("C", cfg.C), "C_grid": [], "depth_grid": [depth]})


def select_probe(x_train, y_train, x_val, y_val, n_classes: int, cfg, seed: int, logger=False) -> Probe:
    """Train the probe described by a `ProbeConfig` on train, selecting its grids on validation.

    With `cfg.k`, only the k features ranked highest on the training split are used (`sparse.py`).
    Without validation rows nothing is selected: grids give way to the configured C and the first depth.
    """
    if x_val.shape[0] == 0:
        cfg = OmegaConf.merge(cfg, {"C_grid": [], "depth_grid": [cfg.depth_grid[0]]})
    return _fit(x_train, y_train, x_val, y_val, n_classes, cfg, seed, logger)


def refit_probe(selected: Probe, x_train, y_train, x_val, y_val, n_classes: int, cfg, seed: int,
                logger=False) -> Probe:
    """The setting `selected` chose, fitted once more on train + validation (`probe.refit`, the suite's final fit).

    Its validation scores are no longer held out: report those of `selected`.
    """
    if x_val.shape[0] == 0:
        return selected
    stack = sp.vstack if sp.issparse(x_train) else np.vstack
    refitted = _fit(stack([x_train, x_val]), np.concatenate([y_train, y_val]), x_val[:0], y_val[:0], n_classes,
                    _as_chosen(cfg, selected), seed, logger)
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
    the configured value. A loaded probe reports what it was trained with.
    """
    if probe.kind == TreeProbe.kind:
        chosen = {"max_depth": {"configured": list(cfg.depth_grid), "chosen": probe.summary.get("max_depth")}}
    else:
        chosen = {"C": {"configured": list(cfg.C_grid) or cfg.C, "chosen": probe.summary.get("C", cfg.C)}}
    if "k" in probe.summary:
        chosen["k"] = {"configured": cfg.k, "chosen": probe.summary["k"]}
    return chosen


__all__ = ["PROBE_TYPES", "Probe", "TrainedProbe", "TreeProbe", "effective_hyperparameters", "fit_probe", "load_probe",
           "refit_probe", "select_probe"]
