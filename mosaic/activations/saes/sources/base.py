"""What every SAE source is: `SAESource` (the questions MOSAIC asks of one), `SAEIdentity` (what identifies its SAE
wherever it is recorded), `EncoderInputs` (what building its encoders may need)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf
from pydantic import BaseModel, ConfigDict

from mosaic.activations.encoder import Encoder


class SAEIdentity(BaseModel):
    """What identifies a job's SAE wherever it is recorded (results.json's `features.sae`, a saved probe, reports):
    its source, the SHA-256 of its files, the source's own keys (a trained SAE's cache key, a release and id, a
    local path), and what the source names it: a display name, its width as the source speaks of it, the
    prefix of its latents' Neuronpedia pages (None where there are none), and, for an SAE MOSAIC trained, its
    architecture and sparsity (`topk k=64`)."""

    model_config = ConfigDict(extra="forbid")

    source: str
    sha256: dict[str, str] | None = None
    key: str | None = None
    release: str | None = None
    id: str | None = None
    path: str | None = None
    name: str | None = None
    width: str | None = None
    neuronpedia: str | None = None
    architecture: str | None = None


@dataclass
class EncoderInputs:
    """What building a job's SAE encoders may need. `shared` holds what a source builds once per job and
    shares across its layers (a trained SAE's corpus and the corpus's activations)."""

    cfg: DictConfig
    data: Any
    splits: Any
    protected: frozenset[str]
    model: Callable[[], Any]
    device: Any
    shared: dict[str, Any] = field(default_factory=dict)


class SAESource:
    """One `sae.source`. The defaults describe an SAE MOSAIC neither trains nor fetches."""

    # MOSAIC trains it: its draws follow the job's seed, `sae train` builds it, a grid's plan lists it.
    trains = False

    def validate(self, cfg: DictConfig) -> None:
        """Refuse, in one line, a config this source cannot serve (before anything loads)."""

    # The keys whose values pick one of its SAEs at a layer: a sweep over them (and over layers) shares one forward.
    sibling_keys: tuple[str, ...] = ("sae.width",)

    def variant(self, cfg: DictConfig) -> str:
        """The job's own SAE among its layer's siblings: its `sibling_keys` values joined by `/` (`16k`,
        `16k/small`)."""
        return "/".join(str(OmegaConf.select(cfg, key)) for key in self.sibling_keys)

    def sibling_variants(self, cfg: DictConfig, sweep_values: dict[str, tuple[str, ...]]) -> set[str]:
        """The job's variant and every one its sweep's values of `sibling_keys` make."""
        axes = [[str(OmegaConf.select(cfg, key)), *sweep_values.get(key, ())] for key in self.sibling_keys]
        return {"/".join(values) for values in itertools.product(*axes)}

    def variants(self, cfg: DictConfig, layer: int) -> list[str]:
        """The variants it has at `layer`: a sweep's sibling is planned only where its SAE exists."""
        return [self.variant(cfg)]

    def siblings(self, cfg: DictConfig, layer: int, sweep_values: dict[str, tuple[str, ...]]) -> list[str]:
        """The variants one forward at `layer` computes for this job and its sweep: those wanted that exist."""
        return sorted(self.sibling_variants(cfg, sweep_values) & set(self.variants(cfg, layer)))

    def encoder(self, inputs: EncoderInputs, layer: int, variant: str) -> Encoder:
        raise NotImplementedError

    def name(self, identity: dict[str, Any]) -> str:
        """A short, stable display name for reports, tables and W&B."""
        raise NotImplementedError

    def described(self, cfg: DictConfig, identity: dict[str, Any], width: int) -> dict[str, Any]:
        """What results.json records of the job's SAE (`features.sae`, an `SAEIdentity`): its identity, `name`,
        `width` (as the report shows it) and `neuronpedia` (a page prefix for its latents, or None)."""
        described = {**{k: v for k, v in identity.items() if k != "type"}, "name": self.name(identity),
                     "width": str(width), "neuronpedia": None}
        return SAEIdentity.model_validate(described).model_dump(exclude_unset=True)

    def input_fingerprint(self, cfg: DictConfig) -> Any:
        """What a job reads from outside MOSAIC's cache for its SAE, fingerprinted (None: nothing)."""
        return None

    def hub_items(self, cfg: DictConfig) -> list:
        """What the job's SAE reads from the hub (`hub.HubItem`s)."""
        return []

    def plan_label(self, cfg: DictConfig) -> str:
        raise NotImplementedError

    def planned_l0(self, cfg: DictConfig) -> int | None:
        """Latents firing per token, where known before the SAE exists (for a plan's cache-growth estimate)."""
        return None

    def trains_on_training_split(self, cfg: DictConfig) -> bool:
        """Whether its SAE trains on the job's own training split (its codes of those documents are then not
        held out, and it cannot be rebuilt without the job's data)."""
        return False

    def training(self, identity: dict[str, Any]) -> dict[str, Any] | None:
        """How the SAE was trained (tokens, steps, time, curve), for an SAE MOSAIC trained; None otherwise."""
        return None

    def saved_encoder(self, saved: dict[str, Any], device: str, protected: frozenset[str]) -> Encoder | None:
        """The SAE a saved probe read, found by the identity it recorded; None: the probe's config rebuilds it."""
        return None
