"""Features (`features/`): pooling and binarization against naive per-document loops, dense and sparse; the bag
of words against the generic pooling of its n-grams."""

import numpy as np
import pytest
import scipy.sparse as sp

from mosaic.activations import extract_activations, load_model
from mosaic.features import binarize, pool
from tests.conftest import tiny_model_config

LENGTHS = [3, 1, 0, 5, 2]


def _naive(values: np.ndarray, offsets, method, top_n=2) -> np.ndarray:
    """One document at a time, written for clarity: the reference the vectorised code must match."""
    rows = []
    for doc in range(len(offsets) - 1):
        tokens = values[offsets[doc] : offsets[doc + 1]]
        if len(tokens) == 0:
            rows.append(np.zeros(values.shape[1]))
        elif method == "mean":
            rows.append(tokens.mean(axis=0))
        elif method == "sum":
            rows.append(tokens.sum(axis=0))
        elif method == "max":
            rows.append(tokens.max(axis=0))
        elif method == "last":
            rows.append(tokens[-1])
        elif method == "topn":
            counts = np.zeros(values.shape[1])
            for token in tokens:
                ranked = sorted(range(len(token)), key=lambda j: (-token[j], j))
                for j in ranked[:top_n]:
                    if token[j] > 0:
                        counts[j] += 1
            rows.append(counts)
    return np.array(rows)


def _token_matrix(seed=0, signed=True):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(sum(LENGTHS), 7)).astype(np.float32)
    values[rng.random(values.shape) < 0.6] = 0.0
    if not signed:
        values = np.abs(values)
    # A column that is explicitly negative on every token of document 0 (max must stay negative).
    values[0:3, 6] = [-1.0, -2.0, -0.5]
    return values, np.concatenate([[0], np.cumsum(LENGTHS)])


@pytest.mark.parametrize("method", ["mean", "sum", "max", "last"])
@pytest.mark.parametrize("sparse", [False, True])
def test_pooling_matches_naive_loop(method, sparse):
    values, offsets = _token_matrix()
    tokens = sp.csr_matrix(values) if sparse else values
    pooled = pool(tokens, offsets, method)
    assert sp.issparse(pooled) == sparse
    dense = pooled.toarray() if sparse else pooled
    np.testing.assert_allclose(dense, _naive(values, offsets, method), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("top_n", [1, 2, 3])
def test_topn_counts_match_naive_loop(top_n):
    values, offsets = _token_matrix(seed=1, signed=False)
    values[3, :4] = 0.5  # ties: the lower latent index wins
    pooled = pool(sp.csr_matrix(values), offsets, "topn", top_n=top_n)
    np.testing.assert_array_equal(pooled.toarray(), _naive(values, offsets, "topn", top_n))


def test_topn_hand_computed_case():
    tokens = np.array([[0.9, 0.1, 0.5, 0.0], [0.0, 0.2, 0.3, 0.8], [0.4, 0.0, 0.0, 0.0]], dtype=np.float32)
    pooled = pool(sp.csr_matrix(tokens), np.array([0, 2, 3]), "topn", top_n=2)
    assert pooled.toarray().tolist() == [[1, 0, 2, 1], [1, 0, 0, 0]]


@pytest.mark.parametrize("padding_side", ["left", "right"])
@pytest.mark.parametrize("method", ["mean", "sum", "max", "last", "topn"])
def test_pooled_padded_batches_equal_documents_pooled_alone(padding_side, method):
    loaded = load_model(tiny_model_config("tiny_gpt2", padding_side=padding_side))
    texts = ["short one", "a somewhat longer sentence with several more tokens", "x y", "mid length text here"]
    batched = extract_activations(loaded, texts, [2], batch_size=4, max_length=64)[2]
    pooled = pool(batched.values, batched.offsets, method, top_n=2)
    pooled = pooled.toarray() if sp.issparse(pooled) else pooled
    for doc, text in enumerate(texts):
        alone = extract_activations(loaded, [text], [2], batch_size=1, max_length=64)[2]
        expected = _naive(alone.values, alone.offsets, method, top_n=2)[0]
        np.testing.assert_allclose(pooled[doc], expected, atol=3e-5, rtol=1e-4)


def test_topn_leaves_its_input_unchanged():
    values, offsets = _token_matrix(seed=2)
    tokens = sp.csr_matrix(values)
    before = tokens.toarray().copy()
    pool(tokens, offsets, "topn", top_n=2)
    np.testing.assert_array_equal(tokens.toarray(), before)


@pytest.mark.parametrize("sparse", [False, True])
def test_binarize_is_strictly_above_threshold(sparse):
    values = np.array([[0.0, 0.2, 0.5, 1.0], [0.5, 0.0, 3.0, 0.49]], dtype=np.float32)
    out = binarize(sp.csr_matrix(values) if sparse else values, 0.5)
    dense = out.toarray() if sparse else out
    assert dense.tolist() == [[0, 0, 0, 1], [0, 0, 1, 0]]
    if sparse:
        assert out.nnz == 2


def test_binarize_refuses_a_negative_threshold_on_sparse_input():
    with pytest.raises(ValueError, match="negative threshold"):
        binarize(sp.csr_matrix(np.eye(2, dtype=np.float32)), -0.1)


def test_bag_of_words_pools_its_ngrams_as_the_generic_pooling_does():
    """The closed forms in bow.py equal the generic pooling of one one-hot row per n-gram, IDF-weighted."""
    from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer

    from mosaic.features import bow_features, methods_for

    texts = ["the cat sat on the mat", "a dog", "the dog sat", "", "cat cat cat"]
    train = np.array([0, 1, 2, 4])
    vectorizer = CountVectorizer(ngram_range=(1, 2)).fit([texts[i] for i in train])
    analyse, vocabulary = vectorizer.build_analyzer(), vectorizer.vocabulary_
    grams = [[vocabulary[g] for g in analyse(text) if g in vocabulary] for text in texts]
    one_hot = np.zeros((sum(map(len, grams)), len(vocabulary)), dtype=np.float32)
    one_hot[np.arange(len(one_hot)), np.concatenate(grams).astype(int)] = 1
    offsets = np.concatenate([[0], np.cumsum([len(g) for g in grams])])
    idf = TfidfTransformer(norm=None).fit(vectorizer.transform([texts[i] for i in train])).idf_

    assert set(methods_for("bow")) == {"mean", "max", "sum"}
    for method in methods_for("bow"):
        matrix, _ = bow_features(texts, train, method, ngram_max=2)
        np.testing.assert_allclose(matrix.toarray(), pool(one_hot, offsets, method) * idf, rtol=1e-6, err_msg=method)


def _bfloat16_by_hand(values: np.ndarray) -> np.ndarray:
    """bfloat16 rounding written out on the float32 bits: keep the top 16, round to nearest, ties to even."""
    bits = values.astype(np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16
    return rounded.astype(np.uint32).view(np.float32)


def test_hidden_token_rows_keep_bfloat16s_rounding_and_float32s_range():
    from mosaic.features.tokens import from_bfloat16_bits, to_bfloat16_bits

    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(size=(50, 6)), [[1e6, -3e5, 70000.0, 1e-3, 0.0, 12.3456]]]).astype(np.float32)
    back = from_bfloat16_bits(to_bfloat16_bits(values)).numpy()
    np.testing.assert_array_equal(back, _bfloat16_by_hand(values))
    assert back[-1, 0] == pytest.approx(1e6, rel=4e-3)  # float16 would overflow to inf


