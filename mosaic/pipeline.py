"""One MOSAIC job, in the order of DESIGN.md's data flow:

dataset -> extractor -> SAE encode -> pooling -> binarize -> probe -> evaluate -> record.

Each stage is a module with a small surface; this file only wires them together, times them and
assembles `results.json`. The extractor and SAE encode run inside `token_cache`, which skips both
when an earlier job already cached their output.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from mosaic.cache import cached_directory, content_key, file_sha256
from mosaic.data import LabelledTexts, Splits, load_labelled_texts, load_unlabelled_texts, make_splits
from mosaic.evaluate import classification_metrics, top_features
from mosaic.extract import LoadedModel, extract_activations
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
from mosaic.releases import canonical_widths, gemma_scope_sae_id
from mosaic.sae import load_release_sae, load_sae, train_sae
from mosaic.sweep import Sweep
from mosaic.token_cache import HIDDEN, Encoder, Request, cached_features, model_identity, read_codes, read_hidden

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
        return texts, {"corpus": "train_split", "texts": content_key({"texts": texts})}
    texts = load_unlabelled_texts(cfg.sae.train_corpus, cfg.sae.train_docs, cfg.sae.seed)
    return texts, {"corpus": cfg.sae.train_corpus, "docs": cfg.sae.train_docs, "seed": cfg.sae.seed}


def _trained_encoder(cfg: DictConfig, layer: int, corpus_texts: list[str], corpus: dict[str, Any],
                     device_type: str) -> Encoder:
    """The SAE MOSAIC trains with SAELens for this model and layer, cached under `saes` by its settings."""
    sae_cfg = cfg.sae
    fields = {
        "model": model_identity(cfg.model, device_type),
        "layer": layer,
        "max_length": cfg.max_length,
        "train": {k: sae_cfg[k] for k in ("expansion", "l1_coefficient", "lr", "train_epochs",
                                          "train_batch_tokens", "seed")},
        "corpus": corpus,
    }

    def load(loaded: LoadedModel):
        def build(directory: Path) -> None:
            acts = extract_activations(loaded, corpus_texts, [layer], cfg.batch_size, cfg.max_length,
                                       desc=f"extract SAE corpus (layer {layer})")[layer]
            stats = train_sae(acts.values, d_sae=sae_cfg.expansion * cfg.model.d_model, out_dir=directory,
                              l1_coefficient=sae_cfg.l1_coefficient, lr=sae_cfg.lr, epochs=sae_cfg.train_epochs,
                              batch_tokens=sae_cfg.train_batch_tokens, seed=sae_cfg.seed,
                              device=str(loaded.device), hook_name=f"blocks.{layer}.hook_resid_post")
            (directory / "training.json").write_text(json.dumps({"tokens": len(acts.values), **stats}))

        directory, _ = cached_directory("saes", fields, build)
        return load_sae(directory, device=str(loaded.device))

    return Encoder({"type": "sae", "source": "trained", "key": content_key(fields)}, load, needs_model=True)


def _given_encoder(cfg: DictConfig, layer: int, width: str, device: str) -> Encoder:
    """A Gemma Scope SAE (SAELens release + canonical id), or a SAELens directory on disk."""
    if cfg.sae.source == "local":
        # By content, not path: a moved copy still hits, an SAE rewritten in place does not.
        directory = Path(cfg.sae.path)
        identity = {"type": "sae", "source": "local",
                    "sha256": {name: file_sha256(directory / name) for name in ("cfg.json", "sae_weights.safetensors")
                               if (directory / name).is_file()}}
        return Encoder(identity, lambda _: load_sae(cfg.sae.path, device=device))
    release = cfg.sae.release or cfg.model.gemma_scope_release
    sae_id = gemma_scope_sae_id(layer, width)
    identity = {"type": "sae", "source": "gemma_scope", "release": release, "id": sae_id}
    return Encoder(identity, lambda _: load_release_sae(release, sae_id, device=device))


def _encoders(cfg: DictConfig, data: LabelledTexts, splits: Splits, sweep: Sweep) -> tuple[Request, Encoder]:
    """What one forward should compute: this job's encoder at its layer, and those its sweep will want.

    Sibling layers and widths are kept only where they are valid (inside the model, and for Gemma
    Scope where a canonical SAE exists), so a sweep never fails on a neighbour's behalf.
    """
    device = resolve_device(cfg.model.device)
    layers = sorted({cfg.layer, *(x for x in sweep.layers if 0 <= x < cfg.model.n_layers)})
    kinds = {cfg.features.type, *(f for f in sweep.features if f in ("sae", "hidden"))}
    if cfg.sae.source == "local":
        layers = [cfg.layer]
    corpus = _sae_corpus(cfg, data, splits) if "sae" in kinds and cfg.sae.source == "trained" else None

    def sae_encoders(layer: int) -> list[Encoder]:
        if cfg.sae.source == "trained":
            return [_trained_encoder(cfg, layer, *corpus, device.type)]
        if cfg.sae.source == "local":
            return [_given_encoder(cfg, layer, cfg.sae.width, str(device))]
        valid = canonical_widths(cfg.sae.release or cfg.model.gemma_scope_release).get(layer, [])
        widths = sorted({cfg.sae.width, *sweep.widths} & set(valid))
        return [_given_encoder(cfg, layer, width, str(device)) for width in widths]

    encoders = {layer: ([HIDDEN] if "hidden" in kinds else []) + (sae_encoders(layer) if "sae" in kinds else [])
                for layer in layers}
    if cfg.features.type == "hidden":
        own = HIDDEN
    elif cfg.sae.source == "trained":
        own = _trained_encoder(cfg, cfg.layer, *corpus, device.type)
    else:
        own = _given_encoder(cfg, cfg.layer, cfg.sae.width, str(device))
    return Request(data.texts, encoders), own


def build_features(cfg: DictConfig, data: LabelledTexts, splits: Splits, watch: _Stopwatch, sweep: Sweep):
    """Document features for every document: (matrix, description, feature names or None, cache info)."""
    kind = cfg.features.type
    if kind == "bow":
        with watch.time("pool"):
            matrix, names = bow_features(data.texts, splits.train, cfg.pooling.method,
                                         cfg.features.ngram_max, cfg.features.min_df)
        return matrix, {"type": "bow", "n_features": matrix.shape[1]}, names, NO_CACHE

    request, own = _encoders(cfg, data, splits, sweep)
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

    data = load_labelled_texts(cfg.dataset)
    splits = make_splits(data.labels, cfg.seed, cfg.dataset.val_size, cfg.dataset.test_size, data.split)
    matrix, described, feature_names, cache = build_features(cfg, data, splits, watch, sweep or Sweep())
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
