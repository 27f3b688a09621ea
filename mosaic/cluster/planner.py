"""A grid plan's per-cell lookups (`python -m mosaic plan`): each cell's job prepared as a dry run
(`job.prepare.prepare_job`: nothing scored, no model loaded), and the activation cache entry it reads, keyed with
the job's own keys (`features.types.plan_encoders`, `activations.store.entry_fields`) wherever they can be computed
without loading a model, training an SAE or downloading anything. Each lookup is computed once per distinct input.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from omegaconf import DictConfig, OmegaConf

from mosaic.infra.errors import MosaicError, NotApplicableError, first_line


class ModelNotLoaded(Exception):
    """Raised instead of loading a model: the plan never loads one."""


class Invalid(Exception):
    """A cell its job would refuse, found while planning it (a behaviour grid's options, its answers)."""


def refuse_model():
    raise ModelNotLoaded


@dataclass
class EntryNeed:
    """The activation cache entry one cell reads, and whether the cache holds it (None: unknown until fetched).

    `key` is the entry's cache key where it can be computed here; for an SAE not trained or fetched
    yet, the key of what will identify it (`Encoder.planned`); with the documents or the model's
    commit unknown, a stand-in made of the settings the key will hold. Cells that will read the same
    entry share it in the plan either way. `slot` is the (layer, feature type, SAE width) a forward
    computes it for (`features.types.forward_slots`); `sae`, the cache key of the SAE still to train.
    """

    key: str
    family: str
    label: str
    slot: tuple[int, str, str | None]
    cached: bool | None = None
    bytes: int | None = None
    why: str | None = None
    sae: str | None = None

    @property
    def layer(self) -> int:
        return self.slot[0]


def key_of(value: Any) -> str:
    return json.dumps(OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig) else value,
                      sort_keys=True, default=str)


def without(cfg: DictConfig, *keys: str) -> dict[str, Any]:
    """The config as plain data, less the dotted `keys`."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    for dotted in keys:
        *parents, last = dotted.split(".")
        node = plain
        for parent in parents:
            node = node[parent]
        node.pop(last, None)
    return plain


class PreparedCell(NamedTuple):
    """A cell's job as its dry-run preparation left it, and the cache key of its documents."""

    job: Any
    documents_key: str


@dataclass(frozen=True)
class Lookup:
    """What one of the planner's lookups found: a `value`, or why not (`state` "not applicable", "invalid" or
    "error", and `why`)."""

    state: str
    value: Any = None
    why: str | None = None

    @property
    def ok(self) -> bool:
        return self.state == "ok"


