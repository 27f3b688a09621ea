"""`python -m mosaic plan`: a grid's cells, forwards, SAEs and hub items, on grids of known shape, loading no model."""

import itertools
import subprocess
import sys

import pytest

from mosaic.activations.plan import Sweep
from mosaic.cache import list_entries
from mosaic.data import load_labelled_documents
from mosaic.grid.cells import expand_grid
from mosaic.grid.plan import CHARS_PER_TOKEN, format_plan, forward_seconds, plan_grid
from mosaic.pipeline import run
from tests.conftest import REPO


@pytest.fixture
def no_model_loads(monkeypatch):
    """Any attempt to load a network fails the test."""
    import transformers

    import mosaic.activations
    import mosaic.activations.store

    def refuse(*args, **kwargs):
        raise AssertionError("the plan loaded a model")

    for module in (mosaic.activations, mosaic.activations.store):
        monkeypatch.setattr(module, "load_model", refuse)
    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", refuse)


def test_plan_of_the_papers_layer_grid_needs_one_forward_and_six_saes_and_loads_nothing(no_model_loads):
    grid = expand_grid(["experiment=paper_layers"])
    cells = {(cfg.layer, cfg.sae.width) for cfg in grid.configs}
    assert len(grid.configs) == 6 and cells == set(itertools.product((5, 12, 19), ("16k", "65k")))

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
    grid = expand_grid(overrides)
    sweep = tmp_path / "sweep"
    before = plan_grid(grid, sweep, "cpu")
    assert [c.status for c in before.cells] == ["to run"] * 4
    [forward] = before.forwards
    assert forward.layers == {0, 2} and len(forward.entries) == 2 and forward.documents == 40

    # Cell 0 runs as its sweep's first job would: one forward caches both layers.
    entries = len(list_entries("activations"))
    run(grid.configs[0], sweep / "0", Sweep(layers=(0, 2), features=("hidden",)))
    assert len(list_entries("activations")) == entries + 2

    after = plan_grid(grid, sweep, "cpu")
    assert [c.status for c in after.cells] == ["done", "to run", "to run", "to run"]
    assert after.forwards == [] and all(c.entry.cached for c in after.cells[1:])
    # A job's documents are keyed with its device: planned for GPU nodes, nothing is cached yet.
    assert len(plan_grid(grid, sweep, "cuda").forwards) == 1


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


def test_plan_command_stops_in_one_line_on_a_bad_option():
    listed = subprocess.run([sys.executable, "-m", "mosaic", "plan", "pooling=median"], capture_output=True,
                            text=True, cwd=REPO, timeout=300)
    assert listed.returncode == 2
    [line] = listed.stderr.strip().splitlines()
    assert "median" in line and "mean" in line
