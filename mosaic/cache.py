"""A content-addressed on-disk cache of directories, safe when jobs run side by side or are killed.

An entry is a directory named by a hash of everything that changes its bytes. It is built in a
temporary sibling directory and renamed into place, so a reader never sees a half-written entry;
a file lock per key makes a second job wait for the first instead of building the same entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

COMPLETE_MARKER = "manifest.json"


def cache_root() -> Path:
    """`$MOSAIC_CACHE`, else `$XDG_CACHE_HOME/mosaic`, else `~/.cache/mosaic`."""
    if "MOSAIC_CACHE" in os.environ:
        return Path(os.environ["MOSAIC_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mosaic"


def content_key(fields: dict[str, Any]) -> str:
    """A short stable hash of a JSON-serialisable description."""
    canonical = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


def cached_directory(kind: str, fields: dict[str, Any], build: Callable[[Path], None]) -> tuple[Path, bool]:
    """Return the entry for `fields` under `kind`, building it with `build(tmp_dir)` if absent.

    Returns the entry's path and whether it was already there. An entry counts only once its
    manifest is written, which happens after `build` returned, and the entry appears by rename.
    """
    key = content_key(fields)
    parent = cache_root() / kind
    entry = parent / key
    if (entry / COMPLETE_MARKER).is_file():
        return entry, True
    parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(parent / f"{key}.lock")):
        if (entry / COMPLETE_MARKER).is_file():
            return entry, True
        # Holding the lock, any entry without a manifest or temporary build dir is a dead writer's.
        for stale in [entry, *parent.glob(f".{key}-*")]:
            if stale.exists():
                shutil.rmtree(stale)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=parent))
        try:
            build(tmp)
            (tmp / COMPLETE_MARKER).write_text(json.dumps({"key": key, "kind": kind, "fields": fields},
                                                          indent=2, default=str))
            os.replace(tmp, entry)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
    return entry, False
