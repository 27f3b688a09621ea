"""What turns a layer's residual stream into cached features: the hidden state itself, or an SAE.

Kept apart from the store (and free of heavy imports) so that option modules can describe their
encoders while a config is still being validated.
"""

from __future__ import annotations

from typing import Any


class Encoder:
    """Turns a layer's residual stream into cached features. Each SAE source has its own (`saes.sources`); the
    hidden state is `activations.store.HIDDEN`.

    `resolve()` returns its identity, part of the cache key (for an SAE, the SHA-256 of its weights:
    it may have to train or download the SAE first, so it runs only when the key is needed);
    `load()` returns the SAE; `ready()` says whether `resolve()` would answer without training or
    downloading anything, and `planned()` what identifies it until then (a Gemma Scope SAE's release
    and id; a trained SAE's future cache key, under `to_train`): a grid's plan asks both.
    """

    # It encodes through an SAE (the store loads one before the forward); the hidden state needs none.
    reads_sae = True

    def resolve(self) -> dict[str, Any]:
        raise NotImplementedError

    def load(self):
        raise NotImplementedError

    def ready(self) -> bool:
        return True

    def planned(self) -> dict[str, Any]:
        return {}
