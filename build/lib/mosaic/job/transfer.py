"""Transfer: a job's probe scored on other datasets' test splits and on other models' features.

Every target is read through the job's own encoder (`features.types.Features.encoder`), so the probe
sees features of the SAE it was trained on: an SAE MOSAIC trains is never retrained on a target's
model or documents. A target never scores a document the probe trained or validated on: the job's
own dataset as a target is scored on the job's own test rows, and another dataset's test rows lose
every document whose content is in the job's training or validation rows (counted in its scores
as `seen_by_probe_removed`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from mosaic.activations.store import lazy_model
from mosaic.data import LabelledDocuments, Splits, load_labelled_documents, make_splits
from mosaic.evaluate import classification_metrics
from mosaic.features.types import FeatureContext, Features, build_features, unsplit
from mosaic.infra.errors import MosaicError
from mosaic.probes import Probe


@dataclass
class TransferDataset:
    """A target dataset, its splits (only `test` is scored), and how many of its test documents were dropped
    because the probe trained or validated on them."""

    cfg: DictConfig
    data: LabelledDocuments
    splits: Splits
    seen_by_probe_removed: int = 0


def _same_dataset(one: DictConfig, other: DictConfig) -> bool:
    """Whether two dataset configs read the same documents (their display names aside)."""
    def fields(cfg):
        return {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k != "name"}
    return fields(one) == fields(other)


def _unseen(target_data: LabelledDocuments, target_splits: Splits, seen: set[str]) -> tuple[Splits, int]:
    """The target's splits with every test document the probe trained or validated on (by content) removed."""
    hashes = target_data.hashes()
    keep = np.array([hashes[row] not in seen for row in target_splits.test], dtype=bool)
    return replace(target_splits, test=target_splits.test[keep]), int((~keep).sum())


def transfer_datasets(cfg: DictConfig, data: LabelledDocuments, splits: Splits,
                      seen: set[str] | None = None) -> dict[str, TransferDataset]:
    """Every `transfer.datasets` target, loaded and checked before any model runs.

    `seen`: the content hashes of the documents the probe trained or validated on, when that is not the
    job's own training and validation rows (a loaded probe's).
    """
    targets = {}
    for name, dataset_cfg in cfg.transfer.datasets.items():
        target = OmegaConf.merge(cfg, {"dataset": dataset_cfg})
        if _same_dataset(target.dataset, cfg.dataset):
            targets[name] = TransferDataset(target, data, splits)
            continue
        target_data = load_labelled_documents(target.dataset)
        if target_data.label_names != data.label_names:
            raise MosaicError(f"transfer.datasets.{name} has classes {target_data.label_names} but the job's probe "
                              f"predicts {data.label_names}: set its label_names to match")
        target_splits = make_splits(target_data.labels, cfg.seed, target.dataset.val_size, target.dataset.test_size,
                                    target_data.split)
        if seen is None:
            hashes = data.hashes()
            seen = {hashes[row] for row in (*splits.train, *splits.val)}
        target_splits, removed = _unseen(target_data, target_splits, seen)
        if len(target_splits.test) == 0:
            raise MosaicError(f"transfer.datasets.{name}: every test document is one the probe trained or validated "
                              "on: choose a target with documents of its own")
        targets[name] = TransferDataset(target, target_data, target_splits, removed)
    return targets


def transfer_scores(cfg: DictConfig, probe: Probe, data: LabelledDocuments, splits: Splits,
                     targets: dict[str, TransferDataset], features: Features,
                     context: FeatureContext) -> dict[str, dict[str, Any]]:
    """The job's probe on each `transfer` target: other datasets' test splits, other models' features.

    Their feature-building times go to the job's stopwatch under `transfer.` (e.g. `transfer.extract`).
    """
    scores: dict[str, dict[str, Any]] = {"datasets": {}, "models": {}}
    watch = context.watch.scoped("transfer")
    for name, target in targets.items():
        scoped = FeatureContext(watch, context.model, context.protected)
        matrix = build_features(target.cfg, target.data, target.splits, scoped, features.encoder).matrix
        scores["datasets"][name] = {**classification_metrics(
            target.data.labels[target.splits.test], probe.predict_proba(matrix[target.splits.test]), data.label_names),
            "seen_by_probe_removed": target.seen_by_probe_removed}
    # Another model reads only the test documents: the probe is never retrained on its features.
    test = LabelledDocuments([data.documents[i] for i in splits.test], data.labels[splits.test], data.label_names)
    for name, model_cfg in cfg.transfer.models.items():
        target = OmegaConf.merge(cfg, {"model": model_cfg})
        other = FeatureContext(watch, lazy_model(target.model), context.protected)
        matrix = build_features(target, test, unsplit(len(test.documents)), other, features.encoder).matrix
        scores["models"][name] = classification_metrics(test.labels, probe.predict_proba(matrix), data.label_names)
    return scores