@pytest.mark.parametrize("sparse", [False, True])
def test_token_runs_select_stack_batch_and_average_documents_like_slicing_them(sparse):
    from mosaic.features.tokens import TokenFeatures, stack_rows

    values, offsets = _token_matrix()
    features = TokenFeatures(sp.csr_matrix(values) if sparse else values, offsets)
    assert features.shape == (5, 7) and len(features[[3, 0]]) == 2
    chosen = stack_rows(features[np.array([3, 0])], features[np.array([2, 4])])  # document 2 has no tokens
    rows, owner = chosen.batch(np.array([0, 1, 2, 3]))
    rows = rows.toarray() if sparse else rows.numpy()
    expected = np.vstack([values[offsets[d]:offsets[d + 1]] for d in (3, 0, 2, 4)])
    np.testing.assert_array_equal(rows, expected)
    assert owner.tolist() == [0] * 5 + [1] * 3 + [3] * 2
    pooled = chosen.mean_pooled(chunk=3)
    pooled = pooled.toarray() if sparse else pooled
    np.testing.assert_allclose(pooled, _naive(values, offsets, "mean")[[3, 0, 2, 4]], rtol=1e-6)
    nonzero = sum(np.count_nonzero(values[offsets[d]:offsets[d + 1]]) for d in (3, 0, 2, 4))
    assert chosen.getnnz() == (nonzero if sparse else 10 * 7)
    # Documents of other token rows are copied in after these.
    other = features[np.array([4])].concatenate(TokenFeatures(values[:4] * 2, np.array([0, 3, 4])))
    rows, _ = other.batch(np.arange(3))
    rows = rows.toarray() if sparse else rows.numpy()
    np.testing.assert_array_equal(rows, np.vstack([values[offsets[4]:offsets[5]], values[:4] * 2]))
