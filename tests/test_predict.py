"""`python -m mosaic predict` (`predict.py`): new texts through a saved job's features and probe."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from mosaic.pipeline import run
from tests.conftest import TINY_HIDDEN, compose_config


def test_predict_labels_new_texts_like_the_job_scored_them(tmp_path, capsys):
    from mosaic.__main__ import main as mosaic_cli
    from mosaic.data import load_labelled_documents, make_splits

    cfg = compose_config(*TINY_HIDDEN, "probe=sklearn")
    trained = run(cfg, tmp_path / "job")
    data = load_labelled_documents(cfg.dataset)
    test = make_splits(data.labels, cfg.seed, cfg.dataset.val_size, cfg.dataset.test_size).test
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(data.documents[i].replace("\n", " ") for i in test) + "\n")
    capsys.readouterr()  # drop the training job's own table
    assert mosaic_cli(["predict", str(tmp_path / "job" / "probe"), str(texts)]) == 0
    lines = [line.split("\t") for line in capsys.readouterr().out.strip().splitlines()]
    # Each printed probability is the saved probe's on the job's own cached test features.
    from mosaic.activations.store import read_hidden
    from mosaic.probes import load_probe

    probe, _ = load_probe(tmp_path / "job" / "probe")
    cached = read_hidden(Path(os.environ["MOSAIC_CACHE"]) / "activations" / trained["cache"]["key"], "mean")
    expected = probe.predict_proba(cached[test]).max(axis=1)
    assert len(lines) == len(test)
    np.testing.assert_allclose([float(p) for _, p in lines], expected, atol=1e-4)
    # The same documents through the same features and probe: the job's test accuracy again.
    correct = sum(label == data.label_names[data.labels[i]] for (label, _), i in zip(lines, test))
    assert correct / len(test) == pytest.approx(trained["metrics"]["accuracy"])
    # A probe saved before the image keys existed still predicts: missing keys take the schema's defaults.
    saved = json.loads((tmp_path / "job" / "probe" / "probe.json").read_text())
    del saved["config"]["dataset"]["modality"], saved["config"]["model"]["prompt"]
    (tmp_path / "job" / "probe" / "probe.json").write_text(json.dumps(saved))
    assert mosaic_cli(["predict", str(tmp_path / "job" / "probe"), str(texts)]) == 0
    assert [line.split("\t") for line in capsys.readouterr().out.strip().splitlines()] == lines
