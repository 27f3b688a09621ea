"""Run a model over documents and keep the residual stream of real tokens at the requested layers.

One forward serves every requested layer: a hook on each block records its output, and the hook
on the deepest block stops the forward there, so layer k of n costs about (k+1)/n of a full pass.
Only real tokens are kept (not padding, not BOS/CLS/SEP/EOS), documents concatenated, so that any
pooling downstream is a reduction over contiguous row segments and never sees a pad. For a
vision-language model the documents are images and the kept tokens are the image tokens, found
where the processor put the image token id (never at assumed offsets).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from mosaic.activations.models import LoadedModel, transformer_blocks
from mosaic.infra.errors import MosaicError

# Texts are batched so that at most this share of a batch's tokens is padding (`token_budget_batches`).
MAX_PADDING = 0.1
# Tokens a text is estimated to have before tokenizing: about four characters a token for English BPE vocabularies.
CHARS_PER_TOKEN = 4


@dataclass
class TokenActivations:
    """Per-token vectors of real tokens; document i owns rows `offsets[i]:offsets[i + 1]` of `values`."""

    values: np.ndarray | sp.csr_matrix
    offsets: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


class StopForward(Exception):
    """Raised by the deepest hook: the rest of the network is not needed."""


def to_model(loaded: LoadedModel, inputs: dict) -> dict:
    """Model inputs on the model's device; floating inputs (pixels) also in its dtype."""
    dtype = next(loaded.model.parameters()).dtype

    def moved(value):
        if not torch.is_tensor(value):
            return value
        return value.to(loaded.device, dtype=dtype) if value.is_floating_point() else value.to(loaded.device)

    return {key: moved(value) for key, value in inputs.items()}


def offsets_from_lengths(lengths: np.ndarray) -> np.ndarray:
    """Document start offsets (n + 1 entries) from per-document token counts."""
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def _restore_order(lengths_sorted: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row permutation and offsets that put documents processed in `order` back in input order."""
    sorted_offsets = offsets_from_lengths(lengths_sorted)
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    lengths = lengths_sorted[position]
    offsets = offsets_from_lengths(lengths)
    rows = np.repeat(sorted_offsets[position] - offsets[:-1], lengths) + np.arange(offsets[-1])
    return rows, offsets


def chat_texts(tokenizer, texts: Sequence[str]) -> list[str]:
    """Each text as one user turn of the tokenizer's chat template, followed by the generation prompt: what an
    instruction-tuned model reads before it answers (`model.chat_template`). The template's own BOS is dropped
    where the tokenizer adds one itself, so a text carries a single BOS."""
    if not getattr(tokenizer, "chat_template", None):
        raise MosaicError("model.chat_template=true but the model's tokenizer has no chat template: set it false")
    bos = tokenizer.bos_token if tokenizer.bos_token_id in tokenizer("a")["input_ids"] else None
    rendered = [tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                              add_generation_prompt=True) for text in texts]
    return [text.removeprefix(bos) if bos else text for text in rendered]


def model_texts(loaded: LoadedModel, texts: Sequence[str]) -> list[str]:
    """The texts as the model reads them: wrapped in its chat template where the config asks."""
    return chat_texts(loaded.tokenizer, texts) if loaded.chat_template else list(texts)


def text_inputs(loaded: LoadedModel, texts: Sequence[str], max_length: int) -> tuple[dict, torch.Tensor]:
    """A batch of texts as the model's inputs, and the mask of its real tokens (not padding or special tokens)."""
    encoded = loaded.tokenizer(model_texts(loaded, texts), padding=True, truncation=True, max_length=max_length,
                               return_tensors="pt", return_special_tokens_mask=True)
    mask = encoded["attention_mask"]
    keep = mask.bool() & ~encoded["special_tokens_mask"].bool()
    inputs = {"input_ids": encoded["input_ids"], "attention_mask": mask}
    if loaded.is_decoder:
        # Positions count real tokens, so a left-padded document sees the same positions as alone.
        inputs["position_ids"] = (mask.cumsum(dim=1) - 1).clamp(min=0)
        inputs["use_cache"] = False
    return inputs, keep


def read_texts(tokenizer, texts: Sequence[str], max_length: int) -> tuple[list[str], int]:
    """Each text as far as the model reads it: the characters its real tokens cover once truncated to `max_length`
    tokens (on the tokenizer's truncation side), so a baseline can read the same input; and how many were cut.

    Uses the fast tokenizer's character offsets; a slow tokenizer's kept tokens are decoded instead.
    """
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length, return_special_tokens_mask=True,
                        return_offsets_mapping=tokenizer.is_fast)
    read, cut = [], 0
    for i, text in enumerate(texts):
        if len(encoded["input_ids"][i]) < max_length:  # nothing was cut
            read.append(text)
            continue
        real = [j for j, special in enumerate(encoded["special_tokens_mask"][i]) if not special]
        if tokenizer.is_fast:
            spans = [encoded["offset_mapping"][i][j] for j in real]
            kept = text[spans[0][0]:spans[-1][1]] if spans else ""
        else:
            kept = tokenizer.decode([encoded["input_ids"][i][j] for j in real])
        cut += kept.strip() != text.strip()
        read.append(kept)
    return read, cut


