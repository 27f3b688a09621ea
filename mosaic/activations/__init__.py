"""Making activations, the expensive half of a job: what a model's residual stream says about each document.

`models` loads the network (and fingerprints its weights), `forward` runs it with early exit and
keeps real tokens, `saes` loads, trains and applies SAEs through SAELens, `plan` decides which
(layer, encoder) pairs one forward fills (this job's and its sweep siblings'), and `store` is the
per-token activation cache that makes a second job skip all of it.
"""

from mosaic.activations.forward import TokenActivations, extract_activations
from mosaic.activations.models import LoadedModel, load_model, transformer_blocks

__all__ = ["LoadedModel", "TokenActivations", "extract_activations", "load_model", "transformer_blocks"]
