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

from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

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


def _model_items(cfg: DictConfig) -> list[HubItem]:
    """The job's model on the hub and, for Gemma Scope features, the SAE at the job's layer and width."""
    from mosaic.activations.plan import sae_release
    from mosaic.activations.saes.load import release_repo_file
    from mosaic.releases import gemma_scope_sae_id

    items = []
    model = cfg.model
    if model.source == "hub" and model.path is None:
        items.append(HubItem("model", model.hf_id, model.revision or "main", f"model {model.name}"))
    if cfg.features.type == "sae" and cfg.sae.source == "gemma_scope":
        release, sae_id = sae_release(cfg), gemma_scope_sae_id(cfg.layer, cfg.sae.width)
        repo_id, filename = release_repo_file(release, sae_id)
        items.append(HubItem("sae", repo_id, filename, f"SAE {release} / {sae_id}", release, sae_id))
    return items


def _dataset_item(dataset: DictConfig) -> list[HubItem]:
    if dataset.source != "hub":
        return []
    return [HubItem("dataset", dataset.hub_id, dataset.revision or "main", f"dataset {dataset.name}")]


def hub_items(cfg: DictConfig) -> list[HubItem]:
    """Everything one job reads from the hub (nothing for a bag-of-words job on a packaged dataset)."""
    items = _dataset_item(cfg.dataset)
    for dataset in cfg.transfer.datasets.values():
        items += _dataset_item(dataset)
    if cfg.features.type in ("sae", "hidden"):
        items += _model_items(cfg)
        for model in cfg.transfer.models.values():
            items += _model_items(OmegaConf.merge(cfg, {"model": model}))
    if cfg.behaviour.model is not None:
        from mosaic.behaviour import answering_model_config

        answering = {"model": answering_model_config(cfg), "features": {"type": "hidden"}}
        items += _model_items(OmegaConf.merge(cfg, answering))
    return items


def grid_items(configs: list[DictConfig]) -> list[HubItem]:
    """Every cell's hub items, each once, in the order the grid first needs them."""
    return list(dict.fromkeys(item for cfg in configs for item in hub_items(cfg)))


def fetch_items(items: list[HubItem]) -> list[str]:
    """Fetch each item (or, with the hub off, check it is there); one line each. Raises on the first failure."""
    lines = []
    for item in items:
        if hub.hub_offline():
            if not item.fetched():
                raise hub.not_fetched(f"{item.label} ({item.repo_id})")
            lines.append(f"{item.label}: in the cache (HF_HUB_OFFLINE is set: not checked for updates)")
        else:
            lines.append(f"{item.label}: {item.fetch()}")
    return lines


def fetch_summary(items: list[HubItem]) -> str:
    cache = hub.hub_cache()
    return (f"{len(items)} hub items in {cache}. On the compute nodes, with the same HF_HOME (or HF_HUB_CACHE), "
            "set HF_HUB_OFFLINE=1: jobs then read only this cache" if items else
            "this grid reads nothing from the hub (packaged models and datasets only)")

