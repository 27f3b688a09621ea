"""Figures 5 and 11: peak memory of encoding, pooling and probing many documents through a wide SAE, and of
training an attention probe on every token's codes.

`python -m mosaic.bench.memory DOCS TOKENS_PER_DOC D_IN D_SAE` runs the first case in a process of
its own (its peak RSS is this case's alone) and prints its figures as one JSON line;
`python -m mosaic.bench.memory attention DOCS TOKENS_PER_DOC D_SAE L0` the second.

The peak follows from the settings (`predicted_peak_bytes`): what the process held before
encoding, plus the token-level codes twice over (the chunks and their concatenation: 8 bytes per
non-zero each, float32 value and int32 column), plus the document-level features once (8 bytes per
non-zero), plus `ENCODE_TEMPORARIES` dense chunks of `DENSE_CODES_BUDGET` float32 values.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

import numpy as np

from mosaic.activations.saes.encode import DENSE_CODES_BUDGET
from mosaic.bench.common import REPO

# Dense (chunk x d_sae) tensors alive at once inside one encode step: pre-activations, the
# thresholded codes, the mask, and the copies the CSR conversion makes.
ENCODE_TEMPORARIES = 6
RUNS = 3


def predicted_peak_bytes(before_encoding: int, token_nonzeros: int, document_nonzeros: int) -> int:
    return before_encoding + 16 * token_nonzeros + 8 * document_nonzeros + ENCODE_TEMPORARIES * 4 * DENSE_CODES_BUDGET


def _peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _resident() -> int:
    """The process's resident memory now (not its peak)."""
    import os

    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _case(docs: int, tokens_per_doc: int, d_in: int, d_sae: int) -> dict:
    from omegaconf import OmegaConf

    from mosaic.activations.saes import encode_tokens
    from mosaic.bench.common import synthetic_sae
    from mosaic.config import ProbeConfig
    from mosaic.features import pool
    from mosaic.probes import fit_probe

    rng = np.random.default_rng(0)
    lengths = rng.integers(tokens_per_doc // 2, tokens_per_doc * 3 // 2 + 1, size=docs)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    labels = rng.integers(0, 2, size=docs)
    centres = rng.normal(size=(2, d_in)).astype(np.float32)
    tokens = rng.normal(size=(offsets[-1], d_in)).astype(np.float32) + np.repeat(centres[labels], lengths, axis=0)
    sae = synthetic_sae(tokens[:2048], d_sae=d_sae, l0=32)
    peaks = {"before_encoding": _peak()}
    start = time.perf_counter()
    codes = encode_tokens(sae, tokens, 4096)
    peaks["encode"] = _peak()
    del tokens
    features = pool(codes, offsets, "mean")
    token_nonzeros = codes.nnz
    del codes
    peaks["pool"] = _peak()
    encode_s = time.perf_counter() - start
    train, val = np.arange(0, int(docs * 0.8)), np.arange(int(docs * 0.8), docs)
    cfg = OmegaConf.structured(ProbeConfig(type="linear", early_stopping=True, max_epochs=2))
    start = time.perf_counter()
    fit_probe(features[train], labels[train], features[val], labels[val], 2, cfg, seed=0)
    peaks["probe"] = _peak()
    return {"tokens": int(offsets[-1]), "token_nonzeros": int(token_nonzeros), "nonzeros": int(features.nnz),
            "encode_pool_s": encode_s, "probe_s": time.perf_counter() - start, "peaks": peaks,
            "peak_rss_bytes": _peak(),
            "predicted_peak_bytes": predicted_peak_bytes(peaks["before_encoding"], token_nonzeros, features.nnz)}


def bench_wide(docs: int, tokens_per_doc: int, d_in: int, d_sae: int, runs: int = RUNS) -> dict:
    """Figure 5, `runs` times in a row, each in a fresh process; the goal holds for every run."""
    measured = []
    for _ in range(runs):
        result = subprocess.run([sys.executable, "-m", "mosaic.bench.memory", str(docs), str(tokens_per_doc),
                                 str(d_in), str(d_sae)], cwd=REPO, check=True, capture_output=True, text=True)
        measured.append(json.loads(result.stdout.strip().splitlines()[-1]))
    dense = docs * d_sae * 4
    worst = max(run["peak_rss_bytes"] for run in measured)
    return {"documents": docs, "d_sae": d_sae, "dense_bytes": dense, "runs": measured, "peak_rss_bytes": worst,
            "peak_over_dense": worst / dense,
            "measured_over_predicted": [run["peak_rss_bytes"] / run["predicted_peak_bytes"] for run in measured]}


def _attention_case(docs: int, tokens_per_doc: int, d_sae: int, l0: int) -> dict:
    """An attention probe trained for two epochs on CSR codes of `docs` x `tokens_per_doc` tokens, `l0` latents of
    `d_sae` firing per token: what the process holds beyond the codes is one batch's rows and the probe."""
    import scipy.sparse as sp
    from omegaconf import OmegaConf

    from mosaic.config import ProbeConfig
    from mosaic.features.tokens import TokenFeatures
    from mosaic.probes import fit_probe

    rng = np.random.default_rng(0)
    tokens = docs * tokens_per_doc
    labels = rng.integers(0, 2, size=docs)
    columns = rng.integers(0, d_sae, size=tokens * l0, dtype=np.int32)
    values = rng.random(tokens * l0, dtype=np.float32)
    codes = sp.csr_matrix((values, columns, np.arange(0, tokens * l0 + 1, l0, dtype=np.int64)), shape=(tokens, d_sae))
    del columns, values
    features = TokenFeatures(codes, np.arange(0, tokens + 1, tokens_per_doc))
    codes_bytes = codes.data.nbytes + codes.indices.nbytes + codes.indptr.nbytes
    before = _resident()
    train, val = np.arange(0, int(docs * 0.8)), np.arange(int(docs * 0.8), docs)
    cfg = OmegaConf.merge(OmegaConf.structured(ProbeConfig), OmegaConf.load(REPO / "mosaic/conf/probe/attention.yaml"),
                          {"lr_grid": [], "weight_decay_grid": [], "max_epochs": 2})
    start = time.perf_counter()
    fit_probe(features[train], labels[train], features[val], labels[val], 2, cfg, seed=0)
    return {"documents": docs, "tokens": tokens, "d_sae": d_sae, "token_nonzeros": int(codes.nnz),
            "codes_bytes": int(codes_bytes), "dense_token_bytes": tokens * d_sae * 4, "before_probe_bytes": before,
            "probe_s": time.perf_counter() - start, "peak_rss_bytes": _peak()}


def bench_attention_memory(docs: int, tokens_per_doc: int, d_sae: int, l0: int) -> dict:
    """Figure 11, in a fresh process: what training adds to the memory held before it (the codes, the libraries),
    over the CSR codes' size, and the whole peak over the dense token matrix's size."""
    result = subprocess.run([sys.executable, "-m", "mosaic.bench.memory", "attention", str(docs), str(tokens_per_doc),
                             str(d_sae), str(l0)], cwd=REPO, check=True, capture_output=True, text=True)
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    added = measured["peak_rss_bytes"] - measured["before_probe_bytes"]
    return {**measured, "added_over_codes": added / measured["codes_bytes"],
            "peak_over_dense": measured["peak_rss_bytes"] / measured["dense_token_bytes"]}


if __name__ == "__main__":
    if sys.argv[1] == "attention":
        print(json.dumps(_attention_case(*(int(x) for x in sys.argv[2:6]))))
    else:
        print(json.dumps(_case(*(int(x) for x in sys.argv[1:5]))))
