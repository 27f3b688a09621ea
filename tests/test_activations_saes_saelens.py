"""Any SAE of SAELens's release table (`sae=saelens`), Gemma Scope 2 (`sae=gemma_scope_2`) and the Gemma 3 family
(`saes/sources/saelens.py`, `gemma_scope_2.py`, `saes/releases.py`): checked offline against the table SAELens
ships, loaded through SAELens's own loaders."""

import hashlib
import json

import numpy as np
import pytest

from mosaic.activations.saes.releases import gemma_scope_2_grid, saelens_release_table, table_hook
from mosaic.config import validate
from mosaic.infra.errors import ConfigError
from tests.conftest import compose_config, fake_hub_file

GEMMA3_270M = ["model=gemma3_270m", "sae=saelens"]


@pytest.mark.parametrize("overrides, message", [
    (["sae.release=gpt2-small-res-jbx", "sae.id=blocks.8.hook_resid_pre"],
     "sae.release='gpt2-small-res-jbx' is not in SAELens's release table"),
    (["sae.release=gemma-scope-2-270m-pt-res", "sae.id=layer_12_width_16k_l0_huge", "layer=12"],
     "sae.id='layer_12_width_16k_l0_huge' is not in SAELens release gemma-scope-2-270m-pt-res"),
    (["sae.release=gpt2-small-res-jb", "sae.id=blocks.8.hook_resid_pre", "layer=7"],
     "holds SAEs of model gpt2-small, but the job's model is google/gemma-3-270m"),
    (["sae.release=gemma-scope-2-270m-pt-mlp", "sae.id=layer_12_width_16k_l0_big", "layer=12"],
     "reads blocks.12.hook_mlp_out, not the residual stream after a block"),
    (["sae.release=gemma-scope-2-270m-pt-res", "sae.id=layer_12_width_16k_l0_big", "layer=9"],
     "reads blocks.12.hook_resid_post, the residual stream after block 12, but layer=9: use layer=12"),
    (["sae.release=gemma-scope-2-270m-pt-res"], "sae.release/sae.id"),
])
def test_sae_saelens_refuses_what_the_release_table_does_not_offer_in_one_line(overrides, message):
    with pytest.raises(ConfigError) as error:
        validate(compose_config(*GEMMA3_270M, *overrides))
    assert "\n" not in str(error.value) and message in str(error.value), str(error.value)


def test_sae_saelens_takes_a_residual_sae_of_the_model_and_another_hook_only_when_asked():
    validate(compose_config(*GEMMA3_270M, "sae.release=gemma-scope-2-270m-pt-res",
                            "sae.id=layer_12_width_16k_l0_big", "layer=12"))
    validate(compose_config(*GEMMA3_270M, "sae.release=gemma-scope-2-270m-pt-mlp",
                            "sae.id=layer_12_width_16k_l0_big", "layer=12", "sae.allow_any_hook=true"))
    # A random GPT-2 stands for GPT-2 small once the config says it is that network.
    validate(compose_config("model=tiny_gpt2", "model.n_layers=12", "model.d_model=768", "model.sae_model=gpt2-small",
                            "sae=saelens", "sae.release=gpt2-small-res-jb", "sae.id=blocks.8.hook_resid_pre",
                            "layer=7"))


@pytest.mark.parametrize("release, sae_id, hook", [
    # Hand-read from each row: the hook its id or path names, or its Gemma Scope folder / release suffix.
    ("gpt2-small-res-jb", "blocks.8.hook_resid_pre", "blocks.8.hook_resid_pre"),
    ("gemma-scope-2b-pt-res-canonical", "layer_3/width_16k/canonical", "blocks.3.hook_resid_post"),
    ("gemma-scope-2b-pt-mlp-canonical", "layer_3/width_16k/canonical", "blocks.3.hook_mlp_out"),
    ("sae_bench_gemma-2-2b_topk_width-2pow12_date-1109", "blocks.12.hook_resid_post__trainer_0",
     "blocks.12.hook_resid_post"),
    ("gpt-oss-20b-andyrdt", "resid_post_layer_3_trainer_0", "blocks.3.hook_resid_post"),
    ("llama_scope_lxr_32x", "l0r_32x", None),  # the row does not say: the loaded SAE's config is checked
])
def test_the_hook_a_release_table_row_names(release, sae_id, hook):
    assert table_hook(release, sae_id) == hook


