"""Figures 1, 2 and 7: extraction throughput against a bare forward, early exit, and the cost of padding."""

from __future__ import annotations

import time
from functools import partial

import torch

from mosaic.activations.forward import token_lengths
from mosaic.bench.common import bare_forward_seconds, best_interleaved, extraction_batches, synthetic_sae
from mosaic.config import compose

# Dense bfloat16 tensor-core peak (TFLOP/s, no sparsity) by the name CUDA reports, from the vendors' data sheets.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0}


def _device(loaded) -> dict:
    """The device a figure was measured on; on CUDA with the card's bfloat16 peak where it is known."""
    if loaded.device.type != "cuda":
        return {"type": loaded.device.type, "dtype": str(next(loaded.model.parameters()).dtype)}
    name = torch.cuda.get_device_name(loaded.device)
    peak = next((tflops for card, tflops in PEAK_BF16_TFLOPS.items() if card in name), None)
    return {"type": "cuda", "name": name, "dtype": str(next(loaded.model.parameters()).dtype), "peak_tflops": peak}


def _forward_flops_per_token(model: torch.nn.Module) -> float:
    """2 x the weights a token multiplies through (every parameter but the embedding table); attention's
    score products, small at these lengths, are left out."""
    return 2.0 * sum(p.numel() for name, p in model.named_parameters() if "embed" not in name)


def bench_extraction(model_name: str, texts: list[str], repeats: int) -> dict:
    """Figures 1 and 2 for one model; on a GPU also the bare forward's share of the card's peak."""
    from mosaic.activations import extract_activations, load_model
    from mosaic.activations.saes import encode_tokens
    from mosaic.features import pool

    cfg = compose(f"model={model_name}")
    loaded = load_model(cfg.model)
    n = cfg.model.n_layers
    batch_size, max_length = cfg.batch_size, cfg.max_length
    batches = extraction_batches(loaded, texts, batch_size, max_length)
    bare_forward_seconds(loaded, batches[:2])  # warm-up

    last = n - 1
    sample = extract_activations(loaded, texts[:64], [last], batch_size, max_length)[last].values
    sae = synthetic_sae(sample, d_sae=8 * cfg.model.d_model, l0=64).to(loaded.device)

    def pipeline_seconds() -> float:
        start = time.perf_counter()
        acts = extract_activations(loaded, texts, [last], batch_size, max_length)[last]
        pool(encode_tokens(sae, acts.values, cfg.sae.encode_batch_tokens), acts.offsets, "mean")
        return time.perf_counter() - start

    bare, ours = best_interleaved(repeats, lambda: bare_forward_seconds(loaded, batches), pipeline_seconds)
    tokens = int(sum(int(b["attention_mask"].sum()) for b in batches))

    def extract_seconds(layer: int) -> float:
        start = time.perf_counter()
        extract_activations(loaded, texts, [layer], batch_size, max_length)
        return time.perf_counter() - start

    # Every layer is timed twice, extraction and the bare forward stopped at the same block (what the model
    # itself costs there, embeddings and all), all in turn within each repeat.
    layers = sorted({0, n // 4, n // 2, (3 * n) // 4, last})
    measures = [partial(extract_seconds, layer) for layer in layers]
    measures += [partial(bare_forward_seconds, loaded, batches, layer) for layer in layers]
    best = best_interleaved(repeats, *measures)
    extracted, stopped = dict(zip(layers, best[:len(layers)])), dict(zip(layers, best[len(layers):]))
    early = {layer: {"measured": extracted[layer] / extracted[last], "ideal": (layer + 1) / n,
                     "bare_forward": stopped[layer] / stopped[last]} for layer in layers[:-1]}
    device = _device(loaded)
    if device.get("peak_tflops"):
        computed = sum(batch["input_ids"].numel() for batch in batches)  # padding is computed too
        device["bare_forward_share_of_peak"] = (computed / bare * _forward_flops_per_token(loaded.model)
                                                / (device["peak_tflops"] * 1e12))
    # The ratio if encoding ran at the forward's FLOP rate and nothing else cost anything: the dense encoder
    # multiplies every token through d_model x d_sae weights, whatever the SAE's sparsity.
    forward_flops = _forward_flops_per_token(loaded.model)
    ceiling = forward_flops / (forward_flops + 2.0 * cfg.model.d_model * sae.cfg.d_sae)
    return {
        "model": model_name, "layers": n, "documents": len(texts), "tokens": tokens, "device": device,
        "bare_tokens_per_s": tokens / bare, "pipeline_tokens_per_s": tokens / ours, "throughput_ratio": bare / ours,
        "flop_ceiling": ceiling,
        "early_exit": early,
    }


def _equal_length_batches(loaded, texts, batch_size: int, max_length: int) -> list[torch.Tensor]:
    """The same documents' tokens in the same batches as extraction, each batch reshaped to rows of exactly its
    mean length: the same work without padding."""
    from mosaic.activations.forward import document_batches

    ids = loaded.tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    batches = []
    for batch in document_batches(loaded, texts, batch_size, max_length):
        width = sum(len(ids[i]) for i in batch) // len(batch)
        flat = torch.tensor([token for i in batch for token in ids[i]][: width * len(batch)])
        batches.append(flat.reshape(len(batch), width).to(loaded.device))
    return batches


def bench_padding(model_name: str, task: str, documents: int, repeats: int, runs: int = 1) -> dict:
    """Figure 7: non-pad tokens/s of extraction on a mixed-length suite dataset, over the same model's tokens/s
    on batches of exactly equal token length made from the same documents (goal >= 0.9 in every one of `runs`
    runs: one run's ratio moves by several hundredths)."""
    from mosaic.activations import extract_activations, load_model
    from mosaic.data import load_labelled_documents

    cfg = compose("experiment=sae_probes_suite", f"dataset.task={task}", f"model={model_name}")
    loaded = load_model(cfg.model)
    texts = load_labelled_documents(cfg.dataset).documents[:documents]
    useful = sum(token_lengths(loaded, texts, cfg.max_length))
    equal = _equal_length_batches(loaded, texts, cfg.batch_size, cfg.max_length)
    equal_tokens = sum(batch.numel() for batch in equal)

    def extraction() -> float:
        start = time.perf_counter()
        extract_activations(loaded, texts, [cfg.model.n_layers - 1], cfg.batch_size, cfg.max_length)
        return time.perf_counter() - start

    def rectangular() -> float:
        return bare_forward_seconds(loaded, [{"input_ids": b, "attention_mask": torch.ones_like(b)} for b in equal])

    measured = []
    for _ in range(runs):
        ours, reference = best_interleaved(repeats, extraction, rectangular)
        measured.append({"useful_tokens_per_s": useful / ours, "equal_length_tokens_per_s": equal_tokens / reference,
                         "ratio": (useful / ours) / (equal_tokens / reference)})
    lengths = [len(t) for t in texts]
    worst = min(measured, key=lambda run: run["ratio"])
    return {"model": model_name, "task": task, "documents": len(texts), "characters": [min(lengths), max(lengths)],
            "useful_tokens": useful, **worst, "runs": [run["ratio"] for run in measured]}
