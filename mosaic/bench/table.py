"""The benchmark's table: one row per figure, the measured value next to its goal and whether it was met."""

from __future__ import annotations


def _met(met: bool) -> str:
    return "met" if met else "MISSED"


def _extraction(items: list[dict]) -> list[str]:
    rows = []
    for item in items:
        device = item.get("device", {})
        on = f"{device.get('name', device.get('type', 'cpu'))}, {device.get('dtype', 'float32')}"
        share = device.get("bare_forward_share_of_peak")
        peak = f"; bare forward {share:.1%} of the card's bf16 peak" if share is not None else ""
        ratio = item["throughput_ratio"]
        ceiling = f"; FLOP ceiling {item['flop_ceiling']:.2f}" if "flop_ceiling" in item else ""
        rows.append(f"| 1. throughput {item['model']} on {on} (forward+hook+SAE encode+pool / bare forward) | "
                    f"{ratio:.2f} ({item['pipeline_tokens_per_s']:.0f} vs {item['bare_tokens_per_s']:.0f} "
                    f"tok/s{peak}{ceiling}) | >= 0.9 ({_met(ratio >= 0.9)}) |")
    for item in items:
        cells = ", ".join(f"L{k}: {v['measured']:.2f} vs {v['ideal']:.2f}" + (
            f" (bare forward stopped there {v['bare_forward']:.2f})" if "bare_forward" in v else "")
            for k, v in item["early_exit"].items())
        within = all(abs(v["measured"] - v["ideal"]) <= 0.1 * v["ideal"] for v in item["early_exit"].values())
        rows.append(f"| 2. early exit {item['model']} (time of layer k / full, vs (k+1)/n) | {cells} | within 10% "
                    f"({_met(within)}) |")
    return rows


def _sweep(sweep: dict) -> list[str]:
    return [f"| 3. 12-cell pooling x binarize grid / one cell (wall, with process start) | {sweep['ratio']:.2f} "
            f"({sweep['grid_s']:.0f} s / {sweep['one_cell_s']:.0f} s; {sweep['cache_hits']} of 12 cells hit) "
            f"| <= 2.0 ({_met(sweep['ratio'] <= 2.0)}) |"]


def _probes(probes: dict) -> list[str]:
    if not {"linear", "sklearn"} <= set(probes):
        return []
    lin, ref = probes["linear"], probes["sklearn"]
    gap = abs(lin["macro_f1"] - ref["macro_f1"])
    relative = abs(lin["objective"] - ref["objective"]) / ref["objective"]
    return [f"| 4. probe on {lin['documents']} docs x {lin['n_features']} SAE features: Lightning vs sklearn"
            f" | {lin['fit_s']:.1f} s vs {ref['fit_s']:.1f} s; macro F1 {lin['macro_f1']:.3f} vs "
            f"{ref['macro_f1']:.3f} (gap {gap:.3f}); objective {relative:.1e} relative | F1 within 0.01, "
            f"objective within 1e-3 ({_met(gap <= 0.01 and relative <= 1e-3)}) |"]


def _wide(wide: dict) -> list[str]:
    runs = wide.get("runs", [wide])
    peaks = " / ".join(f"{run['peak_rss_bytes'] / 2**30:.2f}" for run in runs)
    predicted = wide.get("measured_over_predicted")
    against = f"; {min(predicted):.2f}-{max(predicted):.2f} x the predicted peak" if predicted else ""
    return [f"| 5. peak RSS, {wide['documents']} docs x {wide['d_sae']}-wide SAE (encode, pool, probe), "
            f"{len(runs)} runs | {peaks} GiB: at most {wide['peak_over_dense']:.2f} x the dense "
            f"{wide['dense_bytes'] / 2**30:.1f} GiB{against} | <= 0.5 in every run "
            f"({_met(wide['peak_over_dense'] <= 0.5)}) |"]


def _parity(parity: dict) -> list[str]:
    agree = parity["within_0.01"] == parity["tasks"]
    same_c = parity.get("same_C")
    chosen = f"; same C on {same_c}/{parity['tasks']}" if same_c is not None else ""
    return [f"| 6. parity with sae-probes' logreg, {parity['tasks']} suite tasks, MiniLM layer 3 (test AUROC and C "
            f"on the same activations and rows; probe time) | {parity['within_0.01']}/{parity['tasks']} within 0.01 "
            f"(max gap {parity['max_gap']:.4f}){chosen}; time {parity['time_ratio']:.2f} x the peer's | all within "
            f"0.01 ({_met(agree)}); time <= 0.5 ({_met(parity['time_ratio'] <= 0.5)}) |"]


