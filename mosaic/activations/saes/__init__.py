"""Sparse autoencoders: load one in SAELens format, train one with SAELens, encode activations sparsely,
measure how well it reconstructs them."""

from mosaic.activations.saes.encode import encode_tokens
from mosaic.activations.saes.load import (
    cached_release_sae_file,
    check_sae_fits,
    load_release_sae,
    load_sae,
    release_sae_file,
    sae_layer,
)
from mosaic.activations.saes.train import ARCHITECTURES, TRAINING_FILE, TrainSettings, train_sae

__all__ = ["ARCHITECTURES", "TRAINING_FILE", "TrainSettings", "cached_release_sae_file", "check_sae_fits",
           "encode_tokens", "load_release_sae",
           "load_sae", "release_sae_file", "sae_layer", "train_sae"]
