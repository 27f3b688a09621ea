"""Encode per-token activations into sparse SAE codes, a bounded number of tokens at a time."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from mosaic.activations.saes.quality import ReconstructionTally
from mosaic.infra.heap import release_free_heap

# torch marks CSR tensors as beta; converting a dense tensor to CSR is all that is used here.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")

# At most this many dense code values exist at once (64 MiB of float32), whatever the SAE's width.
DENSE_CODES_BUDGET = 2**24
# Freed temporaries go back to the system every this many chunks (heap fragmentation stays bounded).
TRIM_EVERY_CHUNKS = 16


def encode_tokens(sae, values: np.ndarray, batch_tokens: int, tally: ReconstructionTally | None = None
                  ) -> sp.csr_matrix:
    """SAE codes of each row of `values` as a float32 CSR matrix (tokens x d_sae).

    At most `batch_tokens` rows, and never more than `DENSE_CODES_BUDGET` values, are dense at
    once, so a 131k-wide SAE over many tokens stays small. With `tally`, the first tokens it
    wants are also decoded and added to it (the SAE's reconstruction quality).
    """
    device = next(sae.parameters()).device
    dtype = next(sae.parameters()).dtype
    batch_tokens = max(1, min(batch_tokens, DENSE_CODES_BUDGET // sae.cfg.d_sae))
    parts = []
    starts = range(0, len(values), batch_tokens)
    with torch.inference_mode():
        for number, start in enumerate(tqdm(starts, desc="encode", unit="chunk", disable=len(starts) < 2 or None)):
            if number % TRIM_EVERY_CHUNKS == TRIM_EVERY_CHUNKS - 1:
                release_free_heap()
            chunk = torch.from_numpy(values[start : start + batch_tokens]).to(device=device, dtype=dtype)
            # Sparsify on the SAE's device: only the non-zeros travel and reach NumPy.
            dense = sae.encode(chunk)
            codes = dense.float().to_sparse_csr()
            if tally is not None and tally.wants() > 0:
                _measure(tally, sae, chunk, dense, codes)
            parts.append(sp.csr_matrix(
                (codes.values().cpu().numpy(), codes.col_indices().cpu().numpy(), codes.crow_indices().cpu().numpy()),
                shape=tuple(codes.shape),
            ))
    if not parts:
        return sp.csr_matrix((0, sae.cfg.d_sae), dtype=np.float32)
    return sp.vstack(parts, format="csr").astype(np.float32, copy=False)


# SAELens classes whose `decode` is `codes @ W_dec + b_dec` (then their output hooks), so it takes sparse codes.
# TopK's rescales the codes by the decoder's norms first, which torch does not do on a sparse tensor.
SPARSE_DECODE = ("StandardSAE", "JumpReLUSAE")


def _measure(tally: ReconstructionTally, sae, chunk: torch.Tensor, dense: torch.Tensor, codes: torch.Tensor) -> None:
    """Add the chunk's first tokens the tally still wants. A float32 SAE of a plain decoder decodes their sparse
    codes: about a twentieth of the dense product's work at a typical L0."""
    n = min(tally.wants(), len(chunk))
    part = codes if n == len(chunk) else dense[:n].float().to_sparse_csr()
    sparse = dense.dtype == torch.float32 and type(sae).__name__ in SPARSE_DECODE
    tally.add(chunk[:n], part, sae.decode(part) if sparse else sae.decode(dense[:n]))
