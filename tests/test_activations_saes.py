"""SAEs (`activations/saes/`): SAELens loading from disk and from Gemma Scope's table, the layer guard,
training and encoding."""

import hashlib
import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from safetensors.numpy import load_file

from mosaic.activations import extract_activations, load_model
from mosaic.activations.saes import TrainSettings, check_sae_fits, encode_tokens, load_release_sae, load_sae, train_sae
from mosaic.config import validate
from mosaic.infra.errors import MosaicError
from mosaic.pipeline import run
from tests.conftest import compose_config, fake_hub_file, jumprelu_sae, tiny_model_config


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


@pytest.mark.slow
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
    cfg = compose_config("model=tiny_gemma2", "model.sae_model=gemma-2-2b", "layer=1", "sae=gemma_scope",
                         "sae.release=gemma-scope-2b-pt-res-canonical", "logger=none", "probe=sklearn")
    validate(cfg)
    results = run(cfg, tmp_path / "job")
    assert requested == [("gemma-scope-2b-pt-res-canonical", "layer_1/width_16k/canonical", "cpu")]
    assert results["features"]["sae"]["id"] == "layer_1/width_16k/canonical"
    assert results["features"]["sae"]["sha256"] == {"params.npz": hashlib.sha256(b"gemma scope weights").hexdigest()}
    assert all(f["url"] == f"https://www.neuronpedia.org/gemma-2-2b/1-gemmascope-res-16k/{f['index']}"
               for f in results["top_features"])


def test_unfetched_gemma_scope_sae_on_an_offline_node_is_one_line_naming_fetch():
    with pytest.raises(MosaicError) as error:
        load_release_sae("gemma-scope-2b-pt-res-canonical", "layer_12/width_16k/canonical")
    message = str(error.value)
    assert "\n" not in message and "layer_12/width_16k/canonical" in message and "python -m mosaic fetch" in message


def _sparse_mixture(n_tokens=6000, d_in=16, n_atoms=32, seed=0):
    """Tokens made of a few random directions each: the structure an SAE should recover."""
    rng = np.random.default_rng(seed)
    atoms = rng.normal(size=(n_atoms, d_in))
    weights = rng.exponential(size=(n_tokens, n_atoms)) * (rng.random((n_tokens, n_atoms)) < 0.08)
    return (weights @ atoms).astype(np.float32)


def _settings(architecture="standard", **changes):
    base = dict(architecture=architecture, d_sae=64, k=4, l1_coefficient=1.0, l0_coefficient=0.1, lr=3e-3,
                tokens=8 * 6000, batch_tokens=256, seed=0)
    return TrainSettings(**{**base, **changes})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    values = _sparse_mixture()
    directory = tmp_path_factory.mktemp("sae")
    stats = train_sae(values, _settings(), out_dir=directory)
    return values, directory, stats


@pytest.mark.slow
def test_trained_sae_is_saved_in_saelens_format_and_reconstructs(trained):
    values, directory, stats = trained
    assert {"cfg.json", "sae_weights.safetensors", "training.json"} <= {p.name for p in directory.iterdir()}
    assert json.loads((directory / "cfg.json").read_text())["d_sae"] == 64
    assert json.loads((directory / "training.json").read_text()) == json.loads(json.dumps(stats))
    assert stats["on_training_tokens"]["fvu"] < 0.4
    assert 0 < stats["on_training_tokens"]["l0"] < 32
    curve = stats["curve"]
    assert stats["steps"] == 8 * 6000 // 256 and len(curve) >= 50
    assert curve[-1]["loss"] < 0.5 * curve[0]["loss"]  # it learned: the training loss fell


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ["topk", "batchtopk", "matryoshka_batchtopk", "jumprelu"])
def test_every_architecture_trains_through_saelens_to_its_sparsity(tmp_path, architecture):
    values = _sparse_mixture()
    stats = train_sae(values, _settings(architecture, matryoshka_fractions=(0.25,)), out_dir=tmp_path)
    sae = load_sae(tmp_path)
    # A BatchTopK SAE, Matryoshka or not, is saved for inference as a JumpReLU with its learned threshold.
    assert sae.cfg.architecture() == ("topk" if architecture == "topk" else "jumprelu")
    active = np.diff(encode_tokens(sae, values[:1000], batch_tokens=256).indptr)
    if architecture == "topk":
        assert (active <= 4).all() and active.mean() > 3.5  # k = 4 per token
    elif architecture.endswith("batchtopk"):
        assert 2 < active.mean() < 6  # k = 4 per token on average over a batch
    assert stats["on_training_tokens"]["fvu"] < 0.5


