"""Documents kept as runs of token rows (`pooling=tokens`), for a probe that learns its own pooling.

`TokenFeatures` is what a pooled matrix is to every other probe: it is indexed by documents
(`features[splits.train]`), has a `shape` of (documents, features), and stacks (`concatenate`). Its
token rows are the activation cache's own: SAE codes as CSR, or the hidden state as a read-only
memory map of bfloat16 bits, so selecting documents copies nothing and a batch reads only its own
tokens. The dense token matrix of an SAE's codes never exists.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch


def to_bfloat16_bits(values: np.ndarray) -> np.ndarray:
    """Float rows as bfloat16 (round to nearest even), held as their 16 bits (`uint16`): NumPy has no bfloat16.

    bfloat16 keeps float32's range, so Gemma's large residual activations survive, at half the bytes.
    """
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).to(torch.bfloat16).view(
        torch.int16).numpy().view(np.uint16)


def from_bfloat16_bits(bits: np.ndarray) -> torch.Tensor:
    """`to_bfloat16_bits`' rows back as a float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(bits).view(np.int16)).view(torch.bfloat16).float()


@dataclass(frozen=True)
class TokenFeatures:
    """Some documents, each a run of token rows.

    `codes` (tokens x features) holds the runs of every document of a cache entry, `offsets` where each
    run starts (documents + 1, from 0); `documents` says which of them these are, in order (None: all).
    `codes` is CSR, a float array, or bfloat16 bits (`uint16`, see `to_bfloat16_bits`).
    """

    codes: sp.csr_matrix | np.ndarray
    offsets: np.ndarray
    documents: np.ndarray | None = None

    def __post_init__(self):
        offsets = self.offsets
        if offsets[0] != 0 or offsets[-1] != self.codes.shape[0] or np.any(np.diff(offsets) < 0):
            raise ValueError(f"offsets must rise from 0 to the {self.codes.shape[0]} token rows")

    @property
    def ids(self) -> np.ndarray:
        """The documents' positions in `offsets`."""
        return np.arange(len(self.offsets) - 1) if self.documents is None else self.documents

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self), self.codes.shape[1]

    @property
    def n_features(self) -> int:
        return self.codes.shape[1]

    def __getitem__(self, index) -> TokenFeatures:
        return TokenFeatures(self.codes, self.offsets, self.ids[index])

    def concatenate(self, other: TokenFeatures) -> TokenFeatures:
        """These documents, then `other`'s: a selection of the same token rows, or, from other rows, a copy of both."""
        if other.codes is self.codes:
            return TokenFeatures(self.codes, self.offsets, np.concatenate([self.ids, other.ids]))
        parts = [features.codes[features._rows(np.arange(len(features)))] for features in (self, other)]
        codes = sp.vstack(parts, format="csr") if sp.issparse(parts[0]) else np.concatenate(parts)
        return TokenFeatures(codes, np.concatenate([[0], np.cumsum(np.concatenate([self.lengths(), other.lengths()]))]))

    def lengths(self, positions: np.ndarray | None = None) -> np.ndarray:
        """Tokens per document (of the documents at `positions`, or of all)."""
        ids = self.ids if positions is None else self.ids[positions]
        return self.offsets[ids + 1] - self.offsets[ids]

    def _rows(self, positions: np.ndarray) -> np.ndarray:
        """The token rows of the documents at `positions`, run after run."""
        ids = self.ids[positions]
        lengths = self.offsets[ids + 1] - self.offsets[ids]
        # Row k of the result is its run's start plus k minus where that run begins in the result.
        run_begins = np.cumsum(lengths) - lengths
        return np.repeat(self.offsets[ids] - run_begins, lengths) + np.arange(lengths.sum(), dtype=np.int64)

    def batch(self, positions: np.ndarray) -> tuple[sp.csr_matrix | torch.Tensor, torch.Tensor]:
        """The token rows of the documents at `positions` (a CSR matrix or a float32 tensor), and each row's
        index into `positions`."""
        positions = np.asarray(positions, dtype=np.int64)
        rows = self._rows(positions)
        owner = torch.from_numpy(np.repeat(np.arange(len(positions)), self.lengths(positions)))
        if sp.issparse(self.codes):
            return self.codes[rows], owner
        block = self.codes[rows]
        values = from_bfloat16_bits(block) if block.dtype == np.uint16 else torch.from_numpy(
            np.asarray(block, dtype=np.float32))
        return values, owner

    def getnnz(self) -> int:
        """Non-zero values over these documents' tokens (every value, for dense rows)."""
        if not sp.issparse(self.codes):
            return int(self.lengths().sum()) * self.n_features
        # indptr counts the non-zeros before each row, so a run's count is the difference at its ends.
        indptr = self.codes.indptr
        return int((indptr[self.offsets[self.ids + 1]] - indptr[self.offsets[self.ids]]).sum())

    def mean_pooled(self, chunk: int = 256) -> np.ndarray | sp.csr_matrix:
        """One row per document, the mean of its tokens (read a chunk of documents at a time)."""
        parts = []
        for first in range(0, len(self), chunk):
            positions = np.arange(first, min(len(self), first + chunk))
            block = self.codes[self._rows(positions)]
            if not sp.issparse(block):
                block = from_bfloat16_bits(block).numpy() if block.dtype == np.uint16 else np.asarray(block, np.float32)
            lengths = self.lengths(positions)
            owner = np.repeat(np.arange(len(positions)), lengths)
            # (documents x tokens): 1 / length on each of a document's tokens; a document without tokens is zeros.
            averaging = sp.csr_matrix((1.0 / np.repeat(lengths, lengths), (owner, np.arange(len(owner)))),
                                      shape=(len(positions), len(owner)), dtype=np.float32)
            part = averaging @ block
            parts.append(sp.csr_matrix(part) if sp.issparse(block) else np.asarray(part, dtype=np.float32))
        if not parts:
            return sp.csr_matrix((0, self.n_features)) if sp.issparse(self.codes) else np.zeros((0, self.n_features))
        return sp.vstack(parts, format="csr") if sp.issparse(self.codes) else np.vstack(parts)


def stack_rows(first, second):
    """Two sets of documents' features as one (pooled rows, CSR rows or `TokenFeatures`)."""
    if isinstance(first, TokenFeatures):
        return first.concatenate(second)
    return sp.vstack([first, second], format="csr") if sp.issparse(first) else np.vstack([first, second])
