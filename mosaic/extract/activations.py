"""Run a model over documents and keep the residual stream of real tokens at the requested layers.

One forward serves every requested layer: a hook on each block records its output, and the hook
on the deepest block stops the forward there, so layer k of n costs about (k+1)/n of a full pass.
Only real tokens are kept (not padding, not BOS/CLS/SEP/EOS), documents concatenated, so that any
pooling downstream is a reduction over contiguous row segments and never sees a pad.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from mosaic.extract.models import LoadedModel, transformer_blocks


@dataclass
class TokenActivations:
    """Per-token vectors of real tokens; document i owns rows `offsets[i]:offsets[i + 1]` of `values`."""

    values: np.ndarray | sp.csr_matrix
    offsets: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


class _StopForward(Exception):
    """Raised by the deepest hook: the rest of the network is not needed."""


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


def extract_activations(
    loaded: LoadedModel,
    texts: Sequence[str],
    layers: Sequence[int],
    batch_size: int,
    max_length: int,
    desc: str = "extract",
) -> dict[int, TokenActivations]:
    """Residual-stream activations (float32, on CPU) of every real token at each of `layers`.

    Layer L is the output of transformer block L (Gemma Scope's `blocks.L.hook_resid_post`,
    `hidden_states[L + 1]` of a Hugging Face forward). Documents are batched by length to cut
    padding; the result is in the order of `texts`.
    """
    blocks = transformer_blocks(loaded.model)
    wanted = sorted(set(layers))
    deepest = wanted[-1]
    captured: dict[int, torch.Tensor] = {}

    def hook_for(layer: int):
        def hook(module, inputs, output):
            captured[layer] = output[0] if isinstance(output, tuple) else output
            if layer == deepest:
                raise _StopForward

        return hook

    handles = [blocks[layer].register_forward_hook(hook_for(layer)) for layer in wanted]
    order = np.argsort([len(text) for text in texts], kind="stable")
    chunks: dict[int, list[np.ndarray]] = {layer: [] for layer in wanted}
    lengths: list[np.ndarray] = []
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    try:
        with torch.inference_mode():
            for batch in tqdm(batches, desc=desc, unit="batch", disable=len(batches) < 2):
                encoded = loaded.tokenizer(
                    [texts[i] for i in batch],
                    padding=True,
                    truncation=True,
                    max_length=max_length,
                    return_tensors="pt",
                    return_special_tokens_mask=True,
                )
                mask = encoded["attention_mask"]
                keep = mask.bool() & ~encoded["special_tokens_mask"].bool()
                inputs = {"input_ids": encoded["input_ids"], "attention_mask": mask}
                if loaded.is_decoder:
                    # Positions count real tokens, so a left-padded document sees the same positions as alone.
                    inputs["position_ids"] = (mask.cumsum(dim=1) - 1).clamp(min=0)
                    inputs["use_cache"] = False
                try:
                    loaded.model(**{k: v.to(loaded.device) if torch.is_tensor(v) else v for k, v in inputs.items()})
                except _StopForward:
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
