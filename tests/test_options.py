"""Every option `conf/` declares has an implementation, and every implementation an option.

A group's YAML files declare the values of its option key (`options.py`); each value must be a key
of the registry that implements the group, and each registry key must be declared by some YAML.
"""

import ast
from pathlib import Path

import pytest

from mosaic.activations.model_sources import MODEL_SOURCES
from mosaic.activations.saes.sources import SAE_SOURCES
from mosaic.config import CONF_DIR, OPTION_KEYS, declared_options
from mosaic.data.regimes import REGIMES
from mosaic.data.sources import DATASET_SOURCES
from mosaic.features import BINARIZE_METHODS, POOLING_METHODS
from mosaic.features.types import FEATURE_TYPES
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
    groups = {path.name for path in CONF_DIR.iterdir() if path.is_dir() and not path.name.startswith("_")} - {
        "hydra", "experiment", "local"}
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
    from mosaic.infra.errors import ConfigError
    from tests.conftest import compose_config

    with pytest.raises(ConfigError, match=r"model.source='torrent' is not allowed: choose one of gemma3_gguf, hub"):
        validate(compose_config("model.source=torrent"))


def test_the_sae_keys_that_name_code_allow_exactly_what_their_registries_hold():
    from mosaic.activations.saes import ARCHITECTURES
    from mosaic.config.validate import CHOICES
    from mosaic.data.corpora import CORPORA
    from mosaic.job.behaviour import SCORERS

    assert set(CHOICES["sae.architecture"]) == set(ARCHITECTURES)
    assert set(CHOICES["sae.train_corpus"]) == {"train_split", *CORPORA}
    assert set(CHOICES["behaviour.scorer"]) == set(SCORERS)


PACKAGE = Path(__file__).resolve().parents[1] / "mosaic"
# Each option group whose behaviour lives in one module per option: the config key it is chosen by, what an
# expression reading it looks like, and the folder of its option modules (the only place allowed to compare it).
OPTION_MODULES = {
    "sae.source": ("source", PACKAGE / "activations" / "saes" / "sources"),
    "features.type": ("features", PACKAGE / "features" / "types"),
    "dataset.source": ("source", PACKAGE / "data" / "sources"),
    "model.source": ("source", PACKAGE / "activations" / "model_sources"),
    "regime.type": ("regime", PACKAGE / "data" / "regimes.py"),
}


def _comparisons_with(values: set[str], reads: str, outside: Path) -> list[str]:
    """Every comparison in the package, outside `outside`, of an expression mentioning `reads` with one of `values`
    (`cfg.sae.source == "trained"`, `features["type"] in ("sae", "hidden")`): a branch on an option's value."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == outside or outside in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Compare):
                continue
            sides = [node.left, *node.comparators]
            constants = {n.value for side in sides for n in ast.walk(side)
                         if isinstance(n, ast.Constant) and isinstance(n.value, str)}
            if constants & values and any(reads in ast.unparse(side) for side in sides):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {ast.unparse(node)}")
    return found


@pytest.mark.parametrize("key", sorted(OPTION_MODULES))
def test_nothing_outside_an_options_module_branches_on_its_value(key):
    reads, modules = OPTION_MODULES[key]
    assert _comparisons_with(set(REGISTRIES[key]), reads, modules) == []


def test_the_branch_search_finds_a_branch_on_an_option_value(tmp_path, monkeypatch):
    """The search above is not vacuous: a comparison like those the option modules replaced is found."""
    planted = PACKAGE / "pipeline.py"
    source = planted.read_text()
    branch = '\nif cfg.sae.source == "trained":\n    pass\n'
    monkeypatch.setattr(Path, "read_text",
                        lambda self, *a, **k: source + branch if self == planted else Path.read_bytes(self).decode())
    [found] = _comparisons_with(set(SAE_SOURCES), "source", PACKAGE / "activations" / "saes" / "sources")
    assert found.startswith("mosaic/pipeline.py:") and "'trained'" in found
