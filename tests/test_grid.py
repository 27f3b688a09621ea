"""Grids: a failing cell is recorded and reported, not fatal; a killed sweep resumes with only its missing cells."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from omegaconf import OmegaConf

from mosaic.config import CONF_DIR as CONF
from mosaic.record.files import slurm_info
from tests.conftest import REPO

# Four cheap cells: the tiny random GPT-2's hidden state, pooled four ways, the sklearn probe.
GRID = ["-m", "model=tiny_gpt2", "layer=1", "features=hidden", "pooling=mean,max,sum,last", "probe=sklearn",
        "dataset.limit=60", "logger=none"]


def _run_py(*args, **kwargs):
    return subprocess.Popen([sys.executable, "run.py", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def _finish(process):
    out, err = process.communicate(timeout=600)
    return process.returncode, out, err


def _results(sweep_dir):
    return {path.parent.name: json.loads(path.read_text()) for path in sweep_dir.glob("*/results.json")}


@pytest.mark.slow
def test_a_failing_cell_is_recorded_the_others_run_and_the_sweep_exits_1(tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("text,label\n" + "".join(f"document number {i},{'ab'[i % 2]}\n" for i in range(40)))
    # A cell left by an earlier grid in the same directory, and an old result in a cell that will now fail.
    for stale in ("7", "2"):
        (tmp_path / "sweep" / stale / "probe").mkdir(parents=True)
        (tmp_path / "sweep" / stale / "results.json").write_text('{"stale": true}')
    code, _, err = _finish(_run_py("-m", "model=tiny_gpt2", "layer=1", "features=hidden", "probe=sklearn",
                                   "dataset=csv", f"dataset.path={data}", "dataset.label_column=label,missing",
                                   "pooling=mean,last", "logger=none", f"hydra.sweep.dir={tmp_path / 'sweep'}"))
    assert code == 1
    assert set(_results(tmp_path / "sweep")) == {"0", "1", "7"}  # label_column=label with mean, last; the stale 7
    assert not (tmp_path / "sweep" / "2" / "probe").exists()
    failures = json.loads((tmp_path / "sweep" / "failures.json").read_text())["failed"]
    assert [f["job"] for f in failures] == ["2", "3"]
    assert all("dataset.label_column='missing' is not a column" in f["error"] for f in failures)
    assert {"dataset.label_column=missing", "pooling=mean"} <= set(failures[0]["overrides"])
    assert "2 done, 0 skipped (not applicable), 2 failed" in err
    # The report of what did finish is written anyway, with the failed cells missing.
    report = (tmp_path / "sweep" / "report.md").read_text().splitlines()
    assert [line.split(" | ")[0].strip("|* ") for line in report if "pooling.method=" in line] == [
        "pooling.method=last", "pooling.method=mean"]
    assert err.count("mosaic: cell 2 failed (") == 1


@pytest.mark.slow
def test_cells_without_meaning_are_skipped_not_failed(tmp_path):
    code, _, err = _finish(_run_py(*GRID[:4], "features=hidden,bow", "pooling=mean,last", *GRID[5:],
                                   f"hydra.sweep.dir={tmp_path}"))
    assert code == 0, err[-2000:]
    assert set(_results(tmp_path)) == {"0", "1", "2"}  # bow with last pooling has no meaning
    assert json.loads((tmp_path / "3" / "failure.json").read_text())["status"] == "not_applicable"
    assert not (tmp_path / "failures.json").exists()
    assert "3 done, 1 skipped (not applicable), 0 failed" in err


@pytest.mark.slow
def test_a_killed_sweep_resumes_with_only_its_missing_cells_and_ends_as_an_uninterrupted_one(tmp_path):
    killed = tmp_path / "killed"
    process = _run_py(*GRID, f"hydra.sweep.dir={killed}", start_new_session=True)
    deadline = time.monotonic() + 300
    while len(_results(killed)) < 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    before = {name: (killed / name / "results.json").stat().st_mtime_ns for name in _results(killed)}
    assert 2 <= len(before) < 4, "the sweep must be killed part-way"

    code, out, err = _finish(_run_py(*GRID, f"hydra.sweep.dir={killed}", "sweep.skip_done=true"))
    assert code == 0, err[-2000:]
    assert sorted(line.split()[1] for line in out.splitlines() if line.endswith("skipped")) == \
        sorted(str(killed / name) for name in before)
    assert {name: (killed / name / "results.json").stat().st_mtime_ns for name in before} == before

    uninterrupted = tmp_path / "uninterrupted"
    assert _finish(_run_py(*GRID, f"hydra.sweep.dir={uninterrupted}"))[0] == 0
    resumed, reference = _results(killed), _results(uninterrupted)
    assert {r["config_hash"]: r["metrics"] for r in resumed.values()} == \
        {r["config_hash"]: r["metrics"] for r in reference.values()}
    assert len(resumed) == 4


def test_a_done_cell_with_another_config_is_run_again(tmp_path):
    from mosaic.cluster.resume import finished_results
    from mosaic.record import config_hash

    inputs = {"code": 1}
    (tmp_path / "results.json").write_text(json.dumps({"config_hash": "0" * 64, "inputs": inputs}))
    assert finished_results(tmp_path, {"layer": 1}, inputs) is None
    (tmp_path / "results.json").write_text(json.dumps({"config_hash": config_hash({"layer": 1}), "inputs": inputs}))
    assert finished_results(tmp_path, {"layer": 1, "sweep": {"skip_done": True}}, inputs) is not None


def test_a_done_cell_whose_inputs_changed_is_run_again(tmp_path, monkeypatch):
    """Same config, but the dataset file edited in place, a local SAE rewritten or a new code version."""
    import mosaic.job.inputs
    from mosaic.cluster.resume import finished_results
    from mosaic.job.inputs import job_inputs
    from mosaic.pipeline import run
    from tests.conftest import compose_config, jumprelu_sae

    data = tmp_path / "data.csv"
    data.write_text("text,label\n" + "".join(f"text number {i},{'ab'[i % 2]}\n" for i in range(40)))
    sae = jumprelu_sae(tmp_path / "sae", d_in=32, layer=1)
    cfg = compose_config("model=tiny_gpt2", "layer=1", "logger=none", "probe=sklearn", "dataset=csv",
                         f"dataset.path={data}", "sae=local", f"sae.path={sae}")
    config = OmegaConf.to_container(cfg, resolve=True)
    run(cfg, tmp_path / "job")
    assert finished_results(tmp_path / "job", config, job_inputs(cfg)) is not None
    monkeypatch.setattr(mosaic.job.inputs, "CODE_VERSION", mosaic.job.inputs.CODE_VERSION + 1)
    assert finished_results(tmp_path / "job", config, job_inputs(cfg)) is None
    monkeypatch.undo()
    jumprelu_sae(sae, d_in=32, layer=1, seed=1)
    assert finished_results(tmp_path / "job", config, job_inputs(cfg)) is None
    run(cfg, tmp_path / "job")
    assert finished_results(tmp_path / "job", config, job_inputs(cfg)) is not None
    data.write_text(data.read_text().replace("text number 7", "text number 8"))
    assert finished_results(tmp_path / "job", config, job_inputs(cfg)) is None


def test_slurm_placement_is_recorded_from_slurms_environment(monkeypatch):
    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURMD_NODENAME", "SLURM_RESTART_COUNT"):
        monkeypatch.delenv(name, raising=False)
    assert slurm_info() is None
    monkeypatch.setenv("SLURM_JOB_ID", "41")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "40")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURMD_NODENAME", "gpu07")
    placement = {"job_id": "41", "array_job_id": "40", "array_task_id": "1", "node": "gpu07"}
    assert slurm_info() == {**placement, "restarts": 0}  # SLURM sets SLURM_RESTART_COUNT only once it requeues
    monkeypatch.setenv("SLURM_RESTART_COUNT", "2")
    assert slurm_info() == {**placement, "restarts": 2}


def test_site_settings_in_conf_local_apply_where_they_belong(tmp_path):
    import shutil

    from mosaic.config import compose

    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf, ignore=shutil.ignore_patterns("local"))

    def composed(*overrides):
        return compose(*overrides, config_dir=conf, with_hydra=True)

    assert composed("hydra/launcher=slurm").hydra.launcher.partition is None
    (conf / "local").mkdir()
    (conf / "local" / "site.yaml").write_text("# @package _global_\nbatch_size: 8\n")
    (conf / "local" / "slurm.yaml").write_text("partition: gpu-a100\naccount: my-lab\n")
    on_slurm = composed("hydra/launcher=slurm")
    assert (on_slurm.hydra.launcher.partition, on_slurm.hydra.launcher.account) == ("gpu-a100", "my-lab")
    assert on_slurm.batch_size == 8
    # Without the SLURM launcher its site keys stay out of the way (the basic launcher has no partition).
    plain = composed()
    assert plain.batch_size == 8 and "partition" not in plain.hydra.launcher


@pytest.mark.slow
def test_the_local_launcher_runs_each_cell_in_its_own_submitit_process(tmp_path):
    code, _, err = _finish(_run_py(*GRID[:4], "pooling=mean,max", *GRID[5:], "hydra/launcher=local",
                                   f"hydra.sweep.dir={tmp_path}"))
    assert code == 0, err[-2000:]
    cells = _results(tmp_path)
    assert set(cells) == {"0", "1"} and all(cell["run"]["slurm"] is None for cell in cells.values())
    # submitit's own record: one job folder (named by the process id) per cell, each with its result.
    finished = list((tmp_path / ".submitit").glob("*/*_result.pkl"))
    assert len(finished) == 2 and len({path.parent.name for path in finished}) == 2


def test_the_sweeper_composes_one_cell_before_launching_not_every_cell():
    """Hydra's basic sweeper composes all of a 1,000-cell grid before its first job; MOSAIC's composes one,
    and the sweep's config (`conf/config.yaml`) selects it."""
    from hydra import compose, initialize_config_dir

    from hydra_plugins.mosaic_sweeper.mosaic_sweeper import MosaicSweeper
    from mosaic.config import register_configs

    composed = []

    class CountingLoader:
        def load_sweep_config(self, master_config, sweep_overrides):
            composed.append(sweep_overrides)

    sweeper = MosaicSweeper(max_batch_size=None)
    sweeper.config, sweeper.hydra_context = OmegaConf.create({}), None
    sweeper.config_loader = CountingLoader()
    sweeper.validate_batch_is_legal([[f"seed={i}"] for i in range(1000)])
    assert composed == [["seed=0"]]
    register_configs()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", return_hydra_config=True)
    assert cfg.hydra.sweeper._target_ == "hydra_plugins.mosaic_sweeper.mosaic_sweeper.MosaicSweeper"
