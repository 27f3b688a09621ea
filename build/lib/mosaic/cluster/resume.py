"""Resuming a sweep: a cell is done when the same config produced its `results.json` from the same inputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mosaic.record import RESULTS_FILE, config_hash


def finished_results(job_dir: Path, config: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any] | None:
    """The job's earlier `results.json` if this very config produced it from these very inputs, else None.

    `inputs` is `mosaic.job.inputs.job_inputs` now: the files the job reads and the code version. A
    dataset edited in place, a rewritten local SAE or a new MOSAIC that changes numbers reruns the cell.
    """
    path = job_dir / RESULTS_FILE
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    same = results.get("config_hash") == config_hash(config) and results.get("inputs") == inputs
    return results if same else None
