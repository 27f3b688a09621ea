"""Every option `conf/` declares has an implementation, and every implementation an option.

A group's YAML files declare the values of its option key (`options.py`); each value must be a key
of the registry that implements the group, and each registry key must be declared by some YAML.
"""

import pytest

from mosaic.activations.model_sources import MODEL_SOURCES
from mosaic.activations.plan import SAE_SOURCES
from mosaic.config import CONF_DIR, OPTION_KEYS, declared_options
from mosaic.data.regimes import REGIMES
from mosaic.data.sources import DATASET_SOURCES
from mosaic.features import BINARIZE_METHODS, POOLING_METHODS
from mosaic.featurize import FEATURE_TYPES
from mosaic.probes import PROBE_TYPES
from mosaic.record import LOGGER_TYPES

REGISTRIES = {
    "dataset.source": DATASET_SOURCES,
    "regime.type": REGIMES,
    "model.source": MODEL_SOURCES,
    "sae.source": SAE_SOURCES,
    "features.type": FEATURE_TYPES,
    "pooling.method": POOLING_METHODS,
    "binarize.method": BINARIZE_METHODS,
    "probe.type": PROBE_TYPES,
    "logger.type": LOGGER_TYPES,
}


def test_every_config_group_with_options_has_a_registry():
    groups = {path.name for path in CONF_DIR.iterdir() if path.is_dir()} - {"hydra", "experiment"}
    assert groups == set(OPTION_KEYS)
    assert set(REGISTRIES) == {f"{group}.{key}" for group, key in OPTION_KEYS.items()}


@pytest.mark.parametrize("key", sorted(REGISTRIES))
def test_declared_options_and_implementations_agree(key):
    declared = set(declared_options()[key])
    implemented = set(REGISTRIES[key])
    assert declared - implemented == set(), f"{key}: declared in conf/ but not implemented"
    assert implemented - declared == set(), f"{key}: implemented but no YAML in conf/ declares it"


def test_an_undeclared_option_value_is_rejected_in_one_line():
    from mosaic.config import validate
    from mosaic.errors import ConfigError
    from tests.conftest import compose_config

    with pytest.raises(ConfigError, match=r"model.source='torrent' is not allowed: choose one of gemma3_gguf, hub"):
        validate(compose_config("model.source=torrent"))


def test_the_sae_keys_that_name_code_allow_exactly_what_their_registries_hold():
    from mosaic.activations.saes import ARCHITECTURES
    from mosaic.config.validate import CHOICES
    from mosaic.data.corpora import CORPORA

    assert set(CHOICES["sae.architecture"]) == set(ARCHITECTURES)
    assert set(CHOICES["sae.train_corpus"]) == {"train_split", *CORPORA}
