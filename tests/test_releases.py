"""Gemma Scope's releases (`releases.py`): every paper cell and experiment grid validates against SAELens's table;
layers and widths it lacks are named; Neuronpedia pages."""


import pytest

from mosaic.activations.saes.releases import (
    canonical_widths,
    check_gemma_scope,
    gemma_scope_sae_id,
    neuronpedia_url_prefix,
)
from mosaic.config import validate
from mosaic.infra.errors import ConfigError
from tests.conftest import compose_config

# The paper's cells, as Gemma Scope published them (Lieberum et al. 2024): every one must validate.
PAPER_CELLS = [
    ("gemma2_2b", layer, width) for layer in (5, 12, 19) for width in ("16k", "65k")
] + [
    (model, layer, width) for model in ("gemma2_9b", "gemma2_9b_it") for layer in (9, 20, 31)
    for width in ("16k", "131k")
]


@pytest.mark.parametrize(("model", "layer", "width"), PAPER_CELLS)
def test_every_paper_cell_composes_and_validates(model, layer, width):
    cfg = compose_config(f"model={model}", f"layer={layer}", f"sae.width={width}", "dataset=jailbreak")
    assert cfg.sae.source == "gemma_scope"  # the Gemma 2 model configs default to their Gemma Scope SAEs
    validate(cfg)


@pytest.mark.parametrize("experiment", ["paper_layers", "paper_layers_9b", "paper_widths", "paper_pooling",
                                        "paper_binarize", "crosslingual", "crossmodel"])
def test_every_cell_of_every_experiment_grid_validates(experiment):
    """Expand the experiment's own sweeper params, as Hydra's basic sweeper does, and validate each cell."""
    import itertools

    from mosaic.config import compose

    params = compose(f"experiment={experiment}", with_hydra=True).hydra.sweeper.params
    axes = [[f"{key}={value}" for value in str(values).split(",")] for key, values in params.items()]
    cells = list(itertools.product(*axes))
    assert len(cells) >= 4
    for cell in cells:
        cfg = compose_config(f"experiment={experiment}", *cell)
        assert cfg.model.name.startswith("gemma2") and cfg.sae.source == "gemma_scope"
        validate(cfg)


def test_widths_and_layers_outside_gemma_scope_are_named():
    with pytest.raises(ConfigError, match=r"^sae.width='32k' is not allowed: .* has widths 16k, 65k, 1m at layer 5$"):
        check_gemma_scope("gemma-scope-2b-pt-res-canonical", 5, "32k")
    with pytest.raises(ConfigError, match=r"has SAEs at layers 9, 20, 31$"):
        check_gemma_scope("gemma-scope-9b-it-res-canonical", 12, "16k")
    with pytest.raises(ConfigError, match="is not a SAELens release"):
        check_gemma_scope("gemma-scope-3b-pt-res-canonical", 5, "16k")
    assert sorted(canonical_widths("gemma-scope-2b-pt-res-canonical")) == list(range(26))
    assert gemma_scope_sae_id(12, "16k") == "layer_12/width_16k/canonical"


def test_a_model_without_a_release_cannot_ask_for_gemma_scope():
    with pytest.raises(ConfigError, match="model minilm has no Gemma Scope release"):
        validate(compose_config("sae=gemma_scope"))


@pytest.mark.parametrize(("release", "sae_id", "page"), [
    ("gemma-scope-2b-pt-res-canonical", "layer_12/width_16k/canonical", "gemma-2-2b/12-gemmascope-res-16k"),
    ("gemma-scope-9b-pt-res-canonical", "layer_20/width_131k/canonical", "gemma-2-9b/20-gemmascope-res-131k"),
    ("gemma-scope-9b-it-res-canonical", "layer_9/width_16k/canonical", "gemma-2-9b-it/9-gemmascope-res-16k"),
])
def test_neuronpedia_pages_for_each_gemma_scope_release(release, sae_id, page):
    assert neuronpedia_url_prefix(release, sae_id) == f"https://www.neuronpedia.org/{page}/"
