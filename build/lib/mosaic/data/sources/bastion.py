"""`dataset.source=bastion`: the `bastioncorpus` package's 181 prompts, malicious (prompt injection) or benign."""

from __future__ import annotations

import pandas as pd
from omegaconf import DictConfig

from mosaic.data.sources.base import PackagedCorpus


class Bastion(PackagedCorpus):
    package = "bastioncorpus"

    def read(self, cfg: DictConfig) -> pd.DataFrame:
        from bastioncorpus import load_corpus

        return pd.DataFrame([vars(item) for item in load_corpus()])
