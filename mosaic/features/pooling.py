"""Pool per-token vectors into one row per document.

Input is a token matrix (dense array or CSR) whose rows are the real tokens of all documents
concatenated, with `offsets` marking where each document starts; output has one row per document
and keeps the input's sparsity. A document with no real tokens pools to a row of zeros.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from mosaic.config import POOLING_FOR_FEATURES

Matrix = np.ndarray | sp.csr_matrix
POOLING_METHODS = POOLING_FOR_FEATURES["sae"]  # every method is defined on SAE codes


def _segment_matrix(offsets: np.ndarray) -> sp.csr_matrix:
    """(documents x tokens) indicator: row i has ones on document i's tokens."""
    lengths = np.diff(offsets)
    n_tokens = int(offsets[-1])
    return sp.csr_matrix(
        (np.ones(n_tokens, dtype=np.float32), np.arange(n_tokens), offsets), shape=(len(lengths), n_tokens)
    )


def _as_output(matrix, like: Matrix) -> Matrix:
    if sp.issparse(like):
        return sp.csr_matrix(matrix, dtype=np.float32)
    return np.asarray(matrix, dtype=np.float32)


def sum_pool(values: Matrix, offsets: np.ndarray) -> Matrix:
    return _as_output(_segment_matrix(offsets) @ values, values)


def mean_pool(values: Matrix, offsets: np.ndarray) -> Matrix:
    lengths = np.diff(offsets).astype(np.float32)
    inverse = np.divide(1.0, lengths, out=np.zeros_like(lengths), where=lengths > 0)
    return _as_output(sp.diags(inverse) @ (_segment_matrix(offsets) @ values), values)


def last_pool(values: Matrix, offsets: np.ndarray) -> Matrix:
    lengths = np.diff(offsets)
    has_tokens = lengths > 0
    selector = sp.csr_matrix(
        (np.ones(int(has_tokens.sum()), dtype=np.float32),
         (np.flatnonzero(has_tokens), offsets[1:][has_tokens] - 1)),
        shape=(len(lengths), values.shape[0]),
    )
    return _as_output(selector @ values, values)


def max_pool(values: Matrix, offsets: np.ndarray) -> Matrix:
    lengths = np.diff(offsets)
    if not sp.issparse(values):
        out = np.zeros((len(lengths), values.shape[1]), dtype=np.float32)
        nonempty = lengths > 0
        if nonempty.any():
            out[nonempty] = np.maximum.reduceat(values, offsets[:-1][nonempty], axis=0)
        return out
    # Sparse: reduce the stored entries per (document, column), then account for implicit zeros.
    coo = values.tocoo()
    documents = np.repeat(np.arange(len(lengths)), lengths)[coo.row]
    keys = documents.astype(np.int64) * values.shape[1] + coo.col
    order = np.argsort(keys, kind="stable")
    keys, data = keys[order], coo.data[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.array([], dtype=int)
    maxima = np.maximum.reduceat(data, starts) if len(keys) else data
    stored = np.diff(np.r_[starts, len(keys)])
    group_doc, group_col = np.divmod(keys[starts], values.shape[1])
    # A column stored on fewer tokens than the document has is zero somewhere, so its max is at least 0.
    maxima = np.where(stored < lengths[group_doc], np.maximum(maxima, 0), maxima)
    return sp.csr_matrix((maxima.astype(np.float32), (group_doc, group_col)), shape=(len(lengths), values.shape[1]))


def topn_pool(values: Matrix, offsets: np.ndarray, top_n: int) -> sp.csr_matrix:
    """MOSAIC's top-n counts: per token, one-hot its `top_n` most active (positive) latents; sum per document.

    Ties keep the lower latent index.
    """
    codes = sp.csr_matrix(values, copy=True)
    codes.data[codes.data < 0] = 0
    codes.eliminate_zeros()
    rows = np.repeat(np.arange(codes.shape[0]), np.diff(codes.indptr))
    order = np.lexsort((codes.indices, -codes.data, rows))
    rank = np.arange(len(order)) - codes.indptr[rows[order]]
    kept = order[rank < top_n]
    one_hot = sp.csr_matrix(
        (np.ones(len(kept), dtype=np.float32), (rows[kept], codes.indices[kept])), shape=codes.shape
    )
    return sp.csr_matrix(_segment_matrix(offsets) @ one_hot)


def pool(values: Matrix, offsets: np.ndarray, method: str, top_n: int = 5) -> Matrix:
    """One row per document from per-token rows, by `method` (one of `POOLING_METHODS`)."""
    if method == "topn":
        return topn_pool(values, offsets, top_n)
    poolers = {"mean": mean_pool, "max": max_pool, "sum": sum_pool, "last": last_pool}
    if method not in poolers:
        raise ValueError(f"pooling method {method!r} is not one of {POOLING_METHODS}")
    return poolers[method](values, offsets)
