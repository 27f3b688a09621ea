"""Grids through a real single-node SLURM cluster (`scripts/slurm-local.sh`), via hydra-submitit-launcher.

These need a cluster. One that already answers `srun true` is used as it is. Otherwise, with
`MOSAIC_START_SLURM=1` (set by `.ci/run`), the script installs and starts one as root and the
tests stop it afterwards; where that cannot happen (not asked, not root, no apt-get) they are
skipped with the reason, and where it can, a failure to start fails them.
"""

import getpass
import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, assert_each_entry_built_once

pytestmark = pytest.mark.slurm

SCRIPT = REPO / "scripts" / "slurm-local.sh"
# One CPU, a little memory and no GPU per cell, so the two-core test node runs two cells at once.
ON_LOCAL_SLURM = ["hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.gpus_per_node=0",
                  "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=3", "hydra.launcher.timeout_min=15"]
TINY = ["model=tiny_gpt2", "layer=1", "probe=sklearn", "dataset.limit=60", "logger=none"]


@pytest.fixture(scope="module")
def slurm_cluster():
    """A running cluster: one that already answers `srun true`, or one the script starts (and stops)."""
    if subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True).returncode == 0:
        yield
        return
    if os.environ.get("MOSAIC_START_SLURM") != "1":
        pytest.skip("no SLURM cluster answers `srun true`; MOSAIC_START_SLURM=1 lets the tests start one "
                    "(scripts/slurm-local.sh, root and apt-get)")
    if os.geteuid() != 0:
        pytest.skip("starting a local SLURM cluster needs root (scripts/slurm-local.sh start)")
    if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
        pytest.skip("installing SLURM needs apt-get (Debian/Ubuntu)")
    started = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=600)
    assert started.returncode == 0, started.stderr
    yield
    subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, timeout=120)


def _sweep_command(sweep_dir, *overrides):
    """run.py -m on the local SLURM; an override of a key of ON_LOCAL_SLURM or TINY replaces it."""
    keys = {override.split("=")[0] for override in overrides}
    defaults = [setting for setting in ON_LOCAL_SLURM + TINY if setting.split("=")[0] not in keys]
    return [sys.executable, "run.py", "-m", *defaults, *overrides, f"hydra.sweep.dir={sweep_dir}"]


def _sweep(sweep_dir, cache_dir, *overrides):
    env = {**os.environ, "MOSAIC_CACHE": str(cache_dir)}
    return subprocess.run(_sweep_command(sweep_dir, *overrides), cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900)


def _results(sweep_dir):
    return [json.loads(path.read_text()) for path in sorted(sweep_dir.glob("*/results.json"))]


def test_a_four_cell_grid_runs_as_four_slurm_jobs_sharing_one_cache(slurm_cluster, tmp_path):
    from mosaic.__main__ import main as mosaic_cli
    from mosaic.infra.cache import incomplete_dirs, list_entries, verify_entry
    from mosaic.report import write_report

    result = _sweep(tmp_path / "sweep", tmp_path / "cache", "features=sae", "pooling=mean,max,sum,topn",
                    "sae.train_docs=200", "sae.train_epochs=1")
    assert result.returncode == 0, result.stderr[-3000:]
    cells = _results(tmp_path / "sweep")
    assert len(cells) == 4
    placements = [cell["run"]["slurm"] for cell in cells]
    assert len({p["job_id"] for p in placements}) == 4
    assert len({p["array_job_id"] for p in placements}) == 1
    assert sorted(p["array_task_id"] for p in placements) == ["0", "1", "2", "3"]
    assert all(p["node"] for p in placements)
    # Concurrent cells wanted the same SAE and activations: each was built once, intact.
    os.environ["MOSAIC_CACHE"], saved = str(tmp_path / "cache"), os.environ["MOSAIC_CACHE"]
    try:
        saes, activations = list_entries("saes"), list_entries("activations")
        assert len(saes) == 1 and len(activations) == 1
        assert all(verify_entry(entry) == [] for entry in saes + activations) and incomplete_dirs() == []
        assert len({cell["cache"]["key"] for cell in cells}) == 1
        assert mosaic_cli(["cache", "verify"]) == 0
    finally:
        os.environ["MOSAIC_CACHE"] = saved
    written = write_report(tmp_path / "sweep")
    rows = [line for line in written["markdown"].read_text().splitlines() if "pooling.method=" in line]
    assert len(rows) == 4  # one row per pooling: the four cells are four configurations


