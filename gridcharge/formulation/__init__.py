"""Formulations of the scheduling problem: :mod:`.lp` (CSC arrays straight into HiGHS)."""

from .lp import LinearProgram, build_lp

__all__ = ["LinearProgram", "build_lp"]
