"""Making activations, the expensive half of a job: what a model's residual stream says about each document.

`models` loads the network (and fingerprints its weights; `model_sources` says where each
`model.source` comes from), `forward` runs it with early exit and keeps real tokens, `saes` loads,
trains and applies SAEs through SAELens (`saes.sources`: where each `sae.source` comes from),
`encoder` is what turns a layer into cached features, and `store` is the per-token activation cache
that makes a second job skip all of it.

The names below are imported on first use, so that a config can be checked against the option
modules here without importing torch.
"""

from importlib import import_module

_EXPORTS = {"TokenActivations": "forward", "extract_activations": "forward", "LoadedModel": "models",
            "load_model": "models", "transformer_blocks": "models"}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
