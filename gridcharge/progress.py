"""Progress on stderr through tqdm: a bar over counted work that shows the caller's estimate of the time left (tqdm's
own estimate assumes every step costs the same, which tasks of different kinds do not), and a timer for work of
unknown length (a solve) that shows the solver's own progress beside it."""

from __future__ import annotations

import sys
import threading
import time
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


class Status:
    """What :func:`timer` yields: :meth:`note` shows a line of progress after the elapsed time."""

    def __init__(self, desc: str, stream, live: bool, enabled: bool, heartbeat_s: float = 30.0):
        self._desc, self._stream, self._enabled = desc, stream, enabled
        self._started = self._written = time.perf_counter()
        self._heartbeat_s = heartbeat_s
        self._bar = None
        if enabled and live:
            self._bar = tqdm(total=None, desc=desc, file=stream, leave=False,
                             bar_format="{desc}, {elapsed} elapsed{postfix}")

    def note(self, text: str) -> None:
        """Show ``text`` (e.g. an iteration's residuals): on the redrawn line of a terminal, else as a line of its
        own, ``DESC, 12 s elapsed, TEXT``."""
        if not self._enabled:
            return
        if self._bar is not None:
            self._bar.set_postfix_str(text)
        else:
            self._line(f", {text}")

    def refresh(self) -> None:
        """Redraw the line of a terminal; elsewhere, a line with the elapsed time when none came for
        ``heartbeat_s`` seconds (a solve that reports nothing of its own, HiGHS's, still says it is alive)."""
        if self._bar is not None:
            self._bar.refresh()
        elif self._enabled and time.perf_counter() - self._written >= self._heartbeat_s:
            self._line("")

    def _line(self, text: str) -> None:
        self._written = time.perf_counter()
        print(f"{self._desc.strip()}, {_duration(self._written - self._started)} elapsed{text}", file=self._stream,
              flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@contextmanager
def timer(desc: str, *, enabled: bool = True, stream=None, every_s: float = 1.0, live: bool | None = None,
          heartbeat_s: float = 30.0):
    """Show ``desc`` and the elapsed time while the block runs (for work whose length is unknown: a solve, which
    releases the GIL, so the redraw thread keeps time); yields a :class:`Status` whose ``note`` adds a line of
    progress.

    ``live``: redraw one line every ``every_s`` seconds [s] (a terminal), or write a line per note, and one with
    the elapsed time after ``heartbeat_s`` seconds [s] without a note (a log file); default: whether ``stream`` is a
    terminal.
    """
    stream = sys.stderr if stream is None else stream
    if live is None:
        live = _is_terminal(stream)
    status = Status(desc, stream, live, enabled, heartbeat_s)
    stop = threading.Event()
    thread = None
    if enabled:
        def tick():
            while not stop.wait(every_s):
                status.refresh()

        thread = threading.Thread(target=tick, daemon=True)
        thread.start()
    try:
        yield status
    finally:
        stop.set()
        if thread is not None:
            thread.join()
        status.close()


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _duration(seconds: float) -> str:
    """``42 s``, ``3.5 min``, ``2.1 h``."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