def _fvu_from(latents: np.ndarray, codes, weights, values) -> float:
    reconstruction = codes[:, latents] @ weights["W_dec"][latents] + weights["b_dec"]
    return float(((values - reconstruction) ** 2).sum() / ((values - values.mean(axis=0)) ** 2).sum())


@pytest.mark.slow
def test_a_matryoshka_sae_reconstructs_from_its_first_latents_alone_and_a_batchtopk_does_not(tmp_path):
    """The point of the nesting: SAELens trains the first quarter of the latents (`matryoshka_fractions=(0.25,)`)
    to reconstruct the input by itself, so it explains far more than the last quarter does; a BatchTopK SAE
    trained alike has no such order."""
    values = _sparse_mixture()
    fvu = {}
    for architecture in ("matryoshka_batchtopk", "batchtopk"):
        train_sae(values, _settings(architecture, matryoshka_fractions=(0.25,)), out_dir=tmp_path / architecture)
        codes = encode_tokens(load_sae(tmp_path / architecture), values, batch_tokens=1024).toarray()
        weights = load_file(str(tmp_path / architecture / "sae_weights.safetensors"))
        fvu[architecture] = [_fvu_from(np.arange(16), codes, weights, values),
                             _fvu_from(np.arange(48, 64), codes, weights, values)]
    first, last = fvu["matryoshka_batchtopk"]
    assert first < 0.4 and first < 0.5 * last  # measured 0.19 against 0.93 (seed 0), 0.17 against 0.95 (seed 1)
    plain_first, plain_last = fvu["batchtopk"]
    assert abs(plain_first - plain_last) < abs(first - last)


@pytest.mark.slow
def test_a_decoder_bias_started_at_the_mean_keeps_latents_alive_on_activations_far_from_the_origin(tmp_path):
    """One dimension 60 units off the origin for every token (Gemma 3's residual stream keeps 93% of its energy in
    its mean): started at zero, the decoder bias leaves every token picking the same few TopK latents and most
    die (measured 88% dead, FVU 0.73-0.79 over two seeds); started at the mean, 9-16% die and FVU is 0.17-0.18."""
    values = _sparse_mixture(n_atoms=48)
    values[:, 0] += 60.0
    measured = {}
    for at_mean in (False, True):
        stats = train_sae(values, _settings("topk", decoder_bias_at_mean=at_mean), out_dir=tmp_path / str(at_mean))
        measured[at_mean] = stats["on_training_tokens"]
    assert measured[False]["dead_fraction"] > 0.6 and measured[False]["fvu"] > 0.5
    assert measured[True]["dead_fraction"] < 0.3 and measured[True]["fvu"] < 0.3


def test_the_decoder_bias_option_enters_a_trained_saes_key_only_where_it_is_on():
    from mosaic.activations.saes.sources.trained import train_fields

    assert "decoder_bias_at_mean" not in train_fields(compose_config())
    assert train_fields(compose_config("sae.decoder_bias_at_mean=true"))["decoder_bias_at_mean"] is True


