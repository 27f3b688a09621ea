"""The activation cache: later jobs of a grid run no forward and no encode; sweeps share one forward."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

import mosaic.activations.store as store
from mosaic.__main__ import main as mosaic_cli
from mosaic.features.types import Sweep
from mosaic.infra.cache import list_entries, read_entry
from mosaic.pipeline import run
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

    monkeypatch.setattr(store, "load_model", refuse)
    monkeypatch.setattr(store, "encode_tokens", refuse)


def test_a_job_differing_only_in_cheap_settings_runs_no_forward_and_no_encode(tmp_path, own_cache, monkeypatch):
    # The SAE pinned to one seed: the job's seed then changes nothing the forward or the encode compute.
    first = run(compose_config(*TINY, "pooling=mean", "sae.seed=0"), tmp_path / "a")
    _forbid_model_and_encoder(monkeypatch)
    second = run(compose_config(*TINY, "pooling=topn", "binarize=threshold", "probe=linear", "seed=3",
                                "probe.max_epochs=5", "sae.seed=0"), tmp_path / "b")
    assert first["cache"]["hit"] is False and second["cache"] == {"hit": True, "key": first["cache"]["key"]}
    assert "extract" in first["timings_s"] and "extract" not in second["timings_s"]


def test_cached_codes_pool_like_freshly_encoded_ones(tmp_path, own_cache, monkeypatch):
    fresh = run(compose_config(*TINY, "pooling=max"), tmp_path / "a")
    entry = own_cache / "activations" / fresh["cache"]["key"]
    codes, offsets = store.read_codes(entry)
    assert sp.isspmatrix_csr(codes) and offsets[-1] == codes.shape[0] == fresh["features"]["tokens"]
    _forbid_model_and_encoder(monkeypatch)
    again = run(compose_config(*TINY, "pooling=max"), tmp_path / "b")
    assert again["metrics"] == fresh["metrics"] and again["top_features"] == fresh["top_features"]


def test_hidden_entries_hold_every_hidden_pooling(tmp_path, own_cache):
    results = run(compose_config(*TINY, "features=hidden", "pooling=last"), tmp_path / "a")
    entry = own_cache / "activations" / results["cache"]["key"]
    pooled = {m: store.read_hidden(entry, m) for m in store.HIDDEN_POOLINGS}
    lengths = np.diff(np.load(entry / "offsets.npy"))
    assert all(p.shape == (60, 32) for p in pooled.values())
    np.testing.assert_allclose(pooled["sum"], pooled["mean"] * lengths[:, None], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_the_first_job_of_a_sweep_caches_its_siblings_from_one_forward(tmp_path, own_cache, monkeypatch):
    sweep = Sweep(layers=(1, 2, 9), features=("sae", "hidden"))  # layer 9 is outside tiny_gpt2: skipped
    calls = []
    real = store.extract_activations
    monkeypatch.setattr(store, "extract_activations",
                        lambda loaded, texts, layers, *a, **k: calls.append(list(layers)) or real(loaded, texts,
                                                                                                  layers, *a, **k))
    first = run(compose_config(*TINY), tmp_path / "a", sweep)
    assert calls == [[1, 2]] and first["cache"]["hit"] is False
    _forbid_model_and_encoder(monkeypatch)
    for name, overrides in {"b": ["layer=2"], "c": ["features=hidden"], "d": ["layer=2", "features=hidden"]}.items():
        assert run(compose_config(*TINY, *overrides), tmp_path / name, sweep)["cache"]["hit"] is True
    assert len(list_entries("activations")) == 4


@pytest.mark.slow
def test_a_layer_sweeps_trained_saes_share_one_forward_over_their_corpus(tmp_path, own_cache, monkeypatch):
    """Three layers' SAEs train on one corpus extraction, and each is the SAE its layer would get alone."""
    import mosaic.activations.forward as plan
    from mosaic.infra.cache import file_sha256

    calls = []
    real = plan.extract_activations
    monkeypatch.setattr(plan, "extract_activations",
                        lambda loaded, texts, layers, *a, **k: calls.append(list(layers)) or real(loaded, texts,
                                                                                                  layers, *a, **k))
    run(compose_config(*TINY), tmp_path / "a", Sweep(layers=(0, 1, 2)))
    assert calls == [[0, 1, 2]]
    shared = {e.fields["layer"]: file_sha256(e.path / "sae_weights.safetensors") for e in list_entries("saes")}
    monkeypatch.setenv("MOSAIC_CACHE", str(tmp_path / "alone"))
    run(compose_config(*TINY, "layer=2"), tmp_path / "b")
    assert calls[1:] == [[2]]
    [alone] = list_entries("saes")
    assert sorted(shared) == [0, 1, 2] and shared[2] == file_sha256(alone.path / "sae_weights.safetensors")


