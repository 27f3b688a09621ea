"""What every feature type is: `FeatureType` (the questions MOSAIC asks of one) and what building features takes
and gives (`FeatureContext`, `Features`, the sweep's `Sweep`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from omegaconf import DictConfig

from mosaic.activations.encoder import Encoder
from mosaic.activations.saes.sources import EncoderInputs, SAESource
from mosaic.data.splits import Splits
from mosaic.infra.timing import Stopwatch

# What results.json says about caching when the job's features use no cache.
NO_CACHE: dict[str, Any] = {"hit": None, "key": None}


@dataclass
class Features:
    """A job's document features and what produced them.

    `encoder` is the job's own (hidden state or SAE): transfer targets and predictions are read
    through exactly this one, never one rebuilt or retrained elsewhere. `refit` rebuilds the matrix
    with whatever these features fit on training documents (`refitted`) fitted on other rows.
    """

    matrix: Any
    described: dict[str, Any]
    names: list[str] | None
    cache: dict[str, Any]
    encoder: Encoder | None = None
    refit: Callable[[np.ndarray], Any] | None = None
    refitted: tuple[str, ...] = ()

    def document_rows(self, index: np.ndarray):
        """One row per document of `index`: the matrix's rows, or the mean of each document's tokens where the
        features keep every token (`pooling=tokens`), for what reads documents as rows (class means)."""
        from mosaic.features.tokens import TokenFeatures

        rows = self.matrix[index]
        return rows.mean_pooled() if isinstance(rows, TokenFeatures) else rows

    def for_training_rows(self, train: np.ndarray):
        """The matrix with whatever these features fit on training documents (`refitted`) fitted on `train`
        instead: cross-validation refits it per fold. Features that fit nothing are the same matrix."""
        return self.matrix if self.refit is None else self.refit(train)


@dataclass(frozen=True)
class Sweep:
    """Values the surrounding multirun sweeps over (empty outside one): the siblings one forward can serve."""

    layers: tuple[int, ...] = ()
    features: tuple[str, ...] = ()
    # Each swept `sae.*` key's values (`sae.width`, `sae.l0`, ...): an SAE source's `sibling_keys` among them.
    sae_values: dict[str, tuple[str, ...]] = field(default_factory=dict)
    poolings: tuple[str, ...] = ()


@dataclass
class FeatureContext:
    """What building features needs besides the config and documents.

    `protected` holds the content hashes of every document the job (and its transfer targets)
    validates, tests or cross-validates on: no SAE MOSAIC trains may see them. `model` loads the
    job's model once, on first use.
    """

    watch: Stopwatch
    model: Callable[[], Any]
    protected: frozenset[str]
    sweep: Sweep = Sweep()


class FeatureType:
    """One `features.type`. The defaults describe features read from the model's activations."""

    # Its features come from the model's activations: a forward computes them, so fetch lists the model.
    reads_model = True
    # A probe on it can be scored on transfer targets and label new texts with `predict`.
    transfers = True

    def validate(self, cfg: DictConfig) -> None:
        """Refuse, in one line, a config these features cannot be built for (before anything loads)."""

    def build(self, cfg: DictConfig, data, splits: Splits, context: FeatureContext, planned) -> Features:
        """Every document's pooled features. `planned`, for features read from the model, is what the forward
        computes (`plan_encoders`: the activation store's request, and this job's own encoder); else None."""
        raise NotImplementedError

    def variant(self, cfg: DictConfig) -> str | None:
        """Which of its slots (`slots`) the job's own features read: an SAE source's variant, the hidden state's
        token rows; None for the one slot."""
        return None

    def slots(self, cfg: DictConfig, layer: int, sweep: Sweep) -> list[tuple[str, str | None]]:
        """What a forward computes for these features at `layer`, for the job and its `sweep`'s siblings."""
        return []

    def encoder(self, inputs: EncoderInputs, layer: int, variant: str | None) -> Encoder:
        raise NotImplementedError

    def sae(self, cfg: DictConfig) -> SAESource | None:
        """The SAE these features read (None: none)."""
        return None

    def hub_items(self, cfg: DictConfig) -> list:
        """What building them reads from the hub (`hub.HubItem`s) besides the dataset: the model, an SAE."""
        from mosaic.activations.model_sources import model_source

        return model_source(cfg.model).hub_items(cfg.model)

    def entry_bytes(self, cfg: DictConfig, documents) -> int | None:
        """The size of their activation cache entry, estimated before it exists (None: unknown or no entry)."""
        return None
