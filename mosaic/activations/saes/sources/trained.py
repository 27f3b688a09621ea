"""`sae.source=trained`: an SAE MOSAIC trains with SAELens's trainer, for models with no published SAE.

It is trained on `sae.train_docs` documents of `sae.train_corpus` (a packaged corpus without any
document the job or its transfer targets score, or the job's own training split without duplicates
of its validation and test documents), at the job's layer, and cached under `saes` by everything
that shapes it: the model's weights, the layer, `max_length`, the corpus (with what was removed from
it), the training settings, the seed of its draws (`sae.seed`, else the job's), `TRAIN_VERSION` and
the libraries' versions. One forward over the corpus serves every SAE a sweep trains, at every layer
(`CorpusActivations`), and a sweep over `sae.architecture`, `sae.k` and `sae.expansion` encodes the
job's documents with all of its SAEs in one forward. Its identity is its cache key and the SHA-256
of its files; `corpus.json` lists the content hashes of its documents, so a probe reusing it
elsewhere refuses it where it saw a document that job scores.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from mosaic.activations.encoder import Encoder
from mosaic.activations.saes.load import SAE_FILES
from mosaic.activations.saes.sources.base import EncoderInputs, SAESource
from mosaic.data import document_hash, load_unlabelled_texts
from mosaic.data.corpora import CORPORA
from mosaic.infra.cache import Checkpoints, cache_root, cached_directory, content_key, read_entry
from mosaic.infra.errors import MosaicError

# Where a trained SAE lists the content hashes of the documents it was trained on (leak checks on reuse).
CORPUS_FILE = "corpus.json"
# Part of a trained SAE's key: bump it when training (trainer settings, normalisation, corpus sampling) changes.
TRAIN_VERSION = 3


def sae_seed(cfg: DictConfig) -> int:
    """The seed of a trained SAE's draws (corpus sample, initialisation, batch order): `sae.seed` when it pins
    one, else the job's `seed`, so that seeds replicate SAE training too."""
    return cfg.seed if cfg.sae.seed is None else cfg.sae.seed


def train_settings(cfg: DictConfig, corpus_tokens: int):
    """The trainer's settings from `sae.*`: `train_tokens` tokens, or `train_epochs` passes over the corpus."""
    from mosaic.activations.saes.train import TrainSettings

    sae_cfg = cfg.sae
    tokens = sae_cfg.train_tokens or sae_cfg.train_epochs * corpus_tokens
    return TrainSettings(architecture=sae_cfg.architecture, d_sae=sae_cfg.expansion * cfg.model.d_model, k=sae_cfg.k,
                         l1_coefficient=sae_cfg.l1_coefficient, l0_coefficient=sae_cfg.l0_coefficient,
                         lr=sae_cfg.lr, tokens=tokens, batch_tokens=sae_cfg.train_batch_tokens, seed=sae_seed(cfg),
                         matryoshka_fractions=tuple(sae_cfg.matryoshka_fractions),
                         decoder_bias_at_mean=sae_cfg.decoder_bias_at_mean)


def train_fields(cfg: DictConfig) -> dict[str, Any]:
    """What of `sae.*` shapes a trained SAE (part of its key): only the sparsity keys its architecture reads."""
    from mosaic.activations.saes.train import ARCHITECTURES

    sae_cfg = cfg.sae
    settings = train_settings(cfg, corpus_tokens=0)
    return {"architecture": settings.architecture, "d_sae": settings.d_sae, "lr": settings.lr,
            "tokens": sae_cfg.train_tokens, "epochs": None if sae_cfg.train_tokens else sae_cfg.train_epochs,
            "batch_tokens": settings.batch_tokens, "seed": settings.seed,
            **ARCHITECTURES[settings.architecture].sparsity(settings),
            # Only where it is on: every SAE trained before the option existed keeps its key.
            **({"decoder_bias_at_mean": True} if settings.decoder_bias_at_mean else {})}


