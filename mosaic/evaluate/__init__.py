"""Evaluation: classification metrics on held-out predictions and the probe's most weighted features."""

from mosaic.evaluate.metrics import classification_metrics
from mosaic.evaluate.top_features import top_features

__all__ = ["classification_metrics", "top_features"]
