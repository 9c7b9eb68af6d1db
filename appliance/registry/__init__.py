"""Datasets, runs, model versions, aliases and lineage."""
