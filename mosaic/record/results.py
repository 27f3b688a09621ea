"""`results.json`, typed: what every job writes, and what reports, resume and dashboards read back.

`Results` is the contract (docs/architecture.md describes each part). A job's results are validated
against it before they are written (`write_results`), and read back through it (`read_results`), so
a key that changes meaning changes here first; `docs/results.schema.json` is its JSON Schema,
generated from these types (`python -m mosaic schema`) and checked against them in the tests. Keys
added since a schema version are optional, so older files still read. Bump `SCHEMA_VERSION` when a
key changes meaning.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mosaic.activations.saes.sources import SAEIdentity
from mosaic.record.files import write_json_atomic

# 2: run.slurm (was run.slurm_job_id), top_features[].evidence (was weight), transfer.
# 3: inputs, hyperparameters, metrics.val, metrics.cv.{data, refit_per_fold, held_out, not_held_out};
#    top_features[].evidence in the probe's fitted (scaled) space; features.sae.sha256.
# 4: splits.duplicates and splits.keys, randomness, features.text (bag of words),
#    features.sae_quality.reference, hyperparameters.*.not_selected, transfer.datasets.*.seen_by_probe_removed;
#    features.sae.{name, width, neuronpedia}; timings_s.prepare (was behaviour).
# 5: run.slurm.restarts (how many times SLURM requeued the job before this attempt finished); attended (the
#    attention probe's most weighted tokens, optional).
# 6: test_predictions (each test document's index and predicted label, optional).
SCHEMA_VERSION = 6


class _Record(BaseModel):
    """A part of results.json whose keys are all known: an unknown key is an error."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ClassScores(_Record):
    precision: float
    recall: float
    f1: float
    support: int


class Scores(_Record):
    """Classification metrics on one split (macro F1 is `probes.selection.macro_f1`); AUROC None on one class."""

    macro_f1: float
    accuracy: float
    balanced_accuracy: float
    auroc: float | None
    per_class: dict[str, ClassScores]
    confusion: list[list[int]]


class CrossValidation(_Record):
    macro_f1_mean: float
    macro_f1_std: float
    folds: int
    fold_macro_f1: list[float]
    data: str
    refit_per_fold: list[str]
    held_out: bool
    not_held_out: str | None


class Metrics(Scores):
    """Test metrics (the headline), the probe-as-selected's validation metrics, and cross-validation when asked."""

    val: Scores | None
    cv: CrossValidation | None = None


class Hyperparameter(_Record):
    configured: Any
    chosen: Any
    not_selected: str | None = None


class LatentHealth(_Record):
    tokens: int
    dead_fraction: float
    always_on_fraction: float


class SAEQuality(_Record):
    """The SAE's quality on the job's documents (`activations.saes.quality`); `next_token_loss` is the loss record,
    or why it was not measured (`{"error": ...}`), or None for a model it cannot be measured on."""

    tokens: int
    fvu: float | None = None
    l0: float | None = None
    dead_fraction: float | None = None
    always_on_fraction: float | None = None
    reference: LatentHealth | None = None
    next_token_loss: dict[str, Any] | None = None
    held_out: bool


class TextRead(_Record):
    """What a bag of words read: the model's tokens (cut at `max_length`) or whole documents."""

    read: str
    max_length: int | None = None
    truncation_side: str | None = None
    truncated_documents: int | None = None


class FeaturesRecord(_Record):
    type: str
    n_features: int
    nnz_per_doc: float
    layer: int | None = None
    tokens: int | None = None
    width: int | None = None
    l0_per_token: float | None = None
    text: TextRead | None = None
    sae: SAEIdentity | None = None
    sae_quality: SAEQuality | None = None
    sae_training: dict[str, Any] | None = None


class AcrossSplits(_Record):
    val_in_train: int
    test_in_train: int
    test_in_val: int
    test_copies: int | None = None
    removed: bool


class Duplicates(_Record):
    """What loading found and removed by content (`data.duplicates`), and what the splits found across them."""

    dedup: bool | None = None
    rows: int | None = None
    duplicate_rows: int | None = None
    conflicting_texts: int | None = None
    conflicting_rows: int | None = None
    removed: int | None = None
    removed_by_split: dict[str, int] | None = None
    across_splits: AcrossSplits
    seen_by_loaded_probe: dict[str, int] | str | None = None


