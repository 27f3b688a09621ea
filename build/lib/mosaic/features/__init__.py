"""Features: pooling per-token vectors into documents, binarization, and the bag-of-words baseline.

Everything here works on plain matrices (NumPy arrays or SciPy CSR), not on models.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from mosaic.features.bow import bow_features
from mosaic.features.pooling import POOLING_METHODS, Matrix, methods_for, pool


def binarize(features: Matrix, threshold: float) -> Matrix:
    """1 where a value is above `threshold`, else 0; a CSR input stays CSR (needs `threshold >= 0`)."""
    if sp.issparse(features):
        if threshold < 0:
            raise ValueError("a negative threshold would turn every implicit zero of a sparse matrix into 1")
        out = sp.csr_matrix(features, dtype=np.float32, copy=True)
        out.data = (out.data > threshold).astype(np.float32)
        out.eliminate_zeros()
        return out
    return (np.asarray(features) > threshold).astype(np.float32)


def _unchanged(features: Matrix, threshold: float) -> Matrix:
    return features


# binarize.method -> its implementation, called with the matrix and `binarize.threshold`.
BINARIZE_METHODS = {"none": _unchanged, "threshold": binarize}


__all__ = ["BINARIZE_METHODS", "POOLING_METHODS", "Matrix", "binarize", "bow_features", "methods_for", "pool"]
