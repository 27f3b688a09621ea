"""Which encoders a job needs: the hidden state, or an SAE from Gemma Scope, a directory, or MOSAIC's training.

`plan_encoders` returns this job's encoder and a `Request` holding every (layer, encoder) its
sweep will also ask for, which `store` fills from one pass over the documents. Each SAE is
identified, in the activation cache key, by the SHA-256 of its weight files: a trained SAE's (after
training it, or finding it in the cache), a local directory's, a Gemma Scope file's in the hub cache.
Identities are resolved lazily, so a job whose own entry is cached never trains or downloads the
SAEs its siblings would need.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from mosaic.activations import LoadedModel, extract_activations
from mosaic.activations.models import resolve_device
from mosaic.activations.saes import (
    ARCHITECTURES,
    TRAINING_FILE,
    TrainSettings,
    cached_release_sae_file,
    load_release_sae,
    load_sae,
    release_sae_file,
    train_sae,
)
from mosaic.activations.store import HIDDEN, Encoder, Request, documents_key, library_versions, model_identity
from mosaic.cache import cache_root, cached_directory, content_key, fingerprint, read_entry
from mosaic.data import LabelledDocuments, Splits, document_hash, load_unlabelled_texts
from mosaic.data.corpora import CORPORA
from mosaic.errors import MosaicError
from mosaic.releases import canonical_widths, gemma_scope_sae_id

SAE_FILES = ("cfg.json", "sae_weights.safetensors")
# Where a trained SAE lists the content hashes of the documents it was trained on (leak checks on reuse).
CORPUS_FILE = "corpus.json"
# Part of a trained SAE's key: bump it when training (trainer settings, normalisation, corpus sampling) changes.
TRAIN_VERSION = 3


@dataclass(frozen=True)
class Sweep:
    """Values the surrounding multirun sweeps over (empty outside one): the siblings one forward can serve."""

    layers: tuple[int, ...] = ()
    widths: tuple[str, ...] = ()
    features: tuple[str, ...] = ()


def trains_on_training_split(cfg: DictConfig) -> bool:
    """Whether the job's features come from an SAE trained on the job's own training split: its features
    of those documents are then not held out, and the SAE cannot be rebuilt without the job's data."""
    return cfg.features.type == "sae" and cfg.sae.source == "trained" and cfg.sae.train_corpus == "train_split"


def _sae_corpus(cfg: DictConfig, data: LabelledDocuments, splits: Splits,
                protected: frozenset[str]) -> tuple[Callable[[], list], Callable[[], dict]]:
    """A loader for the documents the SAE is trained on, and one for what identifies them (part of its cache key).

    A packaged corpus loses every text whose content is in `protected` (every document the job and
    its transfer targets validate, test or cross-validate on), and the removed contents are part of
    its identity. The training split keeps its own documents (cross-validation then says it is not
    held out) but drops those that duplicate a validation or test document by content.
    """
    if cfg.sae.train_corpus == "train_split":
        # Out: duplicates of the job's validation and test documents, and every transfer target's documents.
        own = {document_hash(document) for document in data.documents}
        held_out = {document_hash(data.documents[i]) for i in (*splits.val, *splits.test)} | (protected - own)
        documents = [data.documents[i] for i in splits.train
                     if document_hash(data.documents[i]) not in held_out][: cfg.sae.train_docs]
        return lambda: documents, lambda: {"corpus": "train_split", "documents": documents_key(documents)}

    @cache
    def sample() -> tuple[list[str], list[str]]:
        return load_unlabelled_texts(cfg.sae.train_corpus, cfg.sae.train_docs, sae_seed(cfg), exclude=protected)

    return (lambda: sample()[0],
            lambda: {"corpus": cfg.sae.train_corpus,
                     "packages": CORPORA[cfg.sae.train_corpus].identity(),
                     "docs": cfg.sae.train_docs, "seed": sae_seed(cfg),
                     "excluded": content_key({"hashes": sample()[1]})})


def _files_identity(directory: Path) -> dict[str, str]:
    return fingerprint([directory / name for name in SAE_FILES if (directory / name).is_file()])