class Regime(_Record):
    type: str
    balanced_pool: bool | None = None
    balanced_test: bool | None = None
    n_train: int | None = None
    positive_fraction: float | None = None
    label_noise: float | None = None
    flipped: int | None = None
    test: str | None = None
    classes_renamed: dict[str, str] | None = None


class SplitKeys(_Record):
    val: str
    train_val: str


class SplitsRecord(_Record):
    train: int
    val: int
    test: int
    regime: Regime | None = None
    duplicates: Duplicates | None = None
    keys: SplitKeys | None = None


class Randomness(_Record):
    """Which of the job's random draws its seed reached, and which a key pinned (draw -> by what)."""

    seed: int
    seeded: list[str]
    pinned: dict[str, str]


class TopFeature(_Record):
    index: int
    class_: str = Field(alias="class")
    evidence: float
    name: str | None = None
    mean_by_class: dict[str, float] | None = None
    url: str | None = None


class TransferScores(Scores):
    seen_by_probe_removed: int | None = None


class Transfer(_Record):
    datasets: dict[str, TransferScores]
    models: dict[str, Scores]


class Behaviour(_Record):
    """Labels from what `behaviour.model` answered (`mosaic.job.behaviour`), with the test split's base rate."""

    model: str
    scorer: str
    template: str
    options: dict[str, str]
    documents: int
    accuracy: float
    accuracy_by_class: dict[str, float]
    answers: dict[str, int]
    cache: dict[str, Any]
    test_base_rate: float
    test_majority_accuracy: float


class CacheRecord(_Record):
    hit: bool | None
    key: str | None


class SlurmRecord(_Record):
    """Where SLURM ran the job, and how many times it requeued it (a time limit, preemption) first."""

    job_id: str | None
    array_job_id: str | None
    array_task_id: str | None
    node: str | None
    restarts: int = 0


class RunRecord(_Record):
    started: str
    finished: str
    host: str
    slurm: SlurmRecord | None
    versions: dict[str, str | None]


class AttendedDocument(_Record):
    """A test document an attention probe scores highest for `for_class`: its tokens and the weight on each."""

    for_class: str
    document: int
    label: str
    probability: float
    tokens: list[str]
    weights: list[float]


class TestPredictions(_Record):
    """The probe's answer on each test document (`documents`: indices into the job's documents, in test order;
    `predicted`: the index of the label it predicts), so that two jobs can be compared document by document."""

    documents: list[int]
    predicted: list[int]


class Results(_Record):
    """One job's `results.json`."""

    schema_version: int = Field(alias="schema")
    config_hash: str
    config: dict[str, Any]
    inputs: dict[str, Any]
    metrics: Metrics
    hyperparameters: dict[str, Hyperparameter]
    features: FeaturesRecord
    splits: SplitsRecord
    randomness: Randomness | None = None
    probe: dict[str, Any]
    top_features: list[TopFeature]
    attended: list[AttendedDocument] | None = None
    test_predictions: TestPredictions | None = None
    transfer: Transfer | None
    behaviour: Behaviour | None
    cache: CacheRecord
    timings_s: dict[str, float]
    run: RunRecord

    def as_json(self) -> dict[str, Any]:
        """The file's content: every key the job set, with the names results.json uses."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


def write_results(path: Path, results: dict[str, Any]) -> Results:
    """Validate `results` against `Results`, then write them atomically; a result that does not fit is a bug."""
    typed = Results.model_validate(results)
    write_json_atomic(path, typed.as_json())
    return typed


def read_results(path: Path) -> Results:
    """A `results.json` read back through `Results`; a ValueError naming the first key that does not fit."""
    from pydantic import ValidationError

    try:
        return Results.model_validate(json.loads(Path(path).read_text()))
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the file"
        raise ValueError(f"{where}: {first['msg']} ({error.error_count()} problems in all)") from None


def json_schema() -> dict[str, Any]:
    """`Results` as a JSON Schema: what `docs/results.schema.json` holds."""
    return Results.model_json_schema(by_alias=True)
