"""What turns a layer's residual stream into cached features: the hidden state itself, or an SAE.

Kept apart from the store (and free of heavy imports) so that option modules can describe their
encoders while a config is still being validated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Encoder:
    """Turns a layer's residual stream into cached features: the hidden state itself, or an SAE.

    `resolve()` returns its identity, part of the cache key (for an SAE, the SHA-256 of its weights:
    it may have to train or download the SAE first, so it runs only when the key is needed);
    `load()` returns the SAE, and is None for the hidden state; `ready()` says whether `resolve()`
    would answer without training or downloading anything, and `planned()` what identifies it until
    then (a Gemma Scope SAE's release and id; a trained SAE's future cache key, under `to_train`):
    a grid's plan asks both.
    """

    resolve: Callable[[], dict[str, Any]]
    load: Callable[[], Any] | None = None
    ready: Callable[[], bool] = lambda: True
    planned: Callable[[], dict[str, Any]] = lambda: {}
