"""MOSAIC's Hydra sweeper plugin (`hydra/sweeper=mosaic`, the default in conf/config.yaml)."""
