"""A content-addressed on-disk cache of directories, safe when jobs run side by side or are killed.

An entry is a directory named by a hash of everything that changes its bytes, under a folder per
kind (`activations`, `saes`, `models`). It is built in a temporary sibling directory, given a
manifest (the fields it was built from, each file's size and SHA-256) and renamed into place, so a
reader never sees a half-written entry. A file lock per key makes a second job wait for the first
instead of building the same entry; a dead writer's leftovers are removed by the next one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Collection, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from mosaic.infra.disk import disk_full

MANIFEST = "manifest.json"
# Beside the kinds: the last saved state of entries being built (an SAE in training), never an entry.
CHECKPOINTS = "checkpoints"


def cache_root() -> Path:
    """`$MOSAIC_CACHE`, else `$XDG_CACHE_HOME/mosaic`, else `~/.cache/mosaic`."""
    if "MOSAIC_CACHE" in os.environ:
        return Path(os.environ["MOSAIC_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mosaic"


def content_key(fields: dict[str, Any]) -> str:
    """A short stable hash of a JSON-serialisable description."""
    canonical = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(paths: Sequence[Path], root: Path | None = None) -> dict[str, str]:
    """SHA-256 of each file (relative name -> digest), remembered across runs while its size and mtime stay.

    Hashing a 20 GB model takes a minute; the memo (`fingerprints.json` in the cache root, keyed by
    absolute path, size and modification time) makes every later job's check a `stat`. It is
    merged under a lock and readable by every user of a shared cache.
    """
    memo_path = cache_root() / "fingerprints.json"
    stamps = {}
    for path in sorted(paths):
        stat = path.stat()
        stamps[path] = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    memo = _read_json(memo_path)
    missing = {stamp: path for path, stamp in stamps.items() if stamp not in memo}
    if missing:
        digests = {stamp: file_sha256(path) for stamp, path in missing.items()}
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(memo_path) + ".lock"):
            memo = {**_read_json(memo_path), **digests}
            handle, tmp = tempfile.mkstemp(prefix=".fingerprints.", dir=memo_path.parent)
            with os.fdopen(handle, "w") as stream:
                json.dump(memo, stream)
            os.chmod(tmp, 0o644)
            os.replace(tmp, memo_path)
    return {str(path.relative_to(root)) if root else path.name: memo[stamp] for path, stamp in stamps.items()}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def directory_fingerprint(directory: Path) -> str:
    """One digest for every file under `directory` (names and contents)."""
    files = [p for p in directory.rglob("*") if p.is_file()]
    return content_key(fingerprint(files, root=directory))


def _data_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST)


@dataclass
class Entry:
    """One cache entry as its manifest describes it."""

    path: Path
    kind: str
    key: str
    fields: dict[str, Any]
    files: dict[str, dict[str, Any]]
    created: float

    @property
    def size(self) -> int:
        return sum(f["size"] for f in self.files.values())


def read_entry(path: Path, verify: bool = False) -> Entry | None:
    """The entry at `path` if its manifest is readable and every listed file has its recorded size.

    With `verify`, also every file's SHA-256: an entry damaged in place (same size, other bytes) is
    then None, as if absent, and is rebuilt rather than read.
    """
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        entry = Entry(path, manifest["kind"], manifest["key"], manifest["fields"], manifest["files"],
                      manifest["created"])
    except (OSError, ValueError, KeyError, TypeError):  # absent, half-written, or from another format
        return None
    for name, info in entry.files.items():
        file = path / name
        if not file.is_file() or file.stat().st_size != info["size"]:
            return None
    if verify and verify_entry(entry):
        return None
    return entry


def _write_manifest(directory: Path, kind: str, key: str, fields: dict[str, Any]) -> None:
    files = {
        str(p.relative_to(directory)): {"size": p.stat().st_size, "sha256": file_sha256(p)}
        for p in _data_files(directory)
    }
    manifest = {"kind": kind, "key": key, "fields": fields, "files": files, "created": time.time()}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))


def cached_directories(
    kind: str,
    fields_list: Sequence[dict[str, Any]],
    build: Callable[[dict[str, Path]], Collection[str] | None],
) -> list[tuple[Path, bool]]:
    """The entries for several descriptions, building all missing ones together.

    `build(directories)` receives a temporary directory per missing key and fills them (one model
    forward can serve many entries); it may return keys it could not build, which are left out.
    Returns, per description, its path and whether it was already complete (a skipped entry's path
    does not exist). Locks are taken in key order, so concurrent callers cannot deadlock. Entries
    are checked against their manifest's checksums before they count as present.
    """
    parent = cache_root() / kind
    keys = [content_key(fields) for fields in fields_list]
    built: list[str] = []
    missing = sorted({key for key in keys if read_entry(parent / key, verify=True) is None})
    if missing:
        parent.mkdir(parents=True, exist_ok=True)
        with ExitStack() as locks:
            for key in missing:
                locks.enter_context(FileLock(str(parent / f"{key}.lock")))
            # Another job may have built some while this one waited for their locks.
            built = [key for key in missing if read_entry(parent / key, verify=True) is None]
            if built:
                _build_locked(parent, kind, built, dict(zip(keys, fields_list)), build)
    return [(parent / key, key not in built) for key in keys]


def _build_locked(parent: Path, kind: str, missing: list[str], fields: dict[str, dict], build) -> None:
    # Holding the locks, any incomplete entry or temporary build dir for these keys is a dead writer's.
    for key in missing:
        for stale in [parent / key, *parent.glob(f".{key}-*")]:
            if stale.exists():
                shutil.rmtree(stale)
    temporary = {key: Path(tempfile.mkdtemp(prefix=f".{key}-", dir=parent)) for key in missing}
    try:
        skipped = set(build(temporary) or ())
        for key, directory in temporary.items():
            if key in skipped:
                continue
            _write_manifest(directory, kind, key, fields[key])
            directory.chmod(0o755)  # mkdtemp's 0700 would hide a shared cache from other users
            os.replace(directory, parent / key)
            Checkpoints(kind, key).clear()  # the entry is in place: its saved build states are done with
    except Exception as error:  # safetensors' own error type reports a full disk too
        if full := disk_full(error, parent, list(temporary.values())):
            raise full from error
        raise
    finally:
        for directory in temporary.values():
            if directory.exists():
                shutil.rmtree(directory)


def cached_directory(kind: str, fields: dict[str, Any], build: Callable[[Path], None]) -> tuple[Path, bool]:
    """The entry for `fields` under `kind`, built with `build(tmp_dir)` if absent; and whether it was there."""
    def build_one(directories: dict[str, Path]) -> None:
        build(next(iter(directories.values())))

    [(path, hit)] = cached_directories(kind, [fields], build_one)
    return path, hit


def _kind_dirs(root: Path, kind: str | None) -> list[Path]:
    """The directories in `root/KIND` for one kind, or for every kind folder in `root` (checkpoints are no kind)."""
    kinds = [root / kind] if kind else sorted(p for p in root.glob("*") if p.is_dir() and p.name != CHECKPOINTS)
    return [p for k in kinds if k.is_dir() for p in sorted(k.iterdir()) if p.is_dir()]


def _entry_dirs(kind: str | None) -> list[Path]:
    return _kind_dirs(cache_root(), kind)


def list_entries(kind: str | None = None) -> list[Entry]:
    """Complete entries under the cache root (of one kind, or all), oldest first."""
    entries = [read_entry(p) for p in _entry_dirs(kind)]
    return sorted((e for e in entries if e is not None), key=lambda e: e.created)


def saved_states(kind: str | None = None) -> list[Path]:
    """The saved build states (`Checkpoints`) of entries not built yet: `checkpoints/KIND/KEY`."""
    return _kind_dirs(cache_root() / CHECKPOINTS, kind)


def incomplete_dirs(kind: str | None = None) -> list[Path]:
    """Directories that are not complete entries: half-written, truncated, or a dead writer's temporary dir."""
    return [p for p in _entry_dirs(kind) if read_entry(p) is None]


