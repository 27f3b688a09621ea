"""Datasets: labelled texts or images from packaged corpora, files or the hub, validated, and split for probing.

This stage knows nothing about models. It returns plain Python/NumPy objects and raises a
`DataError` with one readable line for any dataset a probe cannot be trained on.
"""

from mosaic.data.corpora import load_unlabelled_texts
from mosaic.data.datasets import LabelledDocuments, document_hash, load_labelled_documents
from mosaic.data.regimes import draw_splits
from mosaic.data.splits import Splits, make_splits

__all__ = ["LabelledDocuments", "Splits", "document_hash", "draw_splits", "load_labelled_documents",
           "load_unlabelled_texts", "make_splits"]
