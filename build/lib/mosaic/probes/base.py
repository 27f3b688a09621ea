"""The one interface every probe offers, so evaluation, transfer and interpretation never ask which probe it is."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np


class Probe(Protocol):
    """A fitted classifier on document features (dense rows or CSR)."""

    kind: ClassVar[str]  # how it is stored: `probe.json`'s "kind"
    summary: dict  # how it was fitted, and the hyper-parameters it chose

    @property
    def n_features(self) -> int: ...

    def predict_proba(self, features) -> np.ndarray: ...

    def predict(self, features) -> np.ndarray: ...

    def evidence(self) -> np.ndarray:
        """Classes x features: how much each feature points to each class (for the top features)."""
        ...

    def save(self, directory: Path, metadata: dict[str, Any]) -> None: ...

    def widened(self, columns: np.ndarray, width: int) -> Probe:
        """The same probe reading `width` features, of which it uses only `columns` (k-sparse probes)."""
        ...
