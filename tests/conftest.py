"""Shared test setup: offline, no W&B unless a test asks, a private cache, and Hydra composition."""

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("WANDB_MODE", "offline")
os.environ["WANDB_SILENT"] = "true"

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Every test session trains and caches its own SAEs, never touching the user's cache."""
    path = tmp_path_factory.mktemp("mosaic-cache")
    os.environ["MOSAIC_CACHE"] = str(path)
    return path


def compose_config(*overrides: str):
    """The job config `run.py` would see for these command-line overrides."""
    from hydra import compose, initialize_config_dir

    import mosaic.config  # noqa: F401  (registers the schema)

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def tiny_model_config(name: str = "tiny_gpt2", **changes):
    from omegaconf import OmegaConf

    cfg = compose_config(f"model={name}").model
    return OmegaConf.merge(cfg, changes)


def jumprelu_sae(directory, d_in, layer, seed=0):
    """A Gemma-Scope-architecture (JumpReLU) SAE saved in SAELens's disk format."""
    import torch
    from sae_lens import JumpReLUSAE, JumpReLUSAEConfig

    torch.manual_seed(seed)
    sae = JumpReLUSAE(JumpReLUSAEConfig(d_in=d_in, d_sae=4 * d_in))
    with torch.no_grad():
        sae.W_enc.normal_(0, 1)
        sae.b_enc.normal_(0, 0.5)
        sae.threshold.uniform_(0.5, 1.5)
    sae.cfg.metadata.hook_name = f"blocks.{layer}.hook_resid_post"
    sae.save_model(str(directory))
    return directory
