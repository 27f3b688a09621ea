"""Values a config implies but does not hold: the answering model's config, the answers behaviour scores.

Here rather than in `mosaic.job.behaviour` so that validation, fetch and the plan read them without
importing a stage.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from mosaic.infra.errors import MosaicError


def model_option_config(name: str, key: str = "model") -> DictConfig:
    """A `model` option's config as its conf/model YAML declares it, on the schema (no site settings);
    refused in one line, naming `key`, when there is no such option."""
    from mosaic.config.options import CONF_DIR
    from mosaic.config.schema import ModelConfig

    path = CONF_DIR / "model" / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in path.parent.glob("*.yaml")))
        raise MosaicError(f"{key}={name!r} is not a model option: choose one of {known}")
    declared = OmegaConf.load(path)
    return OmegaConf.merge(OmegaConf.structured(ModelConfig), {k: v for k, v in declared.items() if k != "defaults"})


def answering_model_config(cfg: DictConfig) -> DictConfig:
    """The answering model's config: the job's own `model` when `behaviour.model` names it (with its site
    settings, `model.path`, dtype and device), else that `model` option's conf/model YAML on the schema."""
    if cfg.behaviour.model == cfg.model.name:
        return cfg.model
    return model_option_config(cfg.behaviour.model, "behaviour.model")


def answer_options(cfg: DictConfig) -> list[str] | None:
    """The answers the choice scorer compares: `behaviour.options`, else the dataset's `answer_options`."""
    options = cfg.behaviour.options if cfg.behaviour.options is not None else cfg.dataset.answer_options
    return None if options is None else list(options)
