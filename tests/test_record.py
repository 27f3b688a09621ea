"""What a job writes (`record.py`): results.json written whole or not at all, the config hash, the summary."""

import json

import pytest

from mosaic.record import RunLabels, Tracker, config_hash, summary_table, write_json_atomic
from tests.conftest import compose_config


def test_a_write_that_fails_midway_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "results.json"
    write_json_atomic(path, {"macro_f1": 0.5})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"macro_f1": 0.7, "unserialisable": object()})
    assert json.loads(path.read_text()) == {"macro_f1": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_config_hash_ignores_key_order_and_sweep_settings_but_nothing_else():
    config = {"layer": 3, "pooling": {"method": "mean", "top_n": 5}, "sweep": {"skip_done": False}}
    reordered = {"sweep": {"skip_done": True}, "pooling": {"top_n": 5, "method": "mean"}, "layer": 3}
    assert config_hash(config) == config_hash(reordered)
    assert config_hash(config) != config_hash({**config, "layer": 4})
    assert config_hash(config) != config_hash({**config, "pooling": {"method": "mean", "top_n": 6}})


def _results(cv_held_out: bool):
    return {
        "config": {"dataset": {"name": "bastion"}, "model": {"name": "minilm"}, "layer": 3,
                   "pooling": {"method": "mean"}, "binarize": {"method": "none"}, "probe": {"type": "sklearn"}},
        "features": {"type": "sae", "n_features": 1536},
        "hyperparameters": {"C": {"configured": [0.1, 1.0], "chosen": 1.0}},
        "metrics": {"macro_f1": 0.5, "accuracy": 0.75, "balanced_accuracy": 0.625, "auroc": None,
                    "val": {"macro_f1": 0.25},
                    "cv": {"folds": 5, "macro_f1_mean": 0.6, "macro_f1_std": 0.05, "held_out": cv_held_out,
                           "not_held_out": [] if cv_held_out else ["sae"]}},
        "splits": {"train": 100, "val": 20, "test": 20},
        "timings_s": {"features": 1.25, "probe": 0.5},
        "cache": {"hit": True},
        "transfer": {"datasets": {"ru": {"macro_f1": 0.4}}},
    }


def test_summary_table_shows_each_number_once_with_its_caveats():
    lines = summary_table(_results(cv_held_out=False)).splitlines()
    assert lines[0].split(None, 1)[1] == ("bastion | minilm layer 3 | sae (1536 features) | pooling mean | "
                                          "binarize none | probe sklearn (C 1.0)")
    assert lines[1].split(None, 2)[2] == "test 0.500   validation 0.250"
    assert lines[2].endswith("5-fold on train+val: macro F1 0.600 ± 0.050 (not held out: ['sae'])")
    assert "AUROC n/a" in lines[3]
    assert lines[-2].split() == ["cache", "hit"]
    assert lines[-1].split() == ["transfer", "datasets", "ru", "0.400"]
    assert "not held out" not in summary_table(_results(cv_held_out=True))


def test_logger_none_starts_no_run_and_writes_nothing(tmp_path):
    tracker = Tracker(compose_config("logger=none").logger, {"layer": 3}, tmp_path, RunLabels("job"))
    assert tracker.run is None and tracker.lightning_logger() is False
    tracker.log_results(_results(True), None, None, ["a", "b"])
    tracker.finish()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_sweeps_offline_runs_group_themselves_named_and_tagged_with_results_json_numbers(tmp_path):
    """Six cells and the sweep's report, logged offline and read back with W&B's own reader."""
    import subprocess
    import sys

    from tests.conftest import REPO, TINY_HIDDEN, read_offline_wandb_run

    sweep = tmp_path / "sweep"
    overrides = [o for o in TINY_HIDDEN if o != "logger=none"]
    done = subprocess.run([sys.executable, "run.py", "-m", *overrides, "logger=wandb", "probe=sklearn",
                           "pooling=mean,max,last", "probe.C=0.1,10", f"hydra.sweep.dir={sweep}"],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    runs = {}
    for run_dir in sweep.glob("*/wandb/offline-run-*"):
        runs[run_dir.parents[1].name] = read_offline_wandb_run(run_dir)
    [report] = [read_offline_wandb_run(d) for d in sweep.glob("wandb/offline-run-*")]
    assert len(runs) == 6
    group = str(sweep.resolve())
    assert report["run"]["run_group"] == group and report["run"]["tags"] == ["report"]
    assert report["summary"]["explore._type"] == "html-file"  # the sweep's explore page, as an HTML panel
    for job, logged in runs.items():
        results = json.loads((sweep / job / "results.json").read_text())
        config = results["config"]
        assert logged["run"]["run_group"] == group
        cell = f"pooling={config['pooling']['method']} probe.C={config['probe']['C']:g}"
        assert logged["run"]["display_name"] == cell  # the keys the sweep varies, not those it fixes
        assert sorted(logged["run"]["tags"]) == ["dataset=bastion", "features=hidden", "model=tiny_gpt2",
                                                 "probe=sklearn"]
        metrics = results["metrics"]
        expected = {**{f"test/{k}": v for k, v in metrics.items() if isinstance(v, float)},
                    **{f"val/{k}": v for k, v in metrics["val"].items() if isinstance(v, float)},
                    **{f"chosen/{k}": v["chosen"] for k, v in results["hyperparameters"].items()},
                    **{f"time/{k}": v for k, v in results["timings_s"].items()}}
        # Every number the job logged (the confusion table's own bookkeeping aside) is one of results.json's.
        logged_numbers = {k: v for k, v in logged["summary"].items() if k.split("/")[0] in ("test", "val", "chosen",
                          "time") and isinstance(v, (int, float)) and "confusion_table" not in k}
        assert logged_numbers.keys() == expected.keys()
        assert logged_numbers == pytest.approx(expected)
        [saved] = list((sweep / job / "wandb").glob("offline-run-*/files/results.json"))
        assert json.loads(saved.read_text())["metrics"] == metrics


def test_the_published_json_schema_is_the_one_the_typed_results_generate():
    """docs/results.schema.json is `python -m mosaic schema`'s output: regenerate it when `record.Results` changes."""
    from mosaic.record import json_schema
    from tests.conftest import SCHEMA_FILE

    assert json.loads(SCHEMA_FILE.read_text()) == json_schema()


def test_results_that_do_not_fit_the_schema_are_refused_before_anything_is_written(tmp_path):
    import jsonschema

    from mosaic.record import write_results
    from tests.conftest import SCHEMA_FILE

    path = tmp_path / "results.json"
    with pytest.raises(ValueError, match="metrics"):
        write_results(path, {"schema": 4, "config_hash": "x"})
    assert not path.exists()
    # The published schema refuses what the types refuse: a key results.json does not have.
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    assert any("seeds" in error.message for error in validator.iter_errors({"seeds": 3}))
