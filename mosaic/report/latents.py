"""What a latent responds to: the token contexts where it fires most, read from a job's cached SAE codes.

A cache entry of an SAE holds every real token's codes (tokens x latents, CSR) with each document's
offsets, so a latent's strongest contexts are a read of that matrix and the tokenizer, not a new
forward. For each latent asked, `latent_profiles` gives the documents where it peaks highest (one
context per document, strongest first), the window of tokens around each peak with every token's
activation, its firing density over all tokens, and the histogram of each document's peak activation
per class. `explore` puts them on the page.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

# Contexts shown per latent, tokens shown either side of a context's peak, and bins of the per-class histogram.
CONTEXTS_PER_LATENT = 10
WINDOW = 8
HISTOGRAM_BINS = 10


@dataclass(frozen=True)
class LatentProfile:
    """One latent over a job's documents. `contexts`: one per document, strongest peak first, each
    {document, split, label, peak (the token's position in the document), start (the window's first
    position), length (the document's tokens), tokens, values}. `density`: the share of tokens on
    which it fires. `histogram`: bin edges of the per-document peak activation, and per class the
    count of documents in each bin (a document where the latent never fires counts in the first bin)."""

    latent: int
    contexts: list[dict]
    density: float
    histogram: dict

    def as_dict(self) -> dict:
        return {"latent": self.latent, "density": self.density, "histogram": self.histogram,
                "contexts": self.contexts}


def document_peaks(column: sp.csc_matrix, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each document's highest activation of a one-latent column (tokens x 1) and the token row where it
    is reached (the first such row; -1 for a document where the latent never fires)."""
    rows, values = column.indices, column.data
    documents = np.searchsorted(offsets, rows, side="right") - 1
    peak, where = np.zeros(len(offsets) - 1), np.full(len(offsets) - 1, -1)
    # Strongest first, earliest row first among equals: the first row seen per document is its peak.
    order = np.lexsort((rows, -values))
    first = np.unique(documents[order], return_index=True)[1]
    chosen = order[first]
    positive = values[chosen] > 0
    peak[documents[chosen][positive]] = values[chosen][positive]
    where[documents[chosen][positive]] = rows[chosen][positive]
    return peak, where


def latent_profiles(
    codes: sp.csr_matrix,
    offsets: np.ndarray,
    latents: Sequence[int],
    labels: np.ndarray,
    label_names: Sequence[str],
    split_of: np.ndarray,
    tokens_of: Callable[[list[int]], list[list[str]]],
    contexts: int = CONTEXTS_PER_LATENT,
    window: int = WINDOW,
) -> list[LatentProfile]:
    """Each latent's profile over the documents of `codes` (see `LatentProfile`).

    `split_of` names each document's split (train, val, test or unused); `tokens_of(documents)` gives
    those documents' real tokens as the model read them, so token i is the document's row i.
    """
    if len(offsets) - 1 != len(labels):
        raise ValueError(f"{len(offsets) - 1} documents in the codes but {len(labels)} labels")
    columns = sp.csc_matrix(codes[:, list(latents)])
    singles = [columns[:, [j]] for j in range(len(latents))]
    peaks = [document_peaks(single, offsets) for single in singles]
    shown = [np.argsort(-peak, kind="stable")[:contexts] for peak, _ in peaks]
    shown = [documents[peaks[j][0][documents] > 0] for j, documents in enumerate(shown)]
    wanted = sorted({int(d) for documents in shown for d in documents})
    tokens = dict(zip(wanted, tokens_of(wanted))) if wanted else {}
    n_tokens = max(1, codes.shape[0])
    profiles = []
    for latent, single, (peak, where), documents in zip(latents, singles, peaks, shown):
        column = single.toarray().ravel()
        found = []
        for document in documents:
            document = int(document)
            start, stop = offsets[document], offsets[document + 1]
            if len(tokens[document]) != stop - start:  # the tokenizer and the forward read the same tokens
                raise RuntimeError(f"document {document}: {len(tokens[document])} tokens but {stop - start} token rows")
            position = int(where[document] - start)
            first, last = max(0, position - window), min(stop - start, position + window + 1)
            found.append({"document": document, "split": str(split_of[document]),
                          "label": label_names[labels[document]], "peak": position, "start": first,
                          "length": int(stop - start),
                          "tokens": tokens[document][first:last],
                          "values": [float(f"{v:.4g}") for v in column[start + first:start + last]]})
        fires = int(np.sum(single.data > 0))  # stored entries may hold explicit zeros
        profiles.append(LatentProfile(int(latent), found, fires / n_tokens,
                                      _histogram(peak, labels, label_names)))
    return profiles


def _histogram(peak: np.ndarray, labels: np.ndarray, label_names: Sequence[str]) -> dict:
    """Per class, how many documents' peak activation falls in each of `HISTOGRAM_BINS` equal bins from 0."""
    top = float(peak.max()) if len(peak) and peak.max() > 0 else 1.0
    edges = np.linspace(0.0, top, HISTOGRAM_BINS + 1)
    return {"edges": [round(float(e), 4) for e in edges],
            "counts": {name: np.histogram(peak[labels == c], bins=edges)[0].tolist()
                       for c, name in enumerate(label_names)}}


def split_names(n_documents: int, splits) -> np.ndarray:
    """Each document's split: train, val, test, or unused (left out by the regime)."""
    names = np.full(n_documents, "unused", dtype=object)
    for name in ("train", "val", "test"):
        names[getattr(splits, name)] = name
    return names
