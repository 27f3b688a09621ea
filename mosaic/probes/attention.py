"""The attention probe: a document's label from a learned, softmax-weighted pool of its tokens.

Every other probe reads one vector per document, pooled by a fixed rule. This one reads every token:
per head h, a query vector scores each token (`x_t . q_h`), a softmax over the document's own tokens
turns the scores into weights `a_ht`, and the head's logits are the weighted sum of the tokens' values
(`sum_t a_ht x_t V_h`); the document's logits are the sum over heads plus a bias. Since values are
linear, that equals a linear head on each head's attention-pooled vector, without ever forming it.

A document's tokens are rows of a CSR matrix (`TokenFeatures`: codes and offsets, as the activation
cache stores them; padding and special tokens are never rows), so a batch costs what its non-zeros
cost: one sparse matrix product gives every token's scores and values. Trained with Lightning
(AdamW, class-weighted cross-entropy, early stopping on validation macro F1 with the best epoch's
weights restored); the learning rate and weight decay are chosen on validation from a small grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import numpy as np
import scipy.sparse as sp
import torch
from torch.utils.data import DataLoader, Sampler

from mosaic.probes.lightning_trainer import RestoreBestWeights, ValidatedProbe, probe_trainer
from mosaic.probes.solvers import CSRFeatures, linear_logits
from mosaic.probes.storage import read_probe, write_probe


@dataclass(frozen=True)
class TokenFeatures:
    """Documents as runs of token rows: `codes` (tokens x features) and `offsets` (documents + 1, from 0)."""

    codes: sp.csr_matrix
    offsets: np.ndarray

    def __post_init__(self):
        if self.offsets[0] != 0 or self.offsets[-1] != self.codes.shape[0] or np.any(np.diff(self.offsets) < 0):
            raise ValueError(f"offsets must rise from 0 to the {self.codes.shape[0]} token rows")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_features(self) -> int:
        return self.codes.shape[1]

    def take(self, documents: np.ndarray) -> tuple[CSRFeatures, torch.Tensor]:
        """The documents' token rows, in order, and each row's position in `documents`."""
        starts, stops = self.offsets[documents], self.offsets[np.asarray(documents) + 1]
        rows = np.concatenate([np.arange(a, b) for a, b in zip(starts, stops)]) if len(documents) else np.array([], int)
        owner = np.repeat(np.arange(len(documents)), stops - starts)
        return CSRFeatures(self.codes[rows], torch.float32), torch.from_numpy(owner)


def attention_weights(scores: torch.Tensor, owner: torch.Tensor, n_documents: int) -> torch.Tensor:
    """Softmax of each head's token scores (tokens x heads) within each document (`owner`: a token's document)."""
    index = owner[:, None].expand_as(scores)
    peak = torch.full((n_documents, scores.shape[1]), -torch.inf, dtype=scores.dtype)
    peak = peak.scatter_reduce(0, index, scores, reduce="amax", include_self=True)
    exponent = torch.exp(scores - peak[owner])
    total = torch.zeros((n_documents, scores.shape[1]), dtype=scores.dtype).index_add(0, owner, exponent)
    return exponent / total[owner]


class AttentionPoolingModule(ValidatedProbe):
    """Logits = bias + sum over heads of the attention-weighted sum of the tokens' values."""

    def __init__(self, n_features: int, n_classes: int, heads: int, class_weights: torch.Tensor, lr: float,
                 weight_decay: float):
        super().__init__(class_weights.float())
        self.heads, self.n_classes = heads, n_classes
        # One matrix: `heads` query columns, then `heads x n_classes` value columns (rows here: linear_logits' W).
        self.projection = torch.nn.Parameter(torch.empty(heads * (1 + n_classes), n_features))
        torch.nn.init.normal_(self.projection, std=n_features**-0.5)
        self.bias = torch.nn.Parameter(torch.zeros(n_classes))
        self.lr, self.weight_decay = lr, weight_decay

    def scores_and_values(self, tokens: CSRFeatures) -> tuple[torch.Tensor, torch.Tensor]:
        projected = linear_logits(tokens, self.projection, torch.zeros(()))
        return projected[:, : self.heads], projected[:, self.heads :].reshape(-1, self.heads, self.n_classes)

    def forward(self, tokens: CSRFeatures, owner: torch.Tensor, n_documents: int) -> torch.Tensor:
        scores, values = self.scores_and_values(tokens)
        weights = attention_weights(scores, owner, n_documents)
        pooled = torch.zeros((n_documents, self.n_classes)).index_add(0, owner, (weights[..., None] * values).sum(1))
        return pooled + self.bias

    def training_step(self, batch, batch_index):
        tokens, owner, labels = batch
        loss = self.weighted_loss(self(tokens, owner, len(labels)), labels)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(labels))
        return loss

    def validation_step(self, batch, batch_index):
        tokens, owner, labels = batch
        self.validate(self(tokens, owner, len(labels)), labels)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)


