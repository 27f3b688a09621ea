"""What the benchmark's figures share: a synthetic SAE, the batches extraction runs, timed forwards and processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]


def synthetic_sae(sample: np.ndarray, d_sae: int, l0: int, seed: int = 0):
    """A JumpReLU SAE (Gemma Scope's architecture) with random directions and per-latent thresholds
    set so that about `l0` latents fire per token on `sample`: the cost and sparsity of a real one."""
    from sae_lens import JumpReLUSAE, JumpReLUSAEConfig

    generator = torch.Generator().manual_seed(seed)
    d_in = sample.shape[1]
    sae = JumpReLUSAE(JumpReLUSAEConfig(d_in=d_in, d_sae=d_sae))
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, d_sae, generator=generator) / d_in**0.5)
        sae.W_dec.copy_(sae.W_enc.T)
        sae.b_enc.zero_()
        sae.b_dec.copy_(torch.from_numpy(sample.mean(axis=0)))
        pre = (torch.from_numpy(sample[:512]) - sae.b_dec) @ sae.W_enc
        # Each latent's (1 - l0/d_sae) quantile over the sample, a block of latents at a time: selecting over
        # all of a wide SAE's at once copies the sample several times over (0.4 GB at 65,536 latents).
        rank = max(1, min(len(pre), round(len(pre) * (1 - l0 / d_sae))))
        for start in range(0, d_sae, 4096):
            block = slice(start, start + 4096)
            sae.threshold[block] = torch.kthvalue(pre[:, block], rank, dim=0).values.clamp(min=1e-3)
    return sae.eval()


def extraction_batches(loaded, texts, batch_size: int, max_length: int) -> list:
    """The tokenized batches extraction runs (the same documents per batch), on the model's device."""
    from mosaic.activations.forward import document_batches

    return [
        loaded.tokenizer([texts[i] for i in batch], padding=True, truncation=True, max_length=max_length,
                         return_tensors="pt").to(loaded.device)
        for batch in document_batches(loaded, texts, batch_size, max_length)
    ]


def synchronize() -> None:
    """Wait for queued GPU work, so a timer measures it."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def best_interleaved(repeats: int, *measures) -> list[float]:
    """The best of `repeats` timings of each measure, the measures run in turn within every repeat.

    Timing the sides of a ratio in turn, rather than each side's repeats back to back, lets a slow stretch of
    the machine slow both sides alike instead of one.
    """
    timings = [[measure() for measure in measures] for _ in range(repeats)]
    return [min(repeat[index] for repeat in timings) for index in range(len(measures))]


def bare_forward_seconds(loaded, batches, layer: int | None = None) -> float:
    """A plain `model(...)` over `batches`; with `layer`, stopped after that block as extraction stops."""
    from mosaic.activations.forward import StopForward, capture_blocks

    handles = [] if layer is None else capture_blocks(loaded.model, [layer], {})
    synchronize()
    start = time.perf_counter()
    try:
        with torch.inference_mode():
            for encoded in batches:
                try:
                    loaded.model(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"])
                except StopForward:
                    pass
        synchronize()
    finally:
        for handle in handles:
            handle.remove()
    return time.perf_counter() - start


def fresh_env(cache: Path) -> dict:
    """The environment of a benchmarked process: its own cache, offline, no W&B."""
    return {**os.environ, "MOSAIC_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}


def timed_process(args: list[str], env: dict) -> float:
    """Wall seconds of `python run.py ARGS`, process start included."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "run.py", *args], cwd=REPO, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def clear_activations(env: dict) -> None:
    """Empty the activation cache of `env` (its SAEs stay)."""
    subprocess.run([sys.executable, "-m", "mosaic", "cache", "remove", "--kind", "activations", "--all"], cwd=REPO,
                   env=env, check=True, capture_output=True)