def architecture_label(train: dict[str, Any]) -> str:
    """How a table names a trained SAE's architecture, from its key's `train` fields: "topk k=64", "standard"."""
    return " ".join([str(train.get("architecture", "standard")), *([f"k={train['k']}"] if "k" in train else [])])


def sae_corpus(cfg: DictConfig, data, splits, protected: frozenset[str]) -> tuple[Callable[[], list],
                                                                                   Callable[[], dict]]:
    """A loader for the documents the SAE is trained on, and one for what identifies them (part of its cache key).

    A packaged corpus loses every text whose content is in `protected` (every document the job and
    its transfer targets validate, test or cross-validate on), and the removed contents are part of
    its identity. The training split keeps its own documents (cross-validation then says it is not
    held out) but drops those that duplicate a validation or test document by content.
    """
    from mosaic.activations.store import documents_key

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


class CorpusActivations:
    """The SAE corpus's activations at the layers a job's trained SAEs still need, from one forward.

    Each trained SAE registers its layer and how to tell whether it is already built. The first one
    that trains extracts every layer a registered SAE still missing reads, in one pass (early exit at
    the deepest), so a sweep's SAEs (its layers, and its architectures, k and widths at a layer) share
    one forward over their corpus; a layer's activations are dropped once each SAE that reads them
    has taken them or found itself built. Until then they are held: memory is the corpus's
    activations times the number of layers that still need an SAE.
    """

    def __init__(self, documents: Callable[[], list], model: Callable[[], Any], batch_size: int, max_length: int):
        self.documents, self.model = documents, model
        self.batch_size, self.max_length = batch_size, max_length
        self.registered: dict[object, tuple[int, Callable[[], bool]]] = {}
        self.extracted: dict[int, np.ndarray] = {}
        self.waiting: dict[object, int] = {}  # SAE -> the extracted layer it has not taken yet

    def register(self, sae: object, layer: int, built: Callable[[], bool]) -> None:
        self.registered[sae] = (layer, built)

    def take(self, sae: object) -> np.ndarray:
        from mosaic.activations.forward import extract_activations

        if sae not in self.waiting:
            missing = {sae} | {other for other, (_, built) in self.registered.items()
                               if other not in self.waiting and not built()}
            layers = sorted({self.registered[other][0] for other in missing} - set(self.extracted))
            if layers:  # none where an SAE registered late reads a layer still held for others
                acts = extract_activations(self.model(), self.documents(), layers, self.batch_size, self.max_length,
                                           desc=f"extract SAE corpus (layers {', '.join(map(str, layers))})")
                self.extracted.update({layer: acts[layer].values for layer in layers})
            self.waiting.update({other: self.registered[other][0] for other in missing})
        return self.discard(sae)

    def discard(self, sae: object) -> np.ndarray | None:
        """Hand `sae` its layer's activations, if extracted, and drop them once no other SAE waits for them."""
        layer = self.waiting.pop(sae, None)
        values = self.extracted.get(layer)
        if layer is not None and layer not in self.waiting.values():
            del self.extracted[layer]
        return values


def _shared_corpus(inputs: EncoderInputs) -> tuple[Callable[[], list], Callable[[], dict], CorpusActivations]:
    """The job's SAE corpus and its activations, built once and shared by every layer it trains."""
    if "trained_corpus" not in inputs.shared:
        documents, identity = sae_corpus(inputs.cfg, inputs.data, inputs.splits, inputs.protected)
        activations = CorpusActivations(documents, inputs.model, inputs.cfg.batch_size, inputs.cfg.max_length)
        inputs.shared["trained_corpus"] = (documents, identity, activations)
    return inputs.shared["trained_corpus"]


def trained_identity(directory: Path) -> dict[str, Any]:
    """A trained SAE's identity: its cache key and the SHA-256 of its files, as its manifest records them."""
    entry = read_entry(directory)
    if entry is None:
        raise MosaicError(f"the trained SAE {directory.name} is not in the cache ({directory.parent}): rerun the job "
                          "that trained it")
    return {"type": "sae", "source": "trained", "key": entry.key,
            "sha256": {name: entry.files[name]["sha256"] for name in SAE_FILES}}


