"""MOSAIC's config tree: `config.yaml` and one folder per config group (a package, so Hydra finds it installed)."""
