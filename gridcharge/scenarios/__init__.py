"""Capacity scenarios for utility engineers: scenario files, Monte Carlo days, transformer physics, hosting
capacity and reports (``gridcharge scenario run``).

``load_scenario`` (spec) → ``run_study`` (runner: tasks on dask.distributed) → ``write_report`` (report).
"""

from __future__ import annotations

from .spec import Scenario, load_scenario

__all__ = ["Scenario", "load_scenario", "run_study", "write_report"]


def __getattr__(name: str):  # lazy: dask and matplotlib only when used
    if name == "run_study":
        from .runner import run_study
        return run_study
    if name == "write_report":
        from .report import write_report
        return write_report
    raise AttributeError(f"module 'gridcharge.scenarios' has no attribute {name!r}")
