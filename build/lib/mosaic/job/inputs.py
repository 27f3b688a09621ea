"""What a job reads, fingerprinted: so a finished cell is reused only when nothing it read has changed.

`sweep.skip_done` compares a cell's recorded `inputs` with these before skipping it: the content
of the dataset files (and the transfer targets'), of a local SAE and of a loaded probe, the model's
weights, and `CODE_VERSION`, which is bumped whenever a change to MOSAIC alters a number a job writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mosaic.data.sources import dataset_source
from mosaic.infra.cache import directory_fingerprint
from mosaic.infra.errors import MosaicError

# Bump with any change that alters a number in results.json (metrics, selection, features, probes).
CODE_VERSION = 6

def dataset_fingerprint(dataset) -> dict[str, Any]:
    """A file's or folder's content, a packaged corpus's package version, or a hub dataset's id and revision."""
    return dataset_source(dataset).identity(dataset)


def job_inputs(cfg) -> dict[str, Any]:
    """The fingerprint of everything `cfg`'s job reads besides its config (see the module doc)."""
    from mosaic.activations.models import weights_fingerprint

    def weights(model_cfg):
        try:
            return weights_fingerprint(model_cfg)
        except MosaicError:
            return None  # unresolvable here: the cell cannot be shown to be unchanged, so it reruns

    inputs: dict[str, Any] = {
        "code": CODE_VERSION,
        "dataset": dataset_fingerprint(cfg.dataset),
        "transfer_datasets": {name: dataset_fingerprint(d) for name, d in cfg.transfer.datasets.items()},
        "model": weights(cfg.model),
        "transfer_models": {name: weights(m) for name, m in cfg.transfer.models.items()},
    }
    if cfg.behaviour.model is not None:
        from mosaic.config.resolved import answering_model_config

        inputs["behaviour_model"] = weights(answering_model_config(cfg))
    from mosaic.features.types import job_sae

    source = job_sae(cfg)
    if source is not None and (sae := source.input_fingerprint(cfg)) is not None:
        inputs["sae"] = sae
    if cfg.probe.load:
        inputs["probe"] = directory_fingerprint(Path(cfg.probe.load))
    return inputs
