"""`sae.source=cached`: an SAE MOSAIC trained earlier, by the cache key `sae list` shows (`sae.key`, 8 or more
characters of it).

Any job can read it, whatever its own `sae.*` training settings: the SAE is identified by its key
and the SHA-256 of its files, exactly as the job that trained it identified it, so both jobs share
activation entries. It serves the layer it was trained at, and is refused, in one line, on a job
that scores a document it was trained on (its `corpus.json`) or reads another model. A sweep over
`sae.key` encodes with all of its SAEs in one forward.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from omegaconf import DictConfig

from mosaic.activations.encoder import Encoder
from mosaic.activations.saes.sources.base import EncoderInputs, SAESource
from mosaic.activations.saes.sources.trained import Trained, architecture_label, trained_identity, training_record

# A key names one SAE when at least this many of its characters are given.
MIN_KEY_CHARACTERS = 8


def find_trained(prefix: str | None):
    """The cache entry of the one trained SAE whose key starts with `prefix`; a one-line error otherwise."""
    from mosaic.infra.cache import cache_root
    from mosaic.infra.errors import ConfigError

    if prefix is None or len(prefix) < MIN_KEY_CHARACTERS:
        raise ConfigError(f"sae.key={prefix!r} is not allowed: give at least {MIN_KEY_CHARACTERS} characters "
                          f"(python -m mosaic sae list shows the keys in {cache_root() / 'saes'})")
    entry = _trained_with_prefix(str(cache_root()), prefix)
    if not entry.path.exists():  # removed since it was found: look again
        _trained_with_prefix.cache_clear()
        entry = _trained_with_prefix(str(cache_root()), prefix)
    return entry


@cache
def _trained_with_prefix(root: str, prefix: str):
    """The one SAE entry under the cache `root` whose key starts with `prefix`, read once per job: validation,
    siblings, the encoder and the record each ask (a failed lookup is not remembered)."""
    from mosaic.infra.cache import list_entries
    from mosaic.infra.errors import ConfigError

    found = [entry for entry in list_entries("saes") if entry.key.startswith(prefix)]
    if len(found) != 1:
        reason = "no trained SAE in the cache has it" if not found else f"{len(found)} trained SAEs share it"
        raise ConfigError(f"sae.key={prefix!r} is not allowed: {reason} (python -m mosaic sae list shows the keys "
                          f"in {root}/saes)")
    return found[0]


class Cached(SAESource):
    # A sweep over keys (and layers) shares one forward.
    sibling_keys = ("sae.key",)

    def validate(self, cfg: DictConfig) -> None:
        from mosaic.infra.errors import require

        entry = find_trained(cfg.sae.key)
        trained_on = entry.fields.get("model", {})
        require(entry.fields.get("layer") == cfg.layer, "layer", cfg.layer,
                f"the trained SAE {entry.key} reads layer {entry.fields.get('layer')}")
        require(all(trained_on.get(k) == cfg.model.get(k) for k in ("source", "hf_id", "d_model")), "sae.key",
                cfg.sae.key, f"the trained SAE {entry.key} was trained on another model "
                f"({trained_on.get('hf_id') or trained_on.get('source')}) than {cfg.model.name}")

    def siblings(self, cfg: DictConfig, layer: int, sweep_values: dict[str, tuple[str, ...]]) -> list[str]:
        """The sweep's keys that name an SAE trained at `layer`."""
        def at_layer(key: str) -> bool:
            try:
                return find_trained(key).fields.get("layer") == layer
            except Exception:  # noqa: BLE001 - a key this job cannot read is its own job's error to report
                return False

        return sorted(key for key in self.sibling_variants(cfg, sweep_values) if at_layer(key))

    def encoder(self, inputs: EncoderInputs, layer: int, variant: str) -> Encoder:
        directory = find_trained(variant).path
        saved = {key: value for key, value in trained_identity(directory).items() if key in ("key", "sha256")}
        return Trained().saved_encoder({"source": "trained", **saved}, str(inputs.device), inputs.protected)

    def name(self, identity: dict[str, Any]) -> str:
        return Trained().name(identity)

    def described(self, cfg: DictConfig, identity: dict[str, Any], width: int) -> dict[str, Any]:
        return {**super().described(cfg, identity, width), "architecture": architecture_label(
            find_trained(identity["key"]).fields.get("train", {}))}

    def plan_label(self, cfg: DictConfig) -> str:
        return f"trained SAE {cfg.sae.key} ({architecture_label(find_trained(cfg.sae.key).fields.get('train', {}))})"

    def trains_on_training_split(self, cfg: DictConfig) -> bool:
        return find_trained(cfg.sae.key).fields.get("corpus", {}).get("corpus") == "train_split"

    def training(self, identity: dict[str, Any]) -> dict[str, Any] | None:
        return training_record(identity["key"])

    def saved_encoder(self, saved: dict[str, Any], device: str, protected: frozenset[str]) -> Encoder:
        return Trained().saved_encoder(saved, device, protected)
