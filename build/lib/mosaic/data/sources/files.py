"""`dataset.source=csv` and `jsonl`: a CSV file, or a JSONL file (one JSON object per line), at `dataset.path`,
in `dataset.encoding`; identified by the file's SHA-256."""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig

from mosaic.data.sources.base import DatasetSource
from mosaic.infra.errors import DataError, first_line


def _is_codec(name: str) -> bool:
    try:
        codecs.lookup(name)
    except LookupError:
        return False
    return True


class DataFile(DatasetSource):
    def read(self, cfg: DictConfig) -> pd.DataFrame:
        try:
            if cfg.source == "csv":
                return pd.read_csv(cfg.path, encoding=cfg.encoding)
            return pd.read_json(cfg.path, lines=True, encoding=cfg.encoding)
        except UnicodeDecodeError as error:
            raise DataError(f"dataset.path={cfg.path!r} is not {cfg.encoding} text ({error.reason} at byte "
                            f"{error.start}): set dataset.encoding to the file's encoding, e.g. "
                            "dataset.encoding=latin-1") from None
        except (pd.errors.EmptyDataError, pd.errors.ParserError, ValueError) as error:
            reason = first_line(error)
            raise DataError(f"dataset.path={cfg.path!r} cannot be read as {cfg.source.upper()}: {reason}") from None

    def identity(self, cfg: DictConfig) -> dict[str, Any]:
        from mosaic.infra.cache import fingerprint

        return {"files": fingerprint([Path(cfg.path)])}

    def validate(self, cfg: DictConfig, key: str) -> None:
        from mosaic.infra.errors import require

        require(cfg.path is not None and Path(cfg.path).is_file(), f"{key}.path", cfg.path,
                f"{key}.source={cfg.source} needs the path of an existing file")
        require(_is_codec(cfg.encoding), f"{key}.encoding", cfg.encoding,
                "a text encoding Python knows, e.g. utf-8, latin-1, cp1252, utf-16")
