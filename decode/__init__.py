"""Jitted decoding primitives."""
