"""Figures 3, 8 and 10: what a grid costs beyond its cells: shared forwards, shared SAE corpora, launch overhead."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mosaic.bench.common import REPO, clear_activations, fresh_env, timed_process


def bench_sweep(cache: Path, out: Path) -> dict:
    """Figure 3: a 12-cell pooling x binarize grid over one of its cells, each from an empty activation cache."""
    env = fresh_env(cache)
    common = ["logger=none", "binarize=threshold"]
    timed_process([*common, f"hydra.run.dir={out / 'warm'}"], env)  # trains and caches the SAE once
    clear_activations(env)
    one = timed_process([*common, f"hydra.run.dir={out / 'one'}"], env)
    clear_activations(env)
    grid = timed_process(["-m", *common, "pooling=mean,max,sum,last", "binarize.threshold=0,0.1,0.5",
                          f"hydra.sweep.dir={out / 'grid'}"], env)
    hits = [json.loads(p.read_text())["cache"]["hit"] for p in sorted((out / "grid").glob("*/results.json"))]
    return {"cells": 12, "one_cell_s": one, "grid_s": grid, "ratio": grid / one, "cache_hits": sum(hits)}


def bench_layer_sweep(scratch: Path, layers: tuple[int, ...] = (1, 3, 5)) -> dict:
    """Figure 8: a layer sweep whose SAEs MOSAIC trains, over one of its layers, each from an empty cache.

    The sweep's first job trains every layer's SAE from one forward over the SAE corpus. SAELens's
    training steps (each SAE's training.json) are also reported apart: three SAEs cost three
    trainings whatever the forward sharing.
    """
    def training_seconds(cache: Path) -> float:
        return sum(json.loads(p.read_text())["seconds"] for p in (cache / "saes").glob("*/training.json"))

    one = timed_process(["logger=none", f"layer={layers[1]}", f"hydra.run.dir={scratch / 'one_layer'}"],
                        fresh_env(scratch / "cache_one_layer"))
    sweep = timed_process(["-m", "logger=none", f"layer={','.join(map(str, layers))}",
                           f"hydra.sweep.dir={scratch / 'layer_sweep'}"], fresh_env(scratch / "cache_layer_sweep"))
    one_training = training_seconds(scratch / "cache_one_layer")
    sweep_training = training_seconds(scratch / "cache_layer_sweep")
    return {"layers": list(layers), "one_layer_s": one, "sweep_s": sweep, "ratio": sweep / one,
            "one_layer_training_s": one_training, "sweep_training_s": sweep_training,
            "ratio_without_training": (sweep - sweep_training) / (one - one_training)}


# A cheap cell (the tiny random GPT-2's hidden state on 60 documents): the grid figure measures the launcher.
GRID_CELL = ["model=tiny_gpt2", "layer=1", "features=hidden", "probe=sklearn", "logger=none", "dataset.limit=60"]


def bench_grid_start(scratch: Path, cells: int = 1000, watched: int = 30) -> dict:
    """Figure 10: a `cells`-cell grid: seconds from the command to its first job's start, and the launcher's
    overhead per cell (wall time between finished cells minus the jobs' own time) over `watched` cells; the
    grid is stopped after those."""
    out, env = scratch / "large_grid", fresh_env(scratch / "cache_large_grid")
    timed_process([*GRID_CELL, f"hydra.run.dir={scratch / 'large_grid_warm'}"], env)  # warm activation cache
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "run.py", "-m", *GRID_CELL, f"seed=range(0,{cells})",
                                f"hydra.sweep.dir={out}"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    first_job, finished = None, []
    try:
        while len(finished) < watched and process.poll() is None:
            if first_job is None and (out / "0").is_dir():
                first_job = time.perf_counter() - start
            while (out / str(len(finished)) / "results.json").is_file():
                finished.append(time.perf_counter() - start)
            time.sleep(0.05)
    finally:
        process.kill()
        process.wait()
    if first_job is None or len(finished) < watched:
        raise RuntimeError(f"the {cells}-cell grid stopped after {len(finished)} cells")
    own = np.mean([json.loads((out / str(i) / "results.json").read_text())["timings_s"]["total"]
                   for i in range(1, watched)])
    per_cell = (finished[-1] - finished[0]) / (watched - 1)
    return {"cells": cells, "first_job_s": first_job, "watched": watched, "per_cell_s": per_cell,
            "job_own_s": float(own), "overhead_per_cell_s": per_cell - float(own)}
