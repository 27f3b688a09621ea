"""Where a job's SAE comes from (`sae.source`): one module per source, each answering everything MOSAIC asks of it.

| `sae.source` | module | the SAE |
| --- | --- | --- |
| `trained` | `trained.py` | trained by MOSAIC with SAELens, on a corpus without the job's documents, cached |
| `cached` | `cached.py` | one MOSAIC trained earlier, by its cache key (`sae list`) |
| `local` | `local.py` | a SAELens-format directory |
| `saelens` | `saelens.py` | any residual-stream SAE of SAELens's release table, by release and id |
| `gemma_scope` | `gemma_scope.py` | Gemma Scope (Gemma 2), by layer and width: a SAELens release |
| `gemma_scope_2` | `gemma_scope_2.py` | Gemma Scope 2 (Gemma 3), by layer, width and L0: a SAELens release |

The rest of MOSAIC asks a `SAESource` and never compares `sae.source` with a value: its checks before
anything loads (`validate`), its SAEs at a layer (`variants` over its `sibling_keys`: a sweep's
siblings), the `Encoder` that encodes a layer's activations (its identity keys the activation
cache), what `results.json` says of it (`described`: identity, display name, width, Neuronpedia
pages), what a resumed job compares (`input_fingerprint`), what it reads from the hub (`hub_items`),
how a grid's plan names it and sizes its codes (`plan_label`, `planned_l0`), whether MOSAIC trains it
(`trains`, `trains_on_training_split`), and the SAE a saved probe read (`saved_encoder`, for
`probe.load` and `predict`). A new source is its module, one line in `SAE_SOURCES`, its YAML in
`conf/sae/` and its test.
"""

from __future__ import annotations

from omegaconf import DictConfig

from mosaic.activations.saes.sources.base import EncoderInputs, SAEIdentity, SAESource
from mosaic.activations.saes.sources.cached import Cached
from mosaic.activations.saes.sources.gemma_scope import GemmaScope
from mosaic.activations.saes.sources.gemma_scope_2 import GemmaScope2
from mosaic.activations.saes.sources.local import LocalDirectory
from mosaic.activations.saes.sources.saelens import SAELensRelease
from mosaic.activations.saes.sources.trained import Trained

# sae.source -> where its SAEs come from.
SAE_SOURCES: dict[str, SAESource] = {"trained": Trained(), "cached": Cached(), "local": LocalDirectory(),
                                     "saelens": SAELensRelease(), "gemma_scope": GemmaScope(),
                                     "gemma_scope_2": GemmaScope2()}


def sae_source(cfg: DictConfig) -> SAESource:
    """The job's `sae.source`."""
    return SAE_SOURCES[cfg.sae.source]


__all__ = ["SAE_SOURCES", "EncoderInputs", "SAEIdentity", "SAESource", "sae_source"]
