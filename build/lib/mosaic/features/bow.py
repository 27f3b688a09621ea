"""The bag-of-words baseline: word n-gram counts pooled over a document, weighted by IDF.

A document's n-grams are its "tokens", each a one-hot vector over the vocabulary, so the pooling
methods keep their meaning: `sum` is the count, `mean` the relative frequency, `max` presence.
Vocabulary and IDF are fitted on the training documents only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer

from mosaic.infra.errors import DataError


def bow_features(
    texts: Sequence[str],
    train_index: np.ndarray,
    pooling: str,
    ngram_max: int = 2,
    min_df: int = 1,
) -> tuple[sp.csr_matrix, list[str]]:
    """TF-IDF rows for all `texts` and the n-gram of each column."""
    if pooling not in ("mean", "max", "sum"):
        raise ValueError(f"bag-of-words pooling must be mean, max or sum, not {pooling!r}")
    vectorizer = CountVectorizer(ngram_range=(1, ngram_max), min_df=min_df)
    try:
        vectorizer.fit([texts[i] for i in train_index])
    except ValueError as error:  # sklearn's "empty vocabulary" and min_df/max_df conflicts
        raise DataError(f"features=bow: no usable word n-grams in the training documents ({error})") from None
    counts = vectorizer.transform(texts).astype(np.float32)
    idf = TfidfTransformer(norm=None).fit(counts[train_index]).idf_
    if pooling == "mean":
        totals = np.asarray(counts.sum(axis=1)).ravel()
        counts = sp.diags(np.divide(1.0, totals, out=np.zeros_like(totals), where=totals > 0)) @ counts
    elif pooling == "max":
        counts = (counts > 0).astype(np.float32)
    weighted = sp.csr_matrix(counts @ sp.diags(idf.astype(np.float32)), dtype=np.float32)
    return weighted, vectorizer.get_feature_names_out().tolist()
