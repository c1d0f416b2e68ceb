"""The numba warm-up a structured solve starts beside its LP build finishes, without an error, on a daemon thread
(an exception there would only be printed, so it is caught here)."""

import threading

from gridcharge.solvers.structured.warm import warm_up_beside


def test_the_warm_up_thread_finishes_cleanly(monkeypatch):
    failures = []
    monkeypatch.setattr(threading, "excepthook", failures.append)
    thread = warm_up_beside()
    assert thread.daemon
    thread.join(timeout=120)
    assert not thread.is_alive() and failures == []
