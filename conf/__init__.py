"""Hydra config groups, shipped as package data so that a non-editable install finds them."""
