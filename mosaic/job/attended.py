"""Where a probe that weighs tokens (`probe=attention`) looked: each document's real tokens with their weights.

The weights come from the probe (`attention`: tokens x heads, averaged over heads here), the token
strings from the model's tokenizer read exactly as the forward reads the text (`real_tokens`), so
token i is the cache entry's row i of that document. `results.json` keeps, for each class, the test
documents the probe scores highest for it (`attended_documents`); `predict` prints each text's most
weighted tokens (`strongest_tokens`); the report shows them as highlighted text.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from omegaconf import DictConfig

from mosaic.features.tokens import TokenFeatures

# Test documents kept per class in results.json, and tokens printed per text by predict.
DOCUMENTS_PER_CLASS = 3
TOKENS_PRINTED = 5


def reads_tokens(features) -> bool:
    """Whether these features keep every token (so the probe reading them weighs tokens)."""
    return isinstance(features, TokenFeatures)


def document_tokens(cfg: DictConfig, texts: list[str]) -> list[list[str]]:
    """Each text's real tokens as the job's model reads them."""
    from mosaic.activations.forward import real_tokens
    from mosaic.activations.models import load_tokenizer

    return real_tokens(load_tokenizer(cfg.model), texts, cfg.max_length, bool(cfg.model.get("chat_template")))


def token_weights(probe, features: TokenFeatures, position: int) -> np.ndarray:
    """The probe's weight on each token of the document at `position`, averaged over its heads (sums to 1)."""
    return probe.attention(features, position).mean(axis=1)


def strongest_tokens(tokens: list[str], weights: np.ndarray, top: int = TOKENS_PRINTED) -> str:
    """The `top` most weighted tokens, strongest first: `'tok' 0.41, 'en' 0.22`."""
    order = np.argsort(-weights, kind="stable")[:top]
    return ", ".join(f"{tokens[i]!r} {weights[i]:.2f}" for i in order)


def attended_documents(cfg: DictConfig, probe, documents: list[str], label_names: list[str], labels: np.ndarray,
                       test: np.ndarray, features: TokenFeatures, proba: np.ndarray) -> list[dict[str, Any]] | None:
    """For each class, the `DOCUMENTS_PER_CLASS` test documents the probe gives the highest probability of it,
    each with its tokens and their weights; None for features that do not keep tokens or non-text documents."""
    if not reads_tokens(features) or cfg.dataset.modality != "text":
        return None
    test_features = features[test]
    chosen = [(c, int(p)) for c in range(len(label_names))
              for p in np.argsort(-proba[:, c], kind="stable")[:DOCUMENTS_PER_CLASS]]
    texts = document_tokens(cfg, [documents[test[p]] for _, p in chosen])
    kept = []
    for (c, position), tokens in zip(chosen, texts):
        weights = token_weights(probe, test_features, position)
        if len(tokens) != len(weights):  # never expected: the tokenizer and the forward read the same tokens
            raise RuntimeError(f"document {int(test[position])}: {len(tokens)} tokens but {len(weights)} token rows")
        kept.append({"for_class": label_names[c], "document": int(test[position]), "label": label_names[labels[test[
            position]]], "probability": float(proba[position, c]), "tokens": tokens,
            "weights": [round(float(w), 5) for w in weights]})
    return kept