class CorpusActivations:
    """The SAE corpus's activations at the layers a job's trained SAEs still need, from one forward.

    Each trained SAE registers its layer and how to tell whether it is already built. The first one
    that trains extracts every registered layer whose SAE is missing in one pass (early exit at the
    deepest), so a layer sweep's SAEs share one forward over their corpus; each layer's activations
    are handed out once and then dropped. Until then they are all held: memory is the corpus's
    activations times the number of layers that still need an SAE.
    """

    def __init__(self, documents: Callable[[], list], model: Callable[[], LoadedModel], batch_size: int,
                 max_length: int):
        self.documents, self.model = documents, model
        self.batch_size, self.max_length = batch_size, max_length
        self.built: dict[int, Callable[[], bool]] = {}
        self.extracted: dict[int, np.ndarray] = {}

    def register(self, layer: int, built: Callable[[], bool]) -> None:
        self.built[layer] = built

    def take(self, layer: int) -> np.ndarray:
        if layer not in self.extracted:
            missing = sorted({layer, *(other for other, built in self.built.items() if not built())})
            acts = extract_activations(self.model(), self.documents(), missing, self.batch_size, self.max_length,
                                       desc=f"extract SAE corpus (layers {', '.join(map(str, missing))})")
            self.extracted.update({found: acts[found].values for found in missing})
        return self.extracted.pop(layer)

    def discard(self, layer: int) -> None:
        self.extracted.pop(layer, None)


def _trained_encoder(cfg: DictConfig, layer: int, corpus_documents: Callable[[], list], corpus: Callable[[], dict],
                     activations: CorpusActivations, device_type: str) -> Encoder:
    """The SAE MOSAIC trains with SAELens for this model and layer, cached under `saes` by its settings.

    It is trained, on `activations` of its layer, the first time its identity is asked for.
    """
    @cache
    def fields() -> dict[str, Any]:
        return {
            "model": model_identity(cfg.model, device_type),
            "layer": layer,
            "max_length": cfg.max_length,
            "train": train_fields(cfg),
            "corpus": corpus(),
            "code": TRAIN_VERSION,
            "libraries": library_versions(),
        }

    @cache
    def directory() -> Path:
        def build(target: Path) -> None:
            documents = corpus_documents()
            (target / CORPUS_FILE).write_text(json.dumps(sorted({document_hash(d) for d in documents})))
            values = activations.take(layer)
            train_sae(values, train_settings(cfg, len(values)), out_dir=target,
                      device=str(resolve_device(cfg.model.device)), hook_name=f"blocks.{layer}.hook_resid_post")

        path, hit = cached_directory("saes", fields(), build)
        if hit:  # built meanwhile by another job of the sweep: its share of the corpus forward is not needed
            activations.discard(layer)
        return path

    def built() -> bool:
        return read_entry(cache_root() / "saes" / content_key(fields())) is not None

    activations.register(layer, built)
    return Encoder(lambda: trained_identity(directory()), lambda: load_sae(directory(), device=device_type), built,
                   lambda: {"trained": content_key(fields())})


def trains_sae(cfg: DictConfig) -> bool:
    """Whether the job's features come from an SAE MOSAIC trains for it (not one a loaded probe brings)."""
    return cfg.features.type == "sae" and cfg.sae.source == "trained" and not cfg.probe.load


def sae_seed(cfg: DictConfig) -> int:
    """The seed of a trained SAE's draws (corpus sample, initialisation, batch order): `sae.seed` when it pins
    one, else the job's `seed`, so that seeds replicate SAE training too."""
    return cfg.seed if cfg.sae.seed is None else cfg.sae.seed


def train_settings(cfg: DictConfig, corpus_tokens: int) -> TrainSettings:
    """The trainer's settings from `sae.*`: `train_tokens` tokens, or `train_epochs` passes over the corpus."""
    sae_cfg = cfg.sae
    tokens = sae_cfg.train_tokens or sae_cfg.train_epochs * corpus_tokens
    return TrainSettings(architecture=sae_cfg.architecture, d_sae=sae_cfg.expansion * cfg.model.d_model, k=sae_cfg.k,
                         l1_coefficient=sae_cfg.l1_coefficient, l0_coefficient=sae_cfg.l0_coefficient,
                         lr=sae_cfg.lr, tokens=tokens, batch_tokens=sae_cfg.train_batch_tokens, seed=sae_seed(cfg))


