"""Which encoders a job needs: the hidden state, or an SAE from Gemma Scope, a directory, or MOSAIC's training.

`plan_encoders` returns this job's encoder and a `Request` holding every (layer, encoder) its
sweep will also ask for, which `token_cache` fills from one pass over the documents. Each SAE is
described by an identity that is part of the cache key: its release and id, the SHA-256 of its
files, or the settings it was trained with.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from mosaic.cache import cached_directory, content_key, file_sha256
from mosaic.data import LabelledDocuments, Splits, load_unlabelled_texts
from mosaic.extract import LoadedModel, extract_activations
from mosaic.extract.models import resolve_device
from mosaic.releases import canonical_widths, gemma_scope_sae_id
from mosaic.sae import load_release_sae, load_sae, train_sae
from mosaic.sweep import Sweep
from mosaic.token_cache import HIDDEN, Encoder, Request, documents_key, model_identity


def _sae_corpus(cfg: DictConfig, data: LabelledDocuments, splits: Splits) -> tuple[Callable[[], list], dict]:
    """A loader for the documents the SAE is trained on, and what identifies them (part of its cache key).

    A packaged corpus is identified by its name, size and seed, so it is read only if an SAE must
    actually be trained; the training split is identified by its documents.
    """
    if cfg.sae.train_corpus == "train_split":
        documents = [data.documents[i] for i in splits.train[: cfg.sae.train_docs]]
        return lambda: documents, {"corpus": "train_split", "documents": documents_key(documents)}
    return (lambda: load_unlabelled_texts(cfg.sae.train_corpus, cfg.sae.train_docs, cfg.sae.seed),
            {"corpus": cfg.sae.train_corpus, "docs": cfg.sae.train_docs, "seed": cfg.sae.seed})


def _trained_encoder(cfg: DictConfig, layer: int, corpus_documents: Callable[[], list], corpus: dict[str, Any],
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
            acts = extract_activations(loaded, corpus_documents(), [layer], cfg.batch_size, cfg.max_length,
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


def plan_encoders(cfg: DictConfig, data: LabelledDocuments, splits: Splits, sweep: Sweep) -> tuple[Request, Encoder]:
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

    def sae_encoder(layer: int, width: str) -> Encoder:
        if cfg.sae.source == "trained":
            return _trained_encoder(cfg, layer, *corpus, device.type)
        return _given_encoder(cfg, layer, width, str(device))

    own_sae = sae_encoder(cfg.layer, cfg.sae.width) if "sae" in kinds else None

    def sae_encoders(layer: int) -> list[Encoder]:
        if cfg.sae.source != "gemma_scope":
            return [own_sae if layer == cfg.layer else sae_encoder(layer, cfg.sae.width)]
        valid = canonical_widths(cfg.sae.release or cfg.model.gemma_scope_release).get(layer, [])
        widths = sorted({cfg.sae.width, *sweep.widths} & set(valid))
        return [own_sae if (layer, w) == (cfg.layer, cfg.sae.width) else sae_encoder(layer, w) for w in widths]

    encoders = {layer: ([HIDDEN] if "hidden" in kinds else []) + (sae_encoders(layer) if "sae" in kinds else [])
                for layer in layers}
    own = HIDDEN if cfg.features.type == "hidden" else own_sae
    return Request(data.documents, encoders), own
