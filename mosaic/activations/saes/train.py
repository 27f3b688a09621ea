"""Train an SAE on in-memory activations with SAELens's trainer: standard (L1), TopK, BatchTopK, Matryoshka
BatchTopK or JumpReLU.

Used for models with no published SAE (the offline defaults). Activations are normalised to a
fixed average norm during training and the factor is folded into the weights afterwards, so the
saved SAE reads raw residual-stream activations, like a Gemma Scope SAE. Latents that have not
fired for `DEAD_WINDOW_TOKENS` tokens count as dead: TopK and (Matryoshka) BatchTopK then train them with their
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
from mosaic.infra.cache import Checkpoints
from mosaic.infra.errors import MosaicError

DEAD_WINDOW_TOKENS = 2**17
DECAY_FRACTION = 0.2
# About this many points of the training curve are kept (training.json, W&B).
CURVE_POINTS = 100
# The trained SAE's reconstruction is also measured on this many of its own training tokens.
TRAINING_STATS_TOKENS = 20000
TRAINING_FILE = "training.json"
# A training checkpoint: the training SAE's weights, the global RNG, batches served and the curve so far.
SAE_STATE_FILE, RNG_STATE_FILE, PROGRESS_FILE = "sae.safetensors", "rng.safetensors", "progress.json"


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
    matryoshka_fractions: tuple[float, ...] = ()
    decoder_bias_at_mean: bool = False


@dataclass(frozen=True)
class Architecture:
    """One `sae.architecture`: SAELens's training SAE, the config keys that set its sparsity, and whether
    `sae.k` is its number of active latents per token (exactly, or on average over a batch)."""

    training_sae: Callable[[], tuple[type, type]]
    sparsity: Callable[[TrainSettings], dict[str, Any]]
    k_active: bool = False


def matryoshka_widths(fractions: tuple[float, ...], d_sae: int) -> list[int]:
    """The nested dictionaries' widths: each fraction of `d_sae` (rounded), then the whole SAE.

    A Matryoshka SAE reconstructs its input from each prefix of its latents as well as from all of
    them, so the first latents must carry the coarse, frequent directions on their own.
    """
    widths = [round(fraction * d_sae) for fraction in fractions]
    if not widths or not all(0 < width < later for width, later in zip(widths, [*widths[1:], d_sae], strict=True)):
        raise MosaicError(f"sae.matryoshka_fractions={list(fractions)} is not allowed: increasing fractions in (0, 1), "
                          f"at least one, whose widths of the SAE's {d_sae} latents differ, e.g. [0.0625, 0.25]")
    return [*widths, d_sae]


def _sae_lens(training: str, config: str) -> Callable[[], tuple[type, type]]:
    def classes() -> tuple[type, type]:
        import sae_lens

        return getattr(sae_lens, training), getattr(sae_lens, config)

    return classes


# sae.architecture -> SAELens's training classes and what sets their sparsity.
ARCHITECTURES: dict[str, Architecture] = {
    "standard": Architecture(_sae_lens("StandardTrainingSAE", "StandardTrainingSAEConfig"),
                             lambda s: {"l1_coefficient": s.l1_coefficient}),
    "topk": Architecture(_sae_lens("TopKTrainingSAE", "TopKTrainingSAEConfig"), lambda s: {"k": s.k}, k_active=True),
    "batchtopk": Architecture(_sae_lens("BatchTopKTrainingSAE", "BatchTopKTrainingSAEConfig"), lambda s: {"k": s.k},
                              k_active=True),
    "matryoshka_batchtopk": Architecture(
        _sae_lens("MatryoshkaBatchTopKTrainingSAE", "MatryoshkaBatchTopKTrainingSAEConfig"),
        lambda s: {"k": s.k, "matryoshka_widths": matryoshka_widths(s.matryoshka_fractions, s.d_sae)},
        k_active=True),
    "jumprelu": Architecture(_sae_lens("JumpReLUTrainingSAE", "JumpReLUTrainingSAEConfig"),
                             lambda s: {"l0_coefficient": s.l0_coefficient}),
}


class ShuffledBatches:
    """Endless shuffled mini-batches of rows, a fresh permutation each pass.

    `served` counts the batches given so far; a provider built with `skip=served` continues the same
    sequence, which is how a resumed training sees exactly the batches an uninterrupted one would.
    """

    def __init__(self, values: np.ndarray, batch_tokens: int, seed: int, skip: int = 0):
        self.data = torch.from_numpy(values)
        self.batch_tokens = batch_tokens
        self.per_pass = len(values) // batch_tokens
        self.generator = torch.Generator().manual_seed(seed)
        self.served = 0
        self.order = torch.empty(0, dtype=torch.long)
        for _ in range(skip):
            self._next_rows()

    def _next_rows(self) -> torch.Tensor:
        position = self.served % self.per_pass
        if position == 0:
            self.order = torch.randperm(len(self.data), generator=self.generator)
        self.served += 1
        return self.order[position * self.batch_tokens : (position + 1) * self.batch_tokens]

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self

    def __next__(self) -> torch.Tensor:
        return self.data[self._next_rows()]


def _curve_trainer(every: int, checkpoints: Checkpoints | None, checkpoint_seconds: float,
                   initial_b_dec: torch.Tensor | None = None):
    """SAELens's trainer, keeping its own step log (loss, explained variance, L0, dead latents) every `every`
    steps, and saving its whole state to `checkpoints` every `checkpoint_seconds`; with `initial_b_dec` (raw
    activation units), the decoder bias starts there instead of at zero."""
    from sae_lens import SAETrainer

    class CurveTrainer(SAETrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.curve: list[dict[str, Any]] = []
            self.last_saved = time.monotonic()

        def step(self, batch):
            if self.n_training_steps == 0 and initial_b_dec is not None:
                # The trainer sees activations times its scaling factor, estimated just before the first step.
                factor = self.activation_scaler.scaling_factor or 1.0
                self.sae.b_dec.data.copy_(initial_b_dec.to(self.sae.b_dec.dtype) * factor)
            # Before the step: the state is that of `n_training_steps` finished steps, and this batch is re-served.
            if checkpoints is not None and time.monotonic() - self.last_saved >= checkpoint_seconds:
                checkpoints.save(self.n_training_steps, self.save_state)
                self.last_saved = time.monotonic()
            output = super().step(batch)
            if self.n_training_steps % every == 0:
                logged = self.build_train_step_log_dict(output, self.n_training_samples)
                self.curve.append({"step": self.n_training_steps, "tokens": self.n_training_samples,
                                   "loss": logged["losses/overall_loss"],
                                   "explained_variance": logged["metrics/explained_variance"],
                                   "l0": logged["metrics/l0"], "dead": logged["sparsity/dead_features"]})
            return output

        def save_state(self, directory: Path) -> None:
            """Everything the next steps depend on: weights, SAELens's trainer state, batches served, RNG, curve."""
            from safetensors.torch import save_file

            save_file({name: tensor.detach().contiguous() for name, tensor in self.sae.state_dict().items()},
                      str(directory / SAE_STATE_FILE))
            save_file({"torch": torch.get_rng_state()}, str(directory / RNG_STATE_FILE))
            self.save_trainer_state(directory)
            progress = {"served": self.data_provider.served - 1, "curve": self.curve}
            (directory / PROGRESS_FILE).write_text(json.dumps(progress))

        def load_state(self, directory: Path) -> None:
            from safetensors.torch import load_file

            self.sae.load_state_dict(load_file(str(directory / SAE_STATE_FILE), device=str(self.cfg.device)))
            self.load_trainer_state(directory)
            torch.set_rng_state(load_file(str(directory / RNG_STATE_FILE))["torch"])
            self.curve = json.loads((directory / PROGRESS_FILE).read_text())["curve"]

    return CurveTrainer


