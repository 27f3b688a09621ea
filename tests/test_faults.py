"""What a cluster or a laptop does to a long job: signals, a full or read-only disk, a killed sweep launcher.

Each test creates the fault for real where this machine can (signals, a size-limited tmpfs, a read-only
mount, `kill -9`) and checks what the docs' fault table promises: one line, a non-zero exit, nothing
half-written that a later run would read, and a rerun that continues from what was finished.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mosaic.infra.cache import cached_directory, incomplete_dirs, list_entries
from mosaic.infra.errors import DiskFull, MosaicError
from tests.conftest import REPO, assert_each_entry_built_once, compose_config, in_cache

TINY = ["model=tiny_gpt2", "layer=1", "probe=sklearn", "dataset.limit=60", "logger=none"]
# About 8 s of SAE training on an idle machine (many times that on a busy one), saving its state every 0.6 s.
LONG_SAE = ["features=sae", "sae.train_docs=200", "sae.train_tokens=1000000", "sae.train_batch_tokens=256",
            "sweep.checkpoint_minutes=0.01"]


def _job(cache: Path, *overrides: str, multirun: bool = False, output=subprocess.PIPE) -> subprocess.Popen:
    """run.py on TINY (an override of one of TINY's keys replaces it), its output to `output`."""
    keys = {override.split("=")[0] for override in overrides}
    tiny = [setting for setting in TINY if setting.split("=")[0] not in keys]
    env = {**os.environ, "MOSAIC_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    # SIGINT as a terminal's job has it: a test run from a background script inherits it ignored.
    return subprocess.Popen([sys.executable, "run.py", *(["-m"] if multirun else []), *tiny, *overrides], cwd=REPO,
                            env=env, stdout=output, stderr=output, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {seconds} s"
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_training_ends_the_job_in_one_line_and_the_rerun_continues_from_its_checkpoint(tmp_path, stop):
    cache, run_dir = tmp_path / "cache", tmp_path / "run"
    job = _job(cache, *LONG_SAE, f"hydra.run.dir={run_dir}")
    _wait_for(lambda: list(cache.glob("checkpoints/saes/*/step-*")), 600, "a training checkpoint")
    job.send_signal(stop)
    _, stderr = job.communicate(timeout=300)

    assert job.returncode == 128 + stop
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith(f"mosaic: stopped by {stop.name}: finished cells and cache")
    assert not (run_dir / "results.json").exists()
    assert in_cache(cache, incomplete_dirs) == [] and in_cache(cache, list_entries, "saes") == []
    assert list(cache.glob("saes/.*")) == []  # the entry's temporary directory went with the job

    rerun = _job(cache, *LONG_SAE, f"hydra.run.dir={run_dir}")
    _, stderr = rerun.communicate(timeout=900)
    assert rerun.returncode == 0, stderr[-2000:]
    [training] = cache.glob("saes/*/training.json")
    assert json.loads(training.read_text())["resumed_from_step"] > 0
    assert json.loads((run_dir / "results.json").read_text())["metrics"]["macro_f1"] > 0


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MB tmpfs at tmp_path/small, unmounted afterwards; skipped where this machine cannot mount one."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs here ({mounted.stderr.strip() or 'mount failed'}); "
                    "test_an_injected_enospc_... covers the same path")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


@pytest.mark.slow
def test_a_full_disk_during_a_job_ends_it_in_one_line_and_leaves_no_entry(tmp_path, small_disk):
    # 32 x 8192 latents: the SAE's weights alone are 2 MB, twice the disk.
    job = _job(small_disk, "features=sae", "sae.expansion=256", "sae.train_docs=100", "sae.train_epochs=1",
               f"hydra.run.dir={tmp_path / 'run'}")
    _, stderr = job.communicate(timeout=300)

    assert job.returncode == 2 and "Traceback" not in stderr
    [line] = [line for line in stderr.splitlines() if line.startswith("mosaic: error:")]
    assert f"no space left on the disk holding {small_disk}/" in line and "free now" in line
    assert in_cache(small_disk, incomplete_dirs) == [] and in_cache(small_disk, list_entries, "saes") == []
    assert not (tmp_path / "run" / "results.json").exists()

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    again = _job(small_disk, "features=sae", "sae.expansion=256", "sae.train_docs=100", "sae.train_epochs=1",
                 f"hydra.run.dir={tmp_path / 'run'}")
    _, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stderr[-2000:]
    assert len(in_cache(small_disk, list_entries, "saes")) == 1


def test_an_injected_enospc_mid_entry_names_the_directory_and_what_was_written(tmp_path, monkeypatch):
    monkeypatch.setenv("MOSAIC_CACHE", str(tmp_path / "cache"))

    def fills_the_disk(directory):
        (directory / "part.bin").write_bytes(b"x" * 300_000)
        raise OSError(28, "No space left on device")

    said = rf"no space left on the disk holding {tmp_path / 'cache' / 'things'}: the write needed more than .* "
    with pytest.raises(DiskFull, match=said + r"\(293\.0 KB written before it stopped, .* free now\)"):
        cached_directory("things", {"a": 1}, fills_the_disk)
    assert incomplete_dirs() == [] and list_entries() == []
    entry, hit = cached_directory("things", {"a": 1}, lambda directory: (directory / "part.bin").write_bytes(b"y"))
    assert not hit and (entry / "part.bin").read_bytes() == b"y"


def test_only_a_full_disk_or_quota_where_the_cache_writes_is_called_one(tmp_path):
    import errno

    from mosaic.infra.disk import disk_full

    cache = tmp_path / "cache"
    cache.mkdir()
    elsewhere = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "hub" / "model.safetensors"))
    assert disk_full(elsewhere, cache, []) is None  # the hub cache's disk, not MOSAIC_CACHE's
    assert disk_full(RuntimeError("CUDA out of memory"), cache, []) is None
    assert disk_full(OSError(errno.EACCES, "Permission denied", str(cache / "x")), cache, []) is None
    here = OSError(errno.ENOSPC, "No space left on device", str(cache / ".key-1" / "part.bin"))
    assert str(disk_full(here, cache, [])).startswith(f"no space left on the disk holding {cache}: ")
    quota = OSError(errno.EDQUOT, "Disk quota exceeded", str(cache / "part.bin"))
    assert str(disk_full(quota, cache, [])).startswith(f"disk quota exceeded writing to {cache} (0 B written")
    safetensors_says = Exception("Error while serializing: I/O error: No space left on device (os error 28)")
    assert disk_full(safetensors_says, cache, []) is not None


