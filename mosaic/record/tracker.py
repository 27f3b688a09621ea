"""The Weights & Biases run of a job (or of a sweep's report): its labels, its start by `logger.type`, what it logs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mosaic.record.files import RESULTS_FILE
from mosaic.record.summary import sae_quality_scalars


@dataclass(frozen=True)
class RunLabels:
    """How a run shows in W&B: its group (the sweep), its name (what the cell overrides) and its tags."""

    name: str
    group: str | None = None
    tags: tuple[str, ...] = ()


def sweep_group(sweep_dir: Path) -> str:
    """A sweep's W&B group: its directory, relative to the working directory when below it (stable on resume)."""
    resolved = sweep_dir.resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(resolved)


def job_labels(config: dict[str, Any], job_dir: Path) -> RunLabels:
    """A job's labels. In a multirun (its directory beside the sweep's `multirun.yaml`) the group is the sweep and the
    name the cell's values of the keys the sweep varies (from `.hydra/overrides.yaml`); tags name model, dataset,
    features and probe."""
    from omegaconf import OmegaConf

    from mosaic.config.sweeps import sweep_overrides, swept_values

    tags = tuple(f"{group}={value}" for group, value in (
        ("model", config["model"]["name"]), ("dataset", config["dataset"]["name"]),
        ("features", config["features"]["type"]), ("probe", config["probe"]["type"])))
    overrides = sweep_overrides(job_dir.parent)
    cell_file = job_dir / ".hydra" / "overrides.yaml"
    if overrides is None or not cell_file.is_file():
        return RunLabels(job_dir.name, None, tags)
    varied = swept_values(overrides)
    cell = [o for o in OmegaConf.load(cell_file) if o.partition("=")[0].lstrip("+") in varied]
    return RunLabels(" ".join(cell) or job_dir.name, sweep_group(job_dir.parent), tags)


def _wandb_run(logger_cfg, config: dict[str, Any], job_dir: Path, labels: RunLabels, job_type: str):
    """A W&B run in `job_dir` (offline unless `logger.offline=false`).

    The Lightning probe's per-epoch validation curves summarise as their best value; the job's own
    test, validation and timing numbers go to the summary once, flat, equal to `results.json`.
    """
    import wandb

    run = wandb.init(
        project=logger_cfg.project,
        entity=logger_cfg.entity,
        mode="offline" if logger_cfg.offline else "online",
        dir=str(job_dir),
        name=labels.name,
        group=labels.group,
        tags=list(labels.tags),
        job_type=job_type,
        config=config,
        reinit="finish_previous",
    )
    run.define_metric("val_macro_f1", summary="max")
    run.define_metric("val_loss", summary="min")
    return run


def _no_run(logger_cfg, config: dict[str, Any], job_dir: Path, labels: RunLabels, job_type: str) -> None:
    return None


@dataclass(frozen=True)
class LoggerType:
    """One `logger.type`: how a job's run starts (`start` returns None when nothing is logged beyond results.json),
    and whether it keeps runs at all (a sweep's report then logs to a run of its own)."""

    start: Callable[..., Any]
    keeps_runs: bool


# logger.type -> how a job's run starts.
LOGGER_TYPES = {"wandb": LoggerType(_wandb_run, True), "none": LoggerType(_no_run, False)}


def keeps_runs(logger_cfg: dict[str, Any]) -> bool:
    """Whether a job's `logger` config kept a run of it (so its sweep's report should too)."""
    return LOGGER_TYPES[logger_cfg.get("type", "none")].keeps_runs


class Tracker:
    """A W&B run for one job (or nothing, for `logger=none`), finished inside the job."""

    def __init__(self, logger_cfg, config: dict[str, Any], job_dir: Path, labels: RunLabels, job_type: str = "job"):
        self.run = LOGGER_TYPES[logger_cfg.type].start(logger_cfg, config, job_dir, labels, job_type)
        self.job_dir = job_dir

    def lightning_logger(self):
        """A Lightning logger writing the probe's training curves into this run, or False."""
        if self.run is None:
            return False
        from lightning.pytorch.loggers import WandbLogger

        return WandbLogger(experiment=self.run)

    def log_results(self, results: dict[str, Any], test_labels: np.ndarray, predictions: np.ndarray,
                    label_names: list[str]) -> None:
        if self.run is None:
            return
        import wandb

        metrics = results["metrics"]
        scalars = {f"test/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}
        scalars.update({f"val/{k}": v for k, v in (metrics["val"] or {}).items() if isinstance(v, (int, float))})
        if "cv" in metrics:
            scalars.update({f"cv/{k}": metrics["cv"][k] for k in ("macro_f1_mean", "macro_f1_std")})
        scalars.update({f"chosen/{name}": value["chosen"] for name, value in results["hyperparameters"].items()})
        scalars.update({f"time/{k}": v for k, v in results["timings_s"].items()})
        scalars.update({f"sae/{k}": v for k, v in sae_quality_scalars(results["features"]).items()})
        for kind, targets in (results["transfer"] or {}).items():
            scalars.update({f"transfer/{kind}/{name}/macro_f1": m["macro_f1"] for name, m in targets.items()})
        self.run.summary.update(scalars)
        self.run.save(str(self.job_dir / RESULTS_FILE), base_path=str(self.job_dir), policy="now")
        columns = ["index", "class", "evidence", "name", "url"]
        self.run.log({
            **_sae_training_curves(results["features"].get("sae_training")),
            "test/confusion": wandb.plot.confusion_matrix(
                y_true=test_labels.tolist(), preds=predictions.tolist(), class_names=label_names
            ),
            "top_features": wandb.Table(
                columns=columns, data=[[f.get(c) for c in columns] for f in results["top_features"]]
            ),
        })

    def log_report(self, written: dict[str, Path], tables: dict[str, list[dict[str, Any]]]) -> None:
        """A sweep report's plots as images, its tables (per job, suite, SAE quality, latent contexts) and its
        explore page as an HTML panel, in this (report) run."""
        if self.run is None:
            return
        import wandb

        self.run.log({
            **{name: wandb.Table(columns=list(table[0]), data=[list(row.values()) for row in table])
               for name, table in tables.items()},
            **{name: wandb.Image(str(path)) for name, path in written.items() if path.suffix == ".png"},
            **{name: wandb.Html(path.read_text(encoding="utf-8")) for name, path in written.items()
               if path.suffix == ".html"},
        })

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


def _sae_training_curves(training: dict[str, Any] | None) -> dict[str, Any]:
    """A trained SAE's training curve as a W&B table and its loss and explained variance against tokens."""
    if not training or not training.get("curve"):
        return {}
    import wandb

    curve = training["curve"]
    table = wandb.Table(columns=list(curve[0]), data=[list(point.values()) for point in curve])
    return {"sae_training/curve": table,
            **{f"sae_training/{y}": wandb.plot.line(table, "tokens", y, title=f"SAE training: {y} against tokens")
               for y in ("loss", "explained_variance", "l0", "dead")}}