def real_tokens(tokenizer, texts: Sequence[str], max_length: int, chat_template: bool = False) -> list[list[str]]:
    """Each text's real tokens as the model reads them (truncated, no padding or special tokens), one string each:
    the token rows a cache entry holds for the text, in order, for showing where a probe looked or a latent fired.

    A token's string is its span of the text with the spaces before it (a fast tokenizer's offsets), so the
    tokens read as the text does (WordPiece's `##ing` shows as `ing`, a lower-casing tokenizer keeps the case);
    a token the offsets give no characters is its decoded text where the text holds it next (a byte-level
    space), else empty (a byte of a character an earlier token shows whole); a slow tokenizer's tokens are
    decoded one by one.
    """
    texts = chat_texts(tokenizer, texts) if chat_template else list(texts)
    spans = bool(getattr(tokenizer, "is_fast", False))
    encoded = tokenizer(texts, truncation=True, max_length=max_length, return_special_tokens_mask=True,
                        return_offsets_mapping=spans)
    found = []
    for index, (ids, specials) in enumerate(zip(encoded["input_ids"], encoded["special_tokens_mask"])):
        offsets = encoded["offset_mapping"][index] if spans else [None] * len(ids)
        tokens, end, text = [], None, texts[index]
        for token, special, span in zip(ids, specials, offsets):
            if special:
                continue
            if span is None:
                tokens.append(tokenizer.decode([token]))
                continue
            at, stop = (span[0] if end is None else end), span[1]
            piece = text[at:stop]
            if not piece:
                decoded = tokenizer.decode([token])
                # Characters the offsets left out (a byte-level space) are the token's own; a byte of a character
                # that an earlier token already shows whole is shown as nothing.
                if decoded and text.startswith(decoded, at):
                    piece, stop = decoded, at + len(decoded)
            tokens.append(piece)
            end = max(end or 0, stop)
        found.append(tokens)
    return found


def estimated_tokens(documents: Sequence, max_length: int) -> int | None:
    """Tokens a forward reads, estimated without a tokenizer: each text's characters / `CHARS_PER_TOKEN` (plus
    one special token), at most `max_length`; None for images."""
    if not all(isinstance(document, str) for document in documents):
        return None
    return sum(min(max_length, math.ceil(len(document) / CHARS_PER_TOKEN) + 1) for document in documents)


def image_inputs(loaded: LoadedModel, images: Sequence[bytes]) -> tuple[dict, torch.Tensor]:
    """A vision-language model's inputs for encoded images, and the mask of its image-token positions.

    Every image gets the same prompt, so rows have equal length. `token_type_ids` mark the prefix
    (image tokens and prompt), which PaliGemma attends to in both directions as in its training.
    """
    from PIL import Image

    pictures = [Image.open(io.BytesIO(image)).convert("RGB") for image in images]
    encoded = loaded.processor(text=["<image>" + loaded.prompt] * len(pictures), images=pictures,
                               return_tensors="pt", padding="longest")
    keep = encoded["input_ids"] == loaded.processor.image_token_id
    inputs = {key: encoded[key] for key in ("input_ids", "attention_mask", "pixel_values", "token_type_ids")}
    return inputs, keep


