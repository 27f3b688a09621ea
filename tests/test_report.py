"""Reports: a synthetic sweep directory with known results gives an exact table; missing is not zero."""

import csv
import json

import numpy as np
import pytest

from mosaic.__main__ import main as mosaic_cli
from mosaic.report import write_report


def _metrics(f1, auroc=None):
    return {"macro_f1": f1, "accuracy": f1, "balanced_accuracy": f1, "auroc": auroc, "per_class": {},
            "confusion": [[1, 0], [0, 1]]}


def _job(directory, features, pooling, binarize, layer, macro_f1, dataset="bastion", seed=0, val=None, probe=None,
         cv=None, auroc=None, **extra):
    """A job's results.json, complete (it must fit `record.Results`), with the scores a test sets."""
    directory.mkdir(parents=True)
    sae = {"source": "trained", "key": "0123456789abcdef", "name": "trained 0123456789ab"}
    cv_record = None if cv is None else {"folds": 5, "fold_macro_f1": [], "data": "train+val", "refit_per_fold": [],
                                         "not_held_out": None, **cv}
    results = {
        "schema": 4, "config_hash": f"{directory}",
        "config": {"dataset": {"name": dataset}, "model": {"name": "minilm"}, "layer": layer,
                   "sae": {"width": "16k"}, "features": {"type": features}, "pooling": {"method": pooling},
                   "binarize": {"method": binarize}, "probe": {"type": "linear", "C": 1.0, **(probe or {})},
                   "seed": seed, "logger": {"type": "none"}},
        "inputs": {},
        "features": {"type": features, "n_features": 3072, "nnz_per_doc": 1.0,
                     **({} if features == "bow" else {"layer": layer}),
                     **({"width": 3072, "sae": sae} if features == "sae" else {})},
        "metrics": {**_metrics(macro_f1, auroc), "val": _metrics(macro_f1 if val is None else val),
                    **({"cv": cv_record} if cv else {})},
        "hyperparameters": {"C": {"configured": 1.0, "chosen": (probe or {}).get("C", 1.0)}},
        "splits": {"train": 100, "val": 30, "test": 50},
        "probe": {}, "top_features": [], "transfer": None, "behaviour": None, "cache": {"hit": None, "key": None},
        "timings_s": {},
        **extra,
        "run": {"started": "", "finished": "", "host": "", "slurm": None, "versions": {}, **extra.get("run", {})},
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
    _job(tmp_path / "4", "sae", "mean", "none", 3, 0.65, val=0.66)
    results = json.loads((tmp_path / "4" / "results.json").read_text())
    results["config"]["binarize"]["threshold"] = 0.5
    (tmp_path / "4" / "results.json").write_text(json.dumps(results))
    assert _table(write_report(tmp_path)) == [
        # Two seeds, 0.50 and 0.54: sample std 0.028, standard error 0.02, t(0.975, 1 degree of freedom) = 12.706,
        # so 0.52 ± 0.254. Validated on seeds 0 and 1, it is ranked only against cells of the same seeds: none.
        "| **binarize.threshold=None, probe.C=1.0, probe.type=linear** | A | 2 | C=1.0 | 0.610 | **0.520 ± 0.028** "
        "| 0.266–0.774 | — | — |",
        "| binarize.threshold=0.5, probe.C=1.0, probe.type=linear | B | 1 | C=1.0 | 0.660 | 0.650 | — | — | — |",
        "| **binarize.threshold=None, probe.C=1.0, probe.type=tree** | B | 1 | C=1.0 | 0.700 | **0.700** | — | — | — |",
        "| binarize.threshold=None, probe.C=10.0, probe.type=linear | B | 1 | C=10.0 | 0.550 | 0.950 | — | — | — |",
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
    return {"datasets": {name: _metrics(value) for name, value in macro_f1.items()}, "models": {}}


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


def _suite_job(directory, dataset, features, k, auroc, probe="linear", seed=0):
    _job(directory, features, "last", "none", 3, 0.5, dataset=dataset, probe={"k": k, "type": probe}, auroc=auroc,
         seed=seed)


SUITE = {  # dataset -> (SAE k=16, hidden k=16, SAE every latent, hidden every latent, hidden kNN)
    "a": (0.80, 0.85, 0.90, 0.92, 0.88), "b": (0.70, 0.72, 0.81, 0.812, 0.78), "c": (0.75, 0.65, 0.85, 0.95, 0.80),
    "d": (0.60, 0.66, 0.99, 0.90, 0.97), "e": (0.55, 0.60, 0.70, 0.75, 0.72)}


def _suite_sweep(directory):
    for dataset, scores in SUITE.items():
        methods = (("sae", 16, "linear"), ("hidden", 16, "linear"), ("sae", None, "linear"),
                   ("hidden", None, "linear"), ("hidden", None, "knn"))
        for (features, k, probe), auroc in zip(methods, scores):
            _suite_job(directory / f"{dataset}{features}{k}{probe}", dataset, features, k, auroc, probe)
    # A second seed of dataset a's every-latent cells.
    _suite_job(directory / "a-sae-1", "a", "sae", None, 0.91, seed=1)
    _suite_job(directory / "a-hidden-1", "a", "hidden", None, 0.96, seed=1)


def _holm(p_values, family_size):
    """Holm by hand: sorted p-values times (m - rank), running maximum, at most 1."""
    adjusted, running = {}, 0.0
    for rank, p in enumerate(sorted(p_values)):
        running = max(running, min(1.0, (family_size - rank) * p))
        adjusted[p] = running
    return adjusted


def test_the_suite_report_pairs_methods_only_at_equal_settings_with_fixed_holm_families(tmp_path):
    from scipy.stats import wilcoxon

    _suite_sweep(tmp_path / "sweep")
    written = write_report(tmp_path / "sweep")
    lines = written["suite_markdown"].read_text().splitlines()
    sae16, hidden16 = ("features.type=sae, probe.k=16, probe.type=linear",
                       "features.type=hidden, probe.k=16, probe.type=linear")
    sae, hidden, knn = ("features.type=sae, probe.k=all, probe.type=linear",
                        "features.type=hidden, probe.k=all, probe.type=linear",
                        "features.type=hidden, probe.k=all, probe.type=knn")
    assert f"| dataset | {hidden16} | {knn} | {hidden} | {sae16} | {sae} |" in lines
    # Dataset a, every latent: seeds 0.92 and 0.96 (mean 0.94, standard error 0.02, t(0.975, 1) = 12.706: the
    # interval's top, 1.194, clipped to 1) and 0.90 and 0.91 (standard error 0.005).
    assert "| a | 0.850 | 0.880 | 0.940 (0.686–1.000) | 0.800 | 0.905 (0.841–0.969) |" in lines
    # k = 16 against the hidden state at k = 16 alone: a family of one, so Holm leaves p as it is.
    p16 = wilcoxon([-0.05, -0.02, 0.10, -0.06, -0.05]).pvalue
    assert f"| {sae16} | {hidden16} | 5 | 1 / 0 / 4 | -0.016 | {p16:.3g} | {p16:.3g} | — |" in lines
    assert not [line for line in lines if line.startswith(f"| {sae16} | {hidden} ") or
                line.startswith(f"| {sae16} | {knn} ")]  # never against cells of another k
    # Every latent: a family of six declared comparisons (the same probe, then the suite's five baselines), two run.
    # Differences: -0.035, -0.002 (a tie, left out of the test), -0.10, +0.09, -0.05; and +0.025, +0.03, +0.05,
    # +0.02, -0.02 against kNN.
    p_logistic = wilcoxon([-0.035, -0.10, 0.09, -0.05]).pvalue
    p_knn = wilcoxon([0.025, 0.03, 0.05, 0.02, -0.02]).pvalue
    holm = _holm([p_logistic, p_knn], 6)
    # Dataset a's verdict (a loss) holds at both seeds; the others have one seed, so they say nothing.
    assert (f"| {sae} | {hidden} | 5 | 1 / 1 / 3 | -0.019 | {p_logistic:.3g} | {holm[p_logistic]:.3g} | 1 of 1 |"
            in lines)
    assert f"| {sae} | {knn} | 5 | 4 / 0 / 1 | +0.021 | {p_knn:.3g} | {holm[p_knn]:.3g} | — |" in lines
    assert f"| {sae} | features=hidden, probe=mlp (not run) | 0 | — | — | — | — | — |" in lines
    assert any(line.startswith("Families not complete for 1 method(s)") for line in lines)
    with written["suite_csv"].open() as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 25 and {r["method"] for r in rows} >= {sae16}

    # More cells in the directory (another k for both feature types) change no declared comparison's p-value.
    for dataset in SUITE:
        _suite_job(tmp_path / "sweep" / f"{dataset}-sae-k1", dataset, "sae", 1, 0.55)
        _suite_job(tmp_path / "sweep" / f"{dataset}-hidden-k1", dataset, "hidden", 1, 0.58)
    again = write_report(tmp_path / "sweep")["suite_markdown"].read_text().splitlines()
    assert [line for line in lines if line.startswith(f"| {sae}")] == [line for line in again
                                                                        if line.startswith(f"| {sae}")]
    assert [line for line in lines if line.startswith(f"| {sae16}")] == [line for line in again
                                                                          if line.startswith(f"| {sae16}")]


def test_suite_curves_average_only_over_datasets_present_at_every_point(tmp_path, monkeypatch):
    import mosaic.report.suite as suite

    plotted = {}
    original = suite._curve

    def recording(cells, key, path):
        import matplotlib.axes

        real_plot = matplotlib.axes.Axes.plot

        def plot(self, xs, ys, *args, label=None, **kwargs):
            plotted[label] = (list(xs), list(ys))
            return real_plot(self, xs, ys, *args, label=label, **kwargs)

        monkeypatch.setattr(matplotlib.axes.Axes, "plot", plot)
        return original(cells, key, path)

    monkeypatch.setattr(suite, "_curve", recording)
    for dataset, scores in {"a": (0.6, 0.8), "b": (0.7, 0.9), "c": (None, 0.5)}.items():  # c lacks k = 1
        for k, auroc in zip((1, 16), scores):
            if auroc is not None:
                _suite_job(tmp_path / f"{dataset}{k}", dataset, "sae", k, auroc)
    assert write_report(tmp_path)["suite_probe_k"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Over a and b only: (0.6 + 0.7) / 2 at k = 1, (0.8 + 0.9) / 2 at k = 16; c's 0.5 would pull k = 16 down.
    (label, (xs, ys)), = plotted.items()
    assert label.endswith("(n=2)") and xs == [1, 16] and ys == pytest.approx([0.65, 0.85])


def test_the_sae_quality_table_has_one_row_per_sae_and_dataset(tmp_path):
    def quality(fvu, loss=None):
        # The Gemma Scope SAE read 5,000 tokens, the trained one 1,000: dead latents compare on the reference budget.
        tokens = 5000 if loss else 1000
        reference = {"tokens": min(tokens, 4096), "dead_fraction": 0.01 if loss else 0.05, "always_on_fraction": 0.0}
        return {"tokens": tokens, "fvu": fvu, "l0": 32.0, "dead_fraction": 0.002 if loss else 0.05,
                "always_on_fraction": 0.0, "reference": reference, "next_token_loss": loss, "held_out": True}

    # Named as their sources name them in results.json (`features.sae.name`).
    trained = {"source": "trained", "key": "abcdef0123456789", "name": "trained abcdef012345", "width": "3072",
               "architecture": "topk k=32"}
    scope = {"source": "gemma_scope", "release": "gemma-scope-2b-pt-res-canonical", "id": "layer_3/width_16k/canonical",
             "name": "gemma-scope-2b-pt-res-canonical layer_3/width_16k/canonical", "width": "16k"}
    loss = {"ce_increase": 0.25, "kl": 0.2, "loss_recovered": 0.9}
    for number, (sae, fvu, pooling) in enumerate([(trained, 0.2, "mean"), (trained, 0.2, "max"), (scope, 0.3, "mean")]):
        _job(tmp_path / str(number), "sae", pooling, "none", 3, 0.8)
        results = json.loads((tmp_path / str(number) / "results.json").read_text())
        results["features"].update(sae=sae, sae_quality=quality(fvu, loss if sae is scope else None),
                                   sae_training=None if sae is scope else {"seconds": 90.0})
        results["cache"] = {"hit": True, "key": sae["source"]}  # the two trained-SAE jobs read one entry
        (tmp_path / str(number) / "results.json").write_text(json.dumps(results))
    _job(tmp_path / "3", "hidden", "mean", "none", 3, 0.7)  # no SAE: no row
    written = write_report(tmp_path)
    lines = written["markdown"].read_text().splitlines()
    start = lines.index("## SAE quality")
    header = next(i for i in range(start, len(lines)) if lines[i].startswith("| model"))
    assert lines[header].split(" | ")[3:13] == ["architecture", "width", "build_minutes", "dataset", "tokens", "fvu",
                                                 "l0", "reference_tokens", "reference_dead_fraction",
                                                 "reference_always_on_fraction"]
    assert lines[header + 2:] == [
        "| minilm | 3 | gemma-scope-2b-pt-res-canonical layer_3/width_16k/canonical | — | 16k | — | bastion | 5000 "
        "| 0.300 | 32.000 | 4096 | 1.0% | 0.0% | 0.250 | 0.200 | 90.0% | True |",
        "| minilm | 3 | trained abcdef012345 | topk k=32 | 3072 | 1.5 | bastion | 1000 | 0.200 | 32.000 | 1000 | 5.0% "
        "| 0.0% | — | — | — | True |",
    ]
    assert ("Rows with fewer than 4,096 reference tokens (1000) do not compare with the others on dead and always-on "
            "latents.") in lines
    with written["sae_quality"].open() as stream:
        rows = list(csv.DictReader(stream))
    # The CSV keeps the full-budget figures too, each with the token count it was measured on.
    assert [(float(r["fvu"]), r["tokens"], float(r["dead_fraction"])) for r in rows] == [(0.3, "5000", 0.002),
                                                                                     (0.2, "1000", 0.05)]


def _splits(val_key="v", val=30, test=50, **duplicates):
    return {"train": 100, "val": val, "test": test, "keys": {"val": val_key, "train_val": "t" + val_key},
            **({"duplicates": duplicates} if duplicates else {})}


def test_seeds_that_reach_no_random_draw_are_one_replicate_and_one_run_logged_twice_counts_once(tmp_path):
    # A dataset with its own splits and a deterministic probe: five seeds, one result.
    for seed in range(5):
        _job(tmp_path / f"s{seed}", "sae", "mean", "none", 3, 0.70, seed=seed, splits=_splits(),
             randomness={"seed": seed, "seeded": [], "pinned": {"SAE training": "sae.seed=0"}})
    # The same job logged elsewhere: the same run, not a sixth seed.
    _job(tmp_path / "logged", "sae", "mean", "none", 3, 0.70, seed=0, splits=_splits(),
         randomness={"seed": 0, "seeded": [], "pinned": {}})
    results = json.loads((tmp_path / "logged" / "results.json").read_text())
    results["config"]["logger"] = {"type": "none", "project": "elsewhere"}
    (tmp_path / "logged" / "results.json").write_text(json.dumps(results))
    assert _table(write_report(tmp_path)) == [
        "| **(the sweep's only configuration)** | 1 (5 seeds identical: the seed reaches no random draw) | C=1.0 "
        "| 0.700 | **0.700** | — | — | — |"]
    # Where the seed draws the splits, the same five seeds are five replicates with an interval.
    for seed, f1 in enumerate((0.6, 0.7, 0.8, 0.7, 0.7)):
        _job(tmp_path / "drawn" / str(seed), "sae", "mean", "none", 3, f1, seed=seed, splits=_splits(f"v{seed}"),
             randomness={"seed": seed, "seeded": ["splits"], "pinned": {}})
    [row] = _table(write_report(tmp_path / "drawn"))
    # Sample std of 0.6, 0.7, 0.8, 0.7, 0.7: sqrt(0.02 / 4) = 0.0707; t(0.975, 4) = 2.776, standard error 0.0316.
    assert "| 5 |" in row and "**0.700 ± 0.071** | 0.612–0.788 |" in row


def test_the_best_is_chosen_only_among_cells_validated_on_the_same_documents_and_labels(tmp_path):
    # A scarcity sweep: n_train=4 validates on 2 documents, n_train=256 on 51; features sae and hidden at each.
    for n_train, val, scores in ((4, 2, {"sae": (1.0, 0.55), "hidden": (0.5, 0.60)}),
                                 (256, 51, {"sae": (0.70, 0.72), "hidden": (0.80, 0.78)})):
        for features, (val_f1, test_f1) in scores.items():
            _job(tmp_path / f"{n_train}{features}", features, "mean", "none", 3, test_f1, val=val_f1,
                 splits=_splits(f"v{n_train}", val=val))
            results = json.loads((tmp_path / f"{n_train}{features}" / "results.json").read_text())
            results["config"]["regime"] = {"type": "scarcity", "n_train": n_train}
            (tmp_path / f"{n_train}{features}" / "results.json").write_text(json.dumps(results))
    written = write_report(tmp_path)
    text = written["markdown"].read_text()
    # The 2-document set's lucky 1.0 makes nothing "best"; the 51-document set picks its own.
    assert _table(written) == [
        "| **features.type=hidden, regime.n_train=256** | A | 1 | C=1.0 | 0.800 | **0.780** | — | — | — |",
        "| features.type=sae, regime.n_train=256 | A | 1 | C=1.0 | 0.700 | 0.720 | — | — | — |",
        "| features.type=hidden, regime.n_train=4 | B | 1 | C=1.0 | 0.500 | 0.600 | — | — | — |",
        "| features.type=sae, regime.n_train=4 | B | 1 | C=1.0 | 1.000 | 0.550 | — | — | — |",
    ]
    assert ("- set B: no best, the validation split has 2 documents, fewer than the 20 needed to rank cells"
            in text)
    # The plots follow the same sets: one figure for set A, none for B.
    assert "report_bastion_A" in written and "report_bastion_B" not in written


def test_a_report_says_when_duplicates_were_kept_and_when_labels_conflict(tmp_path):
    copies = {"dedup": False, "conflicting_texts": 3, "across_splits": {"val_in_train": 4, "test_in_train": 12,
                                                                         "test_in_val": 2, "test_copies": 13,
                                                                         "removed": False}}
    _job(tmp_path / "0", "hidden", "mean", "none", 3, 0.8, splits=_splits(test=40, **copies))
    text = write_report(tmp_path)["markdown"].read_text()
    assert ("Duplicates kept (`dataset.dedup=false`, e.g. the peer's protocol): in the job where they are most, 13 "
            "of 40 test documents have a copy in training or validation, which favours probes that memorise.") in text
    assert "3 texts appear with conflicting labels (kept)." in text


def test_a_family_is_declared_from_each_jobs_own_k_even_where_k_does_not_vary(tmp_path):
    """Every cell at k = 16: SAE against hidden at k = 16 is a family of one, whatever else the directory holds."""
    from scipy.stats import wilcoxon

    differences = {"a": 0.05, "b": -0.03, "c": 0.04, "d": 0.02, "e": 0.06, "f": -0.01}
    for dataset, difference in differences.items():
        _suite_job(tmp_path / f"{dataset}-sae", dataset, "sae", 16, 0.7 + difference)
        _suite_job(tmp_path / f"{dataset}-hidden", dataset, "hidden", 16, 0.7)
    lines = write_report(tmp_path)["suite_markdown"].read_text().splitlines()
    p = wilcoxon(list(differences.values())).pvalue
    assert f"| features.type=sae | features.type=hidden | 6 | 4 / 0 / 2 | +0.022 | {p:.3g} | {p:.3g} | — |" in lines


def test_seeds_that_reach_only_cross_validation_folds_are_not_replicates_of_the_test_score(tmp_path):
    for seed in range(3):
        _job(tmp_path / str(seed), "bow", "mean", "none", 3, 0.833, seed=seed, splits=_splits(),
             randomness={"seed": seed, "seeded": ["cross-validation folds"], "pinned": {}})
    [row] = _table(write_report(tmp_path))
    assert "| 1 (3 seeds identical: the seed reaches no random draw) |" in row and "±" not in row


# dataset -> (SAE attention, hidden attention, SAE logistic last, hidden logistic last, hidden XGBoost last)
ATTENTION_SUITE = {
    "a": (0.90, 0.93, 0.85, 0.90, 0.91), "b": (0.80, 0.70, 0.79, 0.74, 0.60), "c": (0.75, 0.86, 0.70, 0.80, 0.82),
    "d": (0.66, 0.70, 0.64, 0.69, 0.75), "e": (0.95, 0.96, 0.90, 0.91, 0.90)}


def test_the_suite_report_compares_attention_with_the_suites_probe_on_the_last_token(tmp_path):
    from scipy.stats import wilcoxon

    attention = {"type": "attention", "k": None, "lr_grid": [0.001, 0.01]}
    for dataset, scores in ATTENTION_SUITE.items():
        methods = (("sae", "tokens", attention), ("hidden", "tokens", attention), ("sae", "last", {"type": "sklearn"}),
                   ("hidden", "last", {"type": "sklearn"}), ("hidden", "last", {"type": "boosted_trees"}))
        for (features, pooling, probe), auroc in zip(methods, scores):
            _job(tmp_path / f"{dataset}{features}{pooling}{probe['type']}", features, pooling, "none", 3, 0.5,
                 dataset=dataset, probe={"k": None, **probe}, auroc=auroc)
    lines = write_report(tmp_path)["suite_markdown"].read_text().splitlines()
    # The attention probe's learning rates vary across the sweep with the probe type alone: its name says them.
    sae_attention, hidden_attention = (f"features.type={f}, pooling.method=tokens, probe.type=attention"
                                       for f in ("sae", "hidden"))
    sae_last, hidden_last, xgboost = (
        f"features.type={f}, pooling.method=last, probe.type={p}"
        for f, p in (("sae", "sklearn"), ("hidden", "sklearn"), ("hidden", "boosted_trees")))

    def row(ours, theirs, column):
        differences = [scores[ours] - scores[column] for scores in ATTENTION_SUITE.values()]
        p = wilcoxon([d for d in differences if abs(d) > 0.005]).pvalue
        wins, ties = sum(d > 0.005 for d in differences), sum(abs(d) <= 0.005 for d in differences)
        return p, (f"| {ours_name[ours]} | {theirs} | 5 | {wins} / {ties} / {5 - wins - ties} | "
                   f"{np.mean(differences):+.3f} | {p:.3g} |")

    ours_name = {0: sae_attention, 1: hidden_attention}
    # SAE attention: against hidden attention (same probe, same pooling) and the SAE's own logistic probe on the
    # last token; a family of two, both run.
    p_hidden, against_hidden = row(0, hidden_attention, 1)
    p_last, against_last = row(0, sae_last, 2)
    holm = _holm([p_hidden, p_last], 2)
    assert f"{against_hidden} {holm[p_hidden]:.3g} | — |" in lines
    assert f"{against_last} {holm[p_last]:.3g} | — |" in lines
    # Hidden attention: against the logistic probe and each of the five baselines on the last token; two of six run.
    p_logistic, against_logistic = row(1, hidden_last, 3)
    p_xgboost, against_xgboost = row(1, xgboost, 4)
    holm = _holm([p_logistic, p_xgboost], 6)
    assert f"{against_logistic} {holm[p_logistic]:.3g} | — |" in lines
    assert f"{against_xgboost} {holm[p_xgboost]:.3g} | — |" in lines
    assert (f"| {hidden_attention} | features=hidden, probe=mlp, pooling=last (not run) | 0 | — | — | — | — | — |"
            in lines)
    # Never an attention method against a cell of another pooling with the same probe, nor SAE-last against
    # attention.
    assert not [line for line in lines if line.startswith(f"| {sae_last} | {hidden_attention} ")]


def test_saes_compared_average_every_method_over_the_datasets_all_of_them_scored_at_each_k(tmp_path):
    """Two trained SAEs and the hidden state over three datasets at k = 16 and all; SAE B has no k = 16 job on
    the third dataset, so at k = 16 every method is averaged over the first two alone. Seeds average first.
    The SAE named best at each k is the best on validation AUROC, which here disagrees with test at k = 16."""
    saes = {"A": ({"source": "trained", "key": "a" * 16, "name": "trained aaaa", "width": "3072",
                   "architecture": "topk k=64"}, [0.2, 0.4, 0.3], 300.0),
            "B": ({"source": "trained", "key": "b" * 16, "name": "trained bbbb", "width": "3072",
                   "architecture": "standard"}, [0.5, 0.5, 0.6], 60.0)}
    auroc = {("A", 16): [0.80, 0.70, 0.90], ("A", None): [0.85, 0.75, 0.95], ("B", 16): [0.60, 0.70, None],
             ("B", None): [0.70, 0.72, 0.74], ("hidden", 16): [0.90, 0.80, 0.50], ("hidden", None): [0.95, 0.85, 0.9]}
    # Validation AUROC by dataset: at k = 16, B leads on d1 and d2 (0.70 against 0.60), while A's 0.99 on d3,
    # which B never scored, would put A first if it counted; the hidden state's, highest of all, is no SAE's.
    validation = {("A", 16): [0.60, 0.60, 0.99], ("A", None): [0.90, 0.90, 0.90], ("B", 16): [0.70, 0.70, None],
                  ("B", None): [0.80, 0.85, 0.80], ("hidden", 16): [1.0] * 3, ("hidden", None): [1.0] * 3}
    number = 0
    for (method, k), scores in auroc.items():
        for dataset, score in zip(["d1", "d2", "d3"], scores):
            for seed, shift in ((0, -0.01), (1, 0.01)):  # two seeds around the score: their mean is the score
                if score is None:
                    continue
                directory = tmp_path / str(number)
                number += 1
                _job(directory, "hidden" if method == "hidden" else "sae", "last", "none", 3, 0.5, dataset=dataset,
                     seed=seed, auroc=score + shift, probe={"k": k})
                results = json.loads((directory / "results.json").read_text())
                results["metrics"]["val"]["auroc"] = validation[method, k][int(dataset[1]) - 1]
                (directory / "results.json").write_text(json.dumps(results))
                if method != "hidden":
                    sae, fvus, seconds = saes[method]
                    results = json.loads((directory / "results.json").read_text())
                    fvu = fvus[int(dataset[1]) - 1]
                    results["features"].update(sae=sae, sae_training={"seconds": seconds}, sae_quality={
                        "tokens": 5000, "fvu": fvu, "l0": 64.0, "dead_fraction": 0.0, "always_on_fraction": 0.0,
                        "reference": {"tokens": 4096, "dead_fraction": 0.02, "always_on_fraction": 0.0},
                        "next_token_loss": None, "held_out": True})
                    results["cache"] = {"hit": True, "key": f"{method}-{dataset}"}
                    results["config"]["sae"]["architecture"] = sae["architecture"]  # what tells the jobs apart
                    (directory / "results.json").write_text(json.dumps(results))
    written = write_report(tmp_path)
    lines = written["markdown"].read_text().splitlines()
    start = lines.index("## SAEs compared")
    header = next(i for i in range(start, len(lines)) if lines[i].startswith("| SAE"))
    assert lines[header].endswith("| AUROC k=16 (2 datasets) | AUROC k=all (3 datasets) |")
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in lines[header + 2: header + 5]}
    # Sorted by FVU: A (mean 0.3) first, then B (0.533), then the hidden state.
    assert list(rows) == ["trained aaaa", "trained bbbb", "hidden state"]
    assert rows["trained aaaa"][1:7] == ["topk k=64", "3072", "5.0", "0.300", "64.0", "2.0%"]
    assert rows["trained bbbb"][4] == "0.533"

    def centre(cell):
        return float(cell.split(" ")[0].strip(" |"))

    # k = 16 over d1 and d2 only: A (0.80 + 0.70) / 2, B (0.60 + 0.70) / 2, hidden (0.90 + 0.80) / 2.
    assert [centre(rows[name][7]) for name in rows] == pytest.approx([0.75, 0.65, 0.85], abs=1e-3)
    assert [centre(rows[name][8]) for name in rows] == pytest.approx([0.85, 0.72, 0.9], abs=1e-3)
    # The interval is Student's t over the datasets' means: for A at k = all, 0.85 ± t(0.975, 2) x 0.1 / sqrt(3).
    from scipy import stats

    half = stats.t.ppf(0.975, 2) * 0.1 / np.sqrt(3)
    assert rows["trained aaaa"][8].strip(" |") == f"0.850 [{0.85 - half:.3f}, {min(1.0, 0.85 + half):.3f}]"
    assert written["sae_tradeoff"].name == "sae_tradeoff.png" and written["sae_tradeoff"].stat().st_size > 10000
    # k = 16: B, (0.70 + 0.70) / 2 against A's (0.60 + 0.60) / 2, though A wins on test; k = all: A, 0.90 against
    # B's (0.80 + 0.85 + 0.80) / 3.
    assert ("Best SAE on validation (mean validation AUROC of the chosen C, same datasets): k=16: trained bbbb "
            "(0.700); k=all: trained aaaa (0.900).") in lines


def test_a_hidden_state_method_in_a_sweep_over_saes_is_named_without_the_sae_settings_and_met_by_each_sae(tmp_path):
    """The hidden state's jobs carry the SAE keys' defaults (sae.k = 32, or 64 where it was run beside that SAE);
    they cannot change its scores, so its method is `features.type=hidden`, one cell of one replicate per dataset
    however many SAE settings it ran beside, and both SAEs (sae.k = 32 and 64) are compared with it."""
    aurocs = {"a": (0.70, 0.75, 0.80), "b": (0.60, 0.66, 0.65), "c": (0.90, 0.80, 0.95)}  # hidden, k=32, k=64
    for dataset, (hidden, sae32, sae64) in aurocs.items():
        for name, features, sae_k, auroc in (("h", "hidden", 32, hidden), ("h64", "hidden", 64, hidden),
                                             ("s32", "sae", 32, sae32), ("s64", "sae", 64, sae64)):
            _suite_job(tmp_path / "sweep" / f"{dataset}{name}", dataset, features, 16, auroc)
            path = tmp_path / "sweep" / f"{dataset}{name}" / "results.json"
            results = json.loads(path.read_text())
            results["config"]["sae"]["k"] = sae_k
            path.write_text(json.dumps(results))
    written = write_report(tmp_path / "sweep")
    lines = written["suite_markdown"].read_text().splitlines()
    hidden = "features.type=hidden"
    report = written["markdown"].read_text().replace("**", "").splitlines()  # bold marks the best row
    assert sum(line.startswith(f"| {hidden} | 1 | ") for line in report) == 3  # one row per dataset, n = 1
    assert not [line for line in report if line.startswith(f"| {hidden},")]
    with written["csv"].open() as stream:
        table = list(csv.DictReader(stream))
    assert sorted((row["features"], row["sae.k"]) for row in table) == sorted(
        [("hidden", "")] * 6 + [("sae", "32")] * 3 + [("sae", "64")] * 3)
    assert f"| dataset | {hidden} | features.type=sae, sae.k=32 | features.type=sae, sae.k=64 |" in lines
    # k = 32: +0.05, +0.06, -0.10 (2 / 0 / 1, mean +0.003); k = 64: +0.10, +0.05, +0.05 (3 / 0 / 0, +0.067).
    assert any(line.startswith(f"| features.type=sae, sae.k=32 | {hidden} | 3 | 2 / 0 / 1 | +0.003 |")
               for line in lines)
    assert any(line.startswith(f"| features.type=sae, sae.k=64 | {hidden} | 3 | 3 / 0 / 0 | +0.067 |")
               for line in lines)
