"""`dataset.source=imagefolder`: `dataset.path/CLASS/IMAGE` files as rows (image bytes, class name), classes and
files in sorted order; identified by the SHA-256 of its files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig

from mosaic.data.sources.base import DatasetSource, require_images

_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class ImageFolder(DatasetSource):
    def read(self, cfg: DictConfig) -> pd.DataFrame:
        root = Path(cfg.path)
        rows = [{"image": file.read_bytes(), "label": folder.name}
                for folder in sorted(p for p in root.iterdir() if p.is_dir())
                for file in sorted(folder.iterdir()) if file.suffix.lower() in _SUFFIXES]
        return pd.DataFrame(rows, columns=["image", "label"])

    def identity(self, cfg: DictConfig) -> dict[str, Any]:
        from mosaic.infra.cache import directory_fingerprint

        return {"files": directory_fingerprint(Path(cfg.path))}

    def validate(self, cfg: DictConfig, key: str) -> None:
        from mosaic.infra.errors import require

        require(cfg.path is not None and Path(cfg.path).is_dir(), f"{key}.path", cfg.path,
                f"{key}.source=imagefolder needs a directory with one folder of images per class")
        require_images(cfg, key)
