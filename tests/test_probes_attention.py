"""The attention probe against independent references: a task only attention can solve, and a naive loop."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from mosaic.features.tokens import TokenFeatures
from mosaic.probes.attention import train_attention_probe


def planted_conjunction(n_documents: int, seed: int) -> tuple[TokenFeatures, np.ndarray]:
    """Documents of 5-20 noisy tokens. Class 1: one token, at a random position, carries features 0 and 1
    together; class 0: one token carries feature 0 and another feature 1. Every document has one of each,
    so mean and max pooling see the same totals in both classes; only where they sit tells them apart."""
    rng = np.random.default_rng(seed)
    rows, offsets, labels = [], [0], rng.integers(0, 2, n_documents)
    for label in labels:
        length = rng.integers(5, 21)
        tokens = rng.random((length, 8)) * (rng.random((length, 8)) < 0.3)
        tokens[:, :2] = 0
        first, second = rng.choice(length, 2, replace=False)
        tokens[first, 0] = 1
        tokens[first if label else second, 1] = 1
        rows.append(tokens)
        offsets.append(offsets[-1] + length)
    return TokenFeatures(sp.csr_matrix(np.vstack(rows)), np.array(offsets)), labels


def test_attention_finds_a_planted_conjunction_that_mean_pooling_cannot():
    (train, y_train), (val, y_val), (test, y_test) = (planted_conjunction(n, seed) for n, seed in
                                                      ((400, 0), (100, 1), (300, 2)))
    probe = train_attention_probe(train, y_train, val, y_val, 2, np.ones(2), heads=1, lr=0.05, weight_decay=0.0,
                                batch_size=32, max_epochs=80, patience=15, seed=0)
    attention_auroc = roc_auc_score(y_test, probe.predict_proba(test)[:, 1])

    def mean_pooled(features):
        bounds = zip(features.offsets, features.offsets[1:])
        return np.vstack([np.asarray(features.codes[a:b].mean(axis=0)) for a, b in bounds])

    reference = LogisticRegression(max_iter=1000).fit(mean_pooled(train), y_train)
    mean_auroc = roc_auc_score(y_test, reference.predict_proba(mean_pooled(test))[:, 1])
    assert attention_auroc > 0.95 and mean_auroc < 0.65, (attention_auroc, mean_auroc)
    # Where it looked: in a class-1 document, the token that carries both features.
    document = int(np.flatnonzero(y_test == 1)[0])
    tokens = test.codes[test.offsets[document]:test.offsets[document + 1]].toarray()
    weights = probe.attention(test, document)[:, 0]
    assert weights.sum() == pytest.approx(1.0)
    assert tokens[weights.argmax(), 0] == 1 and tokens[weights.argmax(), 1] == 1


def test_a_saved_attention_probe_loads_to_the_same_probabilities_and_attention(tmp_path):
    from mosaic.probes import load_probe

    train, y_train = planted_conjunction(40, 5)
    probe = train_attention_probe(train, y_train, train, y_train, 2, np.ones(2), heads=2, lr=0.05, weight_decay=0.01,
                                batch_size=8, max_epochs=3, patience=3, seed=1)
    probe.save(tmp_path / "probe", {"classes": ["a", "b"]})
    loaded, metadata = load_probe(tmp_path / "probe")
    assert metadata["kind"] == "attention" and metadata["classes"] == ["a", "b"]
    assert loaded.heads == 2 and loaded.summary == probe.summary
    np.testing.assert_array_equal(loaded.predict_proba(train), probe.predict_proba(train))
    np.testing.assert_array_equal(loaded.attention(train, 3), probe.attention(train, 3))


def test_a_naive_torch_loop_reproduces_the_probes_loss_curve():
    train, y_train = planted_conjunction(14, 3)
    val, y_val = planted_conjunction(6, 4)
    class_weights = np.array([0.8, 1.25])
    heads, lr, weight_decay, batch, epochs, seed = 2, 0.03, 0.01, 4, 5, 7
    probe = train_attention_probe(train, y_train, val, y_val, 2, class_weights, heads=heads, lr=lr,
                                weight_decay=weight_decay, batch_size=batch, max_epochs=epochs, patience=100, seed=seed)

    # The same model written out by hand: dense tokens, a loop over documents, torch's AdamW.
    torch.manual_seed(seed)
    n_features = train.n_features
    projection = torch.empty(heads * 3, n_features).normal_(std=n_features**-0.5).requires_grad_()
    bias = torch.zeros(2, requires_grad=True)
    optimizer = torch.optim.AdamW([projection, bias], lr=lr, weight_decay=weight_decay)
    order = torch.Generator().manual_seed(seed)
    dense = torch.from_numpy(train.codes.toarray()).float()
    curve = []
    for _ in range(epochs):
        total, seen = 0.0, 0
        permutation = torch.randperm(len(y_train), generator=order).tolist()
        for start in range(0, len(permutation), batch):
            documents = permutation[start:start + batch]
            losses = []
            for document in documents:
                tokens = dense[train.offsets[document]:train.offsets[document + 1]]
                logits = bias.clone()
                for head in range(heads):
                    weights = torch.softmax(tokens @ projection[head], dim=0)
                    values = tokens @ projection[heads + 2 * head: heads + 2 * head + 2].T
                    logits = logits + weights @ values
                label = int(y_train[document])
                loss = torch.nn.functional.cross_entropy(logits[None], torch.tensor([label]))
                losses.append(class_weights[label] * loss)
            loss = torch.stack(losses).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, seen = total + float(loss) * len(documents), seen + len(documents)
        curve.append(total / seen)
    assert probe.summary["train_loss_by_epoch"] == pytest.approx(curve, rel=1e-5)


ATTENTION_JOB = ["model=tiny_gpt2", "layer=1", "logger=none", "dataset.limit=60", "probe=attention", "pooling=tokens",
                 "probe.max_epochs=15", "probe.patience=5"]


def _cached_token_rows(results):
    import os
    from pathlib import Path

    from mosaic.activations.store import read_hidden_tokens

    entry = Path(os.environ["MOSAIC_CACHE"]) / "activations" / results["cache"]["key"]
    return read_hidden_tokens(entry, 32)


def test_an_attention_job_reads_every_token_and_records_where_it_looked(tmp_path, capsys):
    from mosaic.__main__ import main as mosaic_cli
    from mosaic.activations import extract_activations, load_model
    from mosaic.data import load_labelled_documents, make_splits
    from mosaic.features.tokens import from_bfloat16_bits
    from mosaic.pipeline import run
    from mosaic.probes import load_probe
    from tests.conftest import compose_config

    cfg = compose_config(*ATTENTION_JOB, "features=hidden")
    results = run(cfg, tmp_path / "job")
    data = load_labelled_documents(cfg.dataset)
    test = make_splits(data.labels, cfg.seed, cfg.dataset.val_size, cfg.dataset.test_size).test
    rows, offsets = _cached_token_rows(results)
    # The cache holds every real token's hidden state, in bfloat16: a fresh forward of the test documents, rounded.
    fresh = extract_activations(load_model(cfg.model), [data.documents[i] for i in test], [1], 4, cfg.max_length)[1]
    cached = np.vstack([from_bfloat16_bits(rows[offsets[i]:offsets[i + 1]]).numpy() for i in test])
    np.testing.assert_allclose(cached, fresh.values, rtol=2 ** -8, atol=1e-6)

    # The test AUROC and every recorded token weight, recomputed by hand from the saved weights and cached rows.
    probe, metadata = load_probe(tmp_path / "job" / "probe")
    assert metadata["kind"] == "attention" and results["hyperparameters"]["setting"]["configured"] == {
        "lr": [0.001, 0.01], "weight_decay": [0.0, 1.0]}
    projection, bias = probe.projection.astype(np.float64), probe.bias.astype(np.float64)

    def by_hand(document):
        tokens = from_bfloat16_bits(rows[offsets[document]:offsets[document + 1]]).numpy().astype(np.float64)
        scores = tokens @ projection[0]
        weights = np.exp(scores - scores.max())
        weights /= weights.sum()
        logits = bias + weights @ (tokens @ projection[1:].T)
        return weights, np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()

    from sklearn.metrics import roc_auc_score

    proba = np.array([by_hand(i)[1][1] for i in test])
    assert results["metrics"]["auroc"] == pytest.approx(roc_auc_score(data.labels[test], proba), abs=1e-6)
    attended = results["attended"]
    assert [a["for_class"] for a in attended] == ["benign"] * 3 + ["malicious"] * 3
    for document in attended:
        weights, own = by_hand(document["document"])
        assert document["document"] in test and len(document["tokens"]) == offsets[document["document"] + 1] - offsets[
            document["document"]]
        np.testing.assert_allclose(document["weights"], weights, atol=1e-4)
        assert document["probability"] == pytest.approx(own[data.label_names.index(document["for_class"])], abs=1e-5)
    # The highest for each class, among the test documents.
    benign = sorted((by_hand(i)[1][0] for i in test), reverse=True)[:3]
    np.testing.assert_allclose([a["probability"] for a in attended[:3]], benign, atol=1e-5)

    # predict prints each text's most weighted tokens beside its label; the report highlights them.
    texts = tmp_path / "texts.txt"
    texts.write_text(data.documents[attended[0]["document"]].replace("\n", " ") + "\n")
    capsys.readouterr()
    assert mosaic_cli(["predict", str(tmp_path / "job" / "probe"), str(texts)]) == 0
    label, _, printed = capsys.readouterr().out.strip().split("\t")
    strongest = attended[0]["tokens"][int(np.argmax(attended[0]["weights"]))]
    assert label == "benign" and printed.startswith(f"attended: {strongest!r} ")
    from mosaic.report import write_report

    report = write_report(tmp_path)["markdown"].read_text()
    assert "# Where the attention probes looked" in report and report.count("<mark>") == 6 * 5


def test_a_sweep_over_poolings_caches_pooled_and_token_rows_from_one_forward(tmp_path, monkeypatch):
    import mosaic.activations.store as store
    from mosaic.features.types import Sweep
    from mosaic.pipeline import run
    from tests.conftest import compose_config

    monkeypatch.setenv("MOSAIC_CACHE", str(tmp_path / "cache"))
    sweep = Sweep(features=("hidden",), poolings=("last", "tokens"))
    first = run(compose_config(*ATTENTION_JOB, "features=hidden", "probe=sklearn", "pooling=last"), tmp_path / "a",
                sweep)

    def refuse(*args, **kwargs):
        raise AssertionError("the token rows were cached by the first job's forward")

    monkeypatch.setattr(store, "load_model", refuse)
    second = run(compose_config(*ATTENTION_JOB, "features=hidden"), tmp_path / "b", sweep)
    assert first["cache"]["hit"] is False and second["cache"]["hit"] is True
    assert second["features"]["tokens"] == first["features"]["tokens"]


@pytest.mark.parametrize("overrides, needle", [
    (["probe=sklearn", "pooling=tokens"], "pooling.method='tokens' is not allowed: keeps every token, which only "
                                          "probe=attention reads"),
    (["pooling=mean"], "probe.type='attention' is not allowed: learns its own pooling over every token"),
    (["binarize=threshold"], "binarize.method='threshold' is not allowed: pooling=tokens reads activations"),
    (["probe.k=16"], "probe.k=16 is not allowed: a probe over every token reads every feature"),
    (["features=bow"], "pooling.method='tokens' is not allowed: features=bow supports pooling mean, max, sum"),
])
def test_an_attention_probe_without_token_rows_is_not_applicable_in_one_line(overrides, needle):
    from mosaic.config import validate
    from mosaic.infra.errors import NotApplicableError
    from tests.conftest import compose_config

    with pytest.raises(NotApplicableError) as raised:
        validate(compose_config(*ATTENTION_JOB, *overrides))
    assert str(raised.value).startswith(needle) and "\n" not in str(raised.value)


def test_the_same_seed_trains_the_same_probe_and_another_seed_another():
    from omegaconf import OmegaConf

    from mosaic.config import ProbeConfig
    from mosaic.probes import fit_probe

    train, y_train = planted_conjunction(60, 8)
    val, y_val = planted_conjunction(20, 9)
    cfg = OmegaConf.merge(OmegaConf.structured(ProbeConfig), {"type": "attention", "lr_grid": [0.01, 0.05],
                                                              "max_epochs": 6, "batch_size": 16, "refit": True})
    first, again, other = (fit_probe(train, y_train, val, y_val, 2, cfg, seed) for seed in (0, 0, 1))
    np.testing.assert_array_equal(first.projection, again.projection)
    assert first.summary == again.summary and first.summary["refit_on"] == "train+val"
    assert not np.array_equal(first.projection, other.projection)
    # The refit trained the chosen setting for the epochs that were best on validation, on train + validation.
    assert first.summary["setting"]["lr"] in (0.01, 0.05)
    assert len(first.summary["train_loss_by_epoch"]) == first.summary["setting"]["epochs"]


def test_the_hidden_states_slots_follow_the_sweeps_poolings_and_ignore_a_misspelt_one():
    from mosaic.features.types import Sweep, forward_slots
    from tests.conftest import compose_config

    cfg = compose_config("model=tiny_gpt2", "layer=1", "features=hidden", "pooling=last")
    assert forward_slots(cfg, Sweep()) == {1: [("hidden", None)]}
    assert forward_slots(cfg, Sweep(poolings=("last", "tokens", "tokenz"))) == {1: [("hidden", None),
                                                                                   ("hidden", "tokens")]}
    tokens = compose_config("model=tiny_gpt2", "layer=1", "features=hidden", "pooling=tokens", "probe=attention")
    assert forward_slots(tokens, Sweep(poolings=("tokenz",))) == {1: [("hidden", "tokens")]}
