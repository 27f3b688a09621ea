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