def test_a_missing_or_read_only_cache_is_refused_before_any_model_loads(tmp_path, monkeypatch):
    import mosaic.activations
    import mosaic.activations.models
    import mosaic.activations.store
    from mosaic.app import _run_job
    from mosaic.pipeline import run

    for module in (mosaic.activations, mosaic.activations.models, mosaic.activations.store):
        monkeypatch.setattr(module, "load_model", lambda *a, **k: pytest.fail("a model loaded"))
    cfg = compose_config(*TINY)
    monkeypatch.setenv("MOSAIC_CACHE", str(tmp_path / "unmounted" / "mosaic"))
    with pytest.raises(MosaicError, match=r"does not exist, nor does .*unmounted: is the disk that holds it mounted"):
        run(cfg, tmp_path / "job", None)
    # A resumed grid's cell is refused before skip_done fingerprints its local files (memoised in the cache).
    data = tmp_path / "data.csv"
    data.write_text("text,label\n" + "".join(f"document number {i},{'ab'[i % 2]}\n" for i in range(40)))
    with pytest.raises(MosaicError, match=r"does not exist, nor does .*unmounted"):
        _run_job(compose_config(*TINY, "dataset=csv", f"dataset.path={data}", "sweep.skip_done=true"), tmp_path / "job")
    assert not (tmp_path / "unmounted").exists()

    read_only = tmp_path / "read_only"
    read_only.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(read_only)], capture_output=True)
    if mounted.returncode != 0:
        if os.geteuid() == 0:
            pytest.skip("root writes through permissions and cannot mount a read-only tmpfs here")
        read_only.chmod(0o555)
    try:
        monkeypatch.setenv("MOSAIC_CACHE", str(read_only))
        with pytest.raises(MosaicError, match=rf"the cache directory {read_only} is not writable"):
            run(cfg, tmp_path / "job", None)
    finally:
        subprocess.run(["umount", "-l", str(read_only)], capture_output=True)