class EpochPermutations(Sampler):
    """Each epoch, `torch.randperm(n)` from a generator seeded once: the order is the seed's alone."""

    def __init__(self, n: int, seed: int):
        self.n, self.generator = n, torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter(torch.randperm(self.n, generator=self.generator).tolist())


def document_batches(features: TokenFeatures, labels: np.ndarray, batch_size: int, shuffle: bool,
                     seed: int) -> DataLoader:
    """Batches of whole documents, in order or in `EpochPermutations`' order."""
    def collate(documents: list[int]):
        tokens, owner = features.take(np.asarray(documents))
        return tokens, owner, torch.from_numpy(labels[documents])

    return DataLoader(range(len(features)), batch_size=batch_size, collate_fn=collate,
                      sampler=EpochPermutations(len(features), seed) if shuffle else None)


class AttentionProbe:
    """A fitted attention probe: class probabilities of documents, and where each head looked."""

    kind: ClassVar[str] = "attention"

    def __init__(self, projection: np.ndarray, bias: np.ndarray, heads: int, summary: dict):
        self.projection, self.bias, self.heads, self.summary = projection, bias, heads, summary

    @property
    def n_features(self) -> int:
        return self.projection.shape[1]

    def _module(self) -> AttentionPoolingModule:
        n_classes = len(self.bias)
        module = AttentionPoolingModule(self.n_features, n_classes, self.heads, torch.ones(n_classes), 0.0, 0.0)
        module.load_state_dict({"projection": torch.from_numpy(self.projection), "bias": torch.from_numpy(self.bias),
                                "class_weights": torch.ones(n_classes)})
        return module.eval()

    def predict_proba(self, features: TokenFeatures) -> np.ndarray:
        module, every = self._module(), np.arange(len(features))
        with torch.no_grad():
            tokens, owner = features.take(every)
            return torch.softmax(module(tokens, owner, len(every)), dim=1).double().numpy()

    def predict(self, features: TokenFeatures) -> np.ndarray:
        return self.predict_proba(features).argmax(axis=1)

    def attention(self, features: TokenFeatures, document: int) -> np.ndarray:
        """Tokens x heads: how much each head weighed each of the document's tokens (each column sums to 1)."""
        module = self._module()
        with torch.no_grad():
            tokens, owner = features.take(np.array([document]))
            scores, _ = module.scores_and_values(tokens)
            return attention_weights(scores, owner, 1).double().numpy()

    def save(self, directory: Path, metadata: dict[str, Any]) -> None:
        write_probe(directory, {"projection": self.projection, "bias": self.bias},
                    {**metadata, "kind": self.kind, "heads": self.heads, "summary": self.summary})

    @classmethod
    def load(cls, directory: Path) -> AttentionProbe:
        arrays, metadata = read_probe(directory)
        return cls(arrays["projection"], arrays["bias"], metadata["heads"], metadata["summary"])


class _EpochLosses(L.Callback):
    """Each training epoch's mean loss, for the probe's summary (its loss curve)."""

    def __init__(self):
        self.losses: list[float] = []

    def on_train_epoch_end(self, trainer, module):
        self.losses.append(float(trainer.callback_metrics["train_loss"]))


def fit_attention_probe(train: TokenFeatures, y_train: np.ndarray, val: TokenFeatures, y_val: np.ndarray,
                        n_classes: int, class_weights: np.ndarray, heads: int, lr: float, weight_decay: float,
                        batch_size: int, max_epochs: int, patience: int, seed: int, logger=False) -> AttentionProbe:
    """Train one attention probe (one learning rate, one weight decay), keeping its best validation epoch."""
    L.seed_everything(seed, workers=False, verbose=False)
    module = AttentionPoolingModule(train.n_features, n_classes, heads, torch.from_numpy(class_weights), lr,
                                    weight_decay)
    best, curve = RestoreBestWeights(), _EpochLosses()
    stop = L.pytorch.callbacks.EarlyStopping("val_macro_f1", mode="max", patience=patience)
    trainer = probe_trainer(max_epochs, [stop, best, curve], logger)
    trainer.fit(module, train_dataloaders=document_batches(train, y_train, batch_size, True, seed),
                val_dataloaders=document_batches(val, y_val, batch_size, False, seed))
    summary = {"solver": "adamw_early_stopping", "heads": heads, "lr": lr, "weight_decay": weight_decay,
               "epochs": trainer.current_epoch, "best_epoch": best.best_epoch, "best_val_macro_f1": best.best[0],
               "train_loss_by_epoch": curve.losses}
    return AttentionProbe(module.projection.detach().numpy().copy(), module.bias.detach().numpy().copy(), heads,
                          summary)
