"""Which jobs a report or the explore page reads: every finished job under a directory, newest run per config, and
what each read."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mosaic.infra.errors import first_line
from mosaic.record import FAILURE_FILE
from mosaic.record.results import Results, read_results
from mosaic.report.cells import NOT_A_SETTING, flatten


def finished_jobs(directory: Path, job_dirs: list[Path] | None = None,
                  command: str = "report") -> list[tuple[Path, Results]]:
    """Every job under `directory` (or in `job_dirs`) with its `results.json` read through `record.Results`, in
    path order, one per config (`latest_runs`).

    A job directory whose last attempt failed (`failure.json`) is left out, whatever it held before; a file
    that cannot be read or does not fit the schema is left out with one line on stderr naming it.
    """
    paths = sorted(directory.rglob("results.json")) if job_dirs is None else [d / "results.json" for d in job_dirs]
    found = []
    for path in paths:
        if (path.parent / FAILURE_FILE).exists() or not path.is_file():
            continue
        try:
            found.append((path.parent, read_results(path)))
        except (OSError, ValueError) as error:
            print(f"mosaic: {command}: {path} left out: not a readable results.json ({first_line(error)})",
                  file=sys.stderr)
    return latest_runs(found)


def latest_runs(jobs: list[tuple[Path, Results]]) -> list[tuple[Path, Results]]:
    """One job per config (seed included): a job run again (a reused sweep directory, a report over
    several sweeps) counts once, by its newest run, so n counts seeds and not repeats."""
    newest: dict[str, tuple[Path, Results]] = {}
    for job in jobs:
        result = job[1]
        setting = {k: v for k, v in flatten(result.config).items() if not k.startswith(NOT_A_SETTING)}
        key = json.dumps(setting, sort_keys=True, default=str)
        if key not in newest or result.run.finished >= newest[key][1].run.finished:
            newest[key] = job
    return list(newest.values())


def hidden_state(result: Results) -> bool:
    """Whether a job read a layer's activations without an SAE (the hidden state), as its results describe it."""
    return result.features.layer is not None and result.features.sae is None
