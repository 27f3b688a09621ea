"""MOSAIC: sparse-autoencoder features of language models for safety classification."""
