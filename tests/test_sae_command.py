"""`python -m mosaic sae train|eval|list`: the SAE a job would train, built outside the job, with the job's keys."""

import pytest

import mosaic.activations.saes.train as training
from mosaic.__main__ import main as mosaic_cli
from mosaic.pipeline import run
from tests.conftest import compose_config

SAE = ["model=tiny_gpt2", "layer=1", "sae.architecture=topk", "sae.k=8", "sae.train_docs=80", "sae.train_epochs=1",
       "dataset.limit=40"]


@pytest.mark.slow
def test_sae_train_builds_the_sae_the_job_then_reads_without_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MOSAIC_CACHE", str(tmp_path / "cache"))
    assert mosaic_cli(["sae", "train", *SAE]) == 0
    trained = capsys.readouterr().out.splitlines()[-1]
    key = trained.split()[1].rstrip(":")

    def refuse(*args, **kwargs):
        raise AssertionError("the job must find the SAE `sae train` built")

    monkeypatch.setattr(training, "train_sae", refuse)
    results = run(compose_config(*SAE, "logger=none", "probe=sklearn"), tmp_path / "job")
    capsys.readouterr()
    assert results["features"]["sae"]["key"] == key
    assert results["features"]["sae_training"]["tokens"] == int(trained.split()[2])

    assert mosaic_cli(["sae", "list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[-1] == "1 trained SAEs" and listed[-2].startswith(f"{key}  model random  layer 1  architecture topk")

    assert mosaic_cli(["sae", "eval", *SAE]) == 0
    evaluated = capsys.readouterr().out.splitlines()
    assert evaluated[-2] == f"SAE trained {key[:12]}"
    assert evaluated[-1].startswith(f"FVU {results['features']['sae_quality']['fvu']:.3f}   L0 8.0")


@pytest.mark.parametrize(("overrides", "message"), [
    (["sae=local"], "sae.path=None is not allowed"),
    (["sae.architecture=gated"], "sae.architecture='gated' is not allowed: choose one of standard, topk"),
    (["sae=gemma_scope", "model=gemma2_2b", "layer=12"], "sae train builds SAEs MOSAIC trains"),
    (["modle=minilm"], "modle"),
])
def test_a_bad_sae_command_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, overrides, message):
    monkeypatch.setenv("MOSAIC_CACHE", str(tmp_path / "cache"))
    assert mosaic_cli(["sae", "train", *overrides]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("*.safetensors"))


@pytest.mark.slow
def test_sae_train_on_a_behaviour_job_keys_the_sae_its_job_trains_on_its_relabelled_training_split(tmp_path,
                                                                                                monkeypatch):
    """Behaviour labels change the regime's draws, so the training split an SAE trains on: `sae train` prepares the
    job as the job does (`prepare.prepare_job`), and names the same SAE."""
    import numpy as np

    from mosaic.commands.sae import train
    from mosaic.config.resolved import answering_model_config
    from mosaic.data import load_labelled_documents
    from mosaic.infra.cache import cached_directory
    from mosaic.job.behaviour import ANSWERS_FILE, answers_fields

    monkeypatch.setenv("MOSAIC_CACHE", str(tmp_path / "cache"))
    overrides = ["experiment=behaviour_arith", "model=tiny_gpt2", "layer=1", "features=sae", "regime=normal",
                 "sae.train_corpus=train_split", "sae.train_epochs=1", "sae.train_docs=200", "max_length=32"]
    cfg = compose_config(*overrides)
    documents = load_labelled_documents(cfg.dataset).documents
    rng = np.random.default_rng(0)
    # As if the answering model had answered on this machine: random answers, about a quarter of them right.
    cached_directory("behaviour", answers_fields(cfg, answering_model_config(cfg), documents, "cpu"),
                     lambda target: np.save(target / ANSWERS_FILE, rng.normal(size=(len(documents), 4))))
    built = train(overrides)
    results = run(cfg, tmp_path / "job")
    assert results["features"]["sae"]["key"] == built["key"] and results["behaviour"]["cache"]["hit"] is True
