"""`python -m mosaic` commands that run a job's stages outside a job (`sae`: train, measure or list SAEs)."""