def token_budget_batches(lengths: Sequence[int], budget: int, max_padding: float = MAX_PADDING) -> list[np.ndarray]:
    """Document indices in batches of near-equal token length: at most `budget` tokens a batch, padding
    included, and at most a `max_padding` share of padding.

    Documents are sorted by token length; a batch closes when one more document would take its
    padded size (documents x longest) over `budget` or its padding over `max_padding`. A document
    longer than the budget gets a batch of its own.
    """
    sorted_lengths = np.asarray(lengths)[order := np.argsort(np.asarray(lengths), kind="stable")]
    batches, start, used = [], 0, 0
    for end, length in enumerate(sorted_lengths):
        padded = (end + 1 - start) * length
        if end > start and (padded > budget or padded - used - length > max_padding * padded):
            batches.append(order[start:end])
            start, used = end, 0
        used += length
    if len(order):
        batches.append(order[start:])
    return batches


def token_lengths(loaded: LoadedModel, texts: Sequence[str], max_length: int) -> list[int]:
    """Tokens per text as the model reads it: truncated to `max_length`, special tokens included."""
    encoded = loaded.tokenizer(model_texts(loaded, texts), truncation=True, max_length=max_length)
    return [len(ids) for ids in encoded["input_ids"]]


def document_batches(loaded: LoadedModel, documents: Sequence[str] | Sequence[bytes], batch_size: int,
                     max_length: int) -> list[np.ndarray]:
    """The document indices of each batch extraction runs: texts by token length under a budget of
    `batch_size` x `max_length` tokens (`token_budget_batches`), images `batch_size` at a time (every image
    is the same number of tokens)."""
    if loaded.processor is None:
        return token_budget_batches(token_lengths(loaded, documents, max_length), batch_size * max_length)
    return [np.arange(i, min(i + batch_size, len(documents))) for i in range(0, len(documents), batch_size)]


def capture_blocks(model: torch.nn.Module, layers: list[int], captured: dict[int, torch.Tensor]) -> list:
    """Hooks that store each block's output in `captured` and stop the forward after the deepest one."""
    blocks = transformer_blocks(model)

    def hook_for(layer: int):
        def hook(module, inputs, output):
            captured[layer] = output[0] if isinstance(output, tuple) else output
            if layer == layers[-1]:
                raise StopForward

        return hook

    return [blocks[layer].register_forward_hook(hook_for(layer)) for layer in layers]


def extract_activations(
    loaded: LoadedModel,
    documents: Sequence[str] | Sequence[bytes],
    layers: Sequence[int],
    batch_size: int,
    max_length: int,
    desc: str = "extract",
) -> dict[int, TokenActivations]:
    """Residual-stream activations (float32, on CPU) of every real token at each of `layers`.

    Layer L is the output of transformer block L (Gemma Scope's `blocks.L.hook_resid_post`,
    `hidden_states[L + 1]` of a Hugging Face forward). Texts are batched by token length, at most
    `batch_size` x `max_length` tokens a batch (padding included), so short texts share large
    batches and little compute goes to padding; images (for a model with a processor) come
    `batch_size` at a time and yield their image tokens. The result is in input order.
    """
    wanted = sorted(set(layers))
    captured: dict[int, torch.Tensor] = {}
    handles = capture_blocks(loaded.model, wanted, captured)
    batches = document_batches(loaded, documents, batch_size, max_length)
    order = np.concatenate(batches) if batches else np.arange(0)
    chunks: dict[int, list[np.ndarray]] = {layer: [] for layer in wanted}
    lengths: list[np.ndarray] = []
    try:
        with torch.inference_mode():
            for batch in tqdm(batches, desc=desc, unit="batch", disable=len(batches) < 2 or None):
                chosen = [documents[i] for i in batch]
                inputs, keep = (image_inputs(loaded, chosen) if loaded.processor is not None
                                else text_inputs(loaded, chosen, max_length))
                try:
                    loaded.model(**to_model(loaded, inputs))
                except StopForward:
                    pass
                # Boolean indexing keeps rows document by document, whichever side the padding is on.
                keep_on_device = keep.to(loaded.device)
                for layer in wanted:
                    chunks[layer].append(captured[layer][keep_on_device].float().cpu().numpy())
                lengths.append(keep.sum(dim=1).numpy())
    finally:
        for handle in handles:
            handle.remove()
        captured.clear()

    rows, offsets = _restore_order(np.concatenate(lengths), order)
    return {
        layer: TokenActivations(values=np.concatenate(chunks[layer])[rows], offsets=offsets) for layer in wanted
    }
