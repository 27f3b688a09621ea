"""Model loading (`activations/models.py`, `model_sources.py`): configs that load safely, clear offline errors,
the packaged Gemma 3 end to end."""


import pytest

from mosaic.activations import load_model
from mosaic.config import validate
from mosaic.infra.errors import ConfigError, MosaicError
from mosaic.pipeline import run
from tests.conftest import compose_config


def test_gemma2_configs_never_use_float16():
    for model in ("gemma2_2b", "gemma2_9b", "gemma2_9b_it"):
        cfg = compose_config(f"model={model}", "layer=9")
        assert cfg.model.dtype == "auto" and cfg.model.attn_implementation == "eager"
    with pytest.raises(ConfigError, match="model.dtype='float16'"):
        validate(compose_config("model=gemma2_2b", "model.dtype=float16"))


def test_unfetched_hub_model_on_an_offline_node_is_one_line_naming_fetch():
    # An id no hub cache can hold, so the test never loads a copy of Gemma 2 the user happens to have.
    cfg = compose_config("model=gemma2_2b", "model.hf_id=mosaic-tests/gemma-2-2b-absent").model
    with pytest.raises(MosaicError) as error:
        load_model(cfg)
    message = str(error.value)
    assert "\n" not in message and "mosaic-tests/gemma-2-2b-absent" in message and "python -m mosaic fetch" in message


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
