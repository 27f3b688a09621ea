"""The on-disk cache (`cache.py`): built once, atomic, locked across processes, never half-written."""

import os
import signal
import subprocess
import sys
import time

import pytest

from mosaic.infra.cache import cache_root, cached_directory


def test_cache_builds_once_then_hits(tmp_path, monkeypatch):
    monkeypatch.setenv("MOSAIC_CACHE", str(tmp_path))
    builds = []

    def build(directory):
        builds.append(directory)
        (directory / "payload.txt").write_text("data")

    first, hit_first = cached_directory("things", {"a": 1}, build)
    second, hit_second = cached_directory("things", {"a": 1}, build)
    other, _ = cached_directory("things", {"a": 2}, build)
    assert (hit_first, hit_second) == (False, True)
    assert first == second != other and len(builds) == 2
    assert (first / "payload.txt").read_text() == "data"
    assert first.parent == cache_root() / "things"


def test_a_failed_build_leaves_nothing_and_a_partial_entry_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("MOSAIC_CACHE", str(tmp_path))

    def failing(directory):
        (directory / "half.txt").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        cached_directory("things", {"a": 1}, failing)
    assert [p for p in (tmp_path / "things").iterdir() if not p.name.endswith(".lock")] == []

    entry, _ = cached_directory("things", {"a": 1}, lambda d: (d / "ok.txt").write_text("ok"))
    (entry / "manifest.json").unlink()  # an entry without its manifest is never trusted
    rebuilt, hit = cached_directory("things", {"a": 1}, lambda d: (d / "new.txt").write_text("new"))
    assert not hit and rebuilt == entry and (rebuilt / "new.txt").exists() and not (rebuilt / "ok.txt").exists()


BUILDER = """
import sys, time
from pathlib import Path
from mosaic.infra.cache import cached_directory

log = Path(sys.argv[1])

def build(directory):
    with log.open("a") as stream:
        stream.write("build\\n")
    (directory / "payload.txt").write_text("data")
    time.sleep(float(sys.argv[2]))

entry, hit = cached_directory("things", {"a": 1}, build)
print(entry, hit)
"""


def _builder(tmp_path, log, seconds):
    env = {**os.environ, "MOSAIC_CACHE": str(tmp_path / "cache")}
    return subprocess.Popen([sys.executable, "-c", BUILDER, str(log), str(seconds)], env=env,
                            stdout=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_two_processes_wanting_one_entry_build_it_once(tmp_path):
    log = tmp_path / "builds.log"
    first, second = _builder(tmp_path, log, 2), _builder(tmp_path, log, 2)
    outputs = [process.communicate(timeout=120)[0].split() for process in (first, second)]
    assert log.read_text().count("build") == 1
    assert outputs[0][0] == outputs[1][0]
    assert sorted(hit for _, hit in outputs) == ["False", "True"]


@pytest.mark.slow
def test_a_writer_killed_mid_build_leaves_no_entry_and_the_next_job_rebuilds(tmp_path, monkeypatch):
    log = tmp_path / "builds.log"
    writer = _builder(tmp_path, log, 60)
    deadline = time.time() + 60
    while not (log.exists() and list((tmp_path / "cache" / "things").glob(".*-*/payload.txt"))):
        assert time.time() < deadline, "the writer never started building"
        time.sleep(0.1)
    writer.send_signal(signal.SIGKILL)
    writer.wait()

    monkeypatch.setenv("MOSAIC_CACHE", str(tmp_path / "cache"))
    entry, hit = cached_directory("things", {"a": 1}, lambda d: (d / "payload.txt").write_text("again"))
    assert not hit and (entry / "payload.txt").read_text() == "again"
    leftovers = [p.name for p in entry.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


MULTI_BUILDER = """
import sys, time
from pathlib import Path
from mosaic.infra.cache import cached_directories

log, names = Path(sys.argv[1]), sys.argv[2].split(",")

def build(directories):
    for key, directory in sorted(directories.items()):
        with log.open("a") as stream:
            stream.write(f"{key}\\n")
        (directory / "payload.txt").write_text(key)
    time.sleep(1.5)

results = cached_directories("things", [{"name": n} for n in names], build)
print(" ".join(str(hit) for _, hit in results))
"""


@pytest.mark.slow
def test_overlapping_multi_entry_builds_never_build_an_entry_twice(tmp_path):
    log = tmp_path / "builds.log"
    env = {**os.environ, "MOSAIC_CACHE": str(tmp_path / "cache")}
    processes = [
        subprocess.Popen([sys.executable, "-c", MULTI_BUILDER, str(log), names], env=env, stdout=subprocess.PIPE,
                         text=True)
        for names in ("a,b,c", "c,b,d", "d,a")
    ]
    for process in processes:
        process.communicate(timeout=120)
        assert process.returncode == 0
    built = log.read_text().split()
    assert sorted(built) == sorted(set(built)) and len(built) == 4
    assert sorted(p.name for p in (tmp_path / "cache" / "things").iterdir() if not p.name.endswith(".lock")) == \
        sorted(set(built))


def test_saved_build_states_are_kept_newest_first_cleared_by_their_entry_and_listed_until_removed(
        tmp_path, monkeypatch, capsys):
    from mosaic.__main__ import main as mosaic_cli
    from mosaic.infra.cache import Checkpoints, content_key, saved_states

    monkeypatch.setenv("MOSAIC_CACHE", str(tmp_path / "cache"))
    states = Checkpoints("things", content_key({"a": 1}))
    for step in (3, 7):
        states.save(step, lambda directory, step=step: (directory / "state.txt").write_text(f"after {step}"))
    assert (states.latest() / "state.txt").read_text() == "after 7"
    assert [p.name for p in states.directory.iterdir()] == ["step-000000000007"]  # the newest only
    # A resumed build's first save repeats the step it loaded: the saved state is kept, not rewritten.
    states.save(7, lambda directory: pytest.fail("step 7 written again"))

    abandoned = Checkpoints("things", content_key({"a": 2}))
    abandoned.save(1, lambda directory: (directory / "state.txt").write_text("never finished"))
    cached_directory("things", {"a": 1}, lambda directory: (directory / "x").write_text("done"))
    assert states.latest() is None and saved_states() == [abandoned.directory]  # its entry cleared it

    assert mosaic_cli(["cache", "list"]) == 0
    assert "1 saved build states" in capsys.readouterr().out
    assert mosaic_cli(["cache", "remove", "--all"]) == 0
    assert saved_states() == []
