"""Transfer (`transfer.py`): a job's probe scored on other datasets and models, always through the job's own
features and SAE."""

import json

import numpy as np
import pytest

from mosaic.pipeline import run
from tests.conftest import TINY_HIDDEN, compose_config


def test_crossmodel_transfer_reads_through_the_jobs_own_sae_and_never_trains_one_on_the_target(tmp_path,
                                                                                              monkeypatch):
    import mosaic.activations.forward as encoders
    from mosaic.infra.cache import list_entries, remove_entry

    trained_with = []
    original = encoders.extract_activations

    def recording(loaded, *args, **kwargs):
        trained_with.append(type(loaded.model).__name__)
        return original(loaded, *args, **kwargs)

    overrides = ["model=tiny_gpt2", "layer=1", "logger=none", "probe=sklearn", "dataset.limit=60",
                 "sae.train_docs=80", "sae.train_epochs=1", "+model@transfer.models.llama=tiny_llama"]
    first = run(compose_config(*overrides[:-1]), tmp_path / "first")
    for entry in list_entries("saes"):
        remove_entry(entry)  # the job's activations are cached, its SAE is not
    monkeypatch.setattr(encoders, "extract_activations", recording)
    results = run(compose_config(*overrides), tmp_path / "job")
    # Retrained deterministically to the same bytes, so the job's activations are found again.
    assert results["cache"] == {"hit": True, "key": first["cache"]["key"]}
    assert trained_with == ["GPT2Model"]  # retrained with the job's model, not with the transfer target
    [sae] = list_entries("saes")
    llama_entries = [e for e in list_entries("activations") if e.fields["model"]["family"] == "llama"]
    assert [e.fields["encoder"]["key"] for e in llama_entries] == [sae.key]


def _language_csv(path, words, seed):
    """A tiny two-class set in one 'language': each class has its own words."""
    rng = np.random.default_rng(seed)
    rows = ["text,label"]
    for i in range(40):
        label = i % 2
        rows.append(" ".join(rng.choice(words[label], size=6)) + f",{['calm', 'toxic'][label]}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_crosslingual_matrix_has_a_row_per_training_language_and_its_diagonal_is_in_language(tmp_path):
    from mosaic.report import write_report

    words = {"en": (["good", "kind", "happy", "nice"], ["awful", "hate", "stupid", "ugly"]),
             "es": (["bueno", "amable", "feliz", "lindo"], ["horrible", "odio", "estupido", "feo"]),
             "de": (["gut", "nett", "froh", "schoen"], ["schrecklich", "hass", "dumm", "haesslich"])}
    paths = {lang: _language_csv(tmp_path / f"{lang}.csv", pair, seed) for seed, (lang, pair) in
             enumerate(words.items())}
    targets = [override for lang, path in paths.items() for override in
               (f"+dataset@transfer.datasets.{lang}=csv", f"transfer.datasets.{lang}.name={lang}",
                f"transfer.datasets.{lang}.path={path}")]
    own = {}
    for lang, path in paths.items():
        cfg = compose_config(*TINY_HIDDEN[:-1], "probe=sklearn", "dataset=csv", f"dataset.name={lang}",
                             f"dataset.path={path}", *targets)
        own[lang] = run(cfg, tmp_path / "sweep" / lang)["metrics"]["macro_f1"]
    written = write_report(tmp_path / "sweep")
    [matrix] = json.loads(written["transfer"].read_text())
    assert matrix["kind"] == "datasets" and matrix["train"] == matrix["test"] == ["en", "es", "de"]
    assert np.array(matrix["macro_f1"]).shape == (3, 3)
    # Scoring a probe on its own language through the transfer path is the job's own test score.
    assert [matrix["macro_f1"][i][i] for i in range(3)] == [own["en"], own["es"], own["de"]]
    assert "## Transfer across datasets" in written["markdown"].read_text()
    assert written["transfer_datasets_0"].read_bytes()[:4] == b"\x89PNG"


def test_crossmodel_transfer_reads_other_models_through_the_jobs_features(tmp_path):
    cfg = compose_config(*TINY_HIDDEN, "probe=sklearn", "+model@transfer.models.same=tiny_gpt2",
                         "+model@transfer.models.llama=tiny_llama")
    results = run(cfg, tmp_path / "job")
    scored = results["transfer"]["models"]
    test_metrics = {k: v for k, v in results["metrics"].items() if k != "val"}
    assert scored["same"] == test_metrics  # the same model again: the same features, the same scores
    # The saved probe, loaded into a job on tiny_llama, scores that model's test split the same way.
    reloaded = run(compose_config(*TINY_HIDDEN, "model=tiny_llama", f"probe.load={tmp_path / 'job' / 'probe'}"),
                   tmp_path / "llama")
    reloaded_test = {k: v for k, v in reloaded["metrics"].items() if k != "val"}
    assert scored["llama"] == reloaded_test and scored["llama"] != test_metrics


def test_transfer_to_a_dataset_with_other_classes_is_refused(tmp_path):
    from mosaic.infra.errors import MosaicError

    other = tmp_path / "other.csv"
    other.write_text("text,label\n" + "".join(f"text {i},{'abc'[i % 3]}\n" for i in range(30)))
    cfg = compose_config(*TINY_HIDDEN, "probe=sklearn", "+dataset@transfer.datasets.other=csv",
                         f"transfer.datasets.other.path={other}")
    with pytest.raises(MosaicError, match=r"^transfer.datasets.other has classes \['a', 'b', 'c'\]"):
        run(cfg, tmp_path / "job")
    assert not (tmp_path / "job" / "results.json").exists()