def train_sae(values: np.ndarray, settings: TrainSettings, out_dir: str | Path, device: str = "cpu",
              hook_name: str | None = None, checkpoints: Checkpoints | None = None,
              checkpoint_seconds: float = 300.0, corpus_seconds: float = 0.0) -> dict[str, Any]:
    """Train on `values` (tokens x d_in) for `settings.tokens` tokens and save an inference SAE to `out_dir`.

    `hook_name` (e.g. `blocks.3.hook_resid_post`) is recorded in the SAE's metadata, so the saved
    SAE says which activations it reads. With `checkpoints`, the training state is saved there every
    `checkpoint_seconds` and a training stopped before its end (a time limit, preemption) continues
    from the newest state, to the same weights as an uninterrupted one. Writes and returns
    `training.json`: the corpus size, steps, wall time, the training curve, the step it resumed from,
    and L0, explained variance and dead latents on the training tokens; `corpus_seconds` (the forward
    that extracted `values`, where this SAE ran it) is recorded beside the training's own `seconds`, so
    that the two add up to its build time.
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
    state = checkpoints.latest() if checkpoints is not None else None
    served = json.loads((state / PROGRESS_FILE).read_text())["served"] if state else 0
    # A residual stream far from the origin (Gemma 3's layer 9 keeps 93% of its energy in its mean) makes every
    # token pick the same latents while the decoder bias is zero: the rest never fire and die.
    initial_b_dec = torch.from_numpy(values.mean(axis=0, dtype=np.float64)) if settings.decoder_bias_at_mean else None
    trainer = _curve_trainer(max(1, steps // CURVE_POINTS), checkpoints, checkpoint_seconds, initial_b_dec)(
        cfg=SAETrainerConfig(
            total_training_samples=steps * batch_tokens, train_batch_size_samples=batch_tokens,
            lr=settings.lr, lr_end=0.0, lr_decay_steps=int(DECAY_FRACTION * steps), device=device,
            dead_feature_window=max(1, DEAD_WINDOW_TOKENS // batch_tokens),
            n_batches_for_norm_estimate=max(1, min(50, len(values) // batch_tokens)),
            logger=LoggingConfig(log_to_wandb=False),
        ),
        sae=sae,
        data_provider=ShuffledBatches(values, batch_tokens, settings.seed, skip=served),
    )
    if state is not None:
        trainer.load_state(state)
    resumed_from = trainer.n_training_steps
    started = time.perf_counter()
    trained = trainer.fit()
    trained.cfg.metadata.hook_name = hook_name
    trained.save_inference_model(str(out_dir))
    # Measured with the SAE as saved for inference (BatchTopK's becomes a JumpReLU with its learned threshold).
    on_training_tokens = ReconstructionTally(settings.d_sae, max_tokens=TRAINING_STATS_TOKENS)
    encode_tokens(load_sae(out_dir, device=device), values[:TRAINING_STATS_TOKENS], 4096, on_training_tokens)
    record = {"corpus_tokens": len(values), "tokens": steps * batch_tokens, "steps": steps,
              "resumed_from_step": resumed_from, "seconds": time.perf_counter() - started,
              "corpus_seconds": corpus_seconds,
              "on_training_tokens": on_training_tokens.result(),
              "curve": trainer.curve}
    (Path(out_dir) / TRAINING_FILE).write_text(json.dumps(record, indent=2))
    return record

