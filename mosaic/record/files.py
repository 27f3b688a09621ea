"""Where a job's record lives and how it is written: file names, the atomic JSON writer, the config hash, and
where and with what the job ran (`run_info`)."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from mosaic.infra.disk import disk_full

RESULTS_FILE = "results.json"
# A cell of a multirun whose last attempt failed holds this instead of a result.
FAILURE_FILE = "failure.json"
# Held while a job runs, so that a cell launched twice runs once.
CELL_LOCK = ".cell.lock"
# Where a job saves its trained probe, beside its results.
PROBE_DIR = "probe"
_VERSIONED_PACKAGES = ("mosaic", "torch", "transformers", "sae-lens", "lightning", "scikit-learn", "wandb")


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` so that `path` holds either its old content or the complete new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except OSError as error:
        full = disk_full(error, path.parent, [Path(tmp)])
        Path(tmp).unlink(missing_ok=True)
        if full:
            raise full from error
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON atomically (`write_text_atomic`)."""
    write_text_atomic(path, json.dumps(payload, indent=2))


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


def slurm_info() -> dict[str, str | int | None] | None:
    """Where SLURM ran the job (None outside SLURM): job id, array job and task index, node, and how many times
    SLURM requeued it before this attempt (`SLURM_RESTART_COUNT`)."""
    if "SLURM_JOB_ID" not in os.environ:
        return None
    names = {"job_id": "SLURM_JOB_ID", "array_job_id": "SLURM_ARRAY_JOB_ID",
             "array_task_id": "SLURM_ARRAY_TASK_ID", "node": "SLURMD_NODENAME"}
    return {**{key: os.environ.get(variable) for key, variable in names.items()},
            "restarts": int(os.environ.get("SLURM_RESTART_COUNT", "0"))}


def run_info(started: datetime) -> dict[str, Any]:
    return {
        "started": started.isoformat(),
        "finished": datetime.now(timezone.utc).isoformat(),
        "host": socket.gethostname(),
        "slurm": slurm_info(),
        "versions": package_versions(),
    }
