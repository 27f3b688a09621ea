"""MOSAIC's Hydra application: compose the config (`mosaic/conf`), validate it, run one job of the pipeline.

`python run.py` in the repository and `mosaic-run` once installed both call `entry`: the default
job, or with `-m` a grid. Heavy libraries are imported only after validation so that `--help`,
`--cfg job` and bad values are fast.
"""

import os
import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from mosaic.config import CONF_DIR, check_group_overrides, check_value_overrides, register_configs, validate
from mosaic.infra.errors import MosaicError, Stopped
from mosaic.infra.timing import quiet_progress_off_terminal

# Hydra composes every job's config against MOSAIC's schema (`mosaic_schema` in conf/config.yaml).
register_configs()
quiet_progress_off_terminal()


def _exit_with(error: MosaicError) -> None:
    print(f"mosaic: error: {error}", file=sys.stderr)
    raise SystemExit(2)


def _run_job(cfg: DictConfig, job_dir: Path) -> float:
    validate(cfg)
    from filelock import FileLock

    from mosaic.cluster.resume import finished_results
    from mosaic.cluster.siblings import current_sweep
    from mosaic.infra.cache import cache_root
    from mosaic.infra.disk import check_cache_directory
    from mosaic.job.inputs import job_inputs
    from mosaic.pipeline import run
    from mosaic.record import CELL_LOCK

    # Before skip_done's fingerprints, which would create a missing cache on this node's own disk.
    check_cache_directory(cache_root(), explicit="MOSAIC_CACHE" in os.environ)

    # A cell launched twice at once (a sweep relaunched while the first launch's jobs still run) runs once:
    # the second waits for the first, then finds its results.
    job_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(job_dir / CELL_LOCK)):
        if cfg.sweep.skip_done and (done := finished_results(job_dir, OmegaConf.to_container(cfg, resolve=True),
                                                             job_inputs(cfg))):
            print(f"mosaic: {job_dir} is done (same config and inputs): skipped")
            return done["metrics"]["macro_f1"]
        return run(cfg, job_dir, current_sweep())["metrics"]["macro_f1"]


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    job_dir = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.mode != RunMode.MULTIRUN:
        try:
            return _run_job(cfg, job_dir)
        except MosaicError as error:
            _exit_with(error)
    # In a grid a failing cell is recorded and the others still run; SweepOutcome reports it at the end.
    from mosaic.cluster.outcome import clear_failure, record_failure
    from mosaic.record import job_labels

    name = job_dir.name
    try:
        name = job_labels(OmegaConf.to_container(cfg, resolve=True), job_dir).name
        score = _run_job(cfg, job_dir)
    except Exception as error:  # noqa: BLE001 - any cell's failure is recorded, never fatal to the grid
        record = record_failure(job_dir, list(hydra_cfg.overrides.task), error)
        _progress(job_dir, name, "skipped (not applicable)" if record["status"] == "not_applicable" else "failed")
        return None
    clear_failure(job_dir)
    _progress(job_dir, name, f"macro F1 {score:.3f}")
    return score


def _progress(job_dir: Path, name: str, headline: str) -> None:
    """The cell's progress line; counting the sweep's cells never fails a cell."""
    from mosaic.cluster.outcome import progress_line

    try:
        print(progress_line(job_dir, name, headline), file=sys.stderr)
    except Exception:  # noqa: BLE001 - e.g. a sibling's directory removed while counting
        print(f"mosaic: cell {name} {headline}", file=sys.stderr)


def _raise_stopped(signum: int, frame) -> None:
    raise Stopped(signum)


def entry() -> None:
    """`python run.py ...` / `mosaic-run ...`: command-line keys and values checked in one line each, then Hydra.

    SIGINT (^C) or SIGTERM ends the run with one line and exit status 128 + the signal's number, after
    every `finally` on the way out has run: no half-written cache entry or results file is left, and the
    same command continues from what was finished. (A cell SLURM runs is handled by submitit instead:
    it is requeued, see the cluster page.)
    """
    try:
        check_group_overrides(sys.argv[1:], CONF_DIR)
        check_value_overrides(sys.argv[1:], CONF_DIR)
    except MosaicError as error:
        _exit_with(error)
    signal.signal(signal.SIGTERM, _raise_stopped)
    try:
        main()
    except (KeyboardInterrupt, Stopped) as stopped:
        number = stopped.args[0] if isinstance(stopped, Stopped) else signal.SIGINT
        print(f"mosaic: stopped by {signal.Signals(number).name}: finished cells and cache entries are kept, "
              "none half-written; run the same command again to continue (in a grid, with sweep.skip_done=true)",
              file=sys.stderr)
        raise SystemExit(128 + number) from None


if __name__ == "__main__":
    entry()
