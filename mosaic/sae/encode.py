"""Encode per-token activations into sparse SAE codes, a bounded number of tokens at a time."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm


def encode_tokens(sae, values: np.ndarray, batch_tokens: int) -> sp.csr_matrix:
    """SAE codes of each row of `values` as a float32 CSR matrix (tokens x d_sae).

    Only `batch_tokens` rows are ever dense at once, so a 131k-wide SAE over many tokens stays small.
    """
    device = next(sae.parameters()).device
    dtype = next(sae.parameters()).dtype
    parts = []
    starts = range(0, len(values), batch_tokens)
    with torch.inference_mode():
        for start in tqdm(starts, desc="encode", unit="chunk", disable=len(starts) < 2):
            chunk = torch.from_numpy(values[start : start + batch_tokens]).to(device=device, dtype=dtype)
            codes = sae.encode(chunk).float().cpu().numpy()
            parts.append(sp.csr_matrix(codes))
    if not parts:
        return sp.csr_matrix((0, sae.cfg.d_sae), dtype=np.float32)
    return sp.vstack(parts, format="csr").astype(np.float32)
