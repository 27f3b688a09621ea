"""The Hugging Face hub as MOSAIC uses it: fetched once into the hub client's cache, then read from there.

Compute nodes of a cluster usually have no network; `python -m mosaic fetch` (on a login node)
downloads what a grid needs into the hub client's cache (`HF_HUB_CACHE`, under `HF_HOME`), with
the client's own code. A job then finds each model, dataset and SAE there and reads it without
touching the network (`local_only`), whether or not `HF_HUB_OFFLINE` is set; only what is missing
is downloaded, where the hub is reachable, and with `HF_HUB_OFFLINE=1` a missing piece stops the
job in one line that names the fetch command.

Models are fetched at a revision resolved to a commit (`local_commit` reads where a branch pointed
when it was fetched); their files are the safetensors weights, configs and tokenizer files
(`MODEL_FILES`). A dataset is its whole repository, read by `datasets` as a local folder.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mosaic.infra.errors import MosaicError, first_line

FETCH_COMMAND = "python -m mosaic fetch"
# What a transformers model needs: config, safetensors weights (and their index), tokenizer and processor files,
# and the code a `trust_remote_code` model runs.
MODEL_FILES = ("*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.py")
COMMIT = re.compile(r"[0-9a-f]{40}")


def hub_offline() -> bool:
    """Whether the hub client is switched off (`HF_HUB_OFFLINE=1`)."""
    from huggingface_hub import constants

    return constants.is_offline_mode()


def hub_cache() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


@contextmanager
def local_only() -> Iterator[None]:
    """Every hub client call inside reads the local cache alone, as with `HF_HUB_OFFLINE=1`.

    For reads whose files are already fetched: the client would otherwise ask the hub whether they
    changed, which on a node without network waits for timeouts.
    """
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def not_fetched(what: str, otherwise: str = "") -> MosaicError:
    """The one line for a hub item that is not in the cache where nothing may be downloaded (`otherwise`: another
    way to provide it)."""
    return MosaicError(f"{what} is not fetched (hub cache {hub_cache()}): run `{FETCH_COMMAND} <this grid's "
                       f"overrides>` where the hub is reachable (a login node), with the same HF_HOME{otherwise}")


def local_commit(kind: str, repo_id: str, revision: str) -> str | None:
    """The commit `revision` (a branch or tag) pointed at when `repo_id` was fetched; None if never fetched."""
    from huggingface_hub.file_download import repo_folder_name

    if COMMIT.fullmatch(revision):
        return revision
    ref = hub_cache() / repo_folder_name(repo_id=repo_id, repo_type=kind) / "refs" / revision
    return ref.read_text().strip() if ref.is_file() else None


def _patterns(kind: str) -> list[str] | None:
    return list(MODEL_FILES) if kind == "model" else None


def cached_snapshot(kind: str, repo_id: str, revision: str) -> Path | None:
    """The local folder of a fetched repository at `revision`; None when it was never fetched."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, repo_type=kind, revision=revision, allow_patterns=_patterns(kind),
                                      local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError):
        return None


def download_snapshot(kind: str, repo_id: str, revision: str) -> Path:
    """Fetch a repository's files at `revision` into the hub cache (what is already there is not fetched again)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, repo_type=kind, revision=revision, allow_patterns=_patterns(kind)))
    except Exception as error:  # noqa: BLE001 - gated, missing, offline: one line each
        raise unavailable(f"{kind} {repo_id}@{revision}", repo_id, error) from None


def snapshot(kind: str, repo_id: str, revision: str) -> Path:
    """A repository's local folder: from the cache when fetched, else downloaded (refused when the hub is off)."""
    found = cached_snapshot(kind, repo_id, revision)
    if found is not None:
        return found
    if hub_offline():
        raise not_fetched(f"{kind} {repo_id}@{revision}")
    return download_snapshot(kind, repo_id, revision)


def cached_file(repo_id: str, filename: str) -> Path | None:
    """One fetched file of a model repository at `main`; None when never fetched."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename)
    return Path(found) if isinstance(found, str) else None


def cached_files(repo_id: str, path: str) -> list[Path] | None:
    """The fetched copy of a path of a model repository at `main`: a folder's files, or the one file; None when
    none of it was fetched."""
    from huggingface_hub.file_download import repo_folder_name

    commit = local_commit("model", repo_id, "main")
    if commit is None:
        return None
    root = hub_cache() / repo_folder_name(repo_id=repo_id, repo_type="model") / "snapshots" / commit / path
    found = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
    return found or None


def files(what: str, repo_id: str, path: str) -> list[Path]:
    """A repository path's local copy (a folder's files, or one file): from the cache when fetched, else
    downloaded (refused when the hub is off)."""
    from huggingface_hub import snapshot_download

    found = cached_files(repo_id, path)
    if found is not None:
        return found
    if hub_offline():
        raise not_fetched(what)
    try:
        snapshot_download(repo_id, allow_patterns=[path, f"{path}/*"])
    except Exception as error:  # noqa: BLE001 - gated, missing, unreachable: one line each
        raise unavailable(what, repo_id, error) from None
    found = cached_files(repo_id, path)
    if found is None:
        raise MosaicError(f"{what}: {repo_id} has no {path}; check the release table's path")
    return found


def unavailable(what: str, repo_id: str, error: BaseException) -> MosaicError:
    """One line for a hub item that could not be fetched, saying what to do about the usual causes."""
    name = type(error).__name__
    if name == "GatedRepoError":
        advice = (f"it is gated: accept its licence at https://huggingface.co/{repo_id} and log in "
                  "(`hf auth login`, or HF_TOKEN)")
    elif name in ("RepositoryNotFoundError", "RevisionNotFoundError", "EntryNotFoundError"):
        advice = "check the id and revision (a private repository also needs a token)"
    elif name in ("OfflineModeIsEnabled", "LocalEntryNotFoundError") and hub_offline():
        return not_fetched(what)
    else:
        advice = "the hub may be unreachable from here"
    return MosaicError(f"{what}: cannot fetch ({name}: {first_line(error)[:160]}); {advice}")


# Hub items fetched as whole repositories at a revision; any other kind is a path (a folder or one file) of a
# repository at `main`.
SNAPSHOT_KINDS = ("model", "dataset")


@dataclass(frozen=True)
class HubItem:
    """One thing a job reads from the hub: a model or dataset repository at a revision (`where`), or one file
    path of a repository at `main` (`where`: a folder or one file, e.g. an SAE's). Option modules say which items a job
    reads (`hub_items`); `python -m mosaic fetch` fetches them."""

    kind: str
    repo_id: str
    where: str
    label: str

    def fetched(self) -> bool:
        """Whether it is in the hub cache now (no network)."""
        if self.kind in SNAPSHOT_KINDS:
            return cached_snapshot(self.kind, self.repo_id, self.where) is not None
        return cached_files(self.repo_id, self.where) is not None

    def fetch(self) -> str:
        """Download it (what is already there is kept); returns where it now is, in a few words."""
        if self.kind not in SNAPSHOT_KINDS:
            fetched = files(self.label, self.repo_id, self.where)
            return str(fetched[0]) if len(fetched) == 1 else f"{len(fetched)} files in {fetched[0].parent}"
        folder = download_snapshot(self.kind, self.repo_id, self.where)
        if self.kind == "model" and not any(folder.glob("*.safetensors")):
            raise MosaicError(f"{self.label}: {self.repo_id} has no safetensors weights at {self.where}; MOSAIC "
                              "loads safetensors only: download it yourself and set model.path=/local/copy")
        return f"commit {folder.name[:12]}"
