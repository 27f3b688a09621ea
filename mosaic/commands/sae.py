"""`python -m mosaic sae train|eval|list`: build, measure and list SAEs outside a job.

`train` and `eval` take a job's overrides (`model=minilm layer=3 sae.architecture=topk ...`) and
do what that job's first stage would, with the same cache and keys: `train` builds the SAE the job
would train (its corpus without the documents of the job's dataset and transfer targets), so a
sweep prepared on one node finds it; `eval` builds or reads the job's activation entry and prints
the SAE's quality on the job's documents. `list` shows every trained SAE in the cache.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, open_dict

from mosaic.infra.cache import list_entries
from mosaic.infra.errors import MosaicError


def _job_config(overrides: list[str]) -> DictConfig:
    """A validated job config whose features are the SAE's (whatever `features=` says: this command is about SAEs)."""
    from hydra.errors import HydraException

    from mosaic.config import CONF_DIR, check_group_overrides, check_value_overrides, compose, validate

    check_group_overrides(overrides, CONF_DIR)
    check_value_overrides(overrides, CONF_DIR)
    try:
        cfg = compose(*overrides, "features=sae", "logger=none")
    except HydraException as error:
        raise MosaicError(str(error).splitlines()[0]) from None
    validate(cfg)
    return cfg


def _job_context(cfg: DictConfig):
    """The job's data, splits and feature context, prepared as the job prepares them (`prepare.prepare_job`:
    the same behaviour labels, splits and protected documents, so the same SAE keys)."""
    from mosaic.activations.store import lazy_model
    from mosaic.features.types import FeatureContext
    from mosaic.infra.timing import Stopwatch
    from mosaic.job.prepare import prepare_job

    job = prepare_job(cfg)
    return job.data, job.splits, FeatureContext(Stopwatch(), lazy_model(cfg.model), job.protected)


def train(overrides: list[str]) -> dict[str, Any]:
    """Train (or find in the cache) the SAE a job with these overrides would train; returns its training record."""
    from mosaic.features.types import Sweep, job_sae, plan_encoders

    cfg = _job_config(overrides)
    source = job_sae(cfg)
    if source is None or not source.trains:
        raise MosaicError(f"sae train builds SAEs MOSAIC trains, but this job reads features.type="
                          f"{cfg.features.type!r}, sae.source={cfg.sae.source!r}: use features=sae sae=trained")
    data, splits, context = _job_context(cfg)
    _, encoder = plan_encoders(cfg, data, splits, Sweep(), context.protected, context.model)
    identity = encoder.resolve()
    return {"key": identity["key"], **(source.training(identity) or {})}


def evaluate(overrides: list[str]) -> dict[str, Any]:
    """The quality of the job's SAE on the job's documents (its activation entry is built if missing)."""
    from mosaic.features.types import build_features

    cfg = _job_config(overrides)
    data, splits, context = _job_context(cfg)
    with open_dict(cfg):
        cfg.pooling.method = "mean"  # any pooling: only the cached entry and its quality are read
    features = build_features(cfg, data, splits, context)
    return {"sae": features.described["sae"], "quality": features.described["sae_quality"],
            "training": features.described["sae_training"]}


def _row(fields: dict[str, Any], training: dict[str, Any]) -> dict[str, Any]:
    from mosaic.activations.saes.sources.trained import build_seconds

    model, train = fields.get("model", {}), fields.get("train", {})
    measured = training.get("on_training_tokens", {})
    return {"model": model.get("source") if not model.get("hf_id") else model["hf_id"],
            "layer": fields.get("layer"), "architecture": train.get("architecture", "standard"),
            "d_sae": train.get("d_sae"), "k": train.get("k"), "corpus": fields.get("corpus", {}).get("corpus"),
            "tokens": training.get("tokens"), "build_minutes": round(build_seconds(training) / 60, 1),
            "train_fvu": measured.get("fvu"), "train_l0": measured.get("l0"),
            "train_dead": measured.get("dead_fraction")}


def listing() -> list[tuple[str, dict[str, Any]]]:
    """Every trained SAE in the cache: its key and a row of what it is and how it trained."""
    from mosaic.activations.saes.sources.trained import training_record

    return [(entry.key, _row(entry.fields, training_record(entry.key) or {}))
            for entry in list_entries("saes")]
