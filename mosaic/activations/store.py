"""The expensive half of a job — model forward and SAE encode — computed once and cached.

An entry (cache kind `activations`) holds what the cheap half needs for one (model, documents,
max_length, layer, encoder): for an SAE, the per-token codes (CSR, `codes.npz`) and document
offsets, from which every pooling is rebuilt, and the SAE's quality on these documents
(`quality.json`, `saes.quality`); for the raw hidden state, the four poolings defined on it
(token-level hidden states of a large model would not fit on disk), or, for a probe that reads
every token (`pooling=tokens`), the token rows themselves in bfloat16 (`HIDDEN_TOKENS`, written
chunk by chunk and read back as a memory map). A job whose entry exists
loads no model at all. A job that misses builds its own entry and those its sweep will ask for
next, from one pass over the documents that stops at the deepest layer; documents go through in
chunks, each encoded and pooled before the next is extracted, so memory holds one chunk's
activations, not the dataset's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from mosaic.activations import LoadedModel, extract_activations, load_model
from mosaic.activations.encoder import Encoder
from mosaic.activations.forward import offsets_from_lengths
from mosaic.activations.models import weights_fingerprint
from mosaic.activations.saes import check_sae_fits, encode_tokens
from mosaic.activations.saes.quality import LOSS_DOCUMENTS, ReconstructionTally, next_token_loss
from mosaic.features import methods_for, pool
from mosaic.features.pooling import keeps_tokens
from mosaic.features.tokens import to_bfloat16_bits
from mosaic.infra.cache import cache_root, cached_directories, content_key, read_entry
from mosaic.infra.errors import first_line
from mosaic.infra.timing import Stopwatch

CACHE_KIND = "activations"
# A hidden-state entry stores the document pooled every way a later job may ask for (mean, max, ...),
# since the token-level states are too large to keep; their names are part of its key.
HIDDEN_POOLINGS = tuple(method for method in methods_for("hidden") if not keeps_tokens(method))
# A hidden-token entry's rows: bfloat16 bits (uint16), tokens x d_model, row after row.
HIDDEN_TOKENS_FILE = "hidden_tokens.bf16"
CHUNK_DOCUMENTS = 1024
# Part of every entry's key. Bump it whenever extraction (masking, positions, truncation), SAE encoding or
# what an entry stores changes, so that entries written by earlier code are never read as this code's.
EXTRACTION_VERSION = 3
# An SAE entry's measured quality (reconstruction, sparsity, next-token loss).
QUALITY_FILE = "quality.json"


class _HiddenState(Encoder):
    """The residual stream itself: its entry holds each document pooled every way (`HIDDEN_POOLINGS`)."""

    reads_sae = False

    def resolve(self) -> dict[str, Any]:
        return {"type": "hidden", "poolings": list(HIDDEN_POOLINGS)}


HIDDEN = _HiddenState()


class _HiddenTokens(Encoder):
    """The residual stream, every real token of it, in bfloat16: for probes that learn their pooling."""

    reads_sae = False

    def resolve(self) -> dict[str, Any]:
        return {"type": "hidden", "tokens": "bfloat16"}


HIDDEN_TOKENS = _HiddenTokens()


def lazy_model(model_cfg) -> Callable[[], LoadedModel]:
    """The model, loaded on the first call and shared by later ones (an SAE to train and the forward)."""
    loaded: list[LoadedModel] = []

    def get() -> LoadedModel:
        if not loaded:
            loaded.append(load_model(model_cfg))
        return loaded[0]

    return get


@dataclass
class Request:
    """Everything one pass should produce: per layer, the encoders to apply."""

    documents: Sequence[str] | Sequence[bytes]
    encoders: dict[int, list[Encoder]]


def model_identity(model_cfg, device_type: str) -> dict[str, Any]:
    """The model settings and weights that change activation bytes (not its display name)."""
    keys = ("source", "hf_id", "revision", "path", "family", "n_layers", "d_model", "n_heads", "dtype",
            "attn_implementation", "padding_side", "truncation_side", "prompt")
    # Only where it is on: every key written before the chat template existed stays valid.
    chat = {"chat_template": True} if model_cfg.get("chat_template") else {}
    return {**{k: model_cfg[k] for k in keys}, **chat, "device_type": device_type,
            "weights": weights_fingerprint(model_cfg)}


def documents_key(documents: Sequence[str] | Sequence[bytes]) -> str:
    """What identifies documents in a cache key: the texts themselves, or each encoded image's SHA-256."""
    if all(isinstance(document, str) for document in documents):
        return content_key({"texts": list(documents)})
    return content_key({"images": [hashlib.sha256(document).hexdigest() for document in documents]})


