"""What every model source is: `ModelSource`, the questions MOSAIC asks of one."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig


class ModelSource:
    """One `model.source`."""

    def load(self, cfg: DictConfig, dtype) -> tuple[Any, Any, Any]:
        """(model, tokenizer, processor or None), the model on the CPU in `dtype`."""
        raise NotImplementedError

    def tokenizer(self, cfg: DictConfig):
        raise NotImplementedError

    def weights(self, cfg: DictConfig) -> dict[str, str]:
        """What identifies its weights without loading them (part of every cache key)."""
        raise NotImplementedError

    def validate(self, cfg: DictConfig, key: str) -> None:
        """Refuse, in one line, a config this source cannot load (`key`: where the config sits, e.g. `model`)."""

    def hub_items(self, cfg: DictConfig) -> list:
        """What loading it reads from the hub (`hub.HubItem`s)."""
        return []
