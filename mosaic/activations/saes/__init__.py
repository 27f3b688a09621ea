"""Sparse autoencoders: load one in SAELens format, train one with SAELens, encode activations sparsely,
measure how well it reconstructs them; `sources` says where each `sae.source` comes from.

The names below are imported on first use (SAELens and torch are slow to import).
"""

from importlib import import_module

_EXPORTS = {"encode_tokens": "encode", "cached_release_sae_files": "load", "check_sae_fits": "load",
            "load_release_sae": "load", "load_sae": "load", "release_sae_files": "load", "sae_layer": "load",
            "ARCHITECTURES": "train", "TRAINING_FILE": "train", "TrainSettings": "train", "train_sae": "train"}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