def train_fields(cfg: DictConfig) -> dict[str, Any]:
    """What of `sae.*` shapes a trained SAE (part of its key): only the sparsity keys its architecture reads."""
    sae_cfg = cfg.sae
    settings = train_settings(cfg, corpus_tokens=0)
    return {"architecture": settings.architecture, "d_sae": settings.d_sae, "lr": settings.lr,
            "tokens": sae_cfg.train_tokens, "epochs": None if sae_cfg.train_tokens else sae_cfg.train_epochs,
            "batch_tokens": settings.batch_tokens, "seed": settings.seed,
            **ARCHITECTURES[settings.architecture].sparsity(settings)}


def trained_identity(directory: Path) -> dict[str, Any]:
    """A trained SAE's identity: its cache key and the SHA-256 of its files, as its manifest records them."""
    entry = read_entry(directory)
    if entry is None:
        raise MosaicError(f"the trained SAE {directory.name} is not in the cache ({directory.parent}): rerun the job "
                          "that trained it")
    return {"type": "sae", "source": "trained", "key": entry.key,
            "sha256": {name: entry.files[name]["sha256"] for name in SAE_FILES}}


def training_record(identity: dict[str, Any]) -> dict[str, Any] | None:
    """How a trained SAE was trained (`training.json`: tokens, steps, time, curve), by its identity; None for others."""
    if identity.get("source") != "trained":
        return None
    path = cache_root() / "saes" / identity["key"] / TRAINING_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def saved_trained_encoder(identity: dict[str, Any], device: str, protected: frozenset[str] = frozenset()) -> Encoder:
    """A job's trained SAE, found by the identity its probe recorded (predict, `probe.load`): never retrained.

    Refused when it was trained on a document in `protected` (the documents the reusing job scores):
    its features of those documents would not be held out.
    """
    directory = cache_root() / "saes" / identity["key"]

    def resolve() -> dict[str, Any]:
        found = trained_identity(directory)
        if found["sha256"] != identity.get("sha256"):
            raise MosaicError(f"the trained SAE {identity['key']} in the cache is not the one the probe was trained on "
                              "(its files changed, or the probe predates SAE checksums): rerun the probe's job")
        try:
            trained_on = set(json.loads((directory / CORPUS_FILE).read_text()))
        except (OSError, ValueError):
            raise MosaicError(f"the trained SAE {identity['key']} does not list its training documents "
                              f"({CORPUS_FILE}): rerun the probe's job") from None
        if overlap := trained_on & protected:
            raise MosaicError(f"the probe's SAE was trained on {len(overlap)} documents this job scores: its features "
                              "of them are not held out; train the probe with an SAE that never saw this dataset")
        return found

    return Encoder(resolve, lambda: load_sae(directory, device=device))


@dataclass
class _PlanInputs:
    """What building an SAE encoder may need; a trained SAE's corpus is sampled once, when first asked for."""

    cfg: DictConfig
    data: LabelledDocuments
    splits: Splits
    protected: frozenset[str]
    model: Callable[[], LoadedModel]
    device: Any

    @cached_property
    def corpus(self) -> tuple[Callable[[], list], Callable[[], dict]]:
        return _sae_corpus(self.cfg, self.data, self.splits, self.protected)

    @cached_property
    def corpus_activations(self) -> CorpusActivations:
        return CorpusActivations(self.corpus[0], self.model, self.cfg.batch_size, self.cfg.max_length)


def _trained(inputs: _PlanInputs, layer: int, width: str) -> Encoder:
    return _trained_encoder(inputs.cfg, layer, *inputs.corpus, inputs.corpus_activations, inputs.device.type)


def _local(inputs: _PlanInputs, layer: int, width: str) -> Encoder:
    # By content, not path: a moved copy still hits, an SAE rewritten in place does not.
    directory = Path(inputs.cfg.sae.path)
    return Encoder(lambda: {"type": "sae", "source": "local", "sha256": _files_identity(directory)},
                   lambda: load_sae(directory, device=str(inputs.device)))


def _gemma_scope(inputs: _PlanInputs, layer: int, width: str) -> Encoder:
    release, sae_id = gemma_scope_sae(inputs.cfg, layer, width)

    def resolve() -> dict[str, Any]:
        weights = release_sae_file(release, sae_id)
        return {"type": "sae", "source": "gemma_scope", "release": release, "id": sae_id,
                "sha256": fingerprint([weights])}

    return Encoder(resolve, lambda: load_release_sae(release, sae_id, device=str(inputs.device)),
                   lambda: cached_release_sae_file(release, sae_id) is not None,
                   lambda: {"release": release, "id": sae_id})


