"""Wall time per stage (one `Stopwatch` per job, passed down to every stage that times itself), and progress bars
that stay off logs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Stopwatch:
    """Accumulates wall time per stage name into `seconds` (what results.json reports as `timings_s`).

    `scoped(name)` gives a view that records under `name.stage` into the same dict, so work done
    again for a transfer target (its own extraction, say) is timed apart from the job's own.
    """

    def __init__(self, seconds: dict[str, float] | None = None, prefix: str = ""):
        self.seconds = {} if seconds is None else seconds
        self.prefix = prefix

    @contextmanager
    def time(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - start)

    def add(self, stage: str, seconds: float) -> None:
        key = f"{self.prefix}{stage}"
        self.seconds[key] = self.seconds.get(key, 0.0) + seconds

    def scoped(self, name: str) -> Stopwatch:
        return Stopwatch(self.seconds, f"{self.prefix}{name}.")


def quiet_progress_off_terminal() -> None:
    """No progress bars when stderr is not a terminal (a SLURM log, a pipe): they would flood it with redraws.

    MOSAIC's own bars pass `disable=None` (tqdm's "off when not a terminal"); `TQDM_DISABLE=1`, unless the
    environment sets it already, does the same for the libraries' bars (SAELens's trainer, model conversion).
    """
    import os
    import sys

    if not sys.stderr.isatty():
        os.environ.setdefault("TQDM_DISABLE", "1")
