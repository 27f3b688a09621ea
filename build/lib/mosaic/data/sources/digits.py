"""`dataset.source=digits`: scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes) as PNGs."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from mosaic.data.sources.base import PackagedCorpus, require_images


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


class Digits(PackagedCorpus):
    package = "scikit-learn"

    def read(self, cfg: DictConfig) -> pd.DataFrame:
        from sklearn.datasets import load_digits

        digits = load_digits()
        pixels = np.round(digits.images / 16.0 * 255).astype(np.uint8)
        return pd.DataFrame({"image": [_png(image) for image in pixels], "label": digits.target.astype(str)})

    def validate(self, cfg: DictConfig, key: str) -> None:
        require_images(cfg, key)