def training_record(key: str) -> dict[str, Any] | None:
    """How the trained SAE `key` was trained (`training.json`: tokens, steps, time, curve); None if not recorded."""
    from mosaic.activations.saes.train import TRAINING_FILE

    path = cache_root() / "saes" / key / TRAINING_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def build_seconds(training: dict[str, Any]) -> float:
    """A trained SAE's build time from its `training.json`: its training and the corpus forward it ran."""
    return training.get("seconds", 0.0) + training.get("corpus_seconds", 0.0)


class _TrainedEncoder(Encoder):
    """The SAE MOSAIC trains with SAELens for this model and layer, cached under `saes` by its settings.

    It is trained, on the corpus's activations at its layer, the first time its identity is asked for.
    """

    def __init__(self, inputs: EncoderInputs, layer: int, cfg: DictConfig):
        self.inputs, self.layer, self.cfg = inputs, layer, cfg
        self.corpus_documents, self.corpus, self.activations = _shared_corpus(inputs)
        self.activations.register(self, layer, self.ready)

    @cached_property
    def fields(self) -> dict[str, Any]:
        from mosaic.activations.store import library_versions, model_identity

        cfg = self.cfg
        return {"model": model_identity(cfg.model, self.inputs.device.type), "layer": self.layer,
                "max_length": cfg.max_length, "train": train_fields(cfg), "corpus": self.corpus(),
                "code": TRAIN_VERSION, "libraries": library_versions()}

    @cached_property
    def directory(self) -> Path:
        def build(target: Path) -> None:
            from mosaic.activations.models import resolve_device
            from mosaic.activations.saes.train import train_sae

            cfg = self.cfg
            documents = self.corpus_documents()
            (target / CORPUS_FILE).write_text(json.dumps(sorted({document_hash(d) for d in documents})))
            started = time.perf_counter()
            values = self.activations.take(self)  # no wait where another SAE of the job ran the corpus forward
            train_sae(values, train_settings(cfg, len(values)), out_dir=target,
                      device=str(resolve_device(cfg.model.device)), hook_name=f"blocks.{self.layer}.hook_resid_post",
                      checkpoints=Checkpoints("saes", content_key(self.fields)),
                      checkpoint_seconds=60 * cfg.sweep.checkpoint_minutes,
                      corpus_seconds=time.perf_counter() - started)

        path, hit = cached_directory("saes", self.fields, build)
        if hit:  # built meanwhile by another job of the sweep: its share of the corpus forward is not needed
            self.activations.discard(self)
        return path

    def resolve(self) -> dict[str, Any]:
        return trained_identity(self.directory)

    def load(self):
        from mosaic.activations.saes.load import load_sae

        return load_sae(self.directory, device=self.inputs.device.type)

    def ready(self) -> bool:
        return read_entry(cache_root() / "saes" / content_key(self.fields)) is not None

    def planned(self) -> dict[str, Any]:
        return {"to_train": content_key(self.fields)}


class _SavedTrainedEncoder(Encoder):
    """A trained SAE a saved probe read, by the identity it recorded; checked, never retrained."""

    def __init__(self, saved: dict[str, Any], device: str, protected: frozenset[str]):
        self.saved, self.device, self.protected = saved, device, protected
        self.directory = cache_root() / "saes" / saved["key"]

    def resolve(self) -> dict[str, Any]:
        found = trained_identity(self.directory)
        if found["sha256"] != self.saved.get("sha256"):
            raise MosaicError(f"the trained SAE {self.saved['key']} in the cache is not the one the probe was trained "
                              "on (its files changed, or the probe predates SAE checksums): rerun the probe's job")
        try:
            trained_on = set(json.loads((self.directory / CORPUS_FILE).read_text()))
        except (OSError, ValueError):
            raise MosaicError(f"the trained SAE {self.saved['key']} does not list its training documents "
                              f"({CORPUS_FILE}): rerun the probe's job") from None
        if overlap := trained_on & self.protected:
            raise MosaicError(f"the SAE {self.saved['key']} was trained on {len(overlap)} documents this job "
                              "scores: its features of them are not held out; use an SAE that never saw this dataset")
        return found

    def load(self):
        from mosaic.activations.saes.load import load_sae

        return load_sae(self.directory, device=self.device)