def test_matryoshka_fractions_that_do_not_nest_are_refused_in_one_line():
    for fractions in ("[0.5,0.25]", "[0.25,1.0]", "[0.0001]", "[]"):
        cfg = compose_config("sae.architecture=matryoshka_batchtopk", f"sae.matryoshka_fractions={fractions}")
        with pytest.raises(MosaicError, match=r"^sae.matryoshka_fractions=.* is not allowed: increasing"):
            validate(cfg)
    validate(compose_config("sae.architecture=matryoshka_batchtopk", "sae.matryoshka_fractions=[0.1,0.3]"))


@pytest.mark.slow
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


@pytest.mark.parametrize(("hook", "layer", "outcome"), [
    ("blocks.3.hook_resid_post", 3, "fits"), ("blocks.4.hook_resid_pre", 3, "fits"),
    ("blocks.3.hook_resid_pre", 3, "other layer"),  # the input of block 3 is layer 2
    ("blocks.0.hook_resid_pre", 0, "opt in"), ("blocks.3.hook_mlp_out", 3, "opt in"),
    ("blocks.3.hook_attn_out", 3, "opt in"), (None, 3, "opt in"),
])
def test_the_layer_guard_reads_every_hook_name_an_sae_can_carry(tmp_path, hook, layer, outcome):
    from mosaic.activations.saes import check_sae_fits
    from mosaic.infra.errors import MosaicError
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


@pytest.mark.slow
def test_a_gemma_scope_params_npz_loads_through_saelens_own_loader(tmp_path, monkeypatch):
    """The real Gemma Scope path, end to end, for a random Gemma 2 with the 2B's width (2,304).

    A `params.npz` laid out and named as google/gemma-scope-2b-pt-res publishes it sits in a hub
    cache; SAELens's own pretrained loader reads it (only the download is replaced). Gemma Scope
    SAEs do not subtract the decoder bias from their input, so the codes MOSAIC caches must equal
    JumpReLU(x W_enc + b_enc) with the file's threshold.
    """
    import io

    from mosaic.activations.store import read_codes
    from mosaic.data import load_labelled_documents
    from mosaic.infra.cache import cache_root

    monkeypatch.setenv("MOSAIC_CACHE", str(tmp_path / "cache"))
    d_model, d_sae, rng = 2304, 16384, np.random.default_rng(0)
    arrays = {"w_enc": rng.normal(0, 0.03, (d_model, d_sae)), "w_dec": rng.normal(0, 0.03, (d_sae, d_model)),
              "b_enc": rng.normal(0, 0.3, d_sae), "b_dec": rng.normal(0, 1.0, d_model),
              "threshold": rng.uniform(0.2, 0.6, d_sae)}
    arrays = {name: value.astype(np.float32) for name, value in arrays.items()}
    npz = io.BytesIO()
    np.savez(npz, **arrays)
    fake_hub_file(monkeypatch, tmp_path / "hub", "google/gemma-scope-2b-pt-res",
                  "layer_1/width_16k/average_l0_102/params.npz", npz.getvalue())

    sae = load_release_sae("gemma-scope-2b-pt-res-canonical", "layer_1/width_16k/canonical")
    assert sae.cfg.metadata.hook_name == "blocks.1.hook_resid_post"
    assert sae.cfg.apply_b_dec_to_input is False
    assert (sae.cfg.d_in, sae.cfg.d_sae) == (d_model, d_sae)
    np.testing.assert_array_equal(sae.threshold.detach().numpy(), arrays["threshold"])

    cfg = compose_config("model=tiny_gemma2", "model.sae_model=gemma-2-2b", f"model.d_model={d_model}",
                         "model.n_layers=2", "model.n_heads=8", "layer=1", "sae=gemma_scope",
                         "sae.release=gemma-scope-2b-pt-res-canonical",
                         "dataset.limit=40", "logger=none", "probe=sklearn")
    validate(cfg)
    results = run(cfg, tmp_path / "job")
    codes, offsets = read_codes(cache_root() / "activations" / results["cache"]["key"])
    documents = load_labelled_documents(cfg.dataset).documents
    acts = extract_activations(load_model(cfg.model), documents, [1], cfg.batch_size, cfg.max_length)[1]
    pre = acts.values.astype(np.float64) @ arrays["w_enc"] + arrays["b_enc"]
    expected = np.where(pre > arrays["threshold"], pre, 0)
    assert 0.01 < (expected > 0).mean() < 0.99  # the threshold decides for some latents, not all or none
    np.testing.assert_array_equal(offsets, acts.offsets)
    decided = np.abs(pre - arrays["threshold"]) > 1e-3  # float32 against float64 rounding may flip a tie
    np.testing.assert_allclose(codes.toarray()[decided], expected[decided], atol=2e-4)


