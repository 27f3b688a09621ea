"""The Lightning linear probe: multinomial logistic regression on (sparse) features, sklearn's estimator.

Its objective is sklearn's LogisticRegression objective divided by `C * n_train`: class-weighted
mean cross-entropy plus `||W||^2 / (2 C n)` (L2) or `||W||_1 / (C n)` (L1), bias unpenalised, so
that `probe.C` means the same for both probe types and both reach the same optimum.

By default (`probe.early_stopping=false`) the probe is solved to that optimum on the whole training
set at once, in float64: L-BFGS for L2, and for L1 accelerated proximal gradient (FISTA), whose
soft-thresholding step gives exact zeros as sklearn's saga does. The training matrix stays sparse
(`CSRFeatures`), so "full batch" costs what the non-zeros cost. `probe.early_stopping=true`
is the other estimator, named as such: mini-batch Adam that stops when validation macro F1 has not
improved for `patience` epochs and restores the best epoch's weights.
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
from torch.utils.data import DataLoader

from mosaic.probes.selection import macro_f1
from mosaic.probes.solvers import fista, linear_logits, whole_split

for _name in ("lightning.pytorch", "lightning.fabric", "lightning"):
    logging.getLogger(_name).setLevel(logging.WARNING)
# Lightning 2.6 calls a torch API that torch 2.13 deprecates; nothing a user can act on.
warnings.filterwarnings("ignore", message=".*LeafSpec.*")
# Lightning suggests `srun` whenever SLURM is installed; the probe is one process on purpose.
warnings.filterwarnings("ignore", message=".*The `srun` command is available.*")


def _dense_rows(features, index) -> torch.Tensor:
    rows = features[index]
    return torch.from_numpy(rows.toarray() if sp.issparse(rows) else np.asarray(rows)).float()


class FeatureDataModule(L.LightningDataModule):
    """Training and validation batches: the whole split as one batch, or shuffled mini-batches densified one at a time.

    `batch_size=None` means one full batch (the exact solver); features stay sparse in it.
    """

    def __init__(self, x_train, y_train, x_val, y_val, batch_size: int | None, seed: int,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        self.splits = {"train": (x_train, y_train), "val": (x_val, y_val)}
        self.batch_size = batch_size
        self.seed = seed
        self.dtype = dtype

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        features, labels = self.splits[split]
        if self.batch_size is None:
            whole = [(whole_split(features, self.dtype), torch.from_numpy(labels))]
            return DataLoader(whole, batch_size=None, collate_fn=lambda batch: batch)

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


class ValidatedProbe(L.LightningModule):
    """What every Lightning probe shares: sklearn's class-weighted loss, and validation macro F1 for early stopping.

    A subclass calls `validate(logits, labels)` from its `validation_step`.
    """

    def __init__(self, class_weights: torch.Tensor):
        super().__init__()
        self.register_buffer("class_weights", class_weights)
        self._val_predictions: list[torch.Tensor] = []
        self._val_labels: list[torch.Tensor] = []

    def weighted_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of class-weighted cross-entropy: sklearn's per-sample weighting, scaled by 1/n.

        (`cross_entropy(weight=...)` would divide by the batch's summed weights, reweighting each batch.)
        """
        losses = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
        return (self.class_weights[labels] * losses).mean()

    def validate(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.log("val_loss", self.weighted_loss(logits, labels), on_step=False, on_epoch=True, batch_size=len(labels))
        self._val_predictions.append(logits.argmax(dim=1).cpu())
        self._val_labels.append(labels.cpu())

    def on_validation_epoch_end(self):
        predictions = torch.cat(self._val_predictions).numpy() if self._val_predictions else np.array([])
        labels = torch.cat(self._val_labels).numpy() if self._val_labels else np.array([])
        self._val_predictions.clear()
        self._val_labels.clear()
        if len(labels) == 0:  # no validation rows (a refit on train + validation, a tiny training set)
            return
        self.log("val_macro_f1", macro_f1(labels, predictions))


class LinearProbe(ValidatedProbe):
    """Logits = x W^T + b, trained with class-weighted cross-entropy and an L1/L2 weight penalty.

    A binary probe has one weight vector, the log-odds of class 1 (class 0's logit is fixed at 0),
    as sklearn's has: with two free softmax rows the same penalty would be half as strong.
    `solver` is `exact` (full batch to the optimum: L-BFGS for L2, FISTA for L1) or `adam`
    (mini-batches, for early stopping).
    """

    def __init__(self, n_features: int, n_classes: int, class_weights: torch.Tensor, penalty: str,
                 penalty_scale: float, lr: float = 0.05, solver: str = "adam", max_iter: int = 5000,
                 tol: float = 1e-6, dtype: torch.dtype = torch.float32):
        super().__init__(class_weights.to(dtype))
        self.binary = n_classes == 2
        self.linear = torch.nn.Linear(n_features, 1 if self.binary else n_classes, dtype=dtype)
        torch.nn.init.zeros_(self.linear.weight)
        torch.nn.init.zeros_(self.linear.bias)
        self.penalty = penalty
        self.penalty_scale = penalty_scale
        self.lr = lr
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
        self.iterations = 0
        self.converged = False
        self.automatic_optimization = solver == "adam"

    def forward(self, features) -> torch.Tensor:
        logits = linear_logits(features, self.linear.weight, self.linear.bias)
        if self.binary:
            return torch.cat([torch.zeros_like(logits), logits], dim=1)
        return logits

    def class_weight_matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """Weight (classes x features) and bias in the softmax form every probe returns."""
        weight = self.linear.weight.detach().cpu().double().numpy()
        bias = self.linear.bias.detach().cpu().double().numpy()
        if self.binary:
            weight = np.vstack([np.zeros_like(weight), weight])
            bias = np.concatenate([[0.0], bias])
        return weight, bias

    def _penalty(self) -> torch.Tensor:
        weight = self.linear.weight
        if self.penalty == "l1":
            return self.penalty_scale * weight.abs().sum()
        return 0.5 * self.penalty_scale * (weight**2).sum()

    def objective(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The penalised objective this probe minimises (sklearn's, divided by C n)."""
        return self.weighted_loss(self(features), labels) + self._penalty()

    def training_step(self, batch, batch_index):
        features, labels = batch
        if self.solver == "adam":
            loss = self.objective(features, labels)
        elif self.penalty == "l1":
            loss = self._fista(features, labels)
        else:
            loss = self._lbfgs(features, labels)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(labels))
        # The exact solvers run to convergence within this one step (of the trainer's one epoch).
        return loss if self.solver == "adam" else None

    def _lbfgs(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        optimizer = self.optimizers().optimizer

        def closure():
            optimizer.zero_grad()
            loss = self.objective(features, labels)
            loss.backward()
            return loss

        optimizer.step(closure)
        state = optimizer.state[optimizer._params[0]]
        self.iterations = int(state.get("n_iter", 0))
        loss = closure()  # the gradient at the final weights, to say whether they are the optimum
        gradient = max(float(p.grad.abs().max()) for p in self.parameters())
        self.converged = gradient <= self.tol
        return loss.detach()

    def _fista(self, features, labels: torch.Tensor) -> torch.Tensor:
        """L1: `solvers.fista` on the weighted cross-entropy, written back into the linear layer."""
        def smooth(w, b):
            logits = linear_logits(features, w, b)
            if self.binary:
                logits = torch.cat([torch.zeros_like(logits), logits], dim=1)
            return self.weighted_loss(logits, labels)

        w, b, objective, self.iterations, self.converged = fista(
            smooth, self.linear.weight, self.linear.bias, self.penalty_scale, self.max_iter, self.tol)
        with torch.no_grad():
            self.linear.weight.copy_(w)
            self.linear.bias.copy_(b)
        return torch.tensor(objective)

    def validation_step(self, batch, batch_index):
        features, labels = batch
        self.validate(self(features), labels)

    def configure_optimizers(self):
        if self.solver == "adam":
            return torch.optim.Adam(self.parameters(), lr=self.lr)
        # FISTA updates the weights itself; L-BFGS is torch's, with a strong-Wolfe line search.
        return torch.optim.LBFGS(self.parameters(), lr=1, max_iter=self.max_iter, max_eval=2 * self.max_iter,
                                 tolerance_grad=self.tol, tolerance_change=1e-12, history_size=20,
                                 line_search_fn="strong_wolfe")


class RestoreBestWeights(L.Callback):
    """Keep the weights of the epoch with the best validation macro F1 (ties: lower validation loss), or, with
    `by_loss`, the lowest validation loss."""

    def __init__(self, by_loss: bool = False):
        self.best: tuple[float, ...] | None = None
        self.best_epoch = -1
        self.state: dict | None = None
        self.by_loss = by_loss

    def on_validation_end(self, trainer, module):
        metrics = trainer.callback_metrics
        loss = -float(metrics["val_loss"])
        score = (loss,) if self.by_loss else (float(metrics["val_macro_f1"]), loss)
        if self.best is None or score > self.best:
            self.best, self.best_epoch = score, trainer.current_epoch
            self.state = copy.deepcopy(module.state_dict())

    def on_fit_end(self, trainer, module):
        if self.state is not None:
            module.load_state_dict(self.state)


def probe_trainer(max_epochs: int, callbacks: list, logger) -> L.Trainer:
    return L.Trainer(
        max_epochs=max_epochs,
        callbacks=callbacks,
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


def fit_lightning_probe(
    x_train, y_train, x_val, y_val, n_classes: int, class_weights: np.ndarray, cfg, seed: int, logger=False
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Train a `LinearProbe` and return its weight (classes x features), bias and a training summary."""
    L.seed_everything(seed, workers=False, verbose=False)
    exact = not cfg.early_stopping
    dtype = torch.float64 if exact else torch.float32
    module = LinearProbe(
        n_features=x_train.shape[1],
        n_classes=n_classes,
        class_weights=torch.from_numpy(class_weights),
        penalty=cfg.penalty,
        penalty_scale=1.0 / (cfg.C * x_train.shape[0]),
        lr=cfg.lr,
        solver="exact" if exact else "adam",
        max_iter=cfg.max_iter,
        tol=cfg.tol,
        dtype=dtype,
    )
    data = FeatureDataModule(x_train, y_train, x_val, y_val, None if exact else cfg.batch_size, seed, dtype)
    if exact:
        trainer = probe_trainer(1, [], logger)
        trainer.fit(module, datamodule=data)
        summary = {"solver": "lbfgs" if cfg.penalty == "l2" else "fista", "iterations": module.iterations,
                   "converged": module.converged}
    else:
        best = RestoreBestWeights()
        stop = L.pytorch.callbacks.EarlyStopping("val_macro_f1", mode="max", patience=cfg.patience)
        trainer = probe_trainer(cfg.max_epochs, [stop, best], logger)
        trainer.fit(module, datamodule=data)
        summary = {"solver": "adam_early_stopping", "epochs": trainer.current_epoch, "best_epoch": best.best_epoch,
                   "best_val_macro_f1": best.best[0]}
    weight, bias = module.class_weight_matrix()
    return weight, bias, summary
