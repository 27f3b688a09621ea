"""Real-model code paths exercised offline: Gemma Scope's table, SAEs on disk, clear offline errors."""

import hashlib
import json
import re

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file

from mosaic.activations import extract_activations, load_model
from mosaic.activations.saes import check_sae_fits, encode_tokens, load_release_sae, load_sae
from mosaic.config import validate
from mosaic.data import load_labelled_documents
from mosaic.errors import ConfigError, DataError, MosaicError
from mosaic.pipeline import run
from mosaic.releases import canonical_widths, check_gemma_scope, gemma_scope_sae_id, neuronpedia_url_prefix
from tests.conftest import compose_config, fake_hub_file, jumprelu_sae, tiny_model_config

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


def test_gemma2_configs_never_use_float16():
    for model in ("gemma2_2b", "gemma2_9b", "gemma2_9b_it"):
        cfg = compose_config(f"model={model}", "layer=9")
        assert cfg.model.dtype == "auto" and cfg.model.attn_implementation == "eager"
    with pytest.raises(ConfigError, match="model.dtype='float16'"):
        validate(compose_config("model=gemma2_2b", "model.dtype=float16"))


def test_a_jumprelu_sae_on_disk_encodes_tiny_gemma2_activations(tmp_path):
    directory = jumprelu_sae(tmp_path / "sae", d_in=32, layer=1)
    loaded = load_model(tiny_model_config("tiny_gemma2"))
    acts = extract_activations(loaded, ["a prompt", "another prompt entirely"], [1], 2, 32)[1]
    sae = load_sae(directory)
    check_sae_fits(sae, d_model=32, layer=1)
    codes = encode_tokens(sae, acts.values, batch_tokens=3).toarray()
    weights = load_file(str(directory / "sae_weights.safetensors"))
    pre = (acts.values - weights["b_dec"]) @ weights["W_enc"] + weights["b_enc"]
    np.testing.assert_allclose(codes, np.where(pre > weights["threshold"], pre, 0), atol=1e-5)
    assert 0 < (codes > 0).mean() < 1


def test_an_sae_for_another_layer_or_width_is_refused(tmp_path):
    sae = load_sae(jumprelu_sae(tmp_path / "sae", d_in=32, layer=2))
    with pytest.raises(MosaicError, match=r"trained on blocks.2.hook_resid_post but layer=1: use layer=2"):
        check_sae_fits(sae, d_model=32, layer=1)
    with pytest.raises(MosaicError, match="width 32 but the model's residual stream has width 64"):
        check_sae_fits(sae, d_model=64, layer=2)


def test_local_sae_runs_through_the_pipeline(tmp_path):
    directory = jumprelu_sae(tmp_path / "sae", d_in=32, layer=1)
    cfg = compose_config("model=tiny_gemma2", "layer=1", "sae=local", f"sae.path={directory}", "logger=none",
                         "probe=sklearn", "pooling=sum")
    validate(cfg)
    results = run(cfg, tmp_path / "job")
    assert (results["features"]["sae"]["source"], results["features"]["sae"]["path"]) == ("local", str(directory))
    assert results["features"]["n_features"] == 128
    # The SAE is identified by its bytes, so a rewritten SAE at the same path is another SAE.
    assert results["features"]["sae"]["sha256"] == {
        name: hashlib.sha256((directory / name).read_bytes()).hexdigest()
        for name in ("cfg.json", "sae_weights.safetensors")}
    assert json.loads((tmp_path / "job" / "results.json").read_text())["metrics"] == results["metrics"]


def test_gemma_scope_sae_is_requested_by_release_and_canonical_id(tmp_path, monkeypatch):
    """The Gemma Scope path with SAELens's download replaced by a tiny SAE of the same architecture."""
    import sae_lens

    tiny = load_sae(jumprelu_sae(tmp_path / "sae", d_in=32, layer=1))
    requested = []

    def from_pretrained(release, sae_id, device="cpu"):
        requested.append((release, sae_id, device))
        return tiny

    monkeypatch.setattr(sae_lens.SAE, "from_pretrained", from_pretrained)
    # Its weights file, where SAELens's release table says it is, in a hub cache as the client lays it out.
    fake_hub_file(monkeypatch, tmp_path / "hub", "google/gemma-scope-2b-pt-res",
                  "layer_1/width_16k/average_l0_102/params.npz", b"gemma scope weights")
    cfg = compose_config("model=tiny_gemma2", "layer=1", "sae=gemma_scope",
                         "sae.release=gemma-scope-2b-pt-res-canonical", "logger=none", "probe=sklearn")
    validate(cfg)
    results = run(cfg, tmp_path / "job")
    assert requested == [("gemma-scope-2b-pt-res-canonical", "layer_1/width_16k/canonical", "cpu")]
    assert results["features"]["sae"]["id"] == "layer_1/width_16k/canonical"
    assert results["features"]["sae"]["sha256"] == {"params.npz": hashlib.sha256(b"gemma scope weights").hexdigest()}
    assert all(f["url"] == f"https://www.neuronpedia.org/gemma-2-2b/1-gemmascope-res-16k/{f['index']}"
               for f in results["top_features"])


