"""Solvers: the direct HiGHS LP, and (registered by name) every other back-end."""

from .registry import available, get_solver, register

__all__ = ["available", "get_solver", "register"]