@pytest.mark.slow
def test_a_sweep_over_sae_settings_trains_its_saes_on_one_corpus_forward_and_encodes_in_one_forward(
        tmp_path, own_cache, monkeypatch):
    """`sae.architecture=standard,topk sae.k=8,16`: three distinct SAEs (k does not shape the L1 one) train from
    one corpus extraction and encode the job's documents in one forward; every other cell of the grid is a
    cache hit, and each SAE is the one its cell would train alone."""
    import mosaic.activations.forward as forward
    from mosaic.infra.cache import file_sha256

    corpus, documents = [], []
    real_corpus, real_documents = forward.extract_activations, store.extract_activations
    monkeypatch.setattr(forward, "extract_activations", lambda loaded, texts, layers, *a, **k: corpus.append(
        list(layers)) or real_corpus(loaded, texts, layers, *a, **k))
    monkeypatch.setattr(store, "extract_activations", lambda loaded, texts, layers, *a, **k: documents.append(
        list(layers)) or real_documents(loaded, texts, layers, *a, **k))
    sweep = Sweep(sae_values={"sae.architecture": ("standard", "topk"), "sae.k": ("8", "16")})
    cell = [*TINY, "sae.k=8"]
    run(compose_config(*cell), tmp_path / "a", sweep)
    assert corpus == [[1]] and len(documents) == len(set(map(tuple, documents))) == 1
    shared = {(e.fields["train"]["architecture"], e.fields["train"].get("k")): file_sha256(
        e.path / "sae_weights.safetensors") for e in list_entries("saes")}
    assert sorted(shared, key=str) == sorted([("standard", None), ("topk", 8), ("topk", 16)], key=str)
    assert len(list_entries("activations")) == 3
    _forbid_model_and_encoder(monkeypatch)
    for name, overrides in {"b": ["sae.architecture=topk"], "c": ["sae.architecture=topk", "sae.k=16"],
                            "d": ["sae.k=16"]}.items():
        assert run(compose_config(*cell, *overrides), tmp_path / name, sweep)["cache"]["hit"] is True
    monkeypatch.undo()
    monkeypatch.setenv("MOSAIC_CACHE", str(tmp_path / "alone"))
    run(compose_config(*TINY, "sae.architecture=topk", "sae.k=16"), tmp_path / "e")
    [alone] = list_entries("saes")
    assert shared[("topk", 16)] == file_sha256(alone.path / "sae_weights.safetensors")


@pytest.mark.slow
def test_a_multirun_reads_its_sweep_and_hits_the_cache_after_the_first_job(tmp_path):
    result = subprocess.run(
        [sys.executable, "run.py", "-m", *TINY, "layer=1,2", "features=sae,hidden", f"hydra.sweep.dir={tmp_path}"],
        cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ, "MOSAIC_CACHE": str(tmp_path / "c")},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    paths = sorted(tmp_path.glob("*/results.json"), key=lambda p: int(p.parent.name))
    cells = [json.loads(p.read_text()) for p in paths]
    assert [c["cache"]["hit"] for c in cells] == [False, True, True, True]


