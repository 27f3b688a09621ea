"""The expensive half of a job — model forward and SAE encode — computed once and cached.

An entry (cache kind `activations`) holds what the cheap half needs for one (model, texts,
max_length, layer, encoder): for an SAE, the per-token codes (CSR, `codes.npz`) and document
offsets, from which every pooling is rebuilt; for the raw hidden state, the four poolings defined
on it (token-level hidden states of a large model would not fit on disk). A job that misses builds
its own entry and those its sweep will ask for next, all from one forward that stops at the deepest
layer; a job that hits loads no model at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from mosaic.cache import cached_directories, content_key
from mosaic.extract import LoadedModel, extract_activations, load_model
from mosaic.features import pool
from mosaic.sae import check_sae_fits, encode_tokens

CACHE_KIND = "activations"
HIDDEN_POOLINGS = ("mean", "max", "sum", "last")


@dataclass
class Encoder:
    """Turns a layer's residual stream into cached features: the hidden state itself, or an SAE.

    `identity` is part of the cache key; `load(loaded_model)` returns the SAE and is None for the
    hidden state. Only an SAE that MOSAIC trains itself (`needs_model`) uses the loaded model.
    """

    identity: dict[str, Any]
    load: Callable[[LoadedModel | None], Any] | None = None
    needs_model: bool = False


HIDDEN = Encoder({"type": "hidden"})


@dataclass
class Request:
    """Everything one forward must produce: per layer, the encoders to apply."""

    texts: Sequence[str]
    encoders: dict[int, list[Encoder]]
    timings: dict[str, float] = field(default_factory=dict)


def model_identity(model_cfg, device_type: str) -> dict[str, Any]:
    """The model settings that change activation bytes (not its display name)."""
    keys = ("source", "hf_id", "revision", "path", "family", "n_layers", "d_model", "n_heads", "dtype",
            "attn_implementation")
    return {**{k: model_cfg[k] for k in keys}, "device_type": device_type}


def _fields(model: dict, texts_key: str, max_length: int, layer: int, encoder: Encoder) -> dict[str, Any]:
    return {"model": model, "texts": texts_key, "max_length": max_length, "layer": layer, "encoder": encoder.identity}


def _write(directory: Path, encoder: Encoder, tokens: np.ndarray, offsets: np.ndarray, sae, batch_tokens: int):
    np.save(directory / "offsets.npy", offsets)
    if sae is None:
        for method in HIDDEN_POOLINGS:
            np.save(directory / f"hidden_{method}.npy", pool(tokens, offsets, method))
    else:
        sp.save_npz(directory / "codes.npz", encode_tokens(sae, tokens, batch_tokens), compressed=False)


def cached_features(
    model_cfg, device_type: str, request: Request, own: tuple[int, Encoder], max_length: int, batch_size: int,
    encode_batch_tokens: int,
) -> tuple[Path, bool]:
    """The cache entry for `own` (layer, encoder), building every missing entry of `request` if it is absent.

    Returns the entry's directory and whether it was already there. Extraction and encoding time of
    a build are added to `request.timings`.
    """
    model = model_identity(model_cfg, device_type)
    texts_key = content_key({"texts": list(request.texts)})
    wanted = {
        content_key(_fields(model, texts_key, max_length, layer, encoder)): (layer, encoder)
        for layer, encoders in request.encoders.items()
        for encoder in encoders
    }
    own_fields = _fields(model, texts_key, max_length, *own)
    wanted[content_key(own_fields)] = own
    fields_list = [own_fields] + [_fields(model, texts_key, max_length, *wanted[k]) for k in sorted(wanted)]

    def build(directories: dict[str, Path]) -> None:
        own_encoder = own[1]
        saes = {}
        if own_encoder.load is not None and not own_encoder.needs_model:
            saes[content_key(own_fields)] = own_encoder.load(None)  # an unavailable SAE fails before the model
        start = time.perf_counter()
        loaded = load_model(model_cfg)
        layers = sorted({wanted[key][0] for key in directories})
        acts = extract_activations(loaded, request.texts, layers, batch_size, max_length)
        request.timings["extract"] = time.perf_counter() - start
        start = time.perf_counter()
        for key, directory in directories.items():
            layer, encoder = wanted[key]
            if key in saes:
                sae = saes.pop(key)
            else:
                sae = None if encoder.load is None else encoder.load(loaded)
            if sae is not None:
                check_sae_fits(sae, model_cfg.d_model, layer)
            _write(directory, encoder, acts[layer].values, acts[layer].offsets, sae, encode_batch_tokens)
        request.timings["encode"] = time.perf_counter() - start

    [(entry, hit), *_] = cached_directories(CACHE_KIND, fields_list, build)
    return entry, hit


def read_hidden(entry: Path, method: str) -> np.ndarray:
    """Pooled hidden states (documents x d_model) from an entry."""
    return np.load(entry / f"hidden_{method}.npy")


def read_codes(entry: Path) -> tuple[sp.csr_matrix, np.ndarray]:
    """Per-token SAE codes (tokens x d_sae, CSR) and document offsets from an entry."""
    return sp.load_npz(entry / "codes.npz").tocsr(), np.load(entry / "offsets.npy")
