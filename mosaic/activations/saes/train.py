"""Train a standard ReLU SAE on in-memory activations with SAELens's trainer.

Used for models with no published SAE (the offline defaults). Activations are normalised to a
fixed average norm during training and the factor is folded into the weights afterwards, so the
saved SAE reads raw residual-stream activations, like a Gemma Scope SAE.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch


def _shuffled_batches(values: np.ndarray, batch_tokens: int, seed: int) -> Iterator[torch.Tensor]:
    """Endless shuffled mini-batches of rows, a fresh permutation each pass."""
    data = torch.from_numpy(values)
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(data), generator=generator)
        for start in range(0, len(order) - batch_tokens + 1, batch_tokens):
            yield data[order[start : start + batch_tokens]]


def train_sae(
    values: np.ndarray,
    d_sae: int,
    out_dir: str | Path,
    l1_coefficient: float,
    lr: float,
    epochs: int,
    batch_tokens: int,
    seed: int,
    device: str = "cpu",
    hook_name: str | None = None,
) -> dict[str, float]:
    """Train on `values` (tokens x d_in) for `epochs` passes and save an inference SAE to `out_dir`.

    `hook_name` (e.g. `blocks.3.hook_resid_post`) is recorded in the SAE's metadata, so the saved
    SAE says which activations it reads.

    Returns training statistics measured on the training tokens: L0 (mean active latents per
    token), the fraction of variance the reconstruction explains, and the fraction of dead latents.
    """
    from sae_lens import SAETrainer, StandardTrainingSAE, StandardTrainingSAEConfig
    from sae_lens.config import LoggingConfig, SAETrainerConfig

    torch.manual_seed(seed)
    batch_tokens = min(batch_tokens, len(values))
    sae = StandardTrainingSAE(
        StandardTrainingSAEConfig(
            d_in=values.shape[1],
            d_sae=d_sae,
            l1_coefficient=l1_coefficient,
            normalize_activations="expected_average_only_in",
            device=device,
        )
    )
    trainer = SAETrainer(
        cfg=SAETrainerConfig(
            total_training_samples=epochs * len(values),
            train_batch_size_samples=batch_tokens,
            lr=lr,
            lr_end=lr,
            device=device,
            n_batches_for_norm_estimate=max(1, min(50, len(values) // batch_tokens)),
            logger=LoggingConfig(log_to_wandb=False),
        ),
        sae=sae,
        data_provider=_shuffled_batches(values, batch_tokens, seed),
    )
    trained = trainer.fit()
    trained.cfg.metadata.hook_name = hook_name
    trained.save_inference_model(str(out_dir))
    return _reconstruction_stats(trained, values)


def _reconstruction_stats(sae, values: np.ndarray, max_rows: int = 20000) -> dict[str, float]:
    x = torch.from_numpy(values[:max_rows])
    with torch.inference_mode():
        codes = sae.encode(x)
        recon = sae.decode(codes)
    residual = ((x - recon) ** 2).sum()
    total = ((x - x.mean(dim=0)) ** 2).sum()
    return {
        "l0": float((codes > 0).sum(dim=1).float().mean()),
        "explained_variance": float(1 - residual / total),
        "dead_fraction": float(((codes > 0).sum(dim=0) == 0).float().mean()),
    }