class Trained(SAESource):
    trains = True

    # A sweep over architectures, k and widths (and layers) shares one forward over the job's documents, and the
    # SAEs it trains share one over their corpus.
    sibling_keys = ("sae.architecture", "sae.k", "sae.expansion")

    def variant_config(self, cfg: DictConfig, variant: str) -> DictConfig:
        """The job's config with a sibling's `sibling_keys` values (`topk/64/8`)."""
        sibling = copy.deepcopy(cfg)
        for key, value in zip(self.sibling_keys, variant.split("/"), strict=True):
            OmegaConf.update(sibling, key, value)
        return sibling

    def siblings(self, cfg: DictConfig, layer: int, sweep_values: dict[str, tuple[str, ...]]) -> list[str]:
        """Every wanted combination that makes a valid SAE: any architecture, k and width can be trained."""
        def valid(variant: str) -> bool:
            try:
                sibling = self.variant_config(cfg, variant)
                return 1 <= sibling.sae.k <= sibling.sae.expansion * cfg.model.d_model and bool(train_fields(sibling))
            except Exception:  # noqa: BLE001 - a sweep value this job cannot read is its own job's error to report
                return False

        return sorted(variant for variant in self.sibling_variants(cfg, sweep_values) if valid(variant))

    def validate(self, cfg: DictConfig) -> None:
        from mosaic.infra.errors import require

        train_fields(cfg)  # the architecture's own settings (Matryoshka's nested widths) are buildable
        if cfg.dataset.modality == "image":
            require(cfg.sae.train_corpus == "train_split", "sae.train_corpus", cfg.sae.train_corpus,
                    "an SAE for image features trains on the image tokens of the training split: train_split")

    def encoder(self, inputs: EncoderInputs, layer: int, variant: str) -> Encoder:
        return _TrainedEncoder(inputs, layer, self.variant_config(inputs.cfg, variant))

    def name(self, identity: dict[str, Any]) -> str:
        return f"trained {str(identity.get('key', ''))[:12]}"

    def described(self, cfg: DictConfig, identity: dict[str, Any], width: int) -> dict[str, Any]:
        return {**super().described(cfg, identity, width), "architecture": architecture_label(train_fields(cfg))}

    def plan_label(self, cfg: DictConfig) -> str:
        sparsity = f", k {cfg.sae.k}" if self.planned_l0(cfg) else ""
        return f"trained {cfg.sae.architecture} SAE, {cfg.sae.expansion} × d_model latents{sparsity}"

    def planned_l0(self, cfg: DictConfig) -> int | None:
        from mosaic.activations.saes.train import ARCHITECTURES

        return cfg.sae.k if ARCHITECTURES[cfg.sae.architecture].k_active else None

    def trains_on_training_split(self, cfg: DictConfig) -> bool:
        return cfg.sae.train_corpus == "train_split"

    def training(self, identity: dict[str, Any]) -> dict[str, Any] | None:
        return training_record(identity["key"])

    def saved_encoder(self, saved: dict[str, Any], device: str, protected: frozenset[str]) -> Encoder:
        """A job's trained SAE, found by the identity its probe recorded (predict, `probe.load`): never retrained.

        Refused when it was trained on a document in `protected` (the documents the reusing job scores):
        its features of those documents would not be held out.
        """
        if saved.get("source") != "trained":
            raise MosaicError("the loaded probe was not trained on features of an SAE MOSAIC trained, but this job's "
                              "are: load it into a job with the same features")
        return _SavedTrainedEncoder(saved, device, protected)
