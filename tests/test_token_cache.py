"""The activation cache: later jobs of a grid run no forward and no encode; sweeps share one forward."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

import mosaic.token_cache as token_cache
from mosaic.__main__ import main as mosaic_cli
from mosaic.cache import list_entries, read_entry
from mosaic.pipeline import run
from mosaic.sweep import Sweep
from tests.conftest import REPO, compose_config

TINY = ["model=tiny_gpt2", "layer=1", "sae.train_docs=60", "sae.train_epochs=1", "logger=none", "probe=sklearn",
        "dataset.limit=60"]


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MOSAIC_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _forbid_model_and_encoder(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a cache hit must not run the model or the SAE")

    monkeypatch.setattr(token_cache, "load_model", refuse)
    monkeypatch.setattr(token_cache, "encode_tokens", refuse)


def test_a_job_differing_only_in_cheap_settings_runs_no_forward_and_no_encode(tmp_path, own_cache, monkeypatch):
    first = run(compose_config(*TINY, "pooling=mean"), tmp_path / "a")
    _forbid_model_and_encoder(monkeypatch)
    second = run(compose_config(*TINY, "pooling=topn", "binarize=threshold", "probe=linear", "seed=3",
                                "probe.max_epochs=5"), tmp_path / "b")
    assert first["cache"]["hit"] is False and second["cache"] == {"hit": True, "key": first["cache"]["key"]}
    assert "extract" in first["timings_s"] and "extract" not in second["timings_s"]


def test_cached_codes_pool_like_freshly_encoded_ones(tmp_path, own_cache, monkeypatch):
    fresh = run(compose_config(*TINY, "pooling=max"), tmp_path / "a")
    entry = own_cache / "activations" / fresh["cache"]["key"]
    codes, offsets = token_cache.read_codes(entry)
    assert sp.isspmatrix_csr(codes) and offsets[-1] == codes.shape[0] == fresh["features"]["tokens"]
    _forbid_model_and_encoder(monkeypatch)
    again = run(compose_config(*TINY, "pooling=max"), tmp_path / "b")
    assert again["metrics"] == fresh["metrics"] and again["top_features"] == fresh["top_features"]


def test_hidden_entries_hold_every_hidden_pooling(tmp_path, own_cache):
    results = run(compose_config(*TINY, "features=hidden", "pooling=last"), tmp_path / "a")
    entry = own_cache / "activations" / results["cache"]["key"]
    pooled = {m: token_cache.read_hidden(entry, m) for m in token_cache.HIDDEN_POOLINGS}
    lengths = np.diff(np.load(entry / "offsets.npy"))
    assert all(p.shape == (60, 32) for p in pooled.values())
    np.testing.assert_allclose(pooled["sum"], pooled["mean"] * lengths[:, None], rtol=1e-4, atol=1e-5)


def test_the_first_job_of_a_sweep_caches_its_siblings_from_one_forward(tmp_path, own_cache, monkeypatch):
    sweep = Sweep(layers=(1, 2, 9), features=("sae", "hidden"))  # layer 9 is outside tiny_gpt2: skipped
    calls = []
    real = token_cache.extract_activations
    monkeypatch.setattr(token_cache, "extract_activations",
                        lambda loaded, texts, layers, *a, **k: calls.append(list(layers)) or real(loaded, texts,
                                                                                                  layers, *a, **k))
    first = run(compose_config(*TINY), tmp_path / "a", sweep)
    assert calls == [[1, 2]] and first["cache"]["hit"] is False
    _forbid_model_and_encoder(monkeypatch)
    for name, overrides in {"b": ["layer=2"], "c": ["features=hidden"], "d": ["layer=2", "features=hidden"]}.items():
        assert run(compose_config(*TINY, *overrides), tmp_path / name, sweep)["cache"]["hit"] is True
    assert len(list_entries("activations")) == 4


def test_a_multirun_reads_its_sweep_and_hits_the_cache_after_the_first_job(tmp_path):
    result = subprocess.run(
        [sys.executable, "run.py", "-m", *TINY, "layer=1,2", "features=sae,hidden", f"hydra.sweep.dir={tmp_path}"],
        cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ, "MOSAIC_CACHE": str(tmp_path / "c")},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    paths = sorted(tmp_path.glob("*/results.json"), key=lambda p: int(p.parent.name))
    cells = [json.loads(p.read_text()) for p in paths]
    assert [c["cache"]["hit"] for c in cells] == [False, True, True, True]


def test_a_truncated_entry_is_rebuilt_and_a_corrupted_one_fails_verify(tmp_path, own_cache, capsys):
    results = run(compose_config(*TINY), tmp_path / "a")
    entry = own_cache / "activations" / results["cache"]["key"]
    codes = entry / "codes.npz"
    payload = bytearray(codes.read_bytes())
    payload[-10] ^= 0xFF
    codes.write_bytes(bytes(payload))  # same size: only the checksum can tell
    assert read_entry(entry) is not None
    assert mosaic_cli(["cache", "verify", "--kind", "activations"]) == 1
    assert "codes.npz: checksum mismatch" in capsys.readouterr().out

    codes.write_bytes(bytes(payload[: len(payload) // 2]))
    assert read_entry(entry) is None
    again = run(compose_config(*TINY), tmp_path / "b")
    assert again["cache"]["hit"] is False
    assert mosaic_cli(["cache", "verify"]) == 0


def test_cache_list_and_remove_by_field(tmp_path, own_cache, capsys):
    run(compose_config(*TINY), tmp_path / "a")
    run(compose_config(*TINY, "features=hidden"), tmp_path / "b")
    assert mosaic_cli(["cache", "list"]) == 0
    listing = capsys.readouterr().out
    assert listing.count("activations ") == 2 and listing.count("saes ") == 1 and "\n3 entries" in listing
    assert mosaic_cli(["cache", "remove"]) == 2
    assert mosaic_cli(["cache", "remove", "--kind", "activations", "--where", "encoder.type=hidden"]) == 0
    remaining = list_entries("activations")
    assert [e.fields["encoder"]["type"] for e in remaining] == ["sae"]
    assert mosaic_cli(["cache", "remove", "--all"]) == 0 and list_entries() == []