def sae_release(cfg: DictConfig) -> str:
    """The Gemma Scope release a job's SAEs come from: `sae.release`, else the model's own."""
    return cfg.sae.release or cfg.model.gemma_scope_release


def gemma_scope_sae(cfg: DictConfig, layer: int | None = None, width: str | None = None) -> tuple[str, str]:
    """The Gemma Scope release and SAE id read at `layer` and `width` (default: the job's own)."""
    return sae_release(cfg), gemma_scope_sae_id(cfg.layer if layer is None else layer, width or cfg.sae.width)


def _own_width(cfg: DictConfig, layer: int) -> list[str]:
    return [cfg.sae.width]


def _own_layer_only(cfg: DictConfig, layer: int) -> list[str]:
    return [cfg.sae.width] if layer == cfg.layer else []


def _canonical_widths(cfg: DictConfig, layer: int) -> list[str]:
    return canonical_widths(sae_release(cfg)).get(layer, [])


@dataclass(frozen=True)
class SAESource:
    """One `sae.source`: `encoder(inputs, layer, width)` builds its `Encoder`; `widths(cfg, layer)` lists the
    widths it has at a layer, so a sweep's sibling (layer, width) is planned only where an SAE exists."""

    encoder: Callable[[_PlanInputs, int, str], Encoder]
    widths: Callable[[DictConfig, int], list[str]]


# sae.source -> where its SAEs come from. A trained SAE has the job's width at every layer; a local
# directory is one SAE for one layer; Gemma Scope has its release's canonical widths per layer.
SAE_SOURCES: dict[str, SAESource] = {
    "trained": SAESource(_trained, _own_width),
    "local": SAESource(_local, _own_layer_only),
    "gemma_scope": SAESource(_gemma_scope, _canonical_widths),
}


def forward_slots(cfg: DictConfig, sweep: Sweep) -> dict[int, list[tuple[str, str | None]]]:
    """What one forward of this job computes, by layer: `("hidden", None)` and `("sae", width)` slots.

    Its own layer, width and feature type, and the sweep's where they are valid: inside the model,
    and where the SAE source has an SAE of that width at that layer, so a sweep never fails on a
    neighbour's behalf. A grid's plan reads the same slots to count forwards.
    """
    source = SAE_SOURCES[cfg.sae.source]
    layers = sorted({cfg.layer, *(x for x in sweep.layers if 0 <= x < cfg.model.n_layers)})
    kinds = {cfg.features.type, *(f for f in sweep.features if f in ("sae", "hidden"))}
    slots: dict[int, list[tuple[str, str | None]]] = {}
    for layer in layers:
        found: list[tuple[str, str | None]] = [("hidden", None)] if "hidden" in kinds else []
        if "sae" in kinds:
            widths = sorted({cfg.sae.width, *sweep.widths} & set(source.widths(cfg, layer)))
            found += [("sae", width) for width in widths]
        if found:
            slots[layer] = found
    return slots


def plan_encoders(cfg: DictConfig, data: LabelledDocuments, splits: Splits, sweep: Sweep, protected: frozenset[str],
                  model: Callable[[], LoadedModel], device=None) -> tuple[Request, Encoder]:
    """What one forward should compute: this job's encoder at its layer, and those its sweep will want
    (`forward_slots`).

    `device` is where the job runs (default: here, as `model.device` says); a grid's plan names the
    compute nodes' device, since a trained SAE's key holds it.
    """
    inputs = _PlanInputs(cfg, data, splits, protected, model, device or resolve_device(cfg.model.device))
    source = SAE_SOURCES[cfg.sae.source]
    saes: dict[tuple[int, str], Encoder] = {}

    def encoder(layer: int, kind: str, width: str | None) -> Encoder:
        if kind == "hidden":
            return HIDDEN
        if (layer, width) not in saes:
            saes[(layer, width)] = source.encoder(inputs, layer, width)
        return saes[(layer, width)]

    own = encoder(cfg.layer, cfg.features.type, cfg.sae.width)
    encoders = {layer: [encoder(layer, kind, width) for kind, width in found]
                for layer, found in forward_slots(cfg, sweep).items()}
    return Request(data.documents, encoders), own
