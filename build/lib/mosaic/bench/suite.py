"""Figure 9: the sparse-probing suite's hidden-state and SAE cells against a bare forward over its documents."""

from __future__ import annotations

from pathlib import Path

from mosaic.bench.common import bare_forward_seconds, clear_activations, extraction_batches, fresh_env, timed_process
from mosaic.config import compose


def bench_suite(scratch: Path, tasks: list[str], layer: int = 3) -> dict:
    """Every listed task's hidden-state and SAE cells with the suite's logistic regression, as one `run.py -m`
    from an empty activation cache (the SAE trained beforehand, not timed), over a bare forward to the same
    layer over the same documents in the same batches, measured in the same run (goal: at most 1.5)."""
    from mosaic.activations import load_model
    from mosaic.data import load_labelled_documents

    env = fresh_env(scratch / "cache_suite")
    suite = ["experiment=sae_probes_suite", f"layer={layer}", "probe.k=null"]
    timed_process([*suite, f"dataset.task={tasks[0]}", f"hydra.run.dir={scratch / 'suite_warm'}"], env)
    clear_activations(env)
    total = timed_process(["-m", *suite, "features=sae,hidden", f"dataset.task={','.join(tasks)}",
                           f"hydra.sweep.dir={scratch / 'suite'}"], env)
    cfg = compose("experiment=sae_probes_suite", f"layer={layer}")
    loaded = load_model(cfg.model)
    forward, tokens = 0.0, 0
    for task in tasks:
        documents = load_labelled_documents(compose("dataset=sae_probes", f"dataset.task={task}").dataset).documents
        batches = extraction_batches(loaded, documents, cfg.batch_size, cfg.max_length)
        tokens += sum(int(batch["attention_mask"].sum()) for batch in batches)
        forward += bare_forward_seconds(loaded, batches, layer)
    return {"tasks": len(tasks), "cells": 2 * len(tasks), "tokens": tokens, "total_s": total,
            "bare_forward_s": forward, "ratio": total / forward}
