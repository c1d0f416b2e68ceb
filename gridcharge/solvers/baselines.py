"""Baseline charging strategies that real systems use, in numpy (being written)."""

BASELINES: dict = {}