def test_gemma_scope_2_hooks_read_from_the_table_are_the_ones_saelens_own_loader_derives(monkeypatch):
    """For every residual, MLP and attention id of Gemma Scope 2's 270M releases, the hook MOSAIC reads offline
    equals the one SAELens's `gemma_3` config reader gives (its two hub calls answered with 'no config.json'
    and the tensor shapes)."""
    from huggingface_hub.errors import EntryNotFoundError
    from sae_lens.loading import pretrained_sae_loaders as loaders

    def no_config(*args, **kwargs):
        raise EntryNotFoundError("no config.json")

    monkeypatch.setattr(loaders, "hf_hub_download", no_config)
    monkeypatch.setattr(loaders, "get_safetensors_tensor_shapes", lambda repo, name: {"w_enc": [640, 16]})
    table, checked = saelens_release_table(), 0
    for release in ("gemma-scope-2-270m-pt-res", "gemma-scope-2-270m-pt-res-all", "gemma-scope-2-270m-pt-mlp",
                    "gemma-scope-2-270m-it-att"):
        for entry in table[release]["saes"]:
            derived = loaders.get_gemma_3_config_from_hf(table[release]["repo_id"], entry["path"], "cpu")
            assert table_hook(release, entry["id"]) == derived["hook_name"], entry["id"]
            checked += 1
    assert checked > 100


def test_the_done_when_grid_composes_validates_and_reads_eight_gemma_scope_2_folders():
    from mosaic.cluster.cells import expand_grid
    from mosaic.cluster.fetch import grid_items, runnable

    grid = ["model=gemma3_270m", "sae=gemma_scope_2", "layer=9,12", "sae.width=16k,65k", "sae.l0=small,big"]
    cells = runnable(expand_grid(grid).configs)
    assert len(cells) == 8
    for cfg in cells:
        validate(cfg)
    # The packaged model and dataset read nothing from the hub; each SAE is its folder of Gemma Scope 2's repository.
    assert sorted((item.kind, item.repo_id, item.where) for item in grid_items(cells)) == sorted(
        ("sae", "google/gemma-scope-2-270m-pt", f"resid_post/layer_{layer}_width_{width}_l0_{l0}")
        for layer in (9, 12) for width in ("16k", "65k") for l0 in ("small", "big"))


@pytest.mark.parametrize("overrides, message", [
    (["layer=3"], "layer=3 is not allowed: gemma-scope-2-270m-pt-res has SAEs at layers 5, 9, 12, 15"),
    (["sae.release=gemma-scope-2-270m-pt-res-all", "layer=3", "sae.width=65k", "sae.l0=small"],
     "sae.width=65k sae.l0=small is not in gemma-scope-2-270m-pt-res-all at layer 3, which has 16k: small, big; "
     "262k: small, big"),
    (["layer=9", "sae.l0=huge"], "sae.l0"),
    (["sae.release=gemma-scope-2b-pt-res-canonical", "layer=9"], "holds no Gemma Scope 2 SAEs"),
])
def test_gemma_scope_2_allows_only_the_combinations_its_release_has(overrides, message):
    with pytest.raises(ConfigError) as error:
        validate(compose_config("model=gemma3_270m", "sae=gemma_scope_2", *overrides))
    assert "\n" not in str(error.value) and message in str(error.value), str(error.value)


@pytest.mark.parametrize("size", ["270m", "1b", "4b", "12b", "27b"])
@pytest.mark.parametrize("tuned", ["pt", "it"])
def test_each_gemma3_config_is_the_model_its_gemma_scope_2_release_was_trained_on(size, tuned):
    name = f"gemma3_{size}" + ("_it" if tuned == "it" else "_hub" if size == "270m" else "")
    cfg = compose_config(f"model={name}")
    release = f"gemma-scope-2-{size}-{tuned}-res"
    table = saelens_release_table()
    assert (cfg.sae.source, cfg.model.gemma_scope_2_release) == ("gemma_scope_2", release)
    assert table[release]["model"] == cfg.model.hf_id
    # The `-all` release has an SAE at every layer: the model's layer count, read independently of the config.
    assert max(gemma_scope_2_grid(release + "-all")) + 1 == cfg.model.n_layers
    assert cfg.model.chat_template == (tuned == "it")
    validate(compose_config(f"model={name}", f"layer={min(gemma_scope_2_grid(release))}"))