class Planner:
    """Per-cell lookups, each computed once per distinct input (a 1,000-cell grid has a handful of datasets)."""

    def __init__(self, device_type: str):
        self.device_type = device_type
        self.memo: dict[tuple, Any] = {}
        self.saes_to_train: dict[str, str] = {}
        self.behaviour: dict[str, str] = {}

    def once(self, kind: str, key: str, compute: Callable[[], Any]) -> Lookup:
        if (kind, key) not in self.memo:
            try:
                self.memo[(kind, key)] = Lookup("ok", compute())
            except NotApplicableError as error:  # a regime that has no meaning for this dataset
                self.memo[(kind, key)] = Lookup("not applicable", why=first_line(error))
            except Invalid as error:
                self.memo[(kind, key)] = Lookup("invalid", why=str(error))
            except ModelNotLoaded:
                self.memo[(kind, key)] = Lookup("error", why="it cannot be keyed without loading the model")
            except (MosaicError, OSError) as error:  # OSError: a file of the dataset or cache unreadable here
                self.memo[(kind, key)] = Lookup("error", why=first_line(error))
        return self.memo[(kind, key)]

    def cell_device(self, cfg: DictConfig) -> str:
        """Where the cell runs: the grid's device for `model.device=auto`, else the device it pins."""
        return self.device_type if cfg.model.device == "auto" else cfg.model.device

    def documents(self, cfg: DictConfig):
        """The dataset as loaded (read from the cache only, never downloaded)."""
        from mosaic.data import load_labelled_documents

        return self.once("documents", key_of(cfg.dataset), lambda: load_labelled_documents(cfg.dataset))

    def answers(self, cfg: DictConfig):
        """The answering model's answers: their cache key, and what the cache holds of them (None: not scored)."""
        from mosaic.config.resolved import answering_model_config
        from mosaic.job.behaviour import cached_answers

        answering = answering_model_config(cfg)
        documents = self.documents(cfg)
        if not documents.ok:
            return documents
        device = self.cell_device(OmegaConf.merge(cfg, {"model": answering}))
        return self.once("answers", key_of([cfg.behaviour, cfg.max_length, cfg.batch_size, answering, device,
                                          cfg.dataset]),
                         lambda: cached_answers(cfg, answering, documents.value.documents, device))

    def data(self, cfg: DictConfig):
        """The job as `prepare.prepare_job` prepares it, run dry (nothing scored or loaded), and its documents' key.

        Behaviour labels come from the answering model's cached answers; before they are scored the
        splits (and so the documents a regime draws) are not known.
        """
        from mosaic.activations.store import documents_key
        from mosaic.config.resolved import answering_model_config
        from mosaic.job.behaviour import BehaviourRefused
        from mosaic.job.prepare import prepare_job

        behaviour = None
        if cfg.behaviour.model is not None:
            answering = answering_model_config(cfg)
            behaviour = [cfg.behaviour, cfg.max_length, cfg.batch_size, answering,
                         self.cell_device(OmegaConf.merge(cfg, {"model": answering}))]

        def load():
            try:
                job = prepare_job(cfg, dry_run_device=behaviour[-1] if behaviour else None)
            except BehaviourRefused as error:  # a cell its job would refuse
                raise Invalid(first_line(error)) from None
            return PreparedCell(job, documents_key(job.data.documents))

        return self.once("data", key_of([cfg.dataset, cfg.regime, cfg.seed, cfg.transfer.datasets, cfg.probe.load,
                                       behaviour]), load)

    def model_identity(self, cfg: DictConfig):
        from mosaic.activations.store import model_identity

        device = self.cell_device(cfg)
        return self.once("model", key_of([cfg.model, device]), lambda: model_identity(cfg.model, device))

    def entry(self, cfg: DictConfig) -> EntryNeed:
        """The cell's own activation entry: its key when computable here, and whether the cache holds it.

        Its family is what its forward shares with its siblings' cells: everything in the config but
        the layer, SAE width and feature type a sweep varies (`features.types.Sweep`).
        """
        from mosaic.activations.saes.sources.trained import sae_seed
        from mosaic.data.regimes import draws_documents
        from mosaic.features.types import feature_type, job_sae

        model = cfg.model
        data = self.data(cfg)
        identity = self.model_identity(cfg)
        documents = data.value.job.data.documents if data.ok else None
        # Without a regime the documents are the dataset's, whatever the seed and labels.
        drawn = [cfg.dataset] + ([cfg.regime, cfg.seed, cfg.behaviour] if draws_documents(cfg.regime) else [])
        group = [identity.value if identity.ok else model, cfg.max_length,
                 drawn if documents is None else data.value.documents_key]
        source = job_sae(cfg)
        encoder = [cfg.features.type] + ([] if source is None else [
            cfg.sae, sae_seed(cfg) if source.trains else None,
            cfg.seed if source.trains_on_training_split(cfg) else None])
        slot = (cfg.layer, cfg.features.type, feature_type(cfg).variant(cfg))
        # Pooling and probe decide which hidden-state entry a cell reads (pooled or token rows), never what a forward
        # computes; a loaded probe brings its own SAE.
        family = key_of([without(cfg, "layer", "features", "pooling", "binarize", "probe",
                                 *(("sae.width",) if source is None else source.sibling_keys)), cfg.probe.load])
        label = f"{model.name} × {cfg.dataset.name} (max_length {cfg.max_length})"
        need = EntryNeed(key_of(["stand-in", group, slot, encoder]), family, label, slot)
        if documents is None:
            need.why = data.why
            return need
        try:
            need.bytes = feature_type(cfg).entry_bytes(cfg, documents)
            if not identity.ok:
                need.why = identity.why
                return need
            self._key_entry(cfg, need, identity.value, data.value)
        except ModelNotLoaded:
            need.why = "its key needs the model loaded"
        except MosaicError as error:
            need.why = first_line(error)
        return need

    def _key_entry(self, cfg: DictConfig, need: EntryNeed, identity: dict, data) -> None:
        """Fill in the entry's key and whether the cache holds it; for an SAE not built yet, what it waits for."""
        import torch

        from mosaic.activations.store import CACHE_KIND, entry_fields
        from mosaic.features.types import Sweep, job_sae, plan_encoders
        from mosaic.infra.cache import cache_root, content_key, read_entry

        job, documents = data.job, data.documents_key
        _, own = plan_encoders(cfg, job.data, job.splits, Sweep(), job.protected, refuse_model,
                               torch.device(self.cell_device(cfg)))
        if own.ready():
            need.key = content_key(entry_fields(identity, documents, cfg.max_length, cfg.layer, own.resolve()))
            need.cached = read_entry(cache_root() / CACHE_KIND / need.key) is not None
            return
        planned = own.planned()
        need.key = content_key({"planned": entry_fields(identity, documents, cfg.max_length, cfg.layer, planned)})
        need.cached = False
        source = job_sae(cfg)
        if "to_train" in planned:
            need.sae = planned["to_train"]
            corpus = f"{cfg.dataset.name}'s training split (seed {cfg.seed}, SAE {need.sae[:8]})" \
                if source.trains_on_training_split(cfg) else cfg.sae.train_corpus
            self.saes_to_train[need.sae] = f"{cfg.model.name} layer {cfg.layer}: {source.plan_label(cfg)}, on {corpus}"
            need.why = "its SAE is not trained yet"
        else:
            need.why = f"{source.plan_label(cfg)} is not fetched"

    def behaviour_answers(self, cfg: DictConfig) -> None:
        """Count the answering model's forward when its answers are not cached."""
        from mosaic.config.resolved import answering_model_config

        answers = self.answers(cfg)
        label = f"{answering_model_config(cfg).name} answers {cfg.dataset.name}"
        if not answers.ok:
            self.behaviour[key_of([cfg.behaviour, cfg.dataset, cfg.max_length, cfg.batch_size])] = label
        else:
            key, found = answers.value
            if found is None:
                self.behaviour[key] = label
