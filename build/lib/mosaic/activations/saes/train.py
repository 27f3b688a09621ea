"""Train an SAE on in-memory activations with SAELens's trainer: standard (L1), TopK, BatchTopK or JumpReLU.

Used for models with no published SAE (the offline defaults). Activations are normalised to a
fixed average norm during training and the factor is folded into the weights afterwards, so the
saved SAE reads raw residual-stream activations, like a Gemma Scope SAE. Latents that have not
fired for `DEAD_WINDOW_TOKENS` tokens count as dead: TopK and BatchTopK then train them with their
auxiliary loss. The learning rate is constant, then decays linearly to zero over the last
`DECAY_FRACTION` of the steps.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mosaic.activations.saes.encode import encode_tokens
from mosaic.activations.saes.load import load_sae
from mosaic.activations.saes.quality import ReconstructionTally
from mosaic.infra.errors import MosaicError

DEAD_WINDOW_TOKENS = 2**17
DECAY_FRACTION = 0.2
# About this many points of the training curve are kept (training.json, W&B).
CURVE_POINTS = 100
# The trained SAE's reconstruction is also measured on this many of its own training tokens.
TRAINING_STATS_TOKENS = 20000
TRAINING_FILE = "training.json"


@dataclass(frozen=True)
class TrainSettings:
    """What shapes a trained SAE (all of it part of its cache key): `sae.*` of a job's config."""

    architecture: str
    d_sae: int
    k: int
    l1_coefficient: float
    l0_coefficient: float
    lr: float
    tokens: int
    batch_tokens: int
    seed: int


@dataclass(frozen=True)
class Architecture:
    """One `sae.architecture`: SAELens's training SAE and the config keys that set its sparsity."""

    training_sae: Callable[[], tuple[type, type]]
    sparsity: Callable[[TrainSettings], dict[str, Any]]


def _sae_lens(training: str, config: str) -> Callable[[], tuple[type, type]]:
    def classes() -> tuple[type, type]:
        import sae_lens

        return getattr(sae_lens, training), getattr(sae_lens, config)

    return classes


# sae.architecture -> SAELens's training classes and what sets their sparsity.
ARCHITECTURES: dict[str, Architecture] = {
    "standard": Architecture(_sae_lens("StandardTrainingSAE", "StandardTrainingSAEConfig"),
                             lambda s: {"l1_coefficient": s.l1_coefficient}),
    "topk": Architecture(_sae_lens("TopKTrainingSAE", "TopKTrainingSAEConfig"), lambda s: {"k": s.k}),
    "batchtopk": Architecture(_sae_lens("BatchTopKTrainingSAE", "BatchTopKTrainingSAEConfig"), lambda s: {"k": s.k}),
    "jumprelu": Architecture(_sae_lens("JumpReLUTrainingSAE", "JumpReLUTrainingSAEConfig"),
                             lambda s: {"l0_coefficient": s.l0_coefficient}),
}


def _shuffled_batches(values: np.ndarray, batch_tokens: int, seed: int) -> Iterator[torch.Tensor]:
    """Endless shuffled mini-batches of rows, a fresh permutation each pass."""
    data = torch.from_numpy(values)
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(data), generator=generator)
        for start in range(0, len(order) - batch_tokens + 1, batch_tokens):
            yield data[order[start : start + batch_tokens]]


def _curve_trainer(every: int):
    """SAELens's trainer, keeping its own step log (loss, explained variance, L0, dead latents) every `every` steps."""
    from sae_lens import SAETrainer

    class CurveTrainer(SAETrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.curve: list[dict[str, float]] = []

        def step(self, batch):
            output = super().step(batch)
            if self.n_training_steps % every == 0:
                logged = self.build_train_step_log_dict(output, self.n_training_samples)
                self.curve.append({"step": self.n_training_steps, "tokens": self.n_training_samples,
                                   "loss": logged["losses/overall_loss"],
                                   "explained_variance": logged["metrics/explained_variance"],
                                   "l0": logged["metrics/l0"], "dead": logged["sparsity/dead_features"]})
            return output

    return CurveTrainer


def train_sae(values: np.ndarray, settings: TrainSettings, out_dir: str | Path, device: str = "cpu",
              hook_name: str | None = None) -> dict[str, Any]:
    """Train on `values` (tokens x d_in) for `settings.tokens` tokens and save an inference SAE to `out_dir`.

    `hook_name` (e.g. `blocks.3.hook_resid_post`) is recorded in the SAE's metadata, so the saved
    SAE says which activations it reads. Writes and returns `training.json`: the corpus size, steps,
    wall time, the training curve, and L0, explained variance and dead latents on the training tokens.
    """
    from sae_lens.config import LoggingConfig, SAETrainerConfig

    if len(values) == 0:
        raise MosaicError("the SAE's training corpus has no tokens: check sae.train_corpus and sae.train_docs")
    torch.manual_seed(settings.seed)
    batch_tokens = min(settings.batch_tokens, len(values))
    steps = max(1, settings.tokens // batch_tokens)
    training_sae, training_config = ARCHITECTURES[settings.architecture].training_sae()
    sae = training_sae(training_config(d_in=values.shape[1], d_sae=settings.d_sae, device=device,
                                       normalize_activations="expected_average_only_in",
                                       **ARCHITECTURES[settings.architecture].sparsity(settings)))
    trainer = _curve_trainer(max(1, steps // CURVE_POINTS))(
        cfg=SAETrainerConfig(
            total_training_samples=steps * batch_tokens, train_batch_size_samples=batch_tokens,
            lr=settings.lr, lr_end=0.0, lr_decay_steps=int(DECAY_FRACTION * steps), device=device,
            dead_feature_window=max(1, DEAD_WINDOW_TOKENS // batch_tokens),
            n_batches_for_norm_estimate=max(1, min(50, len(values) // batch_tokens)),
            logger=LoggingConfig(log_to_wandb=False),
        ),
        sae=sae,
        data_provider=_shuffled_batches(values, batch_tokens, settings.seed),
    )
    started = time.perf_counter()
    trained = trainer.fit()
    trained.cfg.metadata.hook_name = hook_name
    trained.save_inference_model(str(out_dir))
    # Measured with the SAE as saved for inference (BatchTopK's becomes a JumpReLU with its learned threshold).
    on_training_tokens = ReconstructionTally(settings.d_sae, max_tokens=TRAINING_STATS_TOKENS)
    encode_tokens(load_sae(out_dir, device=device), values[:TRAINING_STATS_TOKENS], 4096, on_training_tokens)
    record = {"corpus_tokens": len(values), "tokens": steps * batch_tokens, "steps": steps,
              "seconds": time.perf_counter() - started, "on_training_tokens": on_training_tokens.result(),
              "curve": trainer.curve}
    (Path(out_dir) / TRAINING_FILE).write_text(json.dumps(record, indent=2))
    return record