@pytest.mark.slow
def test_a_sweep_whose_launcher_is_killed_resumes_with_skip_done_without_rerunning_a_finished_cell(tmp_path):
    cache, sweep = tmp_path / "cache", tmp_path / "sweep"
    grid = ["features=hidden", "pooling=mean,max", "seed=range(5)", f"hydra.sweep.dir={sweep}"]
    launcher = _job(cache, *grid, multirun=True)
    _wait_for(lambda: len(list(sweep.glob("*/results.json"))) >= 2, 300, "two finished cells")
    launcher.send_signal(signal.SIGKILL)
    launcher.communicate(timeout=60)
    finished = {path: path.read_bytes() for path in sweep.glob("*/results.json")}
    assert 2 <= len(finished) < 10

    rerun = _job(cache, *grid, "sweep.skip_done=true", multirun=True)
    stdout, stderr = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, stderr[-2000:]
    assert len(list(sweep.glob("*/results.json"))) == 10  # no cell lost
    assert all(path.read_bytes() == content for path, content in finished.items())  # none rerun
    assert stdout.count("is done (same config and inputs): skipped") == len(finished)
    assert "10 done, 0 skipped (not applicable), 0 failed" in stderr


def _cells(sweep: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(sweep.glob("*/results.json"))]


# Two layers x two poolings x 25 seeds: 100 cells sharing two activation entries.
HUNDRED_CELLS = ["features=hidden", "layer=0,1", "pooling=mean,max", "seed=range(25)"]


@pytest.mark.slow
def test_two_sweeps_started_together_on_one_cache_build_each_entry_once(tmp_path):
    cache = tmp_path / "cache"
    # Output to files, not pipes: a full pipe would stall one sweep while the test waits on the other.
    logs = {name: (tmp_path / f"{name}.log").open("w") for name in "ab"}
    sweeps = {name: _job(cache, *HUNDRED_CELLS, f"hydra.sweep.dir={tmp_path / name}", multirun=True, output=log)
              for name, log in logs.items()}
    for name, sweep in sweeps.items():
        sweep.wait(timeout=900)
        logs[name].close()
        output = (tmp_path / f"{name}.log").read_text()
        assert sweep.returncode == 0, output[-2000:]
        assert "100 done, 0 skipped (not applicable), 0 failed" in output

    cells = _cells(tmp_path / "a") + _cells(tmp_path / "b")
    assert len(cells) == 200
    assert_each_entry_built_once(cells, cache)


def test_a_cell_whose_failure_cannot_be_written_on_a_full_disk_is_still_counted_and_the_grid_goes_on(
        tmp_path, monkeypatch, capsys):
    import mosaic.cluster.outcome as outcome

    def full(path, payload):
        raise DiskFull(f"no space left on the disk holding {path.parent}: ...")

    monkeypatch.setattr(outcome, "write_json_atomic", full)
    (tmp_path / "3").mkdir()
    record = outcome.record_failure(tmp_path / "3", ["seed=3"], DiskFull("no space left on the disk holding X"))
    assert record["status"] == "failed"
    err = capsys.readouterr().err.splitlines()
    assert err == [f"mosaic: {tmp_path / '3' / 'failure.json'} not written: no space left on the disk holding "
                   f"{tmp_path / '3'}: ...",
                   "mosaic: cell 3 failed (seed=3): no space left on the disk holding X"]
