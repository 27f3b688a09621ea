"""The attention probe: a document's label from a learned, softmax-weighted pool of its tokens.

Every other probe reads one vector per document, pooled by a fixed rule. This one reads every token:
per head h, a query vector scores each token (`x_t . q_h`), a softmax over the document's own tokens
turns the scores into weights `a_ht`, and the head's logits are the weighted sum of the tokens' values
(`sum_t a_ht x_t V_h`); the document's logits are the sum over heads plus a bias. Since values are
linear, that equals a linear head on each head's attention-pooled vector, without ever forming it.

A document's tokens are rows of the activation cache (`features.tokens.TokenFeatures`: SAE codes as
CSR, or the hidden state; padding and special tokens are never rows), so a batch costs what its
non-zeros cost: one (sparse) matrix product gives every token's scores and values. Trained with
Lightning (AdamW, class-weighted cross-entropy, early stopping on the validation loss with the best
epoch's weights restored: on a hundred validation documents macro F1 moves in steps and stopped
training too early); the learning rate and weight decay are chosen on validation from a small grid
(`fit_attention_probe`), and a refit trains the chosen setting for its best number of epochs.
"""

from __future__ import annotations

import itertools
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import numpy as np
import scipy.sparse as sp
import torch
from torch.utils.data import DataLoader, Sampler

from mosaic.features.tokens import TokenFeatures
from mosaic.probes.lightning_trainer import RestoreBestWeights, ValidatedProbe, probe_trainer
from mosaic.probes.logistic import class_weights_for
from mosaic.probes.selection import best_on_validation
from mosaic.probes.solvers import CSRFeatures, linear_logits
from mosaic.probes.storage import write_probe