@pytest.mark.parametrize(("release", "sae_id", "page"), [
    ("gemma-scope-2b-pt-res-canonical", "layer_12/width_16k/canonical", "gemma-2-2b/12-gemmascope-res-16k"),
    ("gemma-scope-9b-pt-res-canonical", "layer_20/width_131k/canonical", "gemma-2-9b/20-gemmascope-res-131k"),
    ("gemma-scope-9b-it-res-canonical", "layer_9/width_16k/canonical", "gemma-2-9b-it/9-gemmascope-res-16k"),
])
def test_neuronpedia_pages_for_each_gemma_scope_release(release, sae_id, page):
    assert neuronpedia_url_prefix(release, sae_id) == f"https://www.neuronpedia.org/{page}/"


def test_unavailable_gemma_scope_sae_is_one_line_pointing_at_sae_local():
    with pytest.raises(MosaicError) as error:
        load_release_sae("gemma-scope-2b-pt-res-canonical", "layer_12/width_16k/canonical")
    message = str(error.value)
    assert "\n" not in message and "layer_12/width_16k/canonical" in message and "sae=local" in message


def test_unavailable_hub_model_is_one_line_pointing_at_model_path():
    # An id no hub cache can hold, so the test never loads a copy of Gemma 2 the user happens to have.
    cfg = compose_config("model=gemma2_2b", "model.hf_id=mosaic-tests/gemma-2-2b-absent").model
    with pytest.raises(MosaicError) as error:
        load_model(cfg)
    message = str(error.value)
    assert "\n" not in message and "mosaic-tests/gemma-2-2b-absent" in message and "model.path" in message


def test_unavailable_hub_dataset_is_one_line_naming_it():
    with pytest.raises(DataError) as error:
        load_labelled_documents(compose_config("dataset=toxicity_ru").dataset)
    message = str(error.value)
    assert "\n" not in message and "textdetox/multilingual_toxicity_dataset" in message


def test_integer_labels_index_into_label_names(tmp_path):
    path = tmp_path / "data.csv"
    pd.DataFrame({"text": ["a", "b", "c", "d"], "toxic": [0, 1, 1, 0]}).to_csv(path, index=False)
    cfg = compose_config("dataset=csv", f"dataset.path={path}", "dataset.label_column=toxic",
                         "dataset.label_names=[non_toxic,toxic]").dataset
    data = load_labelled_documents(cfg)
    assert data.label_names == ["non_toxic", "toxic"] and data.labels.tolist() == [0, 1, 1, 0]
    pd.DataFrame({"text": ["a", "b"], "toxic": [0, 2]}).to_csv(path, index=False)
    with pytest.raises(DataError, match=re.escape("integer labels [2] outside 0..1")):
        load_labelled_documents(cfg)


@pytest.mark.slow
def test_gemma3_270m_runs_offline_end_to_end(tmp_path):
    """The packaged Gemma 3 270M: GGUF converted once, real weights, a trained SAE, a few documents."""
    cfg = compose_config("model=gemma3_270m", "layer=9", "dataset.limit=40", "sae.train_docs=60",
                         "sae.train_epochs=1", "probe=sklearn", "logger=none")
    validate(cfg)
    results = run(cfg, tmp_path / "job")
    assert results["features"]["n_features"] == 8 * 640
    assert results["features"]["sae"]["source"] == "trained"
    assert results["features"]["tokens"] > 40  # real tokens only: the BOS of each prompt is not counted
    loaded = load_model(cfg.model)
    assert type(loaded.model).__name__ == "Gemma3TextModel"
    assert loaded.tokenizer("hi", return_special_tokens_mask=True)["special_tokens_mask"][0] == 1
