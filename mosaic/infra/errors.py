"""The one exception type MOSAIC raises for bad input.

`run.py` turns a `MosaicError` into a single line on stderr and a non-zero exit, so its message must
say what is wrong and what is allowed, with no stack trace needed to understand it.
"""


class MosaicError(Exception):
    """A configuration value, dataset, model or SAE that MOSAIC cannot work with."""


class ConfigError(MosaicError):
    """A configuration value outside what is allowed; raised before any heavy work starts."""


class NotApplicableError(ConfigError):
    """Valid values whose combination has no meaning (`topn` pooling of a bag of words).

    A single job stops on it like on any bad value; in a grid the cell is skipped, not failed,
    since a product of options naturally contains such pairs.
    """


class DataError(MosaicError):
    """A dataset that is empty, lacks a column, or cannot support a classification probe."""


class Stopped(BaseException):
    """SIGTERM, raised like SIGINT's `KeyboardInterrupt` so that every `finally` on the way out runs: temporary cache
    directories and results files are removed, locks released. Not an `Exception`: a grid does not record it
    as a failed cell and go on, it stops."""


class DiskFull(MosaicError):
    """A write that found no space left: which directory, and how much more it needed."""


def require(condition: bool, key: str, value, allowed: str, error: type[ConfigError] = ConfigError) -> None:
    """Raise `error` with MOSAIC's one line, `key=value is not allowed: allowed`, unless `condition` holds."""
    if not condition:
        raise error(f"{key}={value!r} is not allowed: {allowed}")


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (or its type name): enough to quote in a one-line error."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
