"""`python -m mosaic fetch OVERRIDES`: download what a grid reads from the hub, once, before it runs.

On a cluster the login node reaches the hub and the compute nodes do not; a hundred array tasks
must not each download the same 18 GB. Fetch lists what every cell of the grid reads from the hub
(`hub_items`: models and tokenizers, Gemma Scope SAEs, hub datasets, including transfer targets
and the answering model of behaviour labels) and downloads each into the hub client's cache with
the client's own code (`mosaic.hub`). A branch revision (`main`) is fetched where it points now and
recorded there, so every node of the grid then loads that same commit. Jobs whose items are all
fetched read them without touching the network (`HF_HUB_OFFLINE=1` on the compute nodes makes sure).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from omegaconf import DictConfig

from mosaic import hub
from mosaic.errors import MosaicError


@dataclass(frozen=True)
class HubItem:
    """One thing a job reads from the hub: a model or dataset repository at a revision, or one SAE's weights file."""

    kind: str  # "model", "dataset" or "sae"
    repo_id: str
    revision: str
    label: str
    release: str | None = None  # SAEs: the SAELens release and id
    sae_id: str | None = None

    def fetched(self) -> bool:
        """Whether it is in the hub cache now (no network)."""
        if self.kind == "sae":
            from mosaic.activations.saes.load import cached_release_sae_file

            return cached_release_sae_file(self.release, self.sae_id) is not None
        return hub.cached_snapshot(self.kind, self.repo_id, self.revision) is not None

    def fetch(self) -> str:
        """Download it (what is already there is kept); returns where it now is, in a few words."""
        if self.kind == "sae":
            from mosaic.activations.saes.load import release_sae_file

            return str(release_sae_file(self.release, self.sae_id))
        folder = hub.download_snapshot(self.kind, self.repo_id, self.revision)
        if self.kind == "model" and not any(folder.glob("*.safetensors")):
            raise MosaicError(f"{self.label}: {self.repo_id} has no safetensors weights at {self.revision}; MOSAIC "
                              "loads safetensors only: download it yourself and set model.path=/local/copy")
        return f"commit {folder.name[:12]}"


def _model_item(model: DictConfig) -> list[HubItem]:
    """A hub model (nothing for a packaged, random or local one)."""
    if model.source != "hub" or model.path is not None:
        return []
    return [HubItem("model", model.hf_id, model.revision or "main", f"model {model.name}")]


def _sae_item(cfg: DictConfig) -> list[HubItem]:
    """For Gemma Scope features, the SAE at the job's layer and width."""
    from mosaic.activations.plan import gemma_scope_sae
    from mosaic.activations.saes.load import release_repo_file

    if cfg.features.type != "sae" or cfg.sae.source != "gemma_scope":
        return []
    release, sae_id = gemma_scope_sae(cfg)
    repo_id, filename = release_repo_file(release, sae_id)
    return [HubItem("sae", repo_id, filename, f"SAE {release} / {sae_id}", release, sae_id)]


def _dataset_item(dataset: DictConfig) -> list[HubItem]:
    if dataset.source != "hub":
        return []
    return [HubItem("dataset", dataset.hub_id, dataset.revision or "main", f"dataset {dataset.name}")]


def hub_items(cfg: DictConfig) -> list[HubItem]:
    """Everything one job reads from the hub (nothing for a bag-of-words job on a packaged dataset).

    A transfer model's features come from the job's own encoder (`transfer`), so it adds its
    weights alone; the answering model of behaviour labels is a model and nothing more; a bag of words
    that reads what the model reads (`features.truncate`) needs the model's tokenizer, fetched with it.
    """
    items = _dataset_item(cfg.dataset)
    for dataset in cfg.transfer.datasets.values():
        items += _dataset_item(dataset)
    if cfg.features.type in ("sae", "hidden"):
        items += _model_item(cfg.model) + _sae_item(cfg)
        for model in cfg.transfer.models.values():
            items += _model_item(model)
    elif cfg.features.truncate:  # a bag of words that reads what the model reads needs its tokenizer
        items += _model_item(cfg.model)
    if cfg.behaviour.model is not None:
        from mosaic.behaviour import answering_model_config

        items += _model_item(answering_model_config(cfg))
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