def test_a_cell_that_raises_fails_its_slurm_job_and_the_sweep_reports_it(slurm_cluster, tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("text,label\n" + "".join(f"document number {i},{'ab'[i % 2]}\n" for i in range(40)))
    result = _sweep(tmp_path / "sweep", tmp_path / "cache", "features=hidden", "dataset=csv",
                    f"dataset.path={data}", "dataset.label_column=label,missing")
    assert result.returncode == 1
    cells = _results(tmp_path / "sweep")
    assert len(cells) == 1 and cells[0]["run"]["slurm"]["job_id"]
    [failure] = json.loads((tmp_path / "sweep" / "failures.json").read_text())["failed"]
    assert "dataset.label_column=missing" in failure["overrides"]
    assert "dataset.label_column='missing' is not a column" in failure["error"]
    assert "1 done, 0 skipped (not applicable), 1 failed" in result.stderr


def _release_requeued_jobs() -> None:
    """SLURM holds a requeued job for two minutes before it may start again; the tests let it start at once."""
    held = subprocess.run(["squeue", "-h", "-t", "PD", "-o", "%i %r"], capture_output=True, text=True).stdout
    for line in held.splitlines():
        job, reason = line.split(maxsplit=1)
        if reason.strip() == "BeginTime":
            subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], capture_output=True)


def test_a_cell_several_times_its_time_limit_finishes_after_requeues_with_the_uninterrupted_metrics(
        slurm_cluster, tmp_path):
    # SLURM checks limits every 30 s and may signal up to a minute early: under a two-minute limit signalled
    # 30 s before it, the signal comes 30 to 90 s in, never before submitit's handler is installed (under a
    # one-minute limit it could come during start-up and kill the job). 16M tokens train in about two minutes
    # on an idle machine, longer than an attempt; MOSAIC_SLURM_TRAIN_TOKENS=24000000 makes it three.
    tokens = os.environ.get("MOSAIC_SLURM_TRAIN_TOKENS", "16000000")
    long_training = ["features=sae", "sae.train_docs=200", f"sae.train_tokens={tokens}", "sae.train_batch_tokens=256",
                     "sweep.checkpoint_minutes=0.05"]
    limits = ["hydra.launcher.timeout_min=2", "hydra.launcher.signal_delay_s=30", "hydra.launcher.max_num_timeout=60"]
    env = {**os.environ, "MOSAIC_CACHE": str(tmp_path / "cache")}
    launcher = subprocess.Popen(_sweep_command(tmp_path / "sweep", *long_training, *limits), cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 3000
        while launcher.poll() is None and time.monotonic() < deadline:
            _release_requeued_jobs()
            time.sleep(2)
    finally:  # a launcher still waiting at the deadline, and its job, would hold the node for later tests
        if launcher.poll() is None:
            launcher.kill()
            subprocess.run(["scancel", "--user", getpass.getuser()], capture_output=True)
    output = launcher.communicate(timeout=60)[0]
    assert launcher.returncode == 0, output[-3000:]
    [cell] = _results(tmp_path / "sweep")
    assert cell["run"]["slurm"]["restarts"] >= 1
    [sae] = list((tmp_path / "cache" / "saes").glob("*/training.json"))
    assert json.loads(sae.read_text())["resumed_from_step"] > 0  # the last attempt continued a checkpoint
    assert list((tmp_path / "cache" / "checkpoints" / "saes").iterdir()) == []

    command = [sys.executable, "run.py", *TINY, *long_training, f"hydra.run.dir={tmp_path / 'run'}"]
    env = {**os.environ, "MOSAIC_CACHE": str(tmp_path / "reference")}
    uninterrupted = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]
    reference = json.loads((tmp_path / "run" / "results.json").read_text())
    # The same SAE, bit for bit (SAELens writes cfg.json's keys in no fixed order: compared as data).
    weights = "sae_weights.safetensors"
    assert cell["features"]["sae"]["sha256"][weights] == reference["features"]["sae"]["sha256"][weights]
    [requeued_cfg, reference_cfg] = [json.loads(next((tmp_path / cache).glob("saes/*/cfg.json")).read_text())
                                     for cache in ("cache", "reference")]
    assert requeued_cfg == reference_cfg
    assert cell["metrics"] == reference["metrics"]


