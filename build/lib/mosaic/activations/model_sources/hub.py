"""`model.source=hub`: a Hugging Face hub model (`hf_id` at `revision`), or a local copy of one (`model.path`).

A branch revision resolves to the commit it pointed at when fetched (the hub client's cache), so every
node of a grid loads, and keys the cache by, the same commit; the weights are identified by that
commit (or, for `model.path`, by the SHA-256 of its files, `activations.models.weights_fingerprint`).
Models load from the fetched snapshot with the network off; `trust_remote_code` only where the config
asks.
"""

from __future__ import annotations

from omegaconf import DictConfig

from mosaic.activations.model_sources.base import ModelSource
from mosaic.infra.errors import MosaicError, first_line


def _cannot_load(cfg, source: str, reason: str) -> MosaicError:
    return MosaicError(f"model {cfg.name}: cannot load {source!r} ({reason})")


def resolved_revision(cfg) -> str:
    """The commit `cfg.revision` (default `main`) of hub model `cfg.hf_id` points at.

    A branch such as `main` moves; the commit does not, so caches are keyed by it and the model is
    loaded at it. Once fetched, the branch is read where it pointed then (the hub client's cache),
    with no network call, so every node of a grid loads the same commit; `python -m mosaic fetch`
    moves it to where the branch points now. Never fetched: the model is fetched now at the branch,
    which records its commit for every later job, unless the hub is switched off.
    """
    from mosaic.infra import hub

    revision = cfg.revision or "main"
    commit = hub.local_commit("model", cfg.hf_id, revision)
    if commit is not None:
        return commit
    if hub.hub_offline():
        raise hub.not_fetched(f"model {cfg.name} ({cfg.hf_id}@{revision})", "; or set model.path=/a/local/copy")
    return hub.download_snapshot("model", cfg.hf_id, revision).name


def _hub_folder(cfg) -> str:
    """The local copy (`model.path`), or the fetched snapshot of `hf_id` at its commit (downloaded if missing)."""
    from mosaic.infra import hub

    if cfg.path is not None:
        return cfg.path
    return str(hub.snapshot("model", cfg.hf_id, resolved_revision(cfg)))


def _from_pretrained(cfg, loader, source: str, **kwargs):
    """Call a `from_pretrained` on a local folder, offline: an unloadable model is one readable line."""
    from mosaic.infra import hub

    try:
        with hub.local_only():
            return loader.from_pretrained(source, trust_remote_code=cfg.trust_remote_code, **kwargs)
    except (OSError, ValueError) as error:  # ValueError: a folder transformers cannot read
        raise _cannot_load(cfg, source, first_line(error)) from None


class HubModel(ModelSource):
    def load(self, cfg: DictConfig, dtype):
        import transformers as tf

        source = _hub_folder(cfg)
        if cfg.family == "paligemma":
            processor = _from_pretrained(cfg, tf.AutoProcessor, source)
            return _from_pretrained(cfg, tf.AutoModel, source, dtype=dtype), processor.tokenizer, processor
        extra = {"attn_implementation": cfg.attn_implementation} if cfg.attn_implementation else {}
        tokenizer = _from_pretrained(cfg, tf.AutoTokenizer, source)
        return _from_pretrained(cfg, tf.AutoModel, source, dtype=dtype, **extra), tokenizer, None

    def tokenizer(self, cfg: DictConfig):
        import transformers as tf

        return _from_pretrained(cfg, tf.AutoTokenizer, _hub_folder(cfg))

    def weights(self, cfg: DictConfig) -> dict[str, str]:
        return {"commit": resolved_revision(cfg)}

    def validate(self, cfg: DictConfig, key: str) -> None:
        from mosaic.infra.errors import require

        require(cfg.hf_id is not None or cfg.path is not None, f"{key}.hf_id", cfg.hf_id,
                f"{key}.source=hub needs {key}.hf_id or {key}.path")

    def hub_items(self, cfg: DictConfig) -> list:
        """The model's repository at its revision, unless a local copy replaces it."""
        from mosaic.infra.hub import HubItem

        if cfg.path is not None:
            return []
        return [HubItem("model", cfg.hf_id, cfg.revision or "main", f"model {cfg.name}")]
