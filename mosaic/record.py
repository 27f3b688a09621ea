"""Record a job: the atomic `results.json`, the Weights & Biases run, and the end-of-run table."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

RESULTS_FILE = "results.json"
# A cell of a multirun whose last attempt failed holds this instead of a result.
FAILURE_FILE = "failure.json"
# Where a job saves its trained probe, beside its results.
PROBE_DIR = "probe"
# 2: run.slurm (was run.slurm_job_id), top_features[].evidence (was weight), transfer.
# 3: inputs, hyperparameters, metrics.val, metrics.cv.{data, refit_per_fold, held_out, not_held_out};
#    top_features[].evidence in the probe's fitted (scaled) space; features.sae.sha256.
# 4: splits.duplicates and splits.keys, randomness, features.text (bag of words),
#    features.sae_quality.reference, hyperparameters.*.not_selected, transfer.datasets.*.seen_by_probe_removed.
SCHEMA_VERSION = 4
_VERSIONED_PACKAGES = ("mosaic", "torch", "transformers", "sae-lens", "lightning", "scikit-learn", "wandb")


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON so that `path` holds either its old content or the complete new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(payload, stream, indent=2)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def config_hash(config: dict[str, Any]) -> str:
    """What identifies a job's result: its resolved config, less how the sweep treats cells."""
    hashed = {key: value for key, value in config.items() if key != "sweep"}
    return hashlib.sha256(json.dumps(hashed, sort_keys=True).encode()).hexdigest()


def package_versions() -> dict[str, str | None]:
    found = {}
    for name in _VERSIONED_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def slurm_info() -> dict[str, str | None] | None:
    """Where SLURM ran the job (None outside SLURM): job id, array job and task index, node."""
    if "SLURM_JOB_ID" not in os.environ:
        return None
    names = {"job_id": "SLURM_JOB_ID", "array_job_id": "SLURM_ARRAY_JOB_ID",
             "array_task_id": "SLURM_ARRAY_TASK_ID", "node": "SLURMD_NODENAME"}
    return {key: os.environ.get(variable) for key, variable in names.items()}


def run_info(started: datetime) -> dict[str, Any]:
    return {
        "started": started.isoformat(),
        "finished": datetime.now(timezone.utc).isoformat(),
        "host": socket.gethostname(),
        "slurm": slurm_info(),
        "versions": package_versions(),
    }


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


# logger.type -> how a job's run starts (None: nothing is logged beyond results.json).
LOGGER_TYPES = {"wandb": _wandb_run, "none": _no_run}


