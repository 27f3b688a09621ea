"""How good an SAE is on the activations a job reads, measured the way SAEBench and SAELens measure it.

- Reconstruction and sparsity (`ReconstructionTally`): the fraction of variance unexplained
  (1 - SAELens's explained variance: squared error over the total variance of the tokens), mean L0,
  and the fractions of latents that never fire (dead) or fire on nearly every token (always on),
  over the first `QUALITY_TOKENS` real tokens of the job's documents, in document order. How many
  latents look dead depends on how many tokens were seen, so dead and always-on fractions are also
  measured on exactly the first `REFERENCE_TOKENS` tokens (`reference`): those compare across SAEs
  and datasets, where the full-budget ones compare only at equal `tokens`.
- Next-token loss (`next_token_loss`, decoder models whose LM head is their tied input embedding):
  the cross-entropy of the model's own next-token predictions with the residual stream at the
  SAE's layer left alone, replaced by the SAE's reconstruction, or zeroed, on the real tokens of
  the first `LOSS_DOCUMENTS` documents (at most `LOSS_TOKENS` predicted tokens); the increase, the
  KL divergence from the clean predictions, and the fraction of the zero-ablation loss the SAE
  recovers.

The tokens are the job's documents: held out from every SAE MOSAIC trains on a packaged corpus
(those never see a document a job scores), and from Gemma Scope's training data by construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

# Reconstruction needs a decode per token: this many tokens bound its cost on a large dataset.
QUALITY_TOKENS = 2**17
# The next-token loss runs the whole model three times and a vocabulary-wide softmax per position: this many
# documents, and this many predicted tokens, bound it.
LOSS_DOCUMENTS = 32
LOSS_TOKENS = 512
# A latent firing on more than this fraction of tokens is "always on": it separates nothing.
ALWAYS_ON = 0.9
# The fixed token budget on which latent health (dead, always on) is compared across SAEs and datasets: the
# packaged default dataset (bastion, 4,895 MiniLM tokens) reaches it.
REFERENCE_TOKENS = 4096


class ReconstructionTally:
    """Sums, chunk by chunk, what the reconstruction and sparsity measures need."""

    def __init__(self, d_sae: int, max_tokens: int = QUALITY_TOKENS):
        from sae_lens.evals import ExplainedVarianceCalculator

        self.variance = ExplainedVarianceCalculator()
        self.fired = np.zeros(d_sae, dtype=np.int64)
        self.fired_reference = np.zeros(d_sae, dtype=np.int64)
        self.active = 0
        self.tokens = 0
        self.max_tokens = max_tokens

    def wants(self) -> int:
        """How many more tokens it takes."""
        return self.max_tokens - self.tokens

    def add(self, inputs: torch.Tensor, codes: torch.Tensor, reconstruction: torch.Tensor) -> None:
        """One chunk: SAE inputs, their codes (a sparse CSR tensor) and the decoded reconstruction (tokens x ...)."""
        self.variance.add_batch(sae_output=reconstruction.float(), hidden_acts=inputs.float())
        columns = codes.col_indices().cpu().numpy()
        self.fired += np.bincount(columns, minlength=len(self.fired))
        if self.tokens < REFERENCE_TOKENS:
            rows = min(REFERENCE_TOKENS - self.tokens, len(inputs))
            within = columns[: int(codes.crow_indices()[rows])]
            self.fired_reference += np.bincount(within, minlength=len(self.fired))
        self.active += len(columns)
        self.tokens += len(inputs)

    def result(self) -> dict[str, Any]:
        if self.tokens == 0:
            return {"tokens": 0}
        return {
            "tokens": self.tokens,
            "fvu": 1.0 - self.variance.compute(),
            "l0": self.active / self.tokens,
            **_health(self.fired, self.tokens),
            "reference": {"tokens": min(self.tokens, REFERENCE_TOKENS),
                          **_health(self.fired_reference, min(self.tokens, REFERENCE_TOKENS))},
        }


def _health(fired: np.ndarray, tokens: int) -> dict[str, float]:
    """Dead and always-on fractions of latents that fired `fired` times over `tokens` tokens."""
    return {"dead_fraction": float((fired == 0).mean()),
            "always_on_fraction": float((fired / tokens > ALWAYS_ON).mean())}


def _splice(block, sae, keep: torch.Tensor, mode: str):
    """A hook that replaces the block's output at real-token positions: by the SAE's reconstruction, or zeros."""
    def hook(module, inputs, output):
        hidden = output[0] if isinstance(output, tuple) else output
        replaced = hidden.clone()
        if mode == "sae":
            with torch.no_grad():
                original = hidden[keep]
                replaced[keep] = sae.decode(sae.encode(original.to(sae.dtype))).to(hidden.dtype)
        else:
            replaced[keep] = 0
        return (replaced, *output[1:]) if isinstance(output, tuple) else replaced

    return block.register_forward_hook(hook)


def next_token_loss(loaded, sae, layer: int, documents: Sequence[str], batch_size: int, max_length: int,
                    positions_per_chunk: int = 256) -> dict[str, Any] | None:
    """Next-token cross-entropy with the residual stream after block `layer` clean, SAE-reconstructed and zeroed.

    Only real tokens are replaced (BOS and padding keep their values, as the SAE never encoded them);
    the loss is the mean over positions whose next token is real. None for a model this cannot
    measure (an encoder, or a decoder whose LM head is not tied to its embedding).
    """
    from mosaic.activations.forward import text_inputs, to_model
    from mosaic.activations.models import lm_head_weight, next_token_log_probs, transformer_blocks

    if lm_head_weight(loaded) is None or not documents:
        return None
    block = transformer_blocks(loaded.model)[layer]
    sums = {"clean": 0.0, "sae": 0.0, "zero": 0.0, "kl": 0.0}
    count = 0
    with torch.inference_mode():
        for start in range(0, len(documents), batch_size):
            inputs, keep = text_inputs(loaded, documents[start : start + batch_size], max_length)
            inputs = to_model(loaded, inputs)
            keep = keep.to(loaded.device)
            scored = keep[:, 1:] & inputs["attention_mask"][:, :-1].bool()
            scored &= scored.flatten().cumsum(0).reshape(scored.shape) <= LOSS_TOKENS - count
            targets = inputs["input_ids"][:, 1:][scored]
            hidden = {}
            for mode in ("clean", "sae", "zero"):
                handle = None if mode == "clean" else _splice(block, sae, keep, mode)
                try:
                    hidden[mode] = loaded.model(**inputs).last_hidden_state[:, :-1][scored]
                finally:
                    if handle is not None:
                        handle.remove()
            for first in range(0, len(targets), positions_per_chunk):
                rows = slice(first, first + positions_per_chunk)
                clean = next_token_log_probs(loaded, hidden["clean"][rows])
                for mode in ("clean", "sae", "zero"):
                    log_probs = clean if mode == "clean" else next_token_log_probs(loaded, hidden[mode][rows])
                    sums[mode] -= float(log_probs.gather(1, targets[rows, None]).sum())
                    if mode == "sae":
                        sums["kl"] += float((clean.exp() * (clean - log_probs)).sum())
            count += len(targets)
            if count >= LOSS_TOKENS:
                break
    if count == 0:
        return None
    ce = {mode: sums[mode] / count for mode in ("clean", "sae", "zero")}
    lost = ce["zero"] - ce["clean"]
    return {
        "documents": len(documents), "predicted_tokens": count,
        "ce_clean": ce["clean"], "ce_sae": ce["sae"], "ce_zero": ce["zero"],
        "ce_increase": ce["sae"] - ce["clean"], "kl": sums["kl"] / count,
        "loss_recovered": None if lost <= 0 else (ce["zero"] - ce["sae"]) / lost,
    }
