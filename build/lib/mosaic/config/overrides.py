"""Command-line overrides checked before Hydra starts: a bad group option, an unknown key or a value of the wrong
type is one line naming the key, the value and what is allowed (Hydra says each over five to a dozen lines).

`validate` checks the composed config afterwards; these only catch what would stop Hydra composing it.
"""

from __future__ import annotations

from pathlib import Path

from mosaic.infra.errors import require


def check_group_overrides(arguments: list[str], conf_dir: Path) -> None:
    """Reject a command-line `group=option[,option...]` naming an option the group does not have.

    Hydra rejects these too, but over a dozen lines; this says it in one, before Hydra starts.
    Sweep functions such as `range(...)` and `glob(...)` are left to Hydra.
    """
    for argument in arguments:
        key, sign, value = argument.partition("=")
        group = conf_dir / key.lstrip("+")
        if not sign or key.startswith(("-", "~", "hydra")) or "(" in value or not group.is_dir():
            continue
        options = sorted(path.stem for path in group.glob("*.yaml"))
        for option in value.split(","):
            require(option in options, key.lstrip("+"), option,
                     "choose one of " + ", ".join(options))


def _typed_schema():
    """Every key a job config has, typed: MosaicConfig with each group's dataclass in place of its MISSING node."""
    import dataclasses
    import typing

    from omegaconf import OmegaConf

    from mosaic.config.schema import MosaicConfig

    schema = OmegaConf.structured(MosaicConfig)
    for name, hint in typing.get_type_hints(MosaicConfig).items():
        if dataclasses.is_dataclass(hint):
            schema[name] = OmegaConf.structured(hint)
    return schema


def _known_key(schema, key: str) -> bool | None:
    """True when the schema has `key`, False when it has not, None below a free-form mapping (not checkable)."""
    from omegaconf import DictConfig

    node = schema
    for part in key.split("."):
        if not isinstance(node, DictConfig):
            return None
        if node._metadata.object_type in (None, dict):
            return None
        if part not in node.keys():  # `in node` is False for a MISSING value (model.source, say)
            return False
        node = node._get_node(part)
    return True


def check_value_overrides(arguments: list[str], conf_dir: Path) -> None:
    """Reject a command-line `key=value[,value...]` whose key no job config has, or whose value cannot take the
    key's type (`layer=abc`, `probe.C=x`), in one line before Hydra starts (Hydra says it over five).

    Group choices are `check_group_overrides`'s; appends (`+key`), deletions, Hydra's own keys and
    sweeps only Hydra can expand (`glob(...)`, `interval(...)`) are left to Hydra.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    parser = OverridesParser.create()
    schema = _typed_schema()
    for argument in arguments:
        key, sign, raw = argument.partition("=")
        if not sign or key.startswith(("-", "~", "+", "hydra")) or (conf_dir / key).is_dir():
            continue
        known = _known_key(schema, key)
        require(known is not False, key, raw, "no such config key (`python run.py --help` lists every key)")
        try:
            [override] = parser.parse_overrides([argument])
            values = list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]
        except Exception:  # noqa: BLE001 - what Hydra alone can parse or expand, Hydra reports
            continue
        if not known:
            continue
        kind = schema._get_node(key) if "." not in key else OmegaConf.select(schema, key.rpartition(".")[0])._get_node(
            key.rpartition(".")[2])
        wanted = getattr(kind._metadata.ref_type, "__name__", str(kind._metadata.ref_type))
        for value in values:
            try:
                OmegaConf.update(schema.copy(), key, value, merge=False)
            except OmegaConfBaseException:
                optional = " or null" if kind._metadata.optional else ""
                require(False, key, value, f"must be of type {wanted}{optional}")
