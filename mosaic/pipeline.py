"""One MOSAIC job, in the order of DESIGN.md's data flow:

dataset -> extractor -> SAE encode -> pooling -> binarize -> probe -> evaluate -> record.

Each stage is a module with a small surface; this file only wires them together, times them and
assembles `results.json`.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from mosaic.cache import cached_directory, content_key
from mosaic.data import LabelledTexts, Splits, load_labelled_texts, load_unlabelled_texts, make_splits
from mosaic.evaluate import classification_metrics, top_features
from mosaic.extract import LoadedModel, extract_activations, load_model
from mosaic.extract.models import resolve_device
from mosaic.features import binarize, bow_features, pool
from mosaic.probes import fit_probe
from mosaic.record import (
    RESULTS_FILE,
    SCHEMA_VERSION,
    Tracker,
    config_hash,
    run_info,
    summary_table,
    write_json_atomic,
)
from mosaic.releases import gemma_scope_sae_id
from mosaic.sae import check_sae_fits, encode_tokens, load_release_sae, load_sae, train_sae

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


def _sae_corpus(cfg: DictConfig, data: LabelledTexts, splits: Splits) -> tuple[list[str], dict[str, Any]]:
    """Texts the SAE is trained on, and what identifies them (part of the SAE's cache key)."""
    if cfg.sae.train_corpus == "train_split":
        texts = [data.texts[i] for i in splits.train[: cfg.sae.train_docs]]
        return texts, {"corpus": "train_split", "dataset": OmegaConf.to_container(cfg.dataset), "seed": cfg.seed,
                       "texts": content_key({"texts": texts})}
    texts = load_unlabelled_texts(cfg.sae.train_corpus, cfg.sae.train_docs, cfg.sae.seed)
    return texts, {"corpus": cfg.sae.train_corpus, "docs": cfg.sae.train_docs, "seed": cfg.sae.seed}


def _trained_sae(cfg: DictConfig, loaded: LoadedModel, data: LabelledTexts, splits: Splits):
    """The project-trained SAE for this model and layer: from the cache, or trained now and cached."""
    texts, corpus = _sae_corpus(cfg, data, splits)
    sae_cfg = cfg.sae
    fields = {
        "model": OmegaConf.to_container(cfg.model),
        "layer": cfg.layer,
        "max_length": cfg.max_length,
        "train": {k: sae_cfg[k] for k in ("expansion", "l1_coefficient", "lr", "train_epochs",
                                          "train_batch_tokens", "seed")},
        "corpus": corpus,
    }

    def build(directory: Path) -> None:
        acts = extract_activations(loaded, texts, [cfg.layer], cfg.batch_size, cfg.max_length,
                                   desc="extract SAE corpus")[cfg.layer]
        stats = train_sae(
            acts.values,
            d_sae=sae_cfg.expansion * cfg.model.d_model,
            out_dir=directory,
            l1_coefficient=sae_cfg.l1_coefficient,
            lr=sae_cfg.lr,
            epochs=sae_cfg.train_epochs,
            batch_tokens=sae_cfg.train_batch_tokens,
            seed=sae_cfg.seed,
            device=str(loaded.device),
            hook_name=f"blocks.{cfg.layer}.hook_resid_post",
        )
        (directory / "training.json").write_text(OmegaConf.to_yaml({"tokens": len(acts.values), **stats}))

    directory, hit = cached_directory("saes", fields, build)
    return load_sae(directory, device=str(loaded.device)), {"hit": hit, "key": directory.name}


def _given_sae(cfg: DictConfig):
    """A Gemma Scope SAE (SAELens release + id), or a SAELens directory on disk; and what identifies it."""
    device = str(resolve_device(cfg.model.device))
    if cfg.sae.source == "local":
        return load_sae(cfg.sae.path, device=device), {"source": "local", "path": cfg.sae.path}
    release = cfg.sae.release or cfg.model.gemma_scope_release
    sae_id = gemma_scope_sae_id(cfg.layer, cfg.sae.width)
    return load_release_sae(release, sae_id, device=device), {"source": "gemma_scope", "release": release, "id": sae_id}


def build_features(cfg: DictConfig, data: LabelledTexts, splits: Splits, watch: _Stopwatch):
    """Document features for every document: (matrix, description, feature names or None, cache info)."""
    kind = cfg.features.type
    if kind == "bow":
        with watch.time("pool"):
            matrix, names = bow_features(data.texts, splits.train, cfg.pooling.method,
                                         cfg.features.ngram_max, cfg.features.min_df)
        return matrix, {"type": "bow", "n_features": matrix.shape[1]}, names, NO_CACHE

    sae, cache = None, NO_CACHE
    if kind == "sae" and cfg.sae.source != "trained":
        with watch.time("sae"):  # before the model: an unavailable SAE should not cost a model load
            sae, identity = _given_sae(cfg)
    with watch.time("extract"):
        loaded = load_model(cfg.model)
        acts = extract_activations(loaded, data.texts, [cfg.layer], cfg.batch_size, cfg.max_length)[cfg.layer]
    tokens = acts.values
    if kind == "sae":
        if sae is None:
            with watch.time("sae"):
                sae, cache = _trained_sae(cfg, loaded, data, splits)
            identity = {"source": "trained", "key": cache["key"]}
        check_sae_fits(sae, cfg.model.d_model, cfg.layer)
        with watch.time("encode"):
            tokens = encode_tokens(sae, acts.values, cfg.sae.encode_batch_tokens)
    with watch.time("pool"):
        matrix = pool(tokens, acts.offsets, cfg.pooling.method, cfg.pooling.top_n)
    described = {"type": kind, "n_features": matrix.shape[1], "layer": cfg.layer,
                 "tokens": int(acts.offsets[-1])}
    if kind == "sae":
        described.update(width=matrix.shape[1], sae=identity,
                         l0_per_token=float(tokens.getnnz() / max(1, tokens.shape[0])))
    return matrix, described, None, cache


def _nnz_per_doc(matrix) -> float:
    nnz = matrix.getnnz() if hasattr(matrix, "getnnz") else np.count_nonzero(matrix)
    return float(nnz / max(1, matrix.shape[0]))


def run(cfg: DictConfig, job_dir: Path) -> dict[str, Any]:
    """Run one validated job and write `job_dir/results.json`; returns the results."""
    started = datetime.now(timezone.utc)
    watch = _Stopwatch()
    total_start = time.perf_counter()
    config = OmegaConf.to_container(cfg, resolve=True)

    data = load_labelled_texts(cfg.dataset, seed=cfg.seed)
    splits = make_splits(data.labels, cfg.seed, cfg.dataset.val_size, cfg.dataset.test_size, data.split)
    matrix, described, feature_names, cache = build_features(cfg, data, splits, watch)
    if cfg.binarize.method == "threshold":
        matrix = binarize(matrix, cfg.binarize.threshold)
    described["nnz_per_doc"] = _nnz_per_doc(matrix)

    labels, n_classes = data.labels, len(data.label_names)
    tracker = Tracker(cfg.logger, config, job_dir, name=job_dir.name)
    try:
        with watch.time("probe"):
            probe = fit_probe(matrix[splits.train], labels[splits.train], matrix[splits.val], labels[splits.val],
                              n_classes, cfg.probe, cfg.seed, logger=tracker.lightning_logger())
        proba = probe.predict_proba(matrix[splits.test])
        watch.seconds["total"] = time.perf_counter() - total_start
        results = {
            "schema": SCHEMA_VERSION,
            "config_hash": config_hash(config),
            "config": config,
            "metrics": classification_metrics(labels[splits.test], proba, data.label_names),
            "features": described,
            "splits": splits.as_dict(),
            "probe": probe.summary,
            "top_features": top_features(probe.weight, data.label_names, k=20, feature_names=feature_names),
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
