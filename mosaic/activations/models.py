"""Load the network whose residual stream MOSAIC reads, and find its transformer blocks.

How each `model.source` is obtained lives in `model_sources/`; this module is what every source shares.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mosaic.activations.model_sources import model_source
from mosaic.infra.cache import directory_fingerprint
from mosaic.infra.errors import MosaicError

# Where each architecture keeps its list of transformer blocks, on the base model or a wrapper.
_BLOCK_PATHS = ("encoder.layer", "h", "layers", "model.layers", "transformer.h", "language_model.layers",
                "model.language_model.layers")

@dataclass
class LoadedModel:
    """A base model (no LM head), its tokenizer, and the device its weights are on.

    A vision-language model also has its `processor` (image preprocessing and the prompt layout
    with image tokens) and the `prompt` that follows the image tokens.
    """

    model: torch.nn.Module
    tokenizer: Any
    device: torch.device
    is_decoder: bool
    processor: Any = None
    prompt: str = ""
    chat_template: bool = False


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise MosaicError("model.device='cuda' but no CUDA device is visible: use model.device=auto or cpu")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """`auto` is bfloat16 on CUDA and float32 on CPU (bfloat16 matmuls are slow on most CPUs)."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


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


def lm_head_weight(loaded: LoadedModel) -> torch.Tensor | None:
    """The unembedding of a decoder whose LM head is tied to its input embedding; None otherwise.

    MOSAIC loads base models (no LM head): only a tied head is in the weights it has.
    """
    config = loaded.model.config
    if not loaded.is_decoder or not getattr(config, "tie_word_embeddings", False):
        return None
    return loaded.model.get_input_embeddings().weight


# The LM head is applied this many vocabulary rows at a time: a float32 copy of Gemma 2 9B's whole
# embedding would be 3.7 GB.
VOCABULARY_CHUNK = 32768


def next_token_log_probs(loaded: LoadedModel, hidden: torch.Tensor) -> torch.Tensor:
    """Log-probabilities of the next token from final hidden states (positions x d_model), through the tied
    LM head, in float32 even for a bfloat16 model, with Gemma 2's soft-capping of its final logits."""
    weight, hidden = lm_head_weight(loaded), hidden.float()
    logits = torch.cat([hidden @ weight[start : start + VOCABULARY_CHUNK].float().T
                        for start in range(0, len(weight), VOCABULARY_CHUNK)], dim=1)
    if softcap := getattr(loaded.model.config, "final_logit_softcapping", None):
        logits = torch.tanh(logits / softcap) * softcap
    return torch.log_softmax(logits, dim=-1)


def weights_fingerprint(cfg) -> dict[str, str]:
    """What identifies the model's weights, for cache keys: the content of its files, or a pinned commit.

    A local copy (`model.path`) and the packaged MiniLM by the SHA-256 of their files (remembered by
    size and mtime, so only the first job pays); a hub model by its resolved commit; the packaged
    Gemma 3 by its package version; a random-init model by the library versions its initialisation
    depends on.
    """
    if cfg.path is not None:
        return {"files": directory_fingerprint(Path(cfg.path))}
    return model_source(cfg).weights(cfg)


def load_tokenizer(cfg):
    """The model's tokenizer alone, set to pad and truncate as the model's forward does."""
    tokenizer = model_source(cfg).tokenizer(cfg)
    tokenizer.padding_side = cfg.padding_side
    tokenizer.truncation_side = cfg.truncation_side
    return tokenizer


def load_model(cfg) -> LoadedModel:
    """Load the model described by a `ModelConfig` in inference mode, offline where it can be."""
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    model, tokenizer, processor = model_source(cfg).load(cfg, dtype)
    tokenizer.padding_side = cfg.padding_side
    tokenizer.truncation_side = cfg.truncation_side
    n_blocks = len(transformer_blocks(model))
    if n_blocks != cfg.n_layers:
        raise MosaicError(f"model.n_layers={cfg.n_layers} but {cfg.name} has {n_blocks} blocks")
    model = model.to(device=device, dtype=dtype).eval()
    return LoadedModel(model=model, tokenizer=tokenizer, device=device, is_decoder=cfg.family != "bert",
                       processor=processor, prompt=cfg.prompt, chat_template=cfg.chat_template)