# A refit trains on train + validation for the epochs chosen on validation: it has no validation loop on purpose.
warnings.filterwarnings("ignore", message=".*`validation_step` but have no `val_dataloader`.*")
# Early stopping: an epoch improves on the best only by lowering the validation loss by more than this. A task the
# probe separates perfectly lowers it a little every epoch until `max_epochs`, which changes no prediction.
MIN_IMPROVEMENT = 1e-3
# Documents per batch when a fitted probe scores or explains documents.
PREDICT_BATCH = 256


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

    def scores_and_values(self, tokens: CSRFeatures | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        projected = linear_logits(tokens, self.projection, torch.zeros(()))
        return projected[:, : self.heads], projected[:, self.heads :].reshape(-1, self.heads, self.n_classes)

    def forward(self, tokens: CSRFeatures | torch.Tensor, owner: torch.Tensor, n_documents: int) -> torch.Tensor:
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


def token_batch(features: TokenFeatures, positions: np.ndarray) -> tuple[CSRFeatures | torch.Tensor, torch.Tensor]:
    """The token rows of the documents at `positions`, as the module reads them, and each row's document."""
    rows, owner = features.batch(positions)
    return (CSRFeatures(rows, torch.float32) if sp.issparse(rows) else rows), owner


def document_batches(features: TokenFeatures, labels: np.ndarray, batch_size: int, shuffle: bool,
                     seed: int) -> DataLoader:
    """Batches of whole documents, in order or in `EpochPermutations`' order."""
    def collate(documents: list[int]):
        tokens, owner = token_batch(features, np.asarray(documents))
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
        module, parts = self._module(), [np.zeros((0, len(self.bias)))]
        with torch.no_grad():
            for first in range(0, len(features), PREDICT_BATCH):
                positions = np.arange(first, min(len(features), first + PREDICT_BATCH))
                tokens, owner = token_batch(features, positions)
                parts.append(torch.softmax(module(tokens, owner, len(positions)), dim=1).double().numpy())
        return np.concatenate(parts)

    def predict(self, features: TokenFeatures) -> np.ndarray:
        return self.predict_proba(features).argmax(axis=1)

    def attention(self, features: TokenFeatures, position: int) -> np.ndarray:
        """Tokens x heads: how much each head weighed each token of the document at `position` (columns sum to 1)."""
        module = self._module()
        with torch.no_grad():
            tokens, owner = token_batch(features, np.array([position]))
            scores, _ = module.scores_and_values(tokens)
            return attention_weights(scores, owner, 1).double().numpy()

    def evidence(self) -> np.ndarray:
        """Classes x features: how much a feature in an attended token moves each class's logit, summed over
        heads and centred over classes (a softmax reads only the differences)."""
        values = self.projection[self.heads:].reshape(self.heads, len(self.bias), -1).sum(axis=0)
        return values - values.mean(axis=0, keepdims=True)

    def widened(self, columns: np.ndarray, width: int) -> AttentionProbe:
        projection = np.zeros((self.projection.shape[0], width), dtype=self.projection.dtype)
        projection[:, columns] = self.projection
        return AttentionProbe(projection, self.bias, self.heads, self.summary)

    def save(self, directory: Path, metadata: dict[str, Any]) -> None:
        write_probe(directory, {"projection": self.projection, "bias": self.bias},
                    {**metadata, "kind": self.kind, "summary": self.summary})

    @classmethod
    def from_tensors(cls, tensors: dict[str, np.ndarray], summary: dict) -> AttentionProbe:
        return cls(tensors["projection"], tensors["bias"], summary["heads"], summary)


class _EpochLosses(L.Callback):
    """Each training epoch's mean loss, for the probe's summary (its loss curve)."""

    def __init__(self):
        self.losses: list[float] = []

    def on_train_epoch_end(self, trainer, module):
        self.losses.append(float(trainer.callback_metrics["train_loss"]))


@contextmanager
def _one_thread():
    """Torch on one thread while a probe trains: its sparse products are small, and a team of threads waiting on
    each other cost four times the time on a busy 2-core machine (measured: 20 epochs of 800 documents, 12 s
    against 3 s). Restored afterwards for whatever runs next (a forward)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def train_attention_probe(train: TokenFeatures, y_train: np.ndarray, val: TokenFeatures, y_val: np.ndarray,
                          n_classes: int, class_weights: np.ndarray, heads: int, lr: float, weight_decay: float,
                          batch_size: int, max_epochs: int, patience: int, seed: int, logger=False) -> AttentionProbe:
    """Train one attention probe (one learning rate, one weight decay).

    With validation documents it stops once the validation loss has not improved for `patience` epochs and
    keeps its best epoch; without, it trains `max_epochs` epochs (a refit for the epochs chosen on validation).
    """
    L.seed_everything(seed, workers=False, verbose=False)
    module = AttentionPoolingModule(train.n_features, n_classes, heads, torch.from_numpy(class_weights), lr,
                                    weight_decay)
    best, curve = RestoreBestWeights(by_loss=True), _EpochLosses()
    validated = len(val) > 0
    stop = L.pytorch.callbacks.EarlyStopping("val_loss", mode="min", patience=patience, min_delta=MIN_IMPROVEMENT)
    callbacks = [curve] + ([stop, best] if validated else [])
    trainer = probe_trainer(max_epochs, callbacks, logger)
    with _one_thread():
        trainer.fit(module, train_dataloaders=document_batches(train, y_train, batch_size, True, seed),
                    val_dataloaders=document_batches(val, y_val, batch_size, False, seed) if validated else None)
    summary = {"solver": "adamw_early_stopping" if validated else "adamw", "heads": heads, "lr": lr,
               "weight_decay": weight_decay, "epochs": len(curve.losses), "train_loss_by_epoch": curve.losses}
    if validated:
        summary.update(best_epoch=best.best_epoch, best_val_loss=-best.best[0])
    return AttentionProbe(module.projection.detach().numpy().copy(), module.bias.detach().numpy().copy(), heads,
                          summary)


def fit_attention_probe(x_train: TokenFeatures, y_train, x_val: TokenFeatures, y_val, n_classes: int, cfg, seed: int,
                        logger=False, only: dict | None = None) -> AttentionProbe:
    """`probe.type=attention`: one probe per (learning rate, weight decay) of the grids, the best on validation
    (`probe.select_by`); its `setting` also names the epochs it trained, which `only` (a refit) trains again."""
    weights = class_weights_for(y_train, n_classes, cfg.class_weight)

    def fit_at(setting: dict) -> AttentionProbe:
        probe = train_attention_probe(x_train, y_train, x_val, y_val, n_classes, weights, cfg.heads, setting["lr"],
                                      setting["weight_decay"], cfg.batch_size, setting.get("epochs", cfg.max_epochs),
                                      cfg.patience, seed, logger)
        epochs = probe.summary.get("best_epoch", probe.summary["epochs"] - 1) + 1
        probe.summary["setting"] = {"lr": setting["lr"], "weight_decay": setting["weight_decay"], "epochs": epochs}
        return probe

    grid = [only] if only is not None else [
        {"lr": lr, "weight_decay": decay}
        for lr, decay in itertools.product(list(cfg.lr_grid) or [cfg.lr], list(cfg.weight_decay_grid) or
                                           [cfg.weight_decay])]
    _, probe, scores = best_on_validation(grid, fit_at, x_val, y_val, cfg.select_by)
    if only is None:
        probe.summary[f"val_{cfg.select_by}_by_setting"] = scores
    return probe