def verify_entry(entry: Entry) -> list[str]:
    """Problems with an entry's files against its manifest (empty when every checksum matches)."""
    problems = []
    for name, info in entry.files.items():
        file = entry.path / name
        if not file.is_file():
            problems.append(f"{name}: missing")
        elif file_sha256(file) != info["sha256"]:
            problems.append(f"{name}: checksum mismatch")
    return problems


def remove_entry(entry: Entry) -> None:
    """Delete an entry, under its lock so no reader or writer of the same key is mid-way."""
    with FileLock(str(entry.path.parent / f"{entry.key}.lock")):
        shutil.rmtree(entry.path, ignore_errors=True)


class Checkpoints:
    """The saved states of one entry while it is built, so that a stopped build resumes instead of restarting.

    Each state is a directory written like an entry (temporary sibling, manifest with checksums,
    rename), under `checkpoints/KIND/KEY/step-N`; only the newest is kept. A state is read only if its
    manifest verifies, so a build stopped mid-save resumes from the state before. The builder holds
    the entry's lock, so one writer at a time; the cache clears them once the entry is in place.
    """

    def __init__(self, kind: str, key: str):
        self.directory = cache_root() / CHECKPOINTS / kind / key
        self.key = key

    def latest(self) -> Path | None:
        """The newest complete state, or None."""
        if not self.directory.is_dir():
            return None
        states = sorted((p for p in self.directory.glob("step-*") if p.is_dir()), reverse=True)
        return next((p for p in states if read_entry(p, verify=True) is not None), None)

    def save(self, step: int, fill: Callable[[Path], None]) -> Path:
        """Write the state after `step` steps with `fill(directory)`; older states are removed once it is in place."""
        target = self.directory / f"step-{step:012d}"
        if read_entry(target, verify=True) is not None:
            return target  # this step's state is saved already (a resumed build's first save): kept as it is
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = Path(tempfile.mkdtemp(prefix=f".step-{step}-", dir=self.directory))
        try:
            fill(temporary)
            _write_manifest(temporary, CHECKPOINTS, self.key, {"step": step})
            if target.exists():
                shutil.rmtree(target)
            os.replace(temporary, target)
        except Exception as error:  # safetensors' own error type reports a full disk too
            if full := disk_full(error, self.directory, [temporary]):
                raise full from error
            raise
        finally:
            if temporary.exists():
                shutil.rmtree(temporary)
        # Older states, and a killed save's temporary directory: the builder holds the entry's lock.
        for older in [*self.directory.glob("step-*"), *self.directory.glob(".step-*")]:
            if older != target:
                shutil.rmtree(older, ignore_errors=True)
        return target

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
