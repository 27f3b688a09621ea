"""One MOSAIC job, in the order of the data flow (docs/architecture.md):

dataset -> features (activations: forward + SAE encode, cached; pooling; binarize) -> probe -> evaluate -> record.

Each stage is a module with a small surface; this file only wires them together, times them with
one `Stopwatch` and assembles `results.json`. Features are built by their type (`features.types`),
transfer targets scored in `transfer`; `predict` labels new texts with a saved probe.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from mosaic.activations.models import resolve_device
from mosaic.activations.store import lazy_model
from mosaic.config import saved_config
from mosaic.data import LabelledDocuments, Splits
from mosaic.evaluate import classification_metrics, cross_validate, top_features
from mosaic.features.types import (
    FeatureContext,
    Features,
    Sweep,
    build_features,
    job_sae,
    trains_on_training_split,
    trains_sae,
)
from mosaic.infra.errors import MosaicError
from mosaic.infra.timing import Stopwatch
from mosaic.job.attended import attended_documents
from mosaic.job.behaviour import with_base_rate
from mosaic.job.inputs import job_inputs
from mosaic.job.prepare import prepare_job, trained_on
from mosaic.job.transfer import TransferDataset, transfer_scores
from mosaic.probes import (
    PROBE_TYPES,
    Probe,
    effective_hyperparameters,
    fit_probe,
    refit_probe,
    select_probe,
)
from mosaic.record import (
    PROBE_DIR,
    RESULTS_FILE,
    SCHEMA_VERSION,
    Tracker,
    config_hash,
    job_labels,
    run_info,
    summary_table,
    write_results,
)


def _top_features(probe: Probe, data: LabelledDocuments, splits: Splits, features: Features) -> list[dict]:
    """The probe's 20 strongest (feature, class) pairs, with each class's mean activation on the training split."""
    return top_features(probe.evidence(), data.label_names, k=20, feature_names=features.names,
                        features=features.document_rows(splits.train), labels=data.labels[splits.train],
                        url_prefix=(features.described.get("sae") or {}).get("neuronpedia"))


def _loaded_probes_encoder(cfg: DictConfig, metadata: dict[str, Any] | None, protected: frozenset[str]):
    """For `probe.load` on SAE features: the SAE that probe read, where its source finds it by the identity the
    probe recorded (an SAE MOSAIC trained: never one trained anew, whose key would hold this job's documents);
    None where the job's own config rebuilds it."""
    source = job_sae(cfg)
    if metadata is None or source is None:
        return None
    saved = (metadata.get("features") or {}).get("sae") or {}
    return source.saved_encoder(saved, resolve_device(cfg.model.device).type, protected)


def _checked_loaded_probe(path: str, probe: Probe, metadata: dict[str, Any], n_features: int,
                          label_names: list[str], cfg: DictConfig) -> Any:
    """The probe settings a saved probe was trained with (this job's, for a probe saved before probes kept their
    config); refused unless it reads features of this width and predicts these classes."""
    if probe.n_features != n_features:
        raise MosaicError(f"probe.load={path!r} reads {probe.n_features} features but this job's features "
                          f"have {n_features}: use the same SAE (or hidden size) the probe was trained on")
    if metadata["label_names"] != list(label_names):
        raise MosaicError(f"probe.load={path!r} predicts {metadata['label_names']} but this dataset's classes "
                          f"are {list(label_names)}: set dataset.label_names to match")
    if "config" not in metadata:
        return cfg.probe
    return saved_config(metadata["config"]).probe


def _nnz_per_doc(matrix) -> float:
    nnz = matrix.getnnz() if hasattr(matrix, "getnnz") else np.count_nonzero(matrix)
    return float(nnz / max(1, matrix.shape[0]))


def _cross_validation(cfg: DictConfig, data: LabelledDocuments, splits: Splits, features: Features) -> dict[str, Any]:
    """CV over train+val that refits per fold whatever is fitted on training documents, and says what is not."""
    n_classes = len(data.label_names)
    not_held_out = None
    if trains_on_training_split(cfg):
        not_held_out = ("the SAE was trained on the job's training split, which the CV folds also score: "
                        "the SAE is not refitted per fold")
    return cross_validate(
        features.for_training_rows, data.labels, np.concatenate([splits.train, splits.val]),
        lambda xt, yt, xv, yv: fit_probe(xt, yt, xv, yv, n_classes, cfg.probe, cfg.seed),
        cfg.probe.cv_folds, cfg.seed, refit=("probe", "feature scaling", *features.refitted),
        not_held_out=not_held_out)


def _trained_probe(cfg: DictConfig, matrix, labels: np.ndarray, splits: Splits, n_classes: int,
                   tracker: Tracker) -> tuple[Probe, Probe]:
    """The job's probe, and the one selected on validation before `probe.refit` fitted it on train + validation."""
    fit_args = (matrix[splits.train], labels[splits.train], matrix[splits.val], labels[splits.val], n_classes,
                cfg.probe, cfg.seed)
    selected = select_probe(*fit_args, logger=tracker.lightning_logger())
    probe = refit_probe(selected, *fit_args, logger=tracker.lightning_logger()) if cfg.probe.refit else selected
    return probe, selected


def _held_out_metrics(cfg: DictConfig, selected: Probe, data: LabelledDocuments, splits: Splits, features: Features,
                      test_proba: np.ndarray, watch: Stopwatch) -> dict[str, Any]:
    """Test metrics (the headline), validation metrics of the probe as selected (before any refit, which
    trains on validation), and cross-validation when asked."""
    metrics = classification_metrics(data.labels[splits.test], test_proba, data.label_names)
    metrics["val"] = None if len(splits.val) == 0 else classification_metrics(
        data.labels[splits.val], selected.predict_proba(features.matrix[splits.val]), data.label_names)
    if cfg.probe.cv_folds and not cfg.probe.load:
        with watch.time("cv"):
            metrics["cv"] = _cross_validation(cfg, data, splits, features)
    return metrics


def _randomness(cfg: DictConfig, splits: Splits, targets: dict[str, TransferDataset]) -> dict[str, Any]:
    """Which of the job's random draws its `seed` reached, and which a key pinned: the report counts jobs that
    differ by seed alone as replicates only when the seed reached something."""
    trains = trains_sae(cfg)
    draws = {
        "splits": splits.seeded,
        "probe": not cfg.probe.load and PROBE_TYPES[cfg.probe.type].stochastic(cfg.probe),
        "cross-validation folds": bool(cfg.probe.cv_folds) and not cfg.probe.load,
        "transfer splits": any(target.splits.seeded for target in targets.values()),
        "SAE training": trains and cfg.sae.seed is None,
    }
    pinned = {}
    if trains and cfg.sae.seed is not None:
        pinned["SAE training"] = f"sae.seed={cfg.sae.seed}"
    if cfg.dataset.limit is not None:
        pinned["dataset.limit sample"] = "seed 0: every job reads the same documents"
    return {"seed": cfg.seed, "seeded": [name for name, reached in draws.items() if reached], "pinned": pinned}


def run(cfg: DictConfig, job_dir: Path, sweep: Sweep | None = None) -> dict[str, Any]:
    """Run one validated job and write `job_dir/results.json`; returns the results.

    `sweep` names the layers, widths and feature types the surrounding multirun also asks for, so
    a job that has to run the model caches their activations from the same forward. (About 60
    lines on purpose: the job's data flow reads top to bottom here, one stage per step.)
    """
    started = datetime.now(timezone.utc)
    watch = Stopwatch()
    total_start = time.perf_counter()
    config = OmegaConf.to_container(cfg, resolve=True)

    with watch.time("prepare"):
        job = prepare_job(cfg)
    data, splits, targets, loaded, loaded_metadata = job.data, job.splits, job.targets, job.loaded_probe, \
        job.loaded_metadata
    context = FeatureContext(watch, lazy_model(cfg.model), job.protected, sweep or Sweep())
    own_encoder = _loaded_probes_encoder(cfg, loaded_metadata, context.protected)
    features = build_features(cfg, data, splits, context, own_encoder)
    matrix, described = features.matrix, features.described
    described["nnz_per_doc"] = _nnz_per_doc(matrix)

    labels, n_classes = data.labels, len(data.label_names)
    tracker = Tracker(cfg.logger, config, job_dir, job_labels(config, job_dir))
    try:
        with watch.time("probe"):
            if loaded is not None:
                probe = selected = loaded
                trained_with = _checked_loaded_probe(cfg.probe.load, loaded, loaded_metadata, matrix.shape[1],
                                                     data.label_names, cfg)
            else:
                probe, selected = _trained_probe(cfg, matrix, labels, splits, n_classes, tracker)
                trained_with = cfg.probe
                probe.save(job_dir / PROBE_DIR, {"label_names": data.label_names, "features": described,
                                               "config": config, "trained_on": trained_on(data, splits)})
        proba = probe.predict_proba(matrix[splits.test])
        metrics = _held_out_metrics(cfg, selected, data, splits, features, proba, watch)
        transfer = None
        if cfg.transfer.datasets or cfg.transfer.models:
            with watch.time("transfer"):
                transfer = transfer_scores(cfg, probe, data, splits, targets, features, context)
        watch.seconds["total"] = time.perf_counter() - total_start
        results = {
            "schema": SCHEMA_VERSION,
            "config_hash": config_hash(config),
            "config": config,
            "inputs": job_inputs(cfg),
            "metrics": metrics,
            "hyperparameters": effective_hyperparameters(probe, trained_with),
            "features": described,
            "splits": splits.as_dict(),
            "randomness": _randomness(cfg, splits, targets),
            "probe": probe.summary,
            "top_features": _top_features(probe, data, splits, features),
            "attended": attended_documents(cfg, probe, data.documents, data.label_names, labels, splits.test, matrix,
                                           proba),
            "test_predictions": {"documents": splits.test.tolist(), "predicted": proba.argmax(axis=1).tolist()},
            "transfer": transfer,
            "behaviour": with_base_rate(job.behaviour, data.labels, splits.test),
            "cache": features.cache,
            "timings_s": watch.seconds,
            "run": run_info(started),
        }
        write_results(job_dir / RESULTS_FILE, results)
        tracker.log_results(results, labels[splits.test], proba.argmax(axis=1), data.label_names)
    finally:
        tracker.finish()
    print(summary_table(results))
    return results
