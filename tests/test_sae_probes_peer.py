"""MOSAIC against the sparse-probing suite's own code (the installed `sae-probes` package), called, not re-implemented.

Importing the peer reads every dataset and loads TransformerLens (about 10 s), so these tests are `slow`.
"""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def peer():
    """The peer's modules by name (its package namespace shadows `run_sae_evals` with a function)."""
    import importlib
    from types import SimpleNamespace

    return SimpleNamespace(**{name: importlib.import_module(f"sae_probes.{name}")
                              for name in ("run_sae_evals", "utils_data", "utils_training")})


def test_the_binary_tasks_are_the_peers(peer):
    from mosaic.data.sae_probes import tasks

    assert [task for task, kind in tasks().items() if kind == "binary"] == peer.utils_data.get_numbered_binary_tags()


def test_k_sparse_ranking_is_the_peers(peer):
    from mosaic.probes.sparse import rank_features

    rng = np.random.default_rng(0)
    codes = sp.random(400, 300, density=0.05, random_state=1, data_rvs=lambda n: rng.exponential(size=n)).tocsr()
    labels = rng.integers(0, 2, size=400)
    theirs = peer.run_sae_evals.get_sorted_indices(torch.tensor(codes.toarray()), torch.tensor(labels),
                                                   peer.run_sae_evals.mean_act_normalization)
    ours = rank_features(codes, labels)
    assert ours[:128].tolist() == theirs[:128].tolist()
