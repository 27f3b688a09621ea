"""The Lightning linear probe: multinomial logistic regression on (sparse) features.

Its objective is sklearn's LogisticRegression objective divided by `C * n_train`: class-weighted
mean cross-entropy plus `||W||^2 / (2 C n)` (L2) or `||W||_1 / (C n)` (L1), bias unpenalised, so
that `probe.C` means the same for both probe types. Training stops when validation macro F1 has
not improved for `patience` epochs, and the weights of the best validation epoch are restored.
"""

from __future__ import annotations

import copy
import logging
import warnings

import lightning as L
import numpy as np
import scipy.sparse as sp
import torch
from lightning.fabric.plugins.environments import LightningEnvironment
from sklearn.metrics import f1_score
from torch.utils.data import DataLoader

for _name in ("lightning.pytorch", "lightning.fabric", "lightning"):
    logging.getLogger(_name).setLevel(logging.WARNING)
# Lightning 2.6 calls a torch API that torch 2.13 deprecates; nothing a user can act on.
warnings.filterwarnings("ignore", message=".*LeafSpec.*")
# Lightning suggests `srun` whenever SLURM is installed; the probe is one process on purpose.
warnings.filterwarnings("ignore", message=".*The `srun` command is available.*")


def _dense_rows(features, index) -> torch.Tensor:
    rows = features[index]
    return torch.from_numpy(rows.toarray() if sp.issparse(rows) else np.asarray(rows)).float()


class SparseFeatureDataModule(L.LightningDataModule):
    """Train/validation mini-batches over a CSR (or dense) matrix, densified one batch at a time."""

    def __init__(self, x_train, y_train, x_val, y_val, batch_size: int, seed: int):
        super().__init__()
        self.splits = {"train": (x_train, y_train), "val": (x_val, y_val)}
        self.batch_size = batch_size
        self.seed = seed

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        features, labels = self.splits[split]

        def collate(index: list[int]):
            return _dense_rows(features, index), torch.from_numpy(labels[index])

        return DataLoader(
            range(features.shape[0]),
            batch_size=self.batch_size,
            shuffle=shuffle,
            collate_fn=collate,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)


class LinearProbe(L.LightningModule):
    """Logits = x W^T + b, trained with class-weighted cross-entropy and an L1/L2 weight penalty.

    A binary probe has one weight vector, the log-odds of class 1 (class 0's logit is fixed at 0),
    as sklearn's has: with two free softmax rows the same penalty would be half as strong.
    """

    def __init__(self, n_features: int, n_classes: int, class_weights: torch.Tensor,
                 penalty: str, penalty_scale: float, lr: float):
        super().__init__()
        self.binary = n_classes == 2
        self.linear = torch.nn.Linear(n_features, 1 if self.binary else n_classes)
        torch.nn.init.zeros_(self.linear.weight)
        torch.nn.init.zeros_(self.linear.bias)
        self.register_buffer("class_weights", class_weights.float())
        self.penalty = penalty
        self.penalty_scale = penalty_scale
        self.lr = lr
        self._val_predictions: list[torch.Tensor] = []
        self._val_labels: list[torch.Tensor] = []

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        logits = self.linear(features)
        if self.binary:
            return torch.cat([torch.zeros_like(logits), logits], dim=1)
        return logits

    def class_weight_matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """Weight (classes x features) and bias in the softmax form every probe returns."""
        weight = self.linear.weight.detach().cpu().numpy()
        bias = self.linear.bias.detach().cpu().numpy()
        if self.binary:
            weight = np.vstack([np.zeros_like(weight), weight])
            bias = np.concatenate([[0.0], bias])
        return weight, bias

    def weighted_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of class-weighted cross-entropy: sklearn's per-sample weighting, scaled by 1/n.

        (`cross_entropy(weight=...)` would divide by the batch's summed weights, reweighting each batch.)
        """
        losses = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
        return (self.class_weights[labels] * losses).mean()

    def _penalty(self) -> torch.Tensor:
        weight = self.linear.weight
        if self.penalty == "l1":
            return self.penalty_scale * weight.abs().sum()
        return 0.5 * self.penalty_scale * (weight**2).sum()

    def training_step(self, batch, batch_index):
        features, labels = batch
        loss = self.weighted_loss(self(features), labels) + self._penalty()
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(labels))
        return loss

    def validation_step(self, batch, batch_index):
        features, labels = batch
        logits = self(features)
        loss = self.weighted_loss(logits, labels)
        self.log("val_loss", loss, on_step=False, on_epoch=True, batch_size=len(labels))
        self._val_predictions.append(logits.argmax(dim=1).cpu())
        self._val_labels.append(labels.cpu())

    def on_validation_epoch_end(self):
        predictions = torch.cat(self._val_predictions).numpy()
        labels = torch.cat(self._val_labels).numpy()
        self._val_predictions.clear()
        self._val_labels.clear()
        self.log("val_macro_f1", f1_score(labels, predictions, average="macro", zero_division=0))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


class RestoreBestWeights(L.Callback):
    """Keep the weights of the epoch with the best validation macro F1 (ties: lower validation loss)."""

    def __init__(self):
        self.best: tuple[float, float] | None = None
        self.best_epoch = -1
        self.state: dict | None = None

    def on_validation_end(self, trainer, module):
        metrics = trainer.callback_metrics
        score = (float(metrics["val_macro_f1"]), -float(metrics["val_loss"]))
        if self.best is None or score > self.best:
            self.best, self.best_epoch = score, trainer.current_epoch
            self.state = copy.deepcopy(module.state_dict())

    def on_fit_end(self, trainer, module):
        if self.state is not None:
            module.load_state_dict(self.state)


def fit_lightning_probe(
    x_train, y_train, x_val, y_val, n_classes: int, class_weights: np.ndarray, cfg, seed: int, logger=False
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Train a `LinearProbe` and return its weight (classes x features), bias and a training summary."""
    L.seed_everything(seed, workers=False, verbose=False)
    module = LinearProbe(
        n_features=x_train.shape[1],
        n_classes=n_classes,
        class_weights=torch.from_numpy(class_weights),
        penalty=cfg.penalty,
        penalty_scale=1.0 / (cfg.C * x_train.shape[0]),
        lr=cfg.lr,
    )
    best = RestoreBestWeights()
    trainer = L.Trainer(
        max_epochs=cfg.max_epochs,
        callbacks=[L.pytorch.callbacks.EarlyStopping("val_macro_f1", mode="max", patience=cfg.patience), best],
        logger=logger,
        accelerator="cpu",
        devices=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        deterministic=True,
        # One process on one device, also inside a SLURM job: never let Lightning read SLURM's task layout.
        plugins=[LightningEnvironment()],
    )
    trainer.fit(module, datamodule=SparseFeatureDataModule(x_train, y_train, x_val, y_val, cfg.batch_size, seed))
    summary = {"epochs": trainer.current_epoch, "best_epoch": best.best_epoch, "best_val_macro_f1": best.best[0]}
    weight, bias = module.class_weight_matrix()
    return weight, bias, summary
