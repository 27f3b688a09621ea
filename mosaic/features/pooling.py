"""Pool per-token vectors into one row per document.

Input is a token matrix (dense array or CSR) whose rows are the real tokens of all documents
concatenated, with `offsets` marking where each document starts; output has one row per document
and keeps the input's sparsity. A document with no real tokens pools to a row of zeros. `tokens` is
the exception: it keeps every token (`TokenFeatures`) for a probe that learns its pooling.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from mosaic.features.tokens import TokenFeatures

Matrix = np.ndarray | sp.csr_matrix


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


def keep_tokens(values: Matrix, offsets: np.ndarray) -> TokenFeatures:
    """No pooling: every document stays the run of its token rows."""
    return TokenFeatures(values, offsets)


@dataclass(frozen=True)
class Pooling:
    """One `pooling.method`: its function, the feature types it has a meaning for, and its config keys.

    `features` is checked before a job loads anything (a cell that asks for a pooling its features
    cannot have is "not applicable", not a failure); `parameters` are the `pooling.*` keys passed on.
    `readers` are the only probe types that read its output, where that is not one row per document
    (empty: every probe but those).
    """

    function: Callable[..., Matrix | TokenFeatures]
    features: tuple[str, ...]
    parameters: tuple[str, ...] = ()
    readers: tuple[str, ...] = ()


# pooling.method -> its implementation. A bag of words is a sum of one-hot n-gram vectors, so it can
# be summed, averaged or maxed over its tokens (in closed form, in `bow.py`); it has no "last" token
# and one active "latent" per token, so `last` and `topn` would silently collapse to something else.
# `topn` is defined on SAE latents, not on residual-stream dimensions.
POOLING_METHODS: dict[str, Pooling] = {
    "mean": Pooling(mean_pool, ("sae", "hidden", "bow")),
    "max": Pooling(max_pool, ("sae", "hidden", "bow")),
    "sum": Pooling(sum_pool, ("sae", "hidden", "bow")),
    "last": Pooling(last_pool, ("sae", "hidden")),
    "topn": Pooling(topn_pool, ("sae",), ("top_n",)),
    "tokens": Pooling(keep_tokens, ("sae", "hidden"), readers=("attention",)),
}
# The probes that read token runs; every other probe reads one row per document.
TOKEN_READERS = tuple(sorted({probe for method in POOLING_METHODS.values() for probe in method.readers}))


def methods_for(features: str) -> tuple[str, ...]:
    """The pooling methods that have a meaning for a `features.type`."""
    return tuple(name for name, method in POOLING_METHODS.items() if features in method.features)


def keeps_tokens(method: str) -> bool:
    """Whether `pooling.method` keeps every token rather than pooling (its readers learn the pooling)."""
    return bool(POOLING_METHODS[method].readers)


def validate_pooling(features: str, method: str, probe: str) -> None:
    """Refuse, as not applicable, a pooling these features cannot have or this probe cannot read."""
    from mosaic.infra.errors import NotApplicableError, require

    allowed = methods_for(features)
    require(method in allowed, "pooling.method", method, f"features={features} supports pooling " +
            ", ".join(allowed), NotApplicableError)
    readers = POOLING_METHODS[method].readers
    if readers:
        require(probe in readers, "pooling.method", method,
                f"keeps every token, which only probe={'/'.join(readers)} reads", NotApplicableError)
    else:
        require(probe not in TOKEN_READERS, "probe.type", probe,
                "learns its own pooling over every token: set pooling=tokens", NotApplicableError)


def pool(values: Matrix, offsets: np.ndarray, method: str, **parameters) -> Matrix:
    """One row per document from per-token rows, by `method` (a key of `POOLING_METHODS`).

    `parameters` are the `pooling.*` values; each method takes the ones it declares.
    """
    if method not in POOLING_METHODS:
        raise ValueError(f"pooling method {method!r} is not one of {', '.join(POOLING_METHODS)}")
    chosen = POOLING_METHODS[method]
    return chosen.function(values, offsets, **{name: parameters[name] for name in chosen.parameters})
