"""Progress on stderr through tqdm: a bar over counted work that shows the caller's estimate of the time left (tqdm's
own estimate assumes every step costs the same, which tasks of different kinds do not), and a timer for work of
unknown length (a solve)."""

from __future__ import annotations

import sys
import threading
from contextlib import contextmanager

from tqdm import tqdm


class Bar:
    """A tqdm bar over ``total`` steps of ``unit``; :meth:`advance` moves it and shows ``~N s left`` [s].

    Parameters
    ----------
    total : int — steps [-]; desc : str — what is counted; unit : str — name of a step
    enabled : bool — False draws nothing; stream : file — default stderr
    """

    def __init__(self, total: int, desc: str, unit: str, *, enabled: bool = True, stream=None):
        self._tqdm = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr if stream is None else stream,
                          disable=not enabled, mininterval=0.5, leave=True,
                          bar_format="{desc}: {percentage:3.0f}%|{bar:24}| {n_fmt}/{total_fmt} {unit}s "
                                     "[{elapsed} elapsed{postfix}]")

    def advance(self, steps: int = 1, left_s: float | None = None, note: str = "") -> None:
        """``steps`` more done; ``left_s`` the estimated time left [s] (None: unknown); ``note`` shown after it."""
        text = "" if left_s is None else f"~{_duration(left_s)} left"
        text = ", ".join(part for part in (text, note) if part)
        self._tqdm.set_postfix_str(text, refresh=False)
        self._tqdm.update(steps)

    def note(self, note: str) -> None:
        """Show ``note`` (e.g. the step that runs now) without moving the bar."""
        self._tqdm.set_postfix_str(note)

    def refresh(self) -> None:
        """Redraw (the elapsed time moves on while a long step runs)."""
        self._tqdm.refresh()

    def write(self, message: str) -> None:
        """A line of its own above the bar."""
        if not self._tqdm.disable:
            self._tqdm.write(message, file=self._tqdm.fp)

    def close(self) -> None:
        self._tqdm.close()

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextmanager
def timer(desc: str, *, enabled: bool = True, stream=None, every_s: float = 1.0):
    """Show ``desc`` and the elapsed time while the block runs (for work whose length is unknown: a solve, which
    releases the GIL, so the redraw thread keeps time)."""
    if not enabled:
        yield
        return
    bar = tqdm(total=None, desc=desc, file=sys.stderr if stream is None else stream, leave=False,
               bar_format="{desc}, {elapsed} elapsed")
    stop = threading.Event()

    def tick():
        while not stop.wait(every_s):
            bar.refresh()

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        bar.close()


def _duration(seconds: float) -> str:
    """``42 s``, ``3.5 min``, ``2.1 h``."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
