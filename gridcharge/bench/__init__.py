"""Benchmark support: seeded instance generators (:mod:`.generate`)."""
