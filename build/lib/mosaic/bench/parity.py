"""Parity with the sparse-probing suite's own code: the installed `sae-probes`, called, never re-implemented.

For each task, MOSAIC runs its job as a user would, with the suite's protocol spelled out as options
(`SUITE_PROTOCOL`: every row of the task file, duplicates kept as the peer keeps them, the normal regime
at seed 42, the last real token of a left-truncated prompt, and the suite's logistic regression: C over
logspace(5, -5, 10) by validation AUROC, then one fit on train + validation, unscaled, unweighted). The
activations that job used are then written in the peer's on-disk layout, so the peer's
`run_baseline_dataset_layer` finds them and never loads a model, and runs its `logreg` baseline on the
same rows. Test AUROC, the time each spends on the probe
and the chosen C are compared; the figure is part of `make bench`.
"""

from __future__ import annotations

import importlib
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from mosaic.config import compose

_LOGSPACE = ",".join(f"{C:.10g}" for C in np.logspace(5, -5, 10))
# The peer reads every row of a task file, duplicates included: parity keeps them (`dataset.dedup=false`).
SUITE_PROTOCOL = ("dataset.dedup=false", "features=hidden", "pooling=last", "model.truncation_side=left",
                  "regime=normal", "seed=42",
                  "probe=sklearn", "probe.scale=false", "probe.class_weight=none", "probe.select_by=auroc",
                  "probe.refit=true", "probe.tol=1e-4", "probe.max_iter=1000", f"probe.C_grid=[{_LOGSPACE}]",
                  "logger=none")
_PEER_MODEL, _PEER_HOOK = "mosaic", "hidden"


def _peer_baselines():
    """The peer's `run_baselines` module (imported by name: its package namespace shadows some modules)."""
    return importlib.import_module("sae_probes.run_baselines")


def _job_features(cfg, job_dir: Path):
    """MOSAIC's job on `cfg` (results.json in `job_dir`), and the features of every document it read."""
    from mosaic.activations.store import lazy_model
    from mosaic.data import load_labelled_documents
    from mosaic.features.types import FeatureContext, Sweep, build_features, unsplit
    from mosaic.infra.timing import Stopwatch
    from mosaic.pipeline import run

    results = run(cfg, job_dir)
    data = load_labelled_documents(cfg.dataset)
    context = FeatureContext(Stopwatch(), lazy_model(cfg.model), frozenset(), Sweep())
    features = build_features(cfg, data, unsplit(len(data.documents)), context)  # a cache hit: the job's entry
    return results, np.asarray(features.matrix, dtype=np.float32)


def _peer_run(baselines, matrix: np.ndarray, task: str, workdir: Path) -> dict:
    """The peer's `logreg` baseline on `matrix` (rows in the task file's order): test AUROC, chosen C and the
    seconds its probe function (selection over C, final fit, scoring) took, timed around that function alone."""
    import torch

    folder = workdir / f"model_activations_{_PEER_MODEL}"
    folder.mkdir(parents=True, exist_ok=True)
    # The peer's layout is torch.save's; MOSAIC writes it for the peer and never reads it back.
    torch.save(torch.from_numpy(matrix), folder / f"{task}_{_PEER_HOOK}.pt")
    saved = baselines.get_baseline_save_path(task, _PEER_HOOK, "logreg", _PEER_MODEL, workdir / "results")
    saved.unlink(missing_ok=True)  # the peer skips a task whose results exist: never read an earlier run's
    probe_function = baselines.METHODS["logreg"]
    measured = {}

    def timed(*args, **kwargs):
        start = time.perf_counter()
        results = probe_function(*args, **kwargs)
        measured.update(seconds=time.perf_counter() - start, C=float(results.classifier.C))
        return results

    baselines.METHODS["logreg"] = timed  # the peer's driver looks its method up at call time
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the peer's unconverged large-C fits warn on every task
            baselines.run_baseline_dataset_layer(_PEER_HOOK, task, "logreg", model_name=_PEER_MODEL,
                                                 model_cache_path=workdir, results_path=workdir / "results", seed=42)
    finally:
        baselines.METHODS["logreg"] = probe_function
    return {"auroc": json.loads(saved.read_text())[0]["test_auc"], **measured}


def compare(tasks: list[str], overrides: tuple[str, ...] = (), workdir: Path | None = None) -> list[dict]:
    """Per task: MOSAIC's and the peer's test AUROC and probe seconds on the same activations and rows."""
    baselines = _peer_baselines()
    rows = []
    with tempfile.TemporaryDirectory(prefix="mosaic-parity-") as scratch:
        workdir = Path(workdir or scratch)
        for task in tasks:
            cfg = compose("dataset=sae_probes", f"dataset.task={task}", *SUITE_PROTOCOL, *overrides)
            results, matrix = _job_features(cfg, workdir / "jobs" / task)
            peer = _peer_run(baselines, matrix, task, workdir)
            rows.append({"task": task, "rows": matrix.shape[0], "features": matrix.shape[1],
                         "mosaic_auroc": results["metrics"]["auroc"], "peer_auroc": peer["auroc"],
                         "gap": abs(results["metrics"]["auroc"] - peer["auroc"]),
                         "mosaic_C": results["hyperparameters"]["C"]["chosen"], "peer_C": peer["C"],
                         "mosaic_s": results["timings_s"]["probe"], "peer_s": peer["seconds"]})
    return rows


def figure(quick: bool = False) -> dict:
    """`make bench`'s parity figure: every fifth binary task of the suite (23; two with `quick`) on MiniLM layer 3."""
    from mosaic.data.sources.sae_probes import tasks

    binary = [task for task, kind in tasks().items() if kind == "binary"]
    rows = compare(binary[:2] if quick else binary[::5])
    return {**summary(rows), "rows": rows}


def summary(rows: list[dict]) -> dict:
    """The figure: how many tasks agree within 0.01 test AUROC and chose the same C, the largest gap, and MOSAIC's
    probe time over the peer's."""
    return {"tasks": len(rows), "within_0.01": sum(row["gap"] <= 0.01 for row in rows),
            "same_C": sum(bool(np.isclose(row["mosaic_C"], row["peer_C"], rtol=1e-6)) for row in rows),
            "max_gap": max(row["gap"] for row in rows),
            "time_ratio": sum(row["mosaic_s"] for row in rows) / sum(row["peer_s"] for row in rows)}
