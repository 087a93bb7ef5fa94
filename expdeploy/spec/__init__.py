"""Experiment specs: the model every dialect loads into, the dialect loaders and overrides."""
