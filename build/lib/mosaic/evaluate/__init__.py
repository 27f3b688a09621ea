"""Evaluation: held-out metrics, cross-validation on the non-test documents, the probe's top features."""

from mosaic.evaluate.cv import cross_validate
from mosaic.evaluate.metrics import classification_metrics
from mosaic.evaluate.top_features import top_features

__all__ = ["classification_metrics", "cross_validate", "top_features"]
