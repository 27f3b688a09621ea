"""Transfer: a job's probe scored on other datasets' test splits and on other models' features.

Every target is read through the job's own encoder (`featurize.Features.encoder`), so the probe
sees features of the SAE it was trained on: an SAE MOSAIC trains is never retrained on a target's
model or documents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mosaic.activations.store import lazy_model
from mosaic.data import LabelledDocuments, Splits, load_labelled_documents, make_splits
from mosaic.errors import MosaicError
from mosaic.evaluate import classification_metrics
from mosaic.featurize import FeatureContext, Features, build_features, unsplit
from mosaic.probes import Probe


@dataclass
class TransferDataset:
    cfg: DictConfig
    data: LabelledDocuments
    splits: Splits


def transfer_datasets(cfg: DictConfig, data: LabelledDocuments) -> dict[str, TransferDataset]:
    """Every `transfer.datasets` target, loaded and checked before any model runs."""
    targets = {}
    for name, dataset_cfg in cfg.transfer.datasets.items():
        target = OmegaConf.merge(cfg, {"dataset": dataset_cfg})
        target_data = load_labelled_documents(target.dataset)
        if target_data.label_names != data.label_names:
            raise MosaicError(f"transfer.datasets.{name} has classes {target_data.label_names} but the job's probe "
                              f"predicts {data.label_names}: set its label_names to match")
        target_splits = make_splits(target_data.labels, cfg.seed, target.dataset.val_size, target.dataset.test_size,
                                    target_data.split)
        targets[name] = TransferDataset(target, target_data, target_splits)
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
        scores["datasets"][name] = classification_metrics(
            target.data.labels[target.splits.test], probe.predict_proba(matrix[target.splits.test]), data.label_names)
    # Another model reads only the test documents: the probe is never retrained on its features.
    test = LabelledDocuments([data.documents[i] for i in splits.test], data.labels[splits.test], data.label_names)
    for name, model_cfg in cfg.transfer.models.items():
        target = OmegaConf.merge(cfg, {"model": model_cfg})
        other = FeatureContext(watch, lazy_model(target.model), context.protected)
        matrix = build_features(target, test, unsplit(len(test.documents)), other, features.encoder).matrix
        scores["models"][name] = classification_metrics(test.labels, probe.predict_proba(matrix), data.label_names)
    return scores