@pytest.mark.slow
def test_a_truncated_entry_is_rebuilt_and_a_corrupted_one_fails_verify(tmp_path, own_cache, capsys):
    results = run(compose_config(*TINY), tmp_path / "a")
    entry = own_cache / "activations" / results["cache"]["key"]
    codes = entry / "codes.npz"
    payload = bytearray(codes.read_bytes())
    payload[-10] ^= 0xFF
    codes.write_bytes(bytes(payload))  # same size: only the checksum can tell
    assert read_entry(entry) is not None and read_entry(entry, verify=True) is None
    assert mosaic_cli(["cache", "verify", "--kind", "activations"]) == 1
    assert "codes.npz: checksum mismatch" in capsys.readouterr().out
    # A job never reads the damaged bytes: it rebuilds the entry and scores as the first job did.
    rebuilt = run(compose_config(*TINY), tmp_path / "rebuilt")
    assert rebuilt["cache"] == {"hit": False, "key": results["cache"]["key"]}
    assert rebuilt["metrics"] == results["metrics"]
    assert mosaic_cli(["cache", "verify", "--kind", "activations"]) == 0
    payload = bytearray(codes.read_bytes())

    codes.write_bytes(bytes(payload[: len(payload) // 2]))
    assert read_entry(entry) is None
    again = run(compose_config(*TINY), tmp_path / "b")
    assert again["cache"]["hit"] is False
    assert mosaic_cli(["cache", "verify"]) == 0


@pytest.mark.slow
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


def _tiny_model_dir(directory, seed=0):
    """A GPT-2-style model saved like a hub download (config, safetensors weights, tokenizer)."""
    import torch
    import transformers as tf

    from mosaic.activations.model_sources.minilm import minilm_path as _minilm_path

    torch.manual_seed(seed)
    model = tf.GPT2Model(tf.GPT2Config(vocab_size=30522, n_embd=32, n_layer=4, n_head=4, n_positions=1024))
    model.save_pretrained(directory)
    tf.AutoTokenizer.from_pretrained(_minilm_path()).save_pretrained(directory)
    return directory


def _reversed_csv(tmp_path):
    """bastion's first 40 prompts, in reverse order."""
    from mosaic.data import load_labelled_documents

    data = load_labelled_documents(compose_config("dataset.limit=40").dataset)
    rows = [(text, data.label_names[label]) for text, label in zip(data.documents, data.labels)][::-1]
    path = tmp_path / "reversed.csv"
    import pandas as pd

    pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)
    return path


CHEAP = ["model=tiny_gpt2", "model.source=hub", "model.hf_id=null", "layer=1", "logger=none", "probe=sklearn",
         "features=hidden", "dataset.limit=40"]


@pytest.mark.parametrize(("change", "hit"), [
    ("model bytes", False), ("sae bytes", False), ("max_length=16", False), ("layer=2", False),
    ("model.dtype=bfloat16", False), ("model.padding_side=left", False), ("model.prompt=hello", False),
    ("document order", False), ("pooling=max", True), ("probe=tree", True), ("seed=7", True),
])
@pytest.mark.slow
def test_an_activation_entry_is_reused_only_when_nothing_that_changes_its_bytes_changed(tmp_path, own_cache,
                                                                                          change, hit):
    """Every input of the forward and the encoder is in the key; the cheap half is not."""
    from tests.conftest import jumprelu_sae

    model_dir = _tiny_model_dir(tmp_path / "model")
    sae_dir = jumprelu_sae(tmp_path / "sae", d_in=32, layer=1)
    uses_sae = change in ("sae bytes", "layer=2")
    base = [*CHEAP, f"model.path={model_dir}"]
    if uses_sae:
        base += ["features=sae", "sae=local", f"sae.path={sae_dir}"]
    before, after = base, [*base, change]
    if change == "document order":  # the same 40 documents, first in reverse order from a file
        before = [*base, "dataset=csv", f"dataset.path={_reversed_csv(tmp_path)}"]
        after = base
    elif change in ("model bytes", "sae bytes"):
        after = base
    first = run(compose_config(*before), tmp_path / "first")
    if change == "model bytes":
        _tiny_model_dir(model_dir, seed=1)  # same files, other weights
    elif change == "sae bytes":
        jumprelu_sae(sae_dir, d_in=32, layer=1, seed=1)
    elif change == "layer=2":
        jumprelu_sae(sae_dir, d_in=32, layer=2)
    second = run(compose_config(*after), tmp_path / "second")
    assert second["cache"]["hit"] is hit
    assert (second["cache"]["key"] == first["cache"]["key"]) is hit


def test_a_hub_model_is_keyed_by_the_commit_its_revision_resolves_to(tmp_path, own_cache, monkeypatch):
    """`main` moving to another commit is a miss, even offline: the hub client's own cache says where it points."""
    from tests.conftest import fake_hub_file

    hub = tmp_path / "hub"
    for commit, seed in (("a" * 40, 0), ("b" * 40, 1)):
        for file in _tiny_model_dir(tmp_path / f"model-{seed}", seed=seed).iterdir():
            fake_hub_file(monkeypatch, hub, "mosaic-tests/tiny", file.name, file.read_bytes(), commit=commit)
    repo_ref = hub / "models--mosaic-tests--tiny" / "refs" / "main"
    overrides = [*CHEAP, "model.hf_id=mosaic-tests/tiny"]
    repo_ref.write_text("a" * 40)
    first = run(compose_config(*overrides), tmp_path / "first")
    again = run(compose_config(*overrides), tmp_path / "again")
    repo_ref.write_text("b" * 40)
    moved = run(compose_config(*overrides), tmp_path / "moved")
    assert first["cache"]["hit"] is False and again["cache"]["hit"] is True
    assert moved["cache"]["hit"] is False and moved["metrics"] != first["metrics"]
    assert read_entry(own_cache / "activations" / moved["cache"]["key"]).fields["model"]["weights"] == {
        "commit": "b" * 40}


def test_a_new_extraction_version_never_reads_entries_of_the_old_code(tmp_path, own_cache, monkeypatch):
    first = run(compose_config(*TINY, "features=hidden"), tmp_path / "a")
    monkeypatch.setattr(store, "EXTRACTION_VERSION", store.EXTRACTION_VERSION + 1)
    again = run(compose_config(*TINY, "features=hidden"), tmp_path / "b")
    assert again["cache"]["hit"] is False and again["cache"]["key"] != first["cache"]["key"]