def _padding(padding: dict) -> list[str]:
    runs = padding.get("runs", [padding["ratio"]])
    shown = " / ".join(f"{ratio:.2f}" for ratio in runs)
    return [f"| 7. padding: {padding['model']} on {padding['task']} ({padding['documents']} docs, "
            f"{padding['characters'][0]}-{padding['characters'][1]} characters), useful tok/s over equal-length "
            f"batches, {len(runs)} runs | {shown} (worst: {padding['useful_tokens_per_s']:.0f} vs "
            f"{padding['equal_length_tokens_per_s']:.0f} tok/s) | >= 0.9 in every run "
            f"({_met(min(runs) >= 0.9)}) |"]


def _layer_sweep(sweep: dict) -> list[str]:
    layers = ",".join(map(str, sweep["layers"]))
    return [f"| 8. layer sweep {layers} with trained SAEs / one layer (empty caches) | {sweep['ratio']:.2f} "
            f"({sweep['sweep_s']:.0f} s / {sweep['one_layer_s']:.0f} s); without SAELens's training steps "
            f"({sweep['sweep_training_s']:.0f} s / {sweep['one_layer_training_s']:.0f} s) "
            f"{sweep['ratio_without_training']:.2f} | <= 1.5 ({_met(sweep['ratio'] <= 1.5)}) |"]


def _suite(suite: dict) -> list[str]:
    return [f"| 9. suite, {suite['tasks']} tasks x (hidden, SAE), MiniLM, logistic regression / bare forward over "
            f"the same {suite['tokens']:,} tokens | {suite['ratio']:.2f} ({suite['total_s'] / 60:.1f} min / "
            f"{suite['bare_forward_s'] / 60:.1f} min) | <= 1.5 ({_met(suite['ratio'] <= 1.5)}) |"]


def _large_grid(grid: dict) -> list[str]:
    met = grid["first_job_s"] < 30 and grid["overhead_per_cell_s"] < 1
    return [f"| 10. {grid['cells']}-cell grid: to the first job; launcher overhead per cell ({grid['watched']} cells) "
            f"| {grid['first_job_s']:.1f} s; {grid['overhead_per_cell_s']:.2f} s ({grid['per_cell_s']:.2f} s a cell, "
            f"{grid['job_own_s']:.2f} s inside the job) | < 30 s; < 1 s ({_met(met)}) |"]


def _attention_memory(memory: dict) -> list[str]:
    added, per_doc = memory["peak_rss_bytes"] - memory["before_probe_bytes"], memory["tokens"] // memory["documents"]
    codes, peak, dense = (memory[key] / 2**30 for key in ("codes_bytes", "peak_rss_bytes", "dense_token_bytes"))
    return [f"| 11. peak RSS, attention probe on {memory['documents']} docs x {per_doc} tokens x "
            f"{memory['d_sae']}-wide SAE codes ({memory['token_nonzeros'] / 1e6:.0f}M non-zeros, {codes:.2f} GiB as "
            f"CSR) | {peak:.2f} GiB in all ({memory['peak_over_dense']:.4f} x the dense {dense:.0f} GiB); training "
            f"added {added / 2**30:.2f} GiB, {memory['added_over_codes']:.2f} x the codes | training adds <= 0.25 x "
            f"the codes ({_met(memory['added_over_codes'] <= 0.25)}) |"]


ROWS = {"extraction": _extraction, "sweep": _sweep, "probes": _probes, "wide": _wide, "parity": _parity,
        "padding": _padding, "layer_sweep": _layer_sweep, "suite": _suite, "large_grid": _large_grid,
        "attention_memory": _attention_memory}


def table(results: dict) -> str:
    """The Markdown table of every figure in `results`, then the machines they were measured on."""
    rows = ["| figure | measured | goal |", "| --- | --- | --- |"]
    for name, row in ROWS.items():
        if name in results:
            rows.extend(row(results[name]))
    machines = {}
    for name, machine in results.get("measured_on", {}).items():
        described = (f"{machine['date']}: {machine['processor']}, {machine['cpus']} CPUs, {machine['torch_threads']} "
                     f"torch threads, GPU {machine['cuda'] or 'none'}")
        machines.setdefault(described, []).append(name)
    notes = [f"measured {where} ({', '.join(names)})" for where, names in machines.items()]
    return "\n".join(rows + ([""] + notes if notes else []))
