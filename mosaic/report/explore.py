"""`python -m mosaic explore SWEEP_OR_JOB_DIR`: one self-contained HTML page of what a sweep's probes read.

For every job under the directory the page has a row of the sweep's table (sortable, filterable) and,
when the row is opened, the job's metrics and one card per top feature. For an SAE job a card shows
what the latent responds to (`report.latents`): its strongest contexts among the job's own documents
with each token's activation, its firing density, the histogram of its peak activation per class,
and its Neuronpedia page where the SAE has one. The contexts are read from the job's activation-cache
entry (`results.json` names it) and its documents as the job prepared them (`job.prepare`), so
nothing runs a model; a job whose entry is not in this machine's cache says so on its cards. Latents
asked for by number (`latent=1234`) get a card in every SAE job. An SAE job and the hidden-state job
at its setting (the same documents, splits, layer, pooling and probe) are compared document by
document: how many test documents each gets right, with examples of those only one of them gets
right (from `results.json`'s `test_predictions`). A hidden-state dimension gets no
contexts (`HIDDEN_NOTE` says why).

Jobs that read the same entry with the same splits share one reading of it, and a latent's contexts
are stored once however many jobs name it. The page embeds its data as JSON and draws a job's cards
only when its row is opened; it needs no server, network or CDN.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mosaic.infra.errors import MosaicError, first_line
from mosaic.record import Results
from mosaic.report.cells import NOT_A_SETTING, flatten
from mosaic.report.jobs import finished_jobs, hidden_state
from mosaic.report.latents import latent_profiles, split_names

PAGE_FILE = "explore.html"
# The sweep table's columns: (heading, how a job's value is read).
TABLE_COLUMNS = ("job", "dataset", "model", "layer", "features", "width", "pooling", "binarize", "probe", "k", "seed",
                 "macro_f1", "auroc")
IMAGE_NOTE = "No contexts: an image's tokens are patches, which this page cannot show as text."
# Documents shown for each side of the hidden-vs-SAE view, and the characters shown of each.
EXAMPLES, EXAMPLE_CHARACTERS = 5, 240
HIDDEN_NOTE = ("A hidden-state dimension has no contexts here: it is dense (every token has a value) and not "
               "trained to mean one thing, so the tokens where it peaks say little; most hidden-state entries also "
               "keep only each document's pooled row.")


def _row(job_dir: Path, root: Path, result: Results) -> dict[str, Any]:
    cfg, features = result.config, result.features
    sae = features.sae
    return {"job": str(job_dir.relative_to(root)) if job_dir != root else job_dir.name,
            "dataset": cfg["dataset"]["name"],
            "model": cfg["model"]["name"], "layer": features.layer, "features": features.type,
            "width": None if sae is None else str(sae.width or features.width), "pooling": cfg["pooling"]["method"],
            "binarize": cfg["binarize"]["method"], "probe": cfg["probe"]["type"], "k": cfg["probe"].get("k"),
            "seed": cfg["seed"], "macro_f1": round(result.metrics.macro_f1, 4),
            "auroc": None if result.metrics.auroc is None else round(result.metrics.auroc, 4)}


def _reading_key(result: Results) -> str:
    """Jobs with equal keys read the same cache entry over the same documents and splits."""
    cfg = result.config
    return json.dumps([result.cache.key, *(cfg.get(key) for key in ("dataset", "regime", "seed", "behaviour")),
                       cfg.get("probe", {}).get("load")], sort_keys=True, default=str)


def _read_profiles(result: Results, latents: list[int]) -> tuple[dict[int, dict], Any]:
    """The profiles of `latents` over the job's documents, from its cache entry (see the module doc), and the
    documents as the job prepared them."""
    import torch
    from omegaconf import OmegaConf

    from mosaic.activations.store import CACHE_KIND, read_codes
    from mosaic.infra.cache import cache_root
    from mosaic.job.attended import document_tokens
    from mosaic.job.prepare import prepare_job

    entry = cache_root() / CACHE_KIND / str(result.cache.key)
    if not (entry / "codes.npz").is_file():
        raise MosaicError(f"its SAE codes are not in this machine's cache ({entry}); run explore where the sweep ran")
    cfg = OmegaConf.create(result.config)
    # As a grid's plan does: behaviour labels from the answers already cached, never a model scoring them.
    device = cfg.model.device if cfg.model.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu"
    job = prepare_job(cfg, dry_run_device=device)
    codes, offsets = read_codes(entry)
    data = job.data
    if len(offsets) - 1 != len(data.documents):
        raise MosaicError(f"its cache entry holds {len(offsets) - 1} documents but the job prepares "
                          f"{len(data.documents)}")
    latents = [latent for latent in latents if latent < codes.shape[1]]  # a latent asked past a narrower SAE
    profiles = latent_profiles(codes, offsets, latents, data.labels, data.label_names,
                               split_names(len(data.documents), job.splits),
                               lambda documents: document_tokens(cfg, [data.documents[d] for d in documents]))
    return {profile.latent: profile.as_dict() for profile in profiles}, data


def _partner_key(result: Results) -> str:
    """Jobs with equal keys differ only in their features (and SAE): the same documents, splits, layer, pooling and
    probe."""
    flat = flatten(result.config)
    return json.dumps({key: value for key, value in flat.items()
                       if not key.startswith(("features.", "sae.", *NOT_A_SETTING))}, sort_keys=True, default=str)


def _versus(sae: Results, hidden: Results, data) -> dict[str, Any] | None:
    """Which test documents an SAE job and the hidden-state job at its setting each get right, with examples of
    the documents only one of them gets right; None when either did not record its test predictions."""
    ours, theirs = sae.test_predictions, hidden.test_predictions
    if ours is None or theirs is None or ours.documents != theirs.documents:
        return None
    documents = np.array(ours.documents)
    truth = data.labels[documents]
    sae_right, hidden_right = np.array(ours.predicted) == truth, np.array(theirs.predicted) == truth

    def examples(mask: np.ndarray) -> list[dict[str, Any]]:
        return [{"document": int(d), "label": data.label_names[data.labels[d]],
                 "text": str(data.documents[d])[:EXAMPLE_CHARACTERS]} for d in documents[mask][:EXAMPLES]]

    return {"documents": len(documents),
            "counts": {"both right": int(np.sum(sae_right & hidden_right)),
                       "only SAE right": int(np.sum(sae_right & ~hidden_right)),
                       "only hidden right": int(np.sum(~sae_right & hidden_right)),
                       "both wrong": int(np.sum(~sae_right & ~hidden_right))},
            "examples": {"only SAE right": examples(sae_right & ~hidden_right),
                         "only hidden right": examples(~sae_right & hidden_right)}}


def page_data(directory: Path, latents: tuple[int, ...] = (),
              jobs: list[tuple[Path, Results]] | None = None) -> dict[str, Any]:
    """What the page shows: the table's rows, each job's metrics and cards, and the latents' profiles, for every
    job under `directory` (or `jobs`, as `report.cells.finished_jobs` read them)."""
    from tqdm import tqdm

    jobs = finished_jobs(directory, command="explore") if jobs is None else list(jobs)
    if not jobs:
        raise FileNotFoundError(f"no results.json under {directory}")
    readings: dict[str, list[int]] = {}
    for index, (_, result) in enumerate(jobs):
        if result.features.sae is not None and result.config["dataset"].get("modality", "text") == "text":
            readings.setdefault(_reading_key(result), []).append(index)
    profiles: dict[str, dict] = {}
    prepared: dict[int, Any] = {}  # reading -> the documents its jobs prepared
    reading_of: dict[int, int] = {}  # job -> the reading whose profiles its cards show
    unavailable: dict[int, str] = {}
    for number, members in enumerate(tqdm(readings.values(), desc="explore: latent contexts",
                                          disable=len(readings) < 2)):
        wanted = sorted({f.index for i in members for f in jobs[i][1].top_features} | set(latents))
        try:
            found, prepared[number] = _read_profiles(jobs[members[0]][1], wanted)
            profiles.update({f"{number}:{latent}": profile for latent, profile in found.items()})
            reading_of.update({i: number for i in members})
        except Exception as error:  # noqa: BLE001 - one job's missing entry or odd config never costs the page
            unavailable.update({i: f"No contexts: {first_line(error)}." for i in members})
    rows, details = [], []
    for index, (job_dir, result) in enumerate(jobs):
        rows.append(_row(job_dir, directory, result))
        reading = reading_of.get(index)
        note = unavailable.get(index) or (None if reading is not None else HIDDEN_NOTE
                                          if hidden_state(result) else IMAGE_NOTE
                                          if result.features.sae is not None else
                                          "No contexts: these features are not an SAE's latents.")
        cards = [{"latent": f.index, "class": f.class_, "evidence": round(f.evidence, 4), "url": f.url,
                  "mean_by_class": f.mean_by_class} for f in result.top_features]
        if reading is not None:
            cards += [{"latent": latent, "class": None, "evidence": None, "url": None, "mean_by_class": None,
                       "asked": True} for latent in latents]
        for card in cards:
            profile = None if reading is None else f"{reading}:{card['latent']}"
            card["profile"] = profile if profile in profiles else None
            if card.get("asked") and card["profile"] is None:
                card["note"] = f"latent {card['latent']} is past this SAE's {result.features.n_features} latents"
        details.append({"metrics": {"test macro F1": result.metrics.macro_f1, "test AUROC": result.metrics.auroc,
                                    "test accuracy": result.metrics.accuracy,
                                    "validation macro F1": None if result.metrics.val is None
                                    else result.metrics.val.macro_f1},
                        "chosen": {name: value.chosen for name, value in result.hyperparameters.items()},
                        "note": note, "cards": cards, "versus": []})
    hidden_at = {_partner_key(result): index for index, (_, result) in enumerate(jobs)
                 if hidden_state(result)}
    for index, reading in reading_of.items():
        partner = hidden_at.get(_partner_key(jobs[index][1]))
        if partner is None or (versus := _versus(jobs[index][1], jobs[partner][1], prepared[reading])) is None:
            continue
        details[index]["versus"].append({"sae": rows[index]["job"], "hidden": rows[partner]["job"], **versus})
        details[partner]["versus"].append(details[index]["versus"][-1])
    return {"columns": list(TABLE_COLUMNS), "rows": rows, "jobs": details, "profiles": profiles,
            "directory": str(directory)}


def context_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Every context on the page as a flat row (job, latent, document, split, label, text, peak token and value),
    for a table in W&B."""
    rows = []
    for row, job in zip(data["rows"], data["jobs"]):
        for card in job["cards"]:
            profile = data["profiles"].get(card["profile"]) if card["profile"] else None
            for context in (profile or {}).get("contexts", []):
                peak = context["peak"] - context["start"]
                rows.append({"job": row["job"], "latent": card["latent"], "for_class": card["class"],
                             "document": context["document"], "split": context["split"], "label": context["label"],
                             "context": "".join(context["tokens"]), "peak_token": context["tokens"][peak],
                             "peak_value": context["values"][peak]})
    return rows


def write_page(directory: Path, out: Path | None = None, latents: tuple[int, ...] = (),
               jobs: list[tuple[Path, Results]] | None = None) -> tuple[Path, dict[str, Any]]:
    """Write the page for every job under `directory` (or `jobs`) to `out` (default: `directory/explore.html`),
    atomically; returns its path and data."""
    from mosaic.record.files import write_text_atomic
    from mosaic.report.page import render_page

    out = out or directory / PAGE_FILE
    data = page_data(directory, latents, jobs)
    write_text_atomic(out, render_page(data))
    return out, data
