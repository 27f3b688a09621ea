"""Reports: a synthetic sweep directory with known results gives an exact table; missing is not zero."""

import csv
import json

from mosaic.__main__ import main as mosaic_cli
from mosaic.report import write_report


def _job(directory, features, pooling, binarize, layer, macro_f1, dataset="bastion"):
    directory.mkdir(parents=True)
    results = {
        "config": {"dataset": {"name": dataset}, "model": {"name": "minilm"}, "layer": layer,
                   "sae": {"width": "16k"}, "pooling": {"method": pooling}, "binarize": {"method": binarize},
                   "probe": {"type": "linear"}, "seed": 0},
        "features": {"type": features, "width": 3072} if features == "sae" else {"type": features},
        "metrics": {"macro_f1": macro_f1, "accuracy": macro_f1, "auroc": None},
    }
    (directory / "results.json").write_text(json.dumps(results))


def test_report_table_is_exact_and_marks_missing_cells(tmp_path):
    _job(tmp_path / "0", "sae", "mean", "none", 1, 0.80)
    _job(tmp_path / "1", "sae", "mean", "none", 3, 0.90)
    _job(tmp_path / "2", "sae", "max", "threshold", 3, 0.70)
    _job(tmp_path / "3", "hidden", "mean", "none", 3, 0.75)
    (tmp_path / "4").mkdir()  # a crashed cell: no results.json
    written = write_report(tmp_path)
    assert written["markdown"].read_text().splitlines() == [
        "# MOSAIC report",
        "",
        "## bastion",
        "",
        "macro F1 on the test split (mean over seeds and probes where several ran; ± the cross-validation std "
        "where the jobs ran CV; best in bold)",
        "",
        "| features / pooling / binarize | minilm L1 3072 | minilm L3 | minilm L3 3072 |",
        "| --- | --- | --- | --- |",
        "| hidden / mean / none | — | 0.750 | — |",
        "| sae / max / threshold | — | — | 0.700 |",
        "| sae / mean / none | 0.800 | — | **0.900** |",
    ]
    with written["csv"].open() as stream:
        rows = list(csv.DictReader(stream))
    assert [(r["features"], r["layer"], float(r["macro_f1"])) for r in rows] == [
        ("sae", "1", 0.8), ("sae", "3", 0.9), ("sae", "3", 0.7), ("hidden", "3", 0.75)]
    png = written["report_bastion"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_report_of_an_empty_directory_is_a_one_line_error(tmp_path, capsys):
    assert mosaic_cli(["report", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"mosaic: error: no results.json under {tmp_path}"