def _jumprelu_arrays(d_model, d_sae, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {"w_enc": rng.normal(0, 0.05, (d_model, d_sae)), "w_dec": rng.normal(0, 0.05, (d_sae, d_model)),
              "b_enc": rng.normal(0, 0.3, d_sae), "b_dec": rng.normal(0, 1.0, d_model),
              "threshold": rng.uniform(0.2, 0.6, d_sae)}
    return {name: value.astype(np.float32) for name, value in arrays.items()}


def _job_codes(cfg, tmp_path, layer):
    """The codes a job cached for its SAE, the job's results, and the residual stream at `layer` read again."""
    from mosaic.activations import extract_activations, load_model
    from mosaic.activations.store import read_codes
    from mosaic.data import load_labelled_documents
    from mosaic.infra.cache import cache_root
    from mosaic.pipeline import run

    validate(cfg)
    results = run(cfg, tmp_path / "job")
    codes, offsets = read_codes(cache_root() / "activations" / results["cache"]["key"])
    documents = load_labelled_documents(cfg.dataset).documents
    acts = extract_activations(load_model(cfg.model), documents, [layer], cfg.batch_size, cfg.max_length)[layer]
    np.testing.assert_array_equal(offsets, acts.offsets)
    return codes.toarray(), results, acts.values.astype(np.float64)


@pytest.mark.slow
def test_a_gemma_scope_2_params_safetensors_loads_through_saelens_own_loader(tmp_path, monkeypatch):
    """The real Gemma Scope 2 path, end to end, for a random Gemma 3 of 270M's width (640).

    `params.safetensors` and `config.json`, named and laid out as google/gemma-scope-2-270m-pt publishes
    them, sit in a hub cache; SAELens's own `gemma_3` loader reads them (only the download is replaced).
    The codes MOSAIC caches must equal JumpReLU(x W_enc + b_enc) with the file's threshold.
    """
    from safetensors.numpy import save_file

    from mosaic.activations.saes import load_release_sae

    monkeypatch.setenv("MOSAIC_CACHE", str(tmp_path / "cache"))
    d_model, d_sae, layer = 640, 16384, 5
    arrays = _jumprelu_arrays(d_model, d_sae)
    save_file(arrays, tmp_path / "params.safetensors")
    folder = f"resid_post/layer_{layer}_width_16k_l0_small"
    config = json.dumps({"architecture": "jump_relu", "model_name": "google/gemma-3-270m-pt",
                         "hf_hook_point_in": f"model.layers.{layer}.output"}).encode()
    weights = (tmp_path / "params.safetensors").read_bytes()
    for name, content in (("params.safetensors", weights), ("config.json", config)):
        fake_hub_file(monkeypatch, tmp_path / "hub", "google/gemma-scope-2-270m-pt", f"{folder}/{name}", content)

    sae = load_release_sae("gemma-scope-2-270m-pt-res", f"layer_{layer}_width_16k_l0_small")
    assert sae.cfg.metadata.hook_name == f"blocks.{layer}.hook_resid_post"
    assert sae.cfg.apply_b_dec_to_input is False
    assert (sae.cfg.d_in, sae.cfg.d_sae) == (d_model, d_sae)
    np.testing.assert_array_equal(sae.threshold.detach().numpy(), arrays["threshold"])

    cfg = compose_config("model=tiny_gemma3", "model.sae_model=google/gemma-3-270m", f"model.d_model={d_model}",
                         "model.n_layers=6", f"layer={layer}", "sae=gemma_scope_2",
                         "sae.release=gemma-scope-2-270m-pt-res", "sae.l0=small", "dataset.limit=40", "logger=none",
                         "probe=sklearn")
    codes, results, acts = _job_codes(cfg, tmp_path, layer)
    assert results["features"]["sae"]["sha256"] == {"params.safetensors": hashlib.sha256(weights).hexdigest(),
                                                    "config.json": hashlib.sha256(config).hexdigest()}
    assert results["features"]["sae"]["width"] == "16k"
    pre = acts @ arrays["w_enc"] + arrays["b_enc"]
    expected = np.where(pre > arrays["threshold"], pre, 0)
    assert 0.01 < (expected > 0).mean() < 0.99  # the threshold decides for some latents, not all or none
    decided = np.abs(pre - arrays["threshold"]) > 1e-3  # float32 against float64 rounding may flip a tie
    np.testing.assert_allclose(codes[decided], expected[decided], atol=2e-4)


@pytest.mark.slow
def test_a_gpt2_small_residual_sae_in_saelens_format_loads_through_saelens_own_loader(tmp_path, monkeypatch):
    """A release outside Gemma Scope: gpt2-small-res-jb's SAE before block 8, for a random GPT-2 of the real width.

    The SAE is saved by SAELens itself (`cfg.json`, `sae_weights.safetensors`) into the folder the release
    table names, in a hub cache. It subtracts its decoder bias from its input, so the cached codes must
    equal ReLU((x - b_dec) W_enc + b_enc), x the residual stream after block 7 (= before block 8).
    """
    import torch
    from sae_lens import StandardSAE, StandardSAEConfig

    monkeypatch.setenv("MOSAIC_CACHE", str(tmp_path / "cache"))
    d_model, d_sae = 768, 1536
    torch.manual_seed(0)
    sae = StandardSAE(StandardSAEConfig(d_in=d_model, d_sae=d_sae, apply_b_dec_to_input=True))
    with torch.no_grad():
        sae.W_enc.normal_(0, 0.05)
        sae.b_enc.normal_(-0.2, 0.3)
        sae.b_dec.normal_(0, 0.5)
    sae.cfg.metadata.hook_name = "blocks.8.hook_resid_pre"
    sae.save_model(str(tmp_path / "saved"))
    for name in ("cfg.json", "sae_weights.safetensors"):
        fake_hub_file(monkeypatch, tmp_path / "hub", "jbloom/GPT2-Small-SAEs-Reformatted",
                      f"blocks.8.hook_resid_pre/{name}", (tmp_path / "saved" / name).read_bytes())

    cfg = compose_config("model=tiny_gpt2", "model.sae_model=gpt2-small", f"model.d_model={d_model}",
                         "model.n_layers=8", "model.n_heads=12", "layer=7", "sae=saelens",
                         "sae.release=gpt2-small-res-jb", "sae.id=blocks.8.hook_resid_pre", "dataset.limit=40",
                         "logger=none", "probe=sklearn")
    codes, results, acts = _job_codes(cfg, tmp_path, 7)
    assert results["features"]["sae"]["name"] == "gpt2-small-res-jb blocks.8.hook_resid_pre"
    assert results["features"]["sae"]["neuronpedia"] == "https://www.neuronpedia.org/gpt2-small/8-res-jb/"
    W_enc, b_enc, b_dec = (getattr(sae, name).detach().double().numpy() for name in ("W_enc", "b_enc", "b_dec"))
    expected = np.maximum((acts - b_dec) @ W_enc + b_enc, 0)
    assert 0.01 < (expected > 0).mean() < 0.99
    np.testing.assert_allclose(codes, expected, atol=2e-4)


@pytest.mark.parametrize("experiment, cells, model", [("gemma3_layers", 16, "gemma3_270m"),
                                                      ("gemma3_layers_cluster", 16, "gemma3_1b"),
                                                      ("gemma3_behaviour", 9, "gemma3_1b")])
def test_every_cell_of_the_gemma3_experiments_validates_and_names_what_it_fetches(experiment, cells, model):
    from mosaic.cluster.cells import expand_grid
    from mosaic.cluster.fetch import grid_items, runnable

    configs = runnable(expand_grid([f"experiment={experiment}"]).configs)
    assert len(configs) == cells
    for cfg in configs:
        validate(cfg)
        assert cfg.model.name == model and cfg.sae.source == "gemma_scope_2"
    repos = {item.repo_id for item in grid_items(configs) if item.kind == "sae"}
    assert repos == {"google/gemma-scope-2-270m-pt" if model == "gemma3_270m" else "google/gemma-scope-2-1b-pt"}
    if experiment == "gemma3_behaviour":  # the answering model reads its prompts through its chat template
        assert {cfg.behaviour.model for cfg in configs} == {"gemma3_4b_it"}
        assert ("model", "google/gemma-3-4b-it") in {(item.kind, item.repo_id) for item in grid_items(configs)}


def test_one_forward_serves_a_sweep_over_gemma_scope_2_widths_and_l0s_where_the_release_has_them():
    from mosaic.features.types import Sweep, forward_slots

    sweep = Sweep(layers=(3, 9), sae_values={"sae.width": ("16k", "65k"), "sae.l0": ("small", "big")})
    main = compose_config("model=gemma3_270m", "sae=gemma_scope_2", "layer=9", "sae.l0=small")
    every = [("sae", f"{width}/{l0}") for width in ("16k", "65k") for l0 in ("big", "small")]
    assert forward_slots(main, sweep) == {9: every}  # layer 3 has no SAE in the main release
    # The -all release has every layer but only 16k and 262k, small and big: a sibling it lacks is left out.
    every_layer = compose_config("model=gemma3_270m", "sae=gemma_scope_2", "sae.release=gemma-scope-2-270m-pt-res-all",
                                 "layer=3", "sae.l0=small")
    assert forward_slots(every_layer, sweep) == {3: [("sae", "16k/big"), ("sae", "16k/small")],
                                                 9: [("sae", "16k/big"), ("sae", "16k/small")]}
