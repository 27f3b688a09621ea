"""The disks a job writes to: a full disk named in one line, and a cache directory checked before any work.

A full disk surfaces as `OSError(ENOSPC)` from Python, as a `SafetensorError` naming "os error 28", or as
torch's "file write failed"; `disk_full` recognises all three (the last by the disk having no space
left), and a spent quota (`EDQUOT`), and turns them into a `DiskFull` that names the directory, what
was written before the disk filled, and what is free.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

from mosaic.infra.errors import DiskFull, MosaicError

# Less free space than this after a failed write counts as a full disk, whatever the error said.
NEARLY_FULL_BYTES = 1 << 20


def free_bytes(path: Path) -> int:
    """Free bytes on the disk holding `path` (or its nearest existing parent)."""
    for candidate in [path, *path.parents]:
        if candidate.exists():
            return shutil.disk_usage(candidate).free
    return 0


def written_bytes(paths: list[Path]) -> int:
    """Bytes in the files under `paths` (files or directories)."""
    total = 0
    for path in paths:
        files = [path] if path.is_file() else (p for p in path.rglob("*") if p.is_file())
        total += sum(file.stat().st_size for file in files)
    return total


def human_size(size: float) -> str:
    """`1536` -> `1.5 KB` (binary units, as `du -h` counts)."""
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def _is_under(path: str | os.PathLike, places: list[Path]) -> bool:
    resolved = Path(path).resolve()
    return any(resolved.is_relative_to(place.resolve()) for place in places)


def _ran_out(error: BaseException, directory: Path, written: list[Path]) -> str | None:
    """"space" or "quota" if `error` is a full disk or a spent quota under `directory`, else None."""
    if isinstance(error, OSError):
        if error.filename is not None and not _is_under(error.filename, [directory, *written]):
            return None
        return {errno.ENOSPC: "space", errno.EDQUOT: "quota"}.get(error.errno)
    message = str(error)
    if "No space left on device" in message or "os error 28" in message:
        return "space"
    if "Disk quota exceeded" in message or "os error 122" in message:
        return "quota"
    if "file write failed" in message and free_bytes(directory) < NEARLY_FULL_BYTES:  # torch says no more
        return "space"
    return None


def disk_full(error: BaseException, directory: Path, written: list[Path]) -> DiskFull | None:
    """A `DiskFull` for `error` if it came from a full disk (or a spent quota) under `directory`, else None.

    An `OSError` that names a file elsewhere (the hub cache, say) is not this directory's: it is left
    as it is. `written` are the temporary files or directories the failed write had filled, measured
    before they are removed.
    """
    if (ran_out := _ran_out(error, directory, written)) is None:
        return None
    wrote, free = written_bytes(written), free_bytes(directory)
    if ran_out == "quota":
        return DiskFull(f"disk quota exceeded writing to {directory} ({human_size(wrote)} written before it stopped): "
                        "free space in your quota (or set MOSAIC_CACHE to another disk) and run again: nothing "
                        "half-written was kept")
    # A writer may remove its own partial file when the disk fills: what it wrote plus what is free
    # now is the least it needed, either way.
    return DiskFull(f"no space left on the disk holding {directory}: the write needed more than "
                    f"{human_size(wrote + free)} ({human_size(wrote)} written before it stopped, {human_size(free)} "
                    "free now); free space there (or set MOSAIC_CACHE to a larger disk) and run again: nothing "
                    "half-written was kept")


def check_cache_directory(root: Path, explicit: bool) -> None:
    """Refuse a cache directory that cannot be written, before any model loads.

    An explicit `MOSAIC_CACHE` whose parent does not exist is refused rather than created: on a cluster it
    is a shared disk not mounted on this node, and a cache made on the node's own disk would be lost.
    """
    if not root.exists():
        if explicit and not root.parent.is_dir():
            raise MosaicError(f"MOSAIC_CACHE={root} does not exist, nor does {root.parent}: is the disk that holds "
                              "it mounted here? Create it, or point MOSAIC_CACHE at a writable directory")
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise MosaicError(f"the cache directory {root} cannot be created ({error.strerror}): set MOSAIC_CACHE "
                              "to a writable directory") from None
    try:
        handle, probe = tempfile.mkstemp(prefix=".write-check-", dir=root)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise MosaicError(f"the cache directory {root} is not writable ({error.strerror}): set MOSAIC_CACHE to a "
                          "writable directory, or fix its permissions") from None
