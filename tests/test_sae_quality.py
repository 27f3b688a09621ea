"""SAE quality (`activations/saes/quality.py`): reconstruction and sparsity against a NumPy reference,
next-token loss against the Hugging Face LM head's own loss, and what a job records."""

import json

import numpy as np
import pytest
import torch

from mosaic.activations import extract_activations, load_model
from mosaic.activations.saes import encode_tokens, load_sae
from mosaic.activations.saes.quality import ReconstructionTally, next_token_loss
from mosaic.pipeline import run
from tests.conftest import compose_config, jumprelu_sae, tiny_model_config

DOCUMENTS = ["The cat sat on the mat.", "A longer sentence about probes, features and sparse autoencoders.",
             "short", "Residual streams carry the model's state from one block to the next."]


def test_reconstruction_and_sparsity_match_a_numpy_reference(tmp_path):
    directory = jumprelu_sae(tmp_path / "sae", d_in=32, layer=1)
    sae = load_sae(directory)
    with torch.no_grad():  # ten latents that never fire, ten that always do
        sae.threshold[:10] = 1e6
        sae.b_enc[10:20] = 1e3
    values = np.random.default_rng(0).normal(size=(500, 32)).astype(np.float32)
    values[:, 0] += 3.0  # a mean component, which explained variance must not count as explained
    tally = ReconstructionTally(sae.cfg.d_sae, max_tokens=400)
    encode_tokens(sae, values, batch_tokens=64, tally=tally)
    measured = tally.result()

    w = {name: tensor.detach().numpy().astype(np.float64) for name, tensor in sae.state_dict().items()}
    x = values[:400].astype(np.float64)
    pre = (x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    codes = np.where(pre > w["threshold"], pre, 0)
    reconstruction = codes @ w["W_dec"] + w["b_dec"]
    fvu = ((x - reconstruction) ** 2).sum() / ((x - x.mean(axis=0)) ** 2).sum()
    fires = (codes > 0).mean(axis=0)
    assert measured["tokens"] == 400  # the budget, not every token
    assert measured["fvu"] == pytest.approx(fvu, rel=1e-4)
    assert measured["l0"] == pytest.approx((codes > 0).sum(axis=1).mean(), rel=1e-6)
    assert measured["dead_fraction"] == pytest.approx((fires == 0).mean())
    assert measured["always_on_fraction"] == pytest.approx((fires > 0.9).mean())
    assert measured["dead_fraction"] >= 10 / 128 and measured["always_on_fraction"] >= 10 / 128


def test_latent_health_is_also_measured_on_a_fixed_reference_budget_that_ends_inside_a_chunk(tmp_path, monkeypatch):
    import mosaic.activations.saes.quality as quality

    monkeypatch.setattr(quality, "REFERENCE_TOKENS", 100)  # chunks of 64 tokens: the budget ends inside the second
    directory = jumprelu_sae(tmp_path / "sae", d_in=32, layer=1)
    sae = load_sae(directory)
    with torch.no_grad():
        sae.b_enc[:] = 0.0
        sae.threshold[:] = 15.0  # about 2.6 standard deviations: latents that fire on roughly 1 token in 200
    values = np.random.default_rng(1).normal(size=(400, 32)).astype(np.float32)
    tally = ReconstructionTally(sae.cfg.d_sae)
    codes = encode_tokens(sae, values, batch_tokens=64, tally=tally).toarray()
    measured = tally.result()
    fires_all, fires_first = (codes > 0).mean(axis=0), (codes[:100] > 0).mean(axis=0)
    assert measured["dead_fraction"] == pytest.approx((fires_all == 0).mean())
    assert measured["reference"] == {"tokens": 100, "dead_fraction": pytest.approx((fires_first == 0).mean()),
                                     "always_on_fraction": pytest.approx((fires_first > 0.9).mean())}
    assert measured["reference"]["dead_fraction"] > measured["dead_fraction"]  # fewer tokens, more "dead" latents


def _causal_lm(name: str):
    """The Hugging Face LM-head model with the same weights as MOSAIC's base model, and MOSAIC's loaded model."""
    import transformers as tf

    loaded = load_model(tiny_model_config(name))
    heads = {"tiny_gpt2": tf.GPT2LMHeadModel, "tiny_gemma2": tf.Gemma2ForCausalLM}
    lm = heads[name](loaded.model.config)
    lm.base_model.load_state_dict(loaded.model.state_dict())
    lm.tie_weights()
    return loaded, lm.eval()


class _Identity:
    """An 'SAE' that reconstructs perfectly: replacing the residual stream by it changes nothing."""

    dtype = torch.float32

    def encode(self, x):
        return x

    def decode(self, codes):
        return codes


@pytest.mark.parametrize("name", ["tiny_gpt2", "tiny_gemma2"])  # Gemma 2 soft-caps its logits
def test_clean_next_token_loss_is_the_lm_heads_own_loss(name):
    from mosaic.activations.forward import text_inputs

    loaded, lm = _causal_lm(name)
    measured = next_token_loss(loaded, _Identity(), 1, DOCUMENTS, batch_size=8, max_length=64)
    losses, counts = [], []
    for document in DOCUMENTS:  # one at a time: no padding, the LM head's own shifted mean over real next tokens
        inputs, keep = text_inputs(loaded, [document], 64)
        labels = torch.where(keep, inputs["input_ids"], -100)
        with torch.no_grad():
            losses.append(float(lm(input_ids=inputs["input_ids"], labels=labels).loss))
        counts.append(int(keep[:, 1:].sum()))
    assert measured["predicted_tokens"] == sum(counts)
    assert measured["ce_clean"] == pytest.approx(np.average(losses, weights=counts), rel=1e-4)
    # A perfect reconstruction loses nothing; zeroing the stream loses something.
    assert measured["ce_sae"] == pytest.approx(measured["ce_clean"], abs=1e-5)
    assert measured["kl"] == pytest.approx(0, abs=1e-5)
    assert measured["ce_zero"] != pytest.approx(measured["ce_clean"], abs=1e-3)


def test_an_encoder_model_has_no_next_token_loss():
    loaded = load_model(tiny_model_config("tiny_bert"))
    assert next_token_loss(loaded, _Identity(), 1, DOCUMENTS, batch_size=8, max_length=64) is None


def test_a_job_records_its_saes_quality_on_its_documents(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MOSAIC_CACHE", str(tmp_path / "cache"))
    directory = jumprelu_sae(tmp_path / "sae", d_in=32, layer=1)
    cfg = compose_config("model=tiny_gpt2", "layer=1", "sae=local", f"sae.path={directory}", "logger=none",
                         "probe=sklearn", "dataset.limit=40")
    results = run(cfg, tmp_path / "job")
    quality = json.loads((tmp_path / "job" / "results.json").read_text())["features"]["sae_quality"]
    assert quality == results["features"]["sae_quality"]

    from mosaic.data import load_labelled_documents

    documents = load_labelled_documents(cfg.dataset).documents
    acts = extract_activations(load_model(cfg.model), documents, [1], cfg.batch_size, cfg.max_length)[1]
    reference = ReconstructionTally(load_sae(directory).cfg.d_sae)
    encode_tokens(load_sae(directory), acts.values, 4096, reference)
    assert quality["tokens"] == len(acts.values) and quality["held_out"] is True
    assert quality["fvu"] == pytest.approx(reference.result()["fvu"], rel=1e-5)
    assert quality["next_token_loss"]["documents"] == 32
    assert "FVU" in capsys.readouterr().out.splitlines()[-1]


def test_a_next_token_loss_that_runs_out_of_memory_is_recorded_not_fatal(tmp_path, monkeypatch):
    import mosaic.activations.store as store

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 1.00 GiB")

    monkeypatch.setattr(store, "next_token_loss", out_of_memory)
    monkeypatch.setenv("MOSAIC_CACHE", str(tmp_path / "cache"))
    directory = jumprelu_sae(tmp_path / "sae", d_in=32, layer=1)
    results = run(compose_config("model=tiny_gpt2", "layer=1", "sae=local", f"sae.path={directory}", "logger=none",
                                 "probe=sklearn", "dataset.limit=40"), tmp_path / "job")
    quality = results["features"]["sae_quality"]
    assert quality["next_token_loss"] == {"error": "RuntimeError: CUDA out of memory. Tried to allocate 1.00 GiB"}
    assert quality["fvu"] > 0  # the rest was measured


def test_the_next_token_loss_stops_at_its_token_budget(monkeypatch):
    import mosaic.activations.saes.quality as quality

    loaded = load_model(tiny_model_config("tiny_gpt2"))
    full = next_token_loss(loaded, _Identity(), 1, DOCUMENTS, batch_size=1, max_length=64)
    monkeypatch.setattr(quality, "LOSS_TOKENS", 10)
    capped = next_token_loss(loaded, _Identity(), 1, DOCUMENTS, batch_size=1, max_length=64)
    assert full["predicted_tokens"] > 10 and capped["predicted_tokens"] == 10
