"""Extraction: load a model, hook its blocks, and return the residual stream of real tokens."""

from mosaic.extract.activations import TokenActivations, extract_activations
from mosaic.extract.models import LoadedModel, load_model, transformer_blocks

__all__ = ["LoadedModel", "TokenActivations", "extract_activations", "load_model", "transformer_blocks"]
