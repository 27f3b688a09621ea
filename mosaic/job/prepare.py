"""What a job works on before any feature is built, from its config alone: one preparation for the job,
`mosaic plan`, `mosaic sae` and every other command that must see the job as the job sees it.

`prepare_job` loads the dataset (duplicates removed), relabels it by what `behaviour.model` answers,
draws the regime's splits, drops the validation and test documents a loaded probe (`probe.load`)
trained or validated on, loads the transfer targets (each without documents the probe saw), and
collects the *protected* documents: every document the job or its targets score, which no SAE MOSAIC
trains may see. A grid's plan runs it as a dry run (`dry_run_device`): nothing is scored or loaded,
behaviour labels come from answers already in the cache, and a cell whose answers are not there yet
stops with `AnswersNotScored`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from omegaconf import DictConfig

from mosaic.data import LabelledDocuments, Splits, document_hash, draw_splits, load_labelled_documents
from mosaic.data.splits import with_keys
from mosaic.infra.cache import cache_root
from mosaic.infra.disk import check_cache_directory
from mosaic.infra.errors import MosaicError
from mosaic.job.behaviour import behaviour_labels
from mosaic.job.transfer import TransferDataset, transfer_datasets


@dataclass
class PreparedJob:
    """A job's documents and splits as it will use them, its behaviour record (None without behaviour labels),
    its transfer targets, its protected documents, and the probe it loads (with `probe.json`'s metadata)."""

    data: LabelledDocuments
    splits: Splits
    behaviour: dict[str, Any] | None
    targets: dict[str, TransferDataset]
    protected: frozenset[str]
    loaded_probe: Any = None
    loaded_metadata: dict[str, Any] | None = None


def protected_documents(data: LabelledDocuments, targets: dict[str, TransferDataset]) -> frozenset[str]:
    """Content hashes of every document the job and its transfer targets score: never SAE training data.

    The job's training documents are included too, since cross-validation scores them.
    """
    documents = [*data.documents, *(d for target in targets.values() for d in target.data.documents)]
    return frozenset(document_hash(document) for document in documents)


def trained_on(data: LabelledDocuments, splits: Splits) -> list[str]:
    """The content hashes a saved probe lists: every document it trained or validated on (a refit trains on both)."""
    hashes = data.hashes()
    return sorted({hashes[row] for row in (*splits.train, *splits.val)})


def _unseen_by_loaded_probe(path: str, metadata: dict[str, Any], data: LabelledDocuments,
                            splits: Splits) -> tuple[Splits, set[str] | None]:
    """The job's splits with every validation and test document the loaded probe trained or validated on removed,
    by content, and the content hashes of those documents (for the transfer targets).

    A probe saved before probes listed their documents cannot be checked: the splits say so.
    """
    if "trained_on" not in metadata:
        return replace(splits, duplicates={**splits.duplicates, "seen_by_loaded_probe": "unknown"}), None
    seen = set(metadata["trained_on"])
    hashes = data.hashes()

    def unseen(rows: np.ndarray) -> np.ndarray:
        return np.array([row for row in rows if hashes[row] not in seen], dtype=np.int64)

    val, test = unseen(splits.val), unseen(splits.test)
    if len(test) == 0:
        raise MosaicError(f"probe.load={path!r} was trained or validated on every test document of this job: "
                          "score it on documents it has not seen")
    removed = {"val": len(splits.val) - len(val), "test": len(splits.test) - len(test)}
    kept = replace(splits, val=val, test=test, duplicates={**splits.duplicates, "seen_by_loaded_probe": removed})
    return with_keys(kept, hashes, data.labels), seen


def prepare_job(cfg: DictConfig, dry_run_device: str | None = None) -> PreparedJob:
    """The job's documents, splits, behaviour record, transfer targets and protected documents (see the module doc).

    With `dry_run_device`, nothing is scored: behaviour labels come from the answers cached for that
    device, or `behaviour.AnswersNotScored` is raised.
    """
    from mosaic.probes import load_probe

    if dry_run_device is None:  # before any model loads: the answering model's, the job's
        check_cache_directory(cache_root(), explicit="MOSAIC_CACHE" in os.environ)
    data, behaviour = behaviour_labels(cfg, load_labelled_documents(cfg.dataset), dry_run_device)
    data, splits = draw_splits(data, cfg.dataset, cfg.regime, cfg.seed)
    probe, metadata, seen = None, None, None
    if cfg.probe.load:
        probe, metadata = load_probe(cfg.probe.load)
        splits, seen = _unseen_by_loaded_probe(cfg.probe.load, metadata, data, splits)
    targets = transfer_datasets(cfg, data, splits, seen)
    return PreparedJob(data, splits, behaviour, targets, protected_documents(data, targets), probe, metadata)
