"""`model.source=random`: an untrained model of `model.family` with the configured sizes, for tests.

Nothing is downloaded: text models tokenize with the packaged MiniLM tokenizer, and the tiny
PaliGemma builds a byte-fallback tokenizer and PaliGemma's own processor in memory. Initialisation is
seeded, so its weights are identified by the versions of the libraries that draw them.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from mosaic.activations.model_sources.base import ModelSource
from mosaic.activations.model_sources.minilm import minilm_tokenizer
from mosaic.infra.errors import MosaicError

# The tiny random PaliGemma's images: 56 x 56 pixels in 14 x 14 patches, so 16 image tokens.
_TINY_IMAGE_SIZE, _TINY_PATCH_SIZE = 56, 14


def _random_model(cfg, vocab: int):
    """An untrained model of `cfg.family` with the configured sizes, seeded so tests are repeatable."""
    import torch
    import transformers as tf

    d, layers, heads = cfg.d_model, cfg.n_layers, cfg.n_heads
    configs = {
        "gpt2": lambda: tf.GPT2Config(vocab_size=vocab, n_embd=d, n_layer=layers, n_head=heads, n_positions=1024,
                                      bos_token_id=None, eos_token_id=None),
        "bert": lambda: tf.BertConfig(vocab_size=vocab, hidden_size=d, num_hidden_layers=layers,
                                      num_attention_heads=heads, intermediate_size=4 * d),
        "llama": lambda: tf.LlamaConfig(vocab_size=vocab, hidden_size=d, num_hidden_layers=layers,
                                        num_attention_heads=heads, num_key_value_heads=heads,
                                        intermediate_size=4 * d, max_position_embeddings=1024),
        "gemma2": lambda: tf.Gemma2Config(vocab_size=vocab, hidden_size=d, num_hidden_layers=layers,
                                          num_attention_heads=heads, num_key_value_heads=heads,
                                          head_dim=d // heads, intermediate_size=4 * d,
                                          max_position_embeddings=1024, attn_implementation="eager"),
        "gemma3": lambda: tf.Gemma3TextConfig(vocab_size=vocab, hidden_size=d, num_hidden_layers=layers,
                                              num_attention_heads=heads, num_key_value_heads=heads,
                                              head_dim=d // heads, intermediate_size=4 * d,
                                              max_position_embeddings=1024),
    }
    if cfg.family not in configs:
        raise MosaicError(f"model.family={cfg.family!r} has no random-init recipe: choose one of "
                          + ", ".join(configs))
    torch.manual_seed(0)
    return tf.AutoModel.from_config(configs[cfg.family]())


def _tiny_paligemma_tokenizer():
    """A byte-fallback BPE tokenizer over characters, built in memory: no tokenizer file to download."""
    from transformers import GemmaTokenizer

    specials = ["<pad>", "<eos>", "<bos>", "<unk>"]
    characters = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'-:\n") + ["▁"]
    bytes_ = [f"<0x{i:02X}>" for i in range(256)]
    return GemmaTokenizer(vocab={token: i for i, token in enumerate(specials + characters + bytes_)}, merges=[])


def _random_paligemma(cfg) -> tuple[Any, Any]:
    """An untrained PaliGemma 2-style model (SigLIP vision tower + Gemma 2 language model) and its processor.

    The language model has the configured sizes; the vision tower is one small layer. The processor
    is PaliGemma's own, so image tokens are laid out exactly as for the real model.
    """
    import torch
    import transformers as tf
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    n_image_tokens = (_TINY_IMAGE_SIZE // _TINY_PATCH_SIZE) ** 2
    images = SiglipImageProcessorPil(size={"height": _TINY_IMAGE_SIZE, "width": _TINY_IMAGE_SIZE},
                                     image_seq_length=n_image_tokens)
    processor = tf.PaliGemmaProcessor(image_processor=images, tokenizer=_tiny_paligemma_tokenizer())
    tokenizer = processor.tokenizer
    head_dim = cfg.d_model // cfg.n_heads
    text = tf.Gemma2Config(vocab_size=len(tokenizer), hidden_size=cfg.d_model, intermediate_size=2 * cfg.d_model,
                           num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads, num_key_value_heads=1,
                           head_dim=head_dim, query_pre_attn_scalar=head_dim, sliding_window=64,
                           max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
                           bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    vision = tf.SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                   image_size=_TINY_IMAGE_SIZE, patch_size=_TINY_PATCH_SIZE, vision_use_head=False)
    config = tf.PaliGemmaConfig(vision_config=vision, text_config=text, image_token_index=processor.image_token_id,
                                projection_dim=cfg.d_model, vocab_size=len(tokenizer))
    torch.manual_seed(0)
    return tf.AutoModel.from_config(config), processor


class RandomInit(ModelSource):
    def load(self, cfg: DictConfig, dtype):
        if cfg.family == "paligemma":
            model, processor = _random_paligemma(cfg)
            return model, processor.tokenizer, processor
        tokenizer = minilm_tokenizer()
        return _random_model(cfg, tokenizer.vocab_size), tokenizer, None

    def tokenizer(self, cfg: DictConfig):
        return _tiny_paligemma_tokenizer() if cfg.family == "paligemma" else minilm_tokenizer()

    def weights(self, cfg: DictConfig) -> dict[str, str]:
        from importlib.metadata import version

        import torch

        return {"torch": torch.__version__, "transformers": version("transformers")}

    def validate(self, cfg: DictConfig, key: str) -> None:
        from mosaic.infra.errors import require

        require(cfg.d_model % cfg.n_heads == 0, f"{key}.n_heads", cfg.n_heads,
                f"must divide {key}.d_model={cfg.d_model}")