@pytest.mark.parametrize("architecture", ["standard", "topk", "batchtopk", "matryoshka_batchtopk", "jumprelu"])
def test_a_training_stopped_mid_way_resumes_from_its_checkpoint_to_the_uninterrupted_weights(
        tmp_path, monkeypatch, architecture):
    from mosaic.infra.cache import Checkpoints

    monkeypatch.setenv("MOSAIC_CACHE", str(tmp_path / "cache"))
    values = np.random.default_rng(0).normal(size=(3000, 16)).astype(np.float32)
    # 234 steps over ten passes of the corpus: the resumed run must continue the batch order across passes.
    settings = TrainSettings(architecture=architecture, d_sae=64, k=4, l1_coefficient=1.0, l0_coefficient=1.0,
                             lr=1e-3, tokens=30000, batch_tokens=128, seed=3, matryoshka_fractions=(0.25,))
    train_sae(values, settings, tmp_path / "uninterrupted")

    checkpoints, saves, save = Checkpoints("saes", "key"), [], Checkpoints.save

    def stopped_after_the_57th_save(self, step, fill):
        saved = save(self, step, fill)
        saves.append(step)
        if len(saves) == 57:
            raise KeyboardInterrupt  # as a time limit or ^C would, between two steps
        return saved

    monkeypatch.setattr(Checkpoints, "save", stopped_after_the_57th_save)
    with pytest.raises(KeyboardInterrupt):
        train_sae(values, settings, tmp_path / "resumed", checkpoints=checkpoints, checkpoint_seconds=0)
    monkeypatch.setattr(Checkpoints, "save", save)
    assert checkpoints.latest().name == "step-000000000056"
    record = train_sae(values, settings, tmp_path / "resumed", checkpoints=checkpoints, checkpoint_seconds=1e9)

    assert record["resumed_from_step"] == 56 and record["steps"] == 234
    expected = load_file(str(tmp_path / "uninterrupted" / "sae_weights.safetensors"))
    resumed = load_file(str(tmp_path / "resumed" / "sae_weights.safetensors"))
    assert expected.keys() == resumed.keys()
    assert all(np.array_equal(expected[name], resumed[name]) for name in expected)
    uninterrupted = json.loads((tmp_path / "uninterrupted" / "training.json").read_text())
    assert record["curve"] == uninterrupted["curve"] and uninterrupted["resumed_from_step"] == 0


def test_a_damaged_checkpoint_is_never_resumed_from(tmp_path, monkeypatch):
    from mosaic.infra.cache import Checkpoints

    monkeypatch.setenv("MOSAIC_CACHE", str(tmp_path / "cache"))
    checkpoints = Checkpoints("saes", "key")
    first = checkpoints.save(10, lambda directory: (directory / "state.bin").write_bytes(b"a" * 64))
    assert checkpoints.latest() == first
    second = checkpoints.save(20, lambda directory: (directory / "state.bin").write_bytes(b"b" * 64))
    assert checkpoints.latest() == second and not first.exists()  # only the newest state is kept
    (second / "state.bin").write_bytes(b"c" * 64)  # same size, other bytes: caught by the checksum
    assert checkpoints.latest() is None

    def killed_mid_save(directory):
        (directory / "state.bin").write_bytes(b"d" * 8)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        checkpoints.save(30, killed_mid_save)
    assert [p.name for p in checkpoints.directory.iterdir()] == [second.name]