class Tracker:
    """A W&B run for one job (or nothing, for `logger=none`), finished inside the job."""

    def __init__(self, logger_cfg, config: dict[str, Any], job_dir: Path, labels: RunLabels, job_type: str = "job"):
        self.run = LOGGER_TYPES[logger_cfg.type](logger_cfg, config, job_dir, labels, job_type)
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
        """A sweep report's plots as images and its tables (per job, suite, SAE quality), in this (report) run."""
        if self.run is None:
            return
        import wandb

        self.run.log({
            **{name: wandb.Table(columns=list(table[0]), data=[list(row.values()) for row in table])
               for name, table in tables.items()},
            **{name: wandb.Image(str(path)) for name, path in written.items() if path.suffix == ".png"},
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


def sae_name(sae: dict[str, Any]) -> str:
    """A short, stable name: a release and id, a local path, or a trained SAE's cache key."""
    if sae.get("source") == "gemma_scope":
        return f"{sae['release']} {sae['id']}"
    if sae.get("source") == "local":
        return f"local {sae.get('path')}"
    return f"{sae.get('source')} {str(sae.get('key', ''))[:12]}"


def sae_quality_scalars(features: dict[str, Any]) -> dict[str, float]:
    """The SAE's quality as flat numbers (FVU, L0, dead and always-on fractions, next-token loss increase and KL)."""
    quality = features.get("sae_quality") or {}
    loss = quality.get("next_token_loss") or {}
    found = {k: quality.get(k) for k in ("fvu", "l0", "dead_fraction", "always_on_fraction")}
    reference = quality.get("reference") or {}
    found.update({f"reference_{k}": reference.get(k) for k in ("dead_fraction", "always_on_fraction")})
    found.update({k: loss.get(k) for k in ("ce_increase", "kl", "loss_recovered")})
    return {k: v for k, v in found.items() if v is not None}


def quality_line(quality: dict[str, Any]) -> str:
    if not quality.get("tokens"):
        return "quality not measured (no tokens)"
    line = (f"FVU {quality['fvu']:.3f}   L0 {quality['l0']:.1f}   dead {quality['dead_fraction']:.1%}   "
            f"always on {quality['always_on_fraction']:.1%}   ({quality['tokens']} tokens")
    if reference := quality.get("reference"):
        line += (f"; on the first {reference['tokens']}: dead {reference['dead_fraction']:.1%}, "
                 f"always on {reference['always_on_fraction']:.1%}")
    line += ")" if quality["held_out"] else ", not held out: the SAE trained on this training split)"
    loss = quality.get("next_token_loss")
    if loss and "error" in loss:
        line += f"   next-token loss not measured ({loss['error']})"
    elif loss:
        recovered = "" if loss["loss_recovered"] is None else f", {loss['loss_recovered']:.0%} recovered"
        line += (f"   next-token loss {loss['ce_clean']:.3f} -> {loss['ce_sae']:.3f} "
                 f"(+{loss['ce_increase']:.3f}, KL {loss['kl']:.3f}{recovered})")
    return line


def summary_table(results: dict[str, Any]) -> str:
    """A few aligned lines a researcher reads at the end of a run."""
    cfg, metrics, features = results["config"], results["metrics"], results["features"]
    auroc = metrics["auroc"]
    validation = "none (no validation rows)" if metrics["val"] is None else f"{metrics['val']['macro_f1']:.3f}"
    chosen = "   ".join(f"{name} {value['chosen']}" for name, value in results["hyperparameters"].items())
    rows = [
        ("job", f"{cfg['dataset']['name']} | {cfg['model']['name']} layer {cfg['layer']} | "
                f"{features['type']} ({features['n_features']} features) | pooling {cfg['pooling']['method']} | "
                f"binarize {cfg['binarize']['method']} | probe {cfg['probe']['type']} ({chosen})"),
        ("macro F1", f"test {metrics['macro_f1']:.3f}   validation {validation}"),
    ]
    if "cv" in metrics:
        cv = metrics["cv"]
        caveat = "" if cv["held_out"] else f" (not held out: {cv['not_held_out']})"
        rows.append(("CV", f"{cv['folds']}-fold on train+val: macro F1 {cv['macro_f1_mean']:.3f} ± "
                           f"{cv['macro_f1_std']:.3f}{caveat}"))
    rows += [
        ("accuracy", f"{metrics['accuracy']:.3f}   balanced {metrics['balanced_accuracy']:.3f}   "
                     f"AUROC {'n/a' if auroc is None else f'{auroc:.3f}'}"),
        ("documents", "   ".join(f"{k} {results['splits'][k]}" for k in ("train", "val", "test"))),
        ("time (s)", "   ".join(f"{k} {v:.1f}" for k, v in results["timings_s"].items())),
        ("cache", {True: "hit", False: "miss", None: "not used"}[results["cache"]["hit"]]),
    ]
    if features.get("sae_quality"):
        rows.append(("SAE", quality_line(features["sae_quality"])))
    if behaviour := results.get("behaviour"):
        rows.append(("behaviour", f"labels: {behaviour['model']}'s answers, accuracy {behaviour['accuracy']:.3f} on "
                                  f"{behaviour['documents']} documents; test base rate "
                                  f"{behaviour['test_base_rate']:.3f} correct (majority accuracy "
                                  f"{behaviour['test_majority_accuracy']:.3f})"))
    for kind, targets in (results["transfer"] or {}).items():
        if targets:
            rows.append((f"transfer {kind}", "   ".join(f"{name} {m['macro_f1']:.3f}" for name, m in targets.items())))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
