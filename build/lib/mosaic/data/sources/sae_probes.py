"""`dataset.source=sae_probes`: the sparse-probing suite (Kantamneni et al. 2025, "Are Sparse Autoencoders Useful?
A Case Study in Sparse Probing") as MOSAIC datasets, read from the files of the installed `sae-probes` package.

The package is never imported: its import reads every dataset (about 10 s) and loads TransformerLens.
Its data folder holds `probing_datasets_MASTER.csv.zst` (the task list), `cleaned_data/TASK.csv.zst`
(columns `prompt`, `target`) and `OOD data/TASK_OOD.csv.zst` (covariate-shifted test sets of 9 tasks).
"""

from __future__ import annotations

import importlib.util
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from mosaic.data.sources.base import PackagedCorpus
from mosaic.infra.errors import DataError

PACKAGE = "sae-probes"
_KINDS = {"Binary Classification": "binary", "Multiclass Classification": "multiclass"}


def data_folder() -> Path:
    """The installed package's data folder, found without importing the package."""
    spec = importlib.util.find_spec("sae_probes")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("dataset.source='sae_probes' needs the sae-probes package: make install "
                        "(pip install --no-deps sae-probes==0.4.2 zstandard)")
    return Path(spec.submodule_search_locations[0]) / "data"


def package_version() -> str | None:
    try:
        return version(PACKAGE)
    except PackageNotFoundError:
        return None


@cache
def tasks() -> dict[str, str]:
    """Every classification task the installed suite ships, in its own order: name -> binary or multiclass.

    Its continuous (regression) tasks are left out: a probe here is a classifier.
    """
    master = pd.read_csv(data_folder() / "probing_datasets_MASTER.csv.zst", compression="zstd")
    return {Path(saved).name.removesuffix(".csv"): _KINDS[kind]
            for saved, kind in zip(master["Dataset save name"], master["Data type"], strict=True) if kind in _KINDS}


def ood_tasks() -> list[str]:
    """The tasks that have a covariate-shifted test set, sorted."""
    return sorted(path.name.removesuffix("_OOD.csv.zst") for path in (data_folder() / "OOD data").glob("*_OOD.csv.zst"))


def _checked(task: str | None) -> str:
    known = tasks()
    if task not in known:
        examples = ", ".join(list(known)[:3])
        raise DataError(f"dataset.task={task!r} is not a classification task of sae-probes {package_version()}: "
                        f"choose one of its {len(known)} ({examples}, ...; `python -m mosaic tasks` lists them)")
    return task


def read_task(cfg) -> pd.DataFrame:
    """One task's table (`prompt`, `target`), every row, in the package's order."""
    return pd.read_csv(data_folder() / "cleaned_data" / f"{_checked(cfg.task)}.csv.zst", compression="zstd")


def read_ood(task: str) -> pd.DataFrame:
    """A task's covariate-shifted test set (same columns), for `regime=covariate_shift`."""
    if _checked(task) not in ood_tasks():
        raise DataError(f"dataset.task={task!r} has no out-of-distribution test set: choose one of "
                        + ", ".join(ood_tasks()))
    return pd.read_csv(data_folder() / "OOD data" / f"{task}_OOD.csv.zst", compression="zstd")


class SparseProbingTask(PackagedCorpus):
    package = PACKAGE
    shifted_test_sets = True

    def read(self, cfg: DictConfig) -> pd.DataFrame:
        return read_task(cfg)

    def validate(self, cfg: DictConfig, key: str) -> None:
        from mosaic.infra.errors import require

        require(cfg.task is not None, f"{key}.task", None, f"{key}.source=sae_probes needs a task, e.g. 95_toxic_is")
