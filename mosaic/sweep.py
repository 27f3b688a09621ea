"""A job's place in its Hydra multirun: what the sweep covers, which cells are done, which failed.

Hydra writes the sweep's composed config, with the command-line sweep overrides and any
`hydra.sweeper.params` of an experiment config, to `multirun.yaml` in the sweep directory before
launching jobs (locally and through submitit alike). Reading it back lets the job for `layer=5`
extract layers 12 and 19 in the same forward when the sweep is `layer=5,12,19`.

A cell that fails in a sweep writes `failure.json` in its job directory and returns, so the other
cells still run (on any launcher); `SweepOutcome`, a Hydra callback, then writes the sweep's
`failures.json` and makes the command exit non-zero. With `sweep.skip_done=true` a cell whose
`results.json` has the same config hash and the same inputs (file contents, code version) is not
run again: a killed sweep resumes where it stopped.
"""

from __future__ import annotations

import json
import shutil
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from mosaic.errors import MosaicError, NotApplicableError, first_line
from mosaic.record import FAILURE_FILE, PROBE_DIR, RESULTS_FILE, config_hash, write_json_atomic

FAILURES_FILE = "failures.json"


@dataclass(frozen=True)
class Sweep:
    """Values swept in the current multirun (empty outside one)."""

    layers: tuple[int, ...] = ()
    widths: tuple[str, ...] = ()
    features: tuple[str, ...] = ()


def _swept(overrides: list[str]) -> dict[str, list[str]]:
    """Key -> swept values, later overrides winning as in Hydra's basic sweeper (a plain value ends a sweep).

    Sweeps that need Hydra's config loader (`glob(...)`) or are not discrete (`interval(...)`) are
    left out: the sibling cache is an optimisation, never a reason for a job to fail.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    values: dict[str, list[str]] = {}
    for text in overrides:
        try:
            [override] = parser.parse_overrides([text])
            key = override.key_or_group.lstrip("+")
            values.pop(key, None)
            if override.is_sweep_override():
                values[key] = list(override.sweep_string_iterator())
        except Exception:  # noqa: BLE001 - any sweep Hydra alone can expand
            continue
    return values


def current_sweep() -> Sweep:
    """The sweep this Hydra job belongs to, read from the sweep directory's `multirun.yaml`."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return Sweep()
    saved = Path(HydraConfig.get().sweep.dir) / "multirun.yaml"
    if not saved.is_file():
        return Sweep()
    hydra_cfg = OmegaConf.load(saved).hydra
    params = hydra_cfg.sweeper.get("params") or {}
    values = _swept([*(f"{key}={value}" for key, value in params.items()), *hydra_cfg.overrides.task])
    return Sweep(
        layers=tuple(int(v) for v in values.get("layer", [])),
        widths=tuple(values.get("sae.width", [])),
        features=tuple(values.get("features", [])),
    )


def finished_results(job_dir: Path, config: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any] | None:
    """The job's earlier `results.json` if this very config produced it from these very inputs, else None.

    `inputs` is `mosaic.inputs.job_inputs` now: the files the job reads and the code version. A
    dataset edited in place, a rewritten local SAE or a new MOSAIC that changes numbers reruns the cell.
    """
    path = job_dir / RESULTS_FILE
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    same = results.get("config_hash") == config_hash(config) and results.get("inputs") == inputs
    return results if same else None


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
    write_json_atomic(job_dir / FAILURE_FILE, record)
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


class SweepOutcome(Callback):
    """At the end of a multirun: write `failures.json` and the report, print a summary, exit 1 if a cell failed."""

    def __init__(self):
        self.started = 0.0

    def on_multirun_start(self, config, **kwargs) -> None:
        # Filesystem time, not this clock: job directories may be written by other nodes.
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        stamp = sweep_dir / ".sweep_started"
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