@cache
def library_versions() -> dict[str, str]:
    """The versions of the libraries that compute activations, SAE codes and trained SAEs: part of their cache
    keys, since a new torch, transformers or SAELens may change the bytes."""
    return {name: version(name) for name in ("torch", "transformers", "sae-lens")}


def entry_fields(model: dict, documents: str, max_length: int, layer: int, encoder: dict) -> dict[str, Any]:
    """An activation entry's key fields: model identity, documents key, truncation, layer, encoder identity and
    the versions of the code and libraries that compute it."""
    return {"model": model, "documents": documents, "max_length": max_length, "layer": layer,
            "encoder": encoder, "code": EXTRACTION_VERSION, "libraries": library_versions()}


class _EntryWriter:
    """Accumulates one entry chunk by chunk: CSR codes, the hidden-state poolings, or the hidden-state token rows
    (appended to `directory`'s file as they come, so memory holds one chunk)."""

    def __init__(self, sae, encode_batch_tokens: int, directory: Path, keeps_tokens: bool = False):
        self.sae, self.encode_batch_tokens = sae, encode_batch_tokens
        self.parts: list[Any] = []
        self.lengths: list[np.ndarray] = []
        self.tally = None if sae is None else ReconstructionTally(sae.cfg.d_sae)
        self.loss: dict[str, Any] | None = None
        self.token_file = directory / HIDDEN_TOKENS_FILE if keeps_tokens else None

    def add(self, tokens: np.ndarray, offsets: np.ndarray) -> None:
        self.lengths.append(np.diff(offsets))
        if self.token_file is not None:
            with self.token_file.open("ab") as rows:
                rows.write(to_bfloat16_bits(tokens).tobytes())
        elif self.sae is None:
            self.parts.append({method: pool(tokens, offsets, method) for method in HIDDEN_POOLINGS})
        else:
            self.parts.append(encode_tokens(self.sae, tokens, self.encode_batch_tokens, self.tally))

    def save(self, directory: Path) -> None:
        np.save(directory / "offsets.npy", offsets_from_lengths(np.concatenate(self.lengths)))
        if self.token_file is not None:
            self.token_file.touch()  # a chunk of documents without tokens writes nothing
        elif self.sae is None:
            for method in HIDDEN_POOLINGS:
                np.save(directory / f"hidden_{method}.npy", np.concatenate([part[method] for part in self.parts]))
        else:
            sp.save_npz(directory / "codes.npz", sp.vstack(self.parts, format="csr"), compressed=False)
            quality = {**self.tally.result(), "next_token_loss": self.loss}
            (directory / QUALITY_FILE).write_text(json.dumps(quality, indent=2))


def cached_features(
    model_cfg, device_type: str, request: Request, own: tuple[int, Encoder], max_length: int, batch_size: int,
    encode_batch_tokens: int, model: Callable[[], LoadedModel], watch: Stopwatch, allow_any_hook: bool = False,
) -> tuple[Path, bool]:
    """The cache entry for `own` (layer, encoder) and whether it was already there (and intact).

    On a miss, every missing entry of `request` is built in the same pass of `model` (loaded on
    first use). A sibling entry that cannot be built (its SAE unavailable, say) is skipped; this
    job's own entry must be built. SAE (training or loading), model loading, extraction and encoding
    times go to `watch` (`sae`, `model`, `extract`, `encode`).
    """
    identity = model_identity(model_cfg, device_type)
    docs_key = documents_key(request.documents)
    with watch.time("sae"):
        own_fields = entry_fields(identity, docs_key, max_length, own[0], own[1].resolve())
    own_key = content_key(own_fields)
    if read_entry(cache_root() / CACHE_KIND / own_key, verify=True) is not None:
        return cache_root() / CACHE_KIND / own_key, True

    with watch.time("sae"):
        wanted = _wanted_entries(request, own, own_fields, identity, docs_key, max_length)
    build = _EntriesBuilder(request.documents, wanted, own_key, model_cfg.d_model, model, watch, batch_size,
                            max_length, encode_batch_tokens, allow_any_hook)
    siblings = [wanted[k][2] for k in sorted(wanted) if k != own_key]
    [(entry, hit), *_] = cached_directories(CACHE_KIND, [own_fields, *siblings], build)
    return entry, hit


def _wanted_entries(request: Request, own: tuple[int, Encoder], own_fields: dict, identity: dict, docs_key: str,
                    max_length: int) -> dict[str, tuple[int, Encoder, dict]]:
    """Key -> (layer, encoder, key fields) of this job's entry and every sibling whose encoder can be resolved."""
    wanted: dict[str, tuple[int, Encoder, dict]] = {content_key(own_fields): (*own, own_fields)}
    for layer, encoders in request.encoders.items():
        for encoder in encoders:
            if encoder is own[1] and layer == own[0]:
                continue
            try:
                fields = entry_fields(identity, docs_key, max_length, layer, encoder.resolve())
            except Exception:  # noqa: BLE001 - a neighbour's problem (even a crash) is reported by its own job
                continue
            wanted.setdefault(content_key(fields), (layer, encoder, fields))
    return wanted


