"""Reports: a synthetic sweep directory with known results gives an exact table; missing is not zero."""

import csv
import json

import pytest

from mosaic.__main__ import main as mosaic_cli
from mosaic.report import write_report


def _job(directory, features, pooling, binarize, layer, macro_f1, dataset="bastion", seed=0, val=None, probe=None,
         cv=None, auroc=None, **extra):
    directory.mkdir(parents=True)
    results = {
        "config": {"dataset": {"name": dataset}, "model": {"name": "minilm"}, "layer": layer,
                   "sae": {"width": "16k"}, "features": {"type": features}, "pooling": {"method": pooling},
                   "binarize": {"method": binarize}, "probe": {"type": "linear", "C": 1.0, **(probe or {})},
                   "seed": seed, "logger": {"type": "none"}},
        "features": {"type": features, "width": 3072} if features == "sae" else {"type": features},
        "metrics": {"macro_f1": macro_f1, "accuracy": macro_f1, "auroc": auroc,
                    "val": {"macro_f1": macro_f1 if val is None else val}, **({"cv": cv} if cv else {})},
        "hyperparameters": {"C": {"configured": 1.0, "chosen": (probe or {}).get("C", 1.0)}},
        **extra,
    }
    (directory / "results.json").write_text(json.dumps(results))


def _table(written):
    lines = written["markdown"].read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| configuration"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start + 2:end]


