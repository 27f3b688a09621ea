"""Grids through a real single-node SLURM cluster (`scripts/slurm-local.sh`), via hydra-submitit-launcher.

These need a cluster. One that already answers `srun true` is used as it is. Otherwise, with
`MOSAIC_START_SLURM=1` (set by `.ci/run`), the script installs and starts one as root and the
tests stop it afterwards; where that cannot happen (not asked, not root, no apt-get) they are
skipped with the reason, and where it can, a failure to start fails them.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

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


def _sweep(sweep_dir, cache_dir, *overrides):
    env = {**os.environ, "MOSAIC_CACHE": str(cache_dir)}
    return subprocess.run([sys.executable, "run.py", "-m", *ON_LOCAL_SLURM, *TINY, *overrides,
                           f"hydra.sweep.dir={sweep_dir}"], cwd=REPO, env=env, capture_output=True, text=True,
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
