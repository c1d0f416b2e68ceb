"""Assertions for tests — gridcharge's own and yours (in the spirit of ``numpy.testing``).

Each raises ``AssertionError`` with a message that says what broke, where.
"""

from __future__ import annotations

import math

import numpy as np

from .verify import verify


def assert_feasible(instance, schedule) -> None:
    """The schedule keeps every limit of the instance (checked by the independent verifier)."""
    result = verify(instance, schedule)
    if not result.ok:
        raise AssertionError(f"schedule is not feasible:\n{result}")


def assert_objective_close(actual: float, expected: float, rel: float = 1e-6, abs_: float = 1e-6) -> None:
    """Two objective values [CNY] agree to ``rel`` relative or ``abs_`` absolute tolerance."""
    if not math.isclose(actual, expected, rel_tol=rel, abs_tol=abs_):
        raise AssertionError(f"objective {actual!r} CNY != expected {expected!r} CNY (rel {rel}, abs {abs_})")


def assert_no_overdelivery(instance, schedule, tol_kwh: float = 1e-6) -> None:
    """No session receives more energy than it asked for [kWh] (energy is conserved through the charger losses)."""
    result = verify(instance, schedule)
    over = [v for v in result.violations if v.kind in ("over_request", "battery_upper")]
    if over:
        raise AssertionError("energy delivered exceeds the request:\n" + "\n".join(map(str, over[:10])))


def assert_power_close(actual, expected, atol_kw: float = 1e-6) -> None:
    """Two power schedules (DataFrames or arrays) agree element-wise [kW]."""
    a = np.asarray(getattr(actual, "power_kw", actual), dtype=float)
    b = np.asarray(getattr(expected, "power_kw", expected), dtype=float)
    if a.shape != b.shape:
        raise AssertionError(f"power shapes differ: {a.shape} vs {b.shape}")
    worst = np.max(np.abs(a - b)) if a.size else 0.0
    if worst > atol_kw:
        raise AssertionError(f"power differs by up to {worst:.3g} kW (atol {atol_kw} kW)")