def test_report_table_is_exact_one_row_per_configuration(tmp_path):
    _job(tmp_path / "0", "sae", "mean", "none", 1, 0.80)
    _job(tmp_path / "1", "sae", "mean", "none", 3, 0.90)
    _job(tmp_path / "2", "sae", "max", "threshold", 3, 0.70)
    _job(tmp_path / "3", "hidden", "mean", "none", 3, 0.75)
    (tmp_path / "4").mkdir()  # a crashed cell: no results.json
    written = write_report(tmp_path)
    assert _table(written) == [
        "| binarize.method=none, features.type=hidden, layer=3, pooling.method=mean | 1 | C=1.0 | 0.750 | 0.750 "
        "| — | — | — |",
        "| binarize.method=none, features.type=sae, layer=1, pooling.method=mean | 1 | C=1.0 | 0.800 | 0.800 | — | — "
        "| — |",
        "| **binarize.method=none, features.type=sae, layer=3, pooling.method=mean** | 1 | C=1.0 | 0.900 | **0.900** "
        "| — | — | — |",
        "| binarize.method=threshold, features.type=sae, layer=3, pooling.method=max | 1 | C=1.0 | 0.700 | 0.700 "
        "| — | — | — |",
    ]
    with written["csv"].open() as stream:
        rows = list(csv.DictReader(stream))
    assert [(r["features"], r["layer"], float(r["macro_f1"])) for r in rows] == [
        ("sae", "1", 0.8), ("sae", "3", 0.9), ("sae", "3", 0.7), ("hidden", "3", 0.75)]
    png = written["report_bastion"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_experiments_that_differ_in_any_key_are_never_averaged_and_seeds_are(tmp_path):
    """Probe type, C and threshold split cells; seeds average with n shown; the best is chosen on validation."""
    _job(tmp_path / "0", "sae", "mean", "none", 3, 0.50, val=0.60)
    _job(tmp_path / "1", "sae", "mean", "none", 3, 0.54, val=0.62, seed=1)
    _job(tmp_path / "2", "sae", "mean", "none", 3, 0.95, val=0.55, probe={"C": 10.0})  # best on test only
    _job(tmp_path / "3", "sae", "mean", "none", 3, 0.70, val=0.70, probe={"type": "tree"})
    _job(tmp_path / "4", "sae", "mean", "none", 3, 0.65, val=0.66, binarize_threshold=None)
    results = json.loads((tmp_path / "4" / "results.json").read_text())
    results["config"]["binarize"]["threshold"] = 0.5
    (tmp_path / "4" / "results.json").write_text(json.dumps(results))
    assert _table(write_report(tmp_path)) == [
        "| binarize.threshold=0.5, probe.C=1.0, probe.type=linear | 1 | C=1.0 | 0.660 | 0.650 | — | — | — |",
        # Two seeds, 0.50 and 0.54: standard error 0.02, t(0.975, 1 degree of freedom) = 12.706, so 0.52 ± 0.254.
        "| binarize.threshold=None, probe.C=1.0, probe.type=linear | 2 | C=1.0 | 0.610 | 0.520 ± 0.020 | 0.266–0.774 "
        "| — | — |",
        "| **binarize.threshold=None, probe.C=1.0, probe.type=tree** | 1 | C=1.0 | 0.700 | **0.700** | — | — | — |",
        "| binarize.threshold=None, probe.C=10.0, probe.type=linear | 1 | C=10.0 | 0.550 | 0.950 | — | — | — |",
    ]


def test_cv_sits_in_its_own_column_and_when_every_cell_has_it_held_out_the_best_is_chosen_on_it(tmp_path):
    cv = {"macro_f1_mean": 0.8, "macro_f1_std": 0.05, "held_out": True}
    _job(tmp_path / "a" / "0", "sae", "mean", "none", 3, 0.70, val=0.90, cv=cv)
    _job(tmp_path / "a" / "1", "sae", "max", "none", 3, 0.60, val=0.50, cv={**cv, "macro_f1_mean": 0.85})
    assert _table(write_report(tmp_path / "a")) == [
        "| **pooling.method=max** | 1 | C=1.0 | 0.500 | **0.600** | — | — | 0.850 ± 0.050 |",
        "| pooling.method=mean | 1 | C=1.0 | 0.900 | 0.700 | — | — | 0.800 ± 0.050 |",
    ]
    # CV that is not held out (the SAE saw the folds) is shown with † and never picks the winner.
    _job(tmp_path / "b" / "0", "sae", "mean", "none", 3, 0.70, val=0.90, cv=cv)
    _job(tmp_path / "b" / "1", "sae", "max", "none", 3, 0.60, val=0.50, cv={**cv, "macro_f1_mean": 0.85,
                                                                           "held_out": False})
    assert _table(write_report(tmp_path / "b")) == [
        "| pooling.method=max | 1 | C=1.0 | 0.500 | 0.600 | — | — | 0.850 ± 0.050 † |",
        "| **pooling.method=mean** | 1 | C=1.0 | 0.900 | **0.700** | — | — | 0.800 ± 0.050 |",
    ]


def test_a_job_run_twice_counts_once_and_datasets_differing_under_one_name_are_told_apart(tmp_path):
    _job(tmp_path / "old" / "0", "sae", "mean", "none", 3, 0.40, run={"finished": "2026-01-01"})
    _job(tmp_path / "new" / "0", "sae", "mean", "none", 3, 0.60, run={"finished": "2026-02-01"})
    _job(tmp_path / "new" / "1", "sae", "max", "none", 3, 0.50)
    for directory in ("old/0", "new/0"):  # the same config, run in two sweeps
        results = json.loads((tmp_path / directory / "results.json").read_text())
        results["config_hash"] = "same"
        (tmp_path / directory / "results.json").write_text(json.dumps(results))
    assert _table(write_report(tmp_path)) == [
        "| pooling.method=max | 1 | C=1.0 | 0.500 | 0.500 | — | — | — |",
        "| **pooling.method=mean** | 1 | C=1.0 | 0.600 | **0.600** | — | — | — |",
    ]
    # Two files under one dataset name: the table shows the path that tells its rows apart.
    for number, (path, f1) in enumerate((("a.csv", 0.5), ("b.csv", 0.7))):
        _job(tmp_path / "csv" / str(number), "hidden", "mean", "none", 3, f1, dataset="csv")
        results = json.loads((tmp_path / "csv" / str(number) / "results.json").read_text())
        results["config"]["dataset"]["path"] = path
        (tmp_path / "csv" / str(number) / "results.json").write_text(json.dumps(results))
    assert _table(write_report(tmp_path / "csv")) == [
        "| dataset.path=a.csv | 1 | C=1.0 | 0.500 | 0.500 | — | — | — |",
        "| **dataset.path=b.csv** | 1 | C=1.0 | 0.700 | **0.700** | — | — | — |",
    ]


def test_report_of_an_empty_directory_is_a_one_line_error(tmp_path, capsys):
    assert mosaic_cli(["report", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"mosaic: error: no results.json under {tmp_path}"


def _scores(**macro_f1):
    return {"datasets": {name: {"macro_f1": value} for name, value in macro_f1.items()}, "models": {}}


def test_transfer_matrix_is_exact_averages_seeds_and_leaves_unscored_pairs_missing(tmp_path):
    _job(tmp_path / "0", "hidden", "mean", "none", 3, 0.9, dataset="en", transfer=_scores(en=0.9, es=0.6))
    _job(tmp_path / "1", "hidden", "mean", "none", 3, 0.8, dataset="en", seed=1, transfer=_scores(en=0.8, es=0.5))
    _job(tmp_path / "2", "hidden", "mean", "none", 3, 0.7, dataset="es", transfer=_scores(es=0.7))
    _job(tmp_path / "3", "hidden", "max", "none", 3, 0.4, dataset="es", transfer=_scores(es=0.4, en=0.3))
    written = write_report(tmp_path)
    mean_pooling, max_pooling = json.loads(written["transfer"].read_text())
    assert mean_pooling["setting"] == {"pooling.method": "mean"} and max_pooling["setting"] == {"pooling.method": "max"}
    assert (mean_pooling["train"], mean_pooling["test"]) == (["en", "es"], ["en", "es"])
    assert mean_pooling["macro_f1"] == [[pytest.approx(0.85), pytest.approx(0.55)], [None, 0.7]]
    assert (max_pooling["train"], max_pooling["test"], max_pooling["macro_f1"]) == (["es"], ["es", "en"], [[0.4, 0.3]])
    lines = written["markdown"].read_text().splitlines()
    table = lines.index("| trained on | en | es |")
    assert lines[table + 2:table + 4] == ["| en | 0.850 | 0.550 |", "| es | — | 0.700 |"]


def test_report_plots_go_to_wandb_when_the_jobs_logged_there(tmp_path):
    logger = {"type": "wandb", "project": "mosaic-test", "entity": None, "offline": True}
    _job(tmp_path / "0", "sae", "mean", "none", 1, 0.8)
    results = json.loads((tmp_path / "0" / "results.json").read_text())
    results["config"]["logger"] = logger
    (tmp_path / "0" / "results.json").write_text(json.dumps(results))
    written = write_report(tmp_path)
    [run] = (tmp_path / "wandb").glob("offline-run-*")
    [image] = run.glob("files/media/images/report_bastion_*.png")
    assert image.read_bytes() == written["report_bastion"].read_bytes()
    [table] = run.glob("files/media/table/report_*.table.json")
    logged = json.loads(table.read_text())
    assert logged["columns"][:3] == ["dataset", "model", "layer"] and logged["data"][0][:3] == ["bastion", "minilm", 1]
    assert "val_macro_f1" in logged["columns"] and "chosen" in logged["columns"]


def test_two_datasets_under_one_name_are_refused_not_averaged(tmp_path, capsys):
    for number, path in enumerate(("en.csv", "es.csv")):
        _job(tmp_path / str(number), "hidden", "mean", "none", 3, 0.9, dataset="csv", transfer=_scores(es=0.5))
        results = json.loads((tmp_path / str(number) / "results.json").read_text())
        results["config"]["dataset"]["path"] = path
        (tmp_path / str(number) / "results.json").write_text(json.dumps(results))
    assert mosaic_cli(["report", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == ("mosaic: error: two jobs trained on different dataset configs are "
                                               "both named 'csv': give each its own dataset.name")


def test_the_suite_report_is_datasets_by_methods_with_paired_wins_and_curves(tmp_path):
    """Four datasets; SAE k=1 and k=16 against the hidden state; two seeds on one cell."""
    aurocs = {  # dataset -> (SAE k=1, SAE k=16, hidden)
        "a": (0.70, 0.90, 0.80), "b": (0.60, 0.81, 0.812), "c": (0.75, 0.85, 0.95), "d": (0.50, 0.99, 0.90)}
    number = 0
    for dataset, scores in aurocs.items():
        for (features, k), auroc in zip((("sae", 1), ("sae", 16), ("hidden", None)), scores):
            _job(tmp_path / str(number), features, "last", "none", 3, 0.5, dataset=dataset, probe={"k": k}, auroc=auroc)
            number += 1
    _job(tmp_path / "seed1", "hidden", "last", "none", 3, 0.5, dataset="a", probe={"k": None}, auroc=0.84, seed=1)
    written = write_report(tmp_path)
    lines = written["suite_markdown"].read_text().splitlines()
    assert ("| dataset | features.type=hidden, probe.k=all | features.type=sae, probe.k=1 | "
            "features.type=sae, probe.k=16 |") in lines
    # Dataset a's hidden cell: seeds 0.80 and 0.84, mean 0.82, standard error 0.02, t(0.975, 1) = 12.706.
    assert "| a | 0.820 (0.566–1.074) | 0.700 | 0.900 |" in lines
    assert "| d | 0.900 | 0.500 | 0.990 |" in lines
    # k=16 minus hidden: +0.08, -0.002 (a tie, left out of the test), -0.10, +0.09; k=1 loses everywhere.
    from scipy.stats import wilcoxon

    p16 = wilcoxon([0.08, -0.10, 0.09]).pvalue
    p1 = wilcoxon([0.70 - 0.82, 0.60 - 0.812, 0.75 - 0.95, 0.50 - 0.90]).pvalue
    # Holm over the two comparisons: the smaller p doubled, the larger kept (never below the first).
    smaller, larger = sorted([p16, p1])
    holm = {smaller: min(1, 2 * smaller), larger: max(min(1, 2 * smaller), larger)}
    assert (f"| features.type=sae, probe.k=16 | features.type=hidden, probe.k=all | 4 | 2 / 1 / 1 | +0.017 | "
            f"{p16:.3g} | {holm[p16]:.3g} |") in lines
    assert (f"| features.type=sae, probe.k=1 | features.type=hidden, probe.k=all | 4 | 0 / 0 / 4 | -0.233 | "
            f"{p1:.3g} | {holm[p1]:.3g} |") in lines
    with written["suite_csv"].open() as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 12 and {r["method"] for r in rows} >= {"features.type=sae, probe.k=16"}
    curve = written["suite_probe_k"]
    assert curve.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_sae_quality_table_has_one_row_per_sae_and_dataset(tmp_path):
    def quality(fvu, loss=None):
        return {"tokens": 1000, "fvu": fvu, "l0": 32.0, "dead_fraction": 0.05, "always_on_fraction": 0.0,
                "next_token_loss": loss, "held_out": True}

    trained = {"source": "trained", "key": "abcdef0123456789"}
    scope = {"source": "gemma_scope", "release": "gemma-scope-2b-pt-res-canonical", "id": "layer_3/width_16k/canonical"}
    loss = {"ce_increase": 0.25, "kl": 0.2, "loss_recovered": 0.9}
    for number, (sae, fvu, pooling) in enumerate([(trained, 0.2, "mean"), (trained, 0.2, "max"), (scope, 0.3, "mean")]):
        _job(tmp_path / str(number), "sae", pooling, "none", 3, 0.8)
        results = json.loads((tmp_path / str(number) / "results.json").read_text())
        results["features"].update(sae=sae, sae_quality=quality(fvu, loss if sae is scope else None))
        results["cache"] = {"hit": True, "key": sae["source"]}  # the two trained-SAE jobs read one entry
        (tmp_path / str(number) / "results.json").write_text(json.dumps(results))
    _job(tmp_path / "3", "hidden", "mean", "none", 3, 0.7)  # no SAE: no row
    written = write_report(tmp_path)
    lines = written["markdown"].read_text().splitlines()
    start = lines.index("## SAE quality")
    assert lines[start + 6:] == [
        "| minilm | 3 | gemma-scope-2b-pt-res-canonical layer_3/width_16k/canonical | bastion | 1000 | 0.300 | 32.000 "
        "| 5.0% | 0.0% | 0.250 | 0.200 | 90.0% | True |",
        "| minilm | 3 | trained abcdef012345 | bastion | 1000 | 0.200 | 32.000 | 5.0% | 0.0% | — | — | — | True |",
    ]
    with written["sae_quality"].open() as stream:
        assert [float(row["fvu"]) for row in csv.DictReader(stream)] == [0.3, 0.2]
