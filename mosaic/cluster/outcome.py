"""A sweep's outcome: a failing cell is recorded and the others run; at the end, a summary, the report, the exit status.

A cell that fails in a sweep writes `failure.json` in its job directory and returns, so the other
cells still run (on any launcher); `SweepOutcome`, a Hydra callback, then writes the sweep's
`failures.json` and makes the command exit non-zero.
"""

from __future__ import annotations

import json
import shutil
import sys
import traceback
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from mosaic.infra.errors import MosaicError, NotApplicableError, first_line
from mosaic.record import FAILURE_FILE, PROBE_DIR, RESULTS_FILE, write_json_atomic

FAILURES_FILE = "failures.json"


def record_failure(job_dir: Path, overrides: list[str], error: BaseException) -> dict[str, Any]:
    """Write the cell's `failure.json` and say on stderr, in one line, what went wrong.

    MOSAIC's own errors are one line by design; anything else also gets its traceback, in the file
    and on stderr, since it is a bug or a crash someone has to read.
    """
    status = "not_applicable" if isinstance(error, NotApplicableError) else "failed"
    record = {"job": job_dir.name, "overrides": overrides, "status": status,
              "error": f"{type(error).__name__}: {first_line(error)}"}
    if not isinstance(error, MosaicError):
        record["traceback"] = "".join(traceback.format_exception(error))
        print(record["traceback"], file=sys.stderr, end="")
    try:
        write_json_atomic(job_dir / FAILURE_FILE, record)
    except MosaicError as unwritten:  # the disk that refused the results refuses this too: the grid goes on
        print(f"mosaic: {job_dir / FAILURE_FILE} not written: {first_line(unwritten)}", file=sys.stderr)
    # What an earlier attempt of this cell left is not this attempt's result.
    (job_dir / RESULTS_FILE).unlink(missing_ok=True)
    shutil.rmtree(job_dir / PROBE_DIR, ignore_errors=True)
    verb = "skipped" if status == "not_applicable" else "failed"
    print(f"mosaic: cell {job_dir.name} {verb} ({' '.join(overrides)}): {first_line(error)}", file=sys.stderr)
    return record


def clear_failure(job_dir: Path) -> None:
    """Forget an earlier failure of this cell (it has just succeeded or been found done)."""
    (job_dir / FAILURE_FILE).unlink(missing_ok=True)


def sweep_outcome(sweep_dir: Path, since: float = 0.0) -> dict[str, list]:
    """Done, skipped (not applicable) and failed cells of the sweep, from its job directories.

    Only cells Hydra started at or after `since` (a timestamp) count: a reused sweep directory may
    hold cells of an earlier, different grid.
    """
    outcome: dict[str, list] = {"done": [], "not_applicable": [], "failed": []}
    started = [p for p in sweep_dir.iterdir() if (p / ".hydra" / "config.yaml").is_file()
               and (p / ".hydra" / "config.yaml").stat().st_mtime >= since]
    for job_dir in sorted(started, key=lambda p: (len(p.name), p.name)):  # 0, 1, ..., 10, not 0, 1, 10, 2
        if (job_dir / FAILURE_FILE).is_file():
            record = json.loads((job_dir / FAILURE_FILE).read_text())
            outcome["not_applicable" if record.get("status") == "not_applicable" else "failed"].append(record)
        elif (job_dir / RESULTS_FILE).is_file():
            outcome["done"].append(job_dir.name)
    return outcome


STARTED_FILE = ".sweep_started"


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def progress_line(job_dir: Path, name: str, headline: str) -> str:
    """One line for a finished cell: `i/N`, its name (the keys the sweep varies), its headline and the time left.

    N is the product of the sweep's value counts (as Hydra's basic sweeper expands it); i counts the
    cells that have finished since the sweep started, on any node; the time left extrapolates the
    sweep's mean time per finished cell.
    """
    import math
    import time

    from mosaic.config.sweeps import sweep_overrides, swept_values

    sweep_dir = job_dir.parent
    overrides = sweep_overrides(sweep_dir) or []
    total = math.prod(len(values) for values in swept_values(overrides).values())
    stamp = sweep_dir / STARTED_FILE
    since = stamp.stat().st_mtime if stamp.is_file() else 0.0
    outcome = sweep_outcome(sweep_dir, since=since)
    finished = sum(len(cells) for cells in outcome.values())
    line = f"mosaic: cell {finished}/{total} ({name}) {headline}"
    if since and 0 < finished < total:
        left = (time.time() - since) / finished * (total - finished)
        line += f"; about {_duration(left)} left"
    return line


class SweepOutcome(Callback):
    """At the end of a multirun: write `failures.json` and the report, print a summary, exit 1 if a cell failed."""

    def __init__(self):
        self.started = 0.0

    def on_multirun_start(self, config, **kwargs) -> None:
        # Filesystem time, not this clock: job directories may be written by other nodes.
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        stamp = sweep_dir / STARTED_FILE
        stamp.touch()
        self.started = stamp.stat().st_mtime

    def on_multirun_end(self, config, **kwargs) -> None:
        # Hydra turns a callback's exception into a warning; a sweep must never end "green" by accident.
        try:
            self._summarise(Path(config.hydra.sweep.dir))
        except Exception as error:  # noqa: BLE001 - reported in one line, and the exit status says it
            print(f"mosaic: could not summarise the sweep: {type(error).__name__}: {first_line(error)}",
                  file=sys.stderr)
            raise SystemExit(1) from None

    def _summarise(self, sweep_dir: Path) -> None:
        outcome = sweep_outcome(sweep_dir, since=self.started)
        failures = sweep_dir / FAILURES_FILE
        if outcome["failed"]:
            write_json_atomic(failures, {"failed": outcome["failed"]})
        else:
            failures.unlink(missing_ok=True)
        print(f"mosaic: sweep {sweep_dir}: {len(outcome['done'])} done, "
              f"{len(outcome['not_applicable'])} skipped (not applicable), {len(outcome['failed'])} failed"
              + (f" (see {failures})" if outcome["failed"] else ""), file=sys.stderr)
        if outcome["done"]:
            _write_report(sweep_dir, [sweep_dir / name for name in outcome["done"]])
        if outcome["failed"]:
            raise SystemExit(1)


def _write_report(sweep_dir: Path, job_dirs: list[Path]) -> None:
    """The sweep's report.md and plots, so a grid ends with its table; a report problem never hides the sweep's."""
    from mosaic.report import write_report

    try:
        written = write_report(sweep_dir, job_dirs=job_dirs)
    except Exception as error:  # noqa: BLE001 - the cells' results are safe; the report can be rebuilt
        print(f"mosaic: the report could not be written ({first_line(error)}); "
              f"rerun `python -m mosaic report {sweep_dir}`", file=sys.stderr)
        return
    print(f"mosaic: report {written['markdown']}", file=sys.stderr)