def _wait_until_slurm_is_idle(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout.strip():
        assert time.monotonic() < deadline, "SLURM jobs still queued or running"
        time.sleep(2)


def test_a_slurm_sweep_whose_launcher_is_killed_resumes_with_skip_done_without_rerunning_a_cell(
        slurm_cluster, tmp_path):
    grid = ["features=hidden", "pooling=mean,max", "seed=range(3)"]
    env = {**os.environ, "MOSAIC_CACHE": str(tmp_path / "cache")}
    launcher = subprocess.Popen(_sweep_command(tmp_path / "sweep", *grid), cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while not list((tmp_path / "sweep").glob("*/results.json")):
        assert time.monotonic() < deadline, "no cell finished"
        time.sleep(1)
    launcher.kill()
    launcher.wait()
    finished = {path: path.read_bytes() for path in (tmp_path / "sweep").glob("*/results.json")}
    assert 1 <= len(finished) < 6

    # The killed launcher's jobs run on; the rerun's twins of those still running wait for them.
    rerun = _sweep(tmp_path / "sweep", tmp_path / "cache", *grid, "sweep.skip_done=true")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    _wait_until_slurm_is_idle(600)
    cells = {path: path.read_bytes() for path in (tmp_path / "sweep").glob("*/results.json")}
    assert len(cells) == 6  # no cell lost
    assert all(cells[path] == content for path, content in finished.items())  # none rerun
    # Each cell ran in exactly one SLURM job (the one whose log ends in its summary table); a twin of a cell
    # still running at the kill waited for it, then found it done.
    logs = [path.read_text() for path in (tmp_path / "sweep" / ".submitit").glob("*/*_log.out")]
    assert sum(len(re.findall(r"^macro F1 +test ", log, re.MULTILINE)) for log in logs) == 6


# Two layers x two poolings x SEEDS seeds per sweep; MOSAIC_SLURM_LOAD_SEEDS=25 makes each sweep 100 cells.
SEEDS = int(os.environ.get("MOSAIC_SLURM_LOAD_SEEDS", "1"))


def test_two_slurm_sweeps_started_together_on_one_cache_build_each_entry_once(slurm_cluster, tmp_path):
    grid = ["features=hidden", "layer=0,1", "pooling=mean,max", f"seed=range({SEEDS})"]
    env = {**os.environ, "MOSAIC_CACHE": str(tmp_path / "cache")}
    logs = {name: (tmp_path / f"{name}.log").open("w") for name in "ab"}
    sweeps = {name: subprocess.Popen(_sweep_command(tmp_path / name, *grid), cwd=REPO, env=env, stdout=log,
                                     stderr=log) for name, log in logs.items()}
    for name, sweep in sweeps.items():
        sweep.wait(timeout=3600)
        logs[name].close()
        output = (tmp_path / f"{name}.log").read_text()
        assert sweep.returncode == 0, output[-3000:]
        assert f"{4 * SEEDS} done, 0 skipped (not applicable), 0 failed" in output

    cells = _results(tmp_path / "a") + _results(tmp_path / "b")
    assert len(cells) == 8 * SEEDS
    assert_each_entry_built_once(cells, tmp_path / "cache")
