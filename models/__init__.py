"""Flax Linen model families. Each family is a folder holding its modules and its objective."""
