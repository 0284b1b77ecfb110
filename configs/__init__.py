"""Experiment configs (ml_collections). Each file's `get_config(arg)` docstring gives its command and result."""
