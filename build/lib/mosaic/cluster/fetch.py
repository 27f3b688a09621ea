"""`python -m mosaic fetch OVERRIDES`: download what a grid reads from the hub, once, before it runs.

On a cluster the login node reaches the hub and the compute nodes do not; a hundred array tasks
must not each download the same 18 GB. Fetch lists what every cell of the grid reads from the hub
(`hub_items`: models and tokenizers, Gemma Scope SAEs, hub datasets, including transfer targets
and the answering model of behaviour labels) and downloads each into the hub client's cache with
the client's own code (`mosaic.infra.hub`). A branch revision (`main`) is fetched where it points now and
recorded there, so every node of the grid then loads that same commit. Jobs whose items are all
fetched read them without touching the network (`HF_HUB_OFFLINE=1` on the compute nodes makes sure).
"""

from __future__ import annotations

from collections.abc import Iterator

from omegaconf import DictConfig

from mosaic.infra import hub
from mosaic.infra.errors import MosaicError
from mosaic.infra.hub import HubItem


def hub_items(cfg: DictConfig) -> list[HubItem]:
    """Everything one job reads from the hub, as its option modules say (nothing for a bag of words that reads
    whole documents of a packaged dataset).

    A transfer model's features come from the job's own encoder (`transfer`), so it adds its
    weights alone; the answering model of behaviour labels is a model and nothing more; a bag of words
    that reads what the model reads (`features.truncate`) needs the model's tokenizer, fetched with it.
    """
    from mosaic.activations.model_sources import model_source
    from mosaic.data.sources import dataset_source
    from mosaic.features.types import feature_type

    items = [item for dataset in (cfg.dataset, *cfg.transfer.datasets.values())
             for item in dataset_source(dataset).hub_items(dataset)]
    features = feature_type(cfg)
    items += features.hub_items(cfg)
    if features.reads_model:
        items += [item for model in cfg.transfer.models.values() for item in model_source(model).hub_items(model)]
    if cfg.behaviour.model is not None:
        from mosaic.config.resolved import answering_model_config

        answering = answering_model_config(cfg)
        items += model_source(answering).hub_items(answering)
    return items


def grid_items(configs: list[DictConfig]) -> list[HubItem]:
    """Every cell's hub items, each once, in the order the grid first needs them."""
    return list(dict.fromkeys(item for cfg in configs for item in hub_items(cfg)))


def runnable(configs: list[DictConfig]) -> list[DictConfig]:
    """The cells that will run: an invalid or not-applicable cell stops before it reads anything."""
    from mosaic.config import validate

    kept = []
    for cfg in configs:
        try:
            validate(cfg)
        except MosaicError:
            continue
        kept.append(cfg)
    return kept


def fetch_items(items: list[HubItem]) -> Iterator[str]:
    """Fetch each item (or, with the hub off, check it is there), one line each as it is done; raises on the
    first failure."""
    for item in items:
        if hub.hub_offline():
            if not item.fetched():
                raise hub.not_fetched(f"{item.label} ({item.repo_id})")
            yield f"{item.label}: in the cache (HF_HUB_OFFLINE is set: not checked for updates)"
        else:
            yield f"{item.label}: {item.fetch()}"


def fetch_summary(items: list[HubItem], left_out: int) -> str:
    cache = hub.hub_cache()
    skipped = f" ({left_out} cells left out: invalid or not applicable, see `python -m mosaic plan`)" \
        if left_out else ""
    return (f"{len(items)} hub items in {cache}{skipped}. On the compute nodes, with the same HF_HOME (or "
            "HF_HUB_CACHE), set HF_HUB_OFFLINE=1: jobs then read only this cache" if items else
            f"this grid reads nothing from the hub (packaged models and datasets only){skipped}")
