"""Shared test setup: offline, no W&B unless a test asks, a private cache, and Hydra composition."""

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("WANDB_MODE", "offline")
os.environ["WANDB_SILENT"] = "true"

REPO = Path(__file__).resolve().parents[1]
# A fast job on hidden states of the tiny random GPT-2 (for tests of what happens around the features).
TINY_HIDDEN = ["model=tiny_gpt2", "layer=1", "features=hidden", "logger=none", "dataset.limit=60"]


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Every test session trains and caches its own SAEs, never touching the user's cache."""
    path = tmp_path_factory.mktemp("mosaic-cache")
    os.environ["MOSAIC_CACHE"] = str(path)
    return path


SCHEMA_FILE = REPO / "docs" / "results.schema.json"


@pytest.fixture(autouse=True)
def results_fit_the_published_schema(monkeypatch):
    """Every results.json a test's jobs write is checked against docs/results.schema.json (JSON Schema, by the
    `jsonschema` package) before it is written."""
    import json

    import jsonschema

    import mosaic.record.results as results

    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    write = results.write_json_atomic

    def checked(path, payload):
        validator.validate(payload)
        return write(path, payload)

    monkeypatch.setattr(results, "write_json_atomic", checked)


def compose_config(*overrides: str):
    """The job config `run.py` would see for these command-line overrides."""
    from mosaic.config import compose

    return compose(*overrides)


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


def fake_hub_file(monkeypatch, cache_dir, repo_id, path, content: bytes, commit="a" * 40, revision="main"):
    """A file laid out as the Hugging Face hub client caches it (refs/REVISION -> snapshots/COMMIT/PATH).

    Points the client's cache at `cache_dir`; with HF_HUB_OFFLINE=1 the real client code resolves
    the revision and finds the file there, as on a node that fetched it earlier.
    """
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache_dir))
    repo = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / revision).write_text(commit)
    target = repo / "snapshots" / commit / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)
    return target


def read_offline_wandb_run(run_dir, timeout=120.0):
    """An offline W&B run read back with W&B's own reader (`wandb leet inspect --json`), once W&B says it is written.

    W&B writes the `exit` record last; on a busy machine it can land a moment after `run.finish()`
    returns, so this waits for it instead of reading a file that is still being written. Returns the
    run record (name, group, tags, config), the merged summary and the history rows.
    """
    import json
    import subprocess
    import sys
    import time

    deadline = time.monotonic() + timeout
    while True:
        listed = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(run_dir)],
                                capture_output=True, text=True)
        records = [json.loads(line) for line in listed.stdout.splitlines() if line.strip()]
        if records and records[-1]["type"] == "exit":
            break
        assert time.monotonic() < deadline, f"W&B never finished writing {run_dir}: {listed.stderr[-500:]}"
        time.sleep(0.5)
    summary = {}
    for record in records:
        if record["type"] == "summary":
            summary.update(record["summary"].get("update", {}))
    return {"run": next(r["run"] for r in records if r["type"] == "run"), "summary": summary,
            "history": [r["history"]["item"] for r in records if r["type"] == "history"]}


def in_cache(cache: Path, function, *args):
    """function(*args) with MOSAIC_CACHE set to cache, restored afterwards."""
    saved = os.environ.get("MOSAIC_CACHE")
    os.environ["MOSAIC_CACHE"] = str(cache)
    try:
        return function(*args)
    finally:
        os.environ.pop("MOSAIC_CACHE") if saved is None else os.environ.__setitem__("MOSAIC_CACHE", saved)


def assert_each_entry_built_once(cells: list[dict], cache: Path) -> None:
    """Every cell read one activation entry; each entry was a miss (one forward) in at most one cell."""
    from mosaic.__main__ import main as mosaic_cli
    from mosaic.infra.cache import incomplete_dirs, list_entries

    keys = {cell["cache"]["key"] for cell in cells}
    misses = [cell["cache"]["key"] for cell in cells if not cell["cache"]["hit"]]
    assert len(misses) == len(set(misses))  # no entry built twice
    # Both layers come from the first cell's one forward (a sweep's layers are siblings of one entry).
    assert len(misses) == 1 and len(keys) == 2
    assert sorted(entry.key for entry in in_cache(cache, list_entries, "activations")) == sorted(keys)
    assert in_cache(cache, incomplete_dirs) == []
    assert in_cache(cache, mosaic_cli, ["cache", "verify"]) == 0
