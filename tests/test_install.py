"""MOSAIC installed as a package (`pip install .`, not editable): its commands and config tree come with it."""

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_an_installed_mosaic_composes_runs_its_checks_and_lists_its_commands_away_from_the_repository(tmp_path):
    # A copy of the project, so that building it leaves nothing in the repository.
    source, site = tmp_path / "source", tmp_path / "site"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", ".venv", "multirun", "build", "*.egg-info",
                                                                 "__pycache__", "local"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(source)], check=True, timeout=600)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"}

    def installed(*command):
        return subprocess.run([*command], cwd=outside, env=env, capture_output=True, text=True, timeout=300)

    where = installed(sys.executable, "-c", "import mosaic, hydra_plugins.mosaic_sweeper as s; print(mosaic.__file__)")
    assert where.stdout.strip().startswith(str(site)), where.stderr
    composed = installed(str(site / "bin" / "mosaic-run"), "--cfg", "job", "model=tiny_gpt2", "layer=1")
    assert composed.returncode == 0 and "name: tiny_gpt2" in composed.stdout, composed.stderr
    refused = installed(str(site / "bin" / "mosaic-run"), "layer=7")
    assert refused.returncode == 2 and refused.stderr.strip().endswith("has layers 0..5 (Gemma Scope numbering: "
                                                                       "output of block L)")
    commands = installed(str(site / "bin" / "mosaic"), "--help")
    assert commands.returncode == 0 and "report" in commands.stdout and "schema" in commands.stdout