@dataclass
class _EntriesBuilder:
    """Fills the temporary directories of missing entries from one pass of the model over the documents.

    SAEs load before the model, this job's first: its SAE must fail before anything heavy loads; a
    sibling whose SAE fails is skipped (returned), reported by its own job.
    """

    documents: Sequence[str] | Sequence[bytes]
    wanted: dict[str, tuple[int, Encoder, dict]]
    own_key: str
    d_model: int
    model: Callable[[], LoadedModel]
    watch: Stopwatch
    batch_size: int
    max_length: int
    encode_batch_tokens: int
    allow_any_hook: bool

    def _sae(self, key: str, skipped: set[str]):
        layer, encoder, _ = self.wanted[key]
        try:
            sae = encoder.load()
            check_sae_fits(sae, self.d_model, layer, self.allow_any_hook)
            return sae
        except Exception:  # noqa: BLE001 - this job's own SAE fails the job; a neighbour's is its own job's to report
            if key == self.own_key:
                raise
            skipped.add(key)

    def __call__(self, directories: dict[str, Path]) -> set[str]:
        skipped: set[str] = set()
        keys = sorted(directories, key=lambda k: k != self.own_key)
        with self.watch.time("sae"):
            saes = {k: self._sae(k, skipped) for k in keys if self.wanted[k][1].reads_sae}
        with self.watch.time("model"):
            loaded = self.model()
        keys = [k for k in keys if k not in skipped]
        writers = {k: _EntryWriter(saes.get(k), self.encode_batch_tokens, directories[k],
                                   self.wanted[k][1] is HIDDEN_TOKENS) for k in keys}
        layers = sorted({self.wanted[k][0] for k in keys})
        chunks = range(0, len(self.documents), CHUNK_DOCUMENTS)
        for number, first in enumerate(chunks, start=1):
            with self.watch.time("extract"):
                acts = extract_activations(loaded, self.documents[first : first + CHUNK_DOCUMENTS], layers,
                                           self.batch_size, self.max_length, desc=f"extract {number}/{len(chunks)}")
            with self.watch.time("encode"):
                for key in keys:
                    layer = self.wanted[key][0]
                    writers[key].add(acts[layer].values, acts[layer].offsets)
            del acts
        for key in keys:
            if writers[key].sae is not None:
                with self.watch.time("quality"):
                    writers[key].loss = self._next_token_loss(loaded, writers[key].sae, self.wanted[key][0])
            writers[key].save(directories[key])
        return skipped

    def _next_token_loss(self, loaded: LoadedModel, sae, layer: int) -> dict[str, Any] | None:
        """The SAE's next-token loss, or why it could not be measured: a diagnostic never fails the entry."""
        texts = [d for d in self.documents[:LOSS_DOCUMENTS] if isinstance(d, str)]
        try:
            return next_token_loss(loaded, sae, layer, texts, self.batch_size, self.max_length)
        except (RuntimeError, MemoryError) as error:  # out of memory, on the GPU or the host
            return {"error": f"{type(error).__name__}: {first_line(error)}"}


def read_hidden(entry: Path, method: str) -> np.ndarray:
    """Pooled hidden states (documents x d_model) from an entry."""
    return np.load(entry / f"hidden_{method}.npy")


def read_hidden_tokens(entry: Path, d_model: int) -> tuple[np.ndarray, np.ndarray]:
    """Every real token's hidden state (tokens x d_model, bfloat16 bits, a read-only memory map) and the
    document offsets, from a `HIDDEN_TOKENS` entry."""
    offsets = np.load(entry / "offsets.npy")
    if offsets[-1] == 0:
        return np.zeros((0, d_model), dtype=np.uint16), offsets
    return np.memmap(entry / HIDDEN_TOKENS_FILE, dtype=np.uint16, mode="r", shape=(int(offsets[-1]), d_model)), offsets


def read_quality(entry: Path) -> dict[str, Any]:
    """An SAE entry's measured quality (`saes.quality`)."""
    return json.loads((entry / QUALITY_FILE).read_text())


def read_codes(entry: Path) -> tuple[sp.csr_matrix, np.ndarray]:
    """Per-token SAE codes (tokens x d_sae, CSR) and document offsets from an entry."""
    return sp.load_npz(entry / "codes.npz").tocsr(), np.load(entry / "offsets.npy")
