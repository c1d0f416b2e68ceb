"""Argument types shared by the subcommands: numbers with their allowed range, refused with the value and the rule."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def number(*, above: float | None = None, at_least: float | None = None,
           at_most: float | None = None) -> Callable[[str], float]:
    """An argparse ``type`` for a real number within bounds (``above``: strictly greater than)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if above is not None and not value > above:
            raise argparse.ArgumentTypeError(f"{text!r} must be > {above:g}")
        if at_least is not None and not value >= at_least:
            raise argparse.ArgumentTypeError(f"{text!r} must be >= {at_least:g}")
        if at_most is not None and not value <= at_most:
            raise argparse.ArgumentTypeError(f"{text!r} must be <= {at_most:g}")
        return value

    return parse


def whole(*, at_least: int | None = None, at_most: int | None = None) -> Callable[[str], int]:
    """An argparse ``type`` for a whole number within bounds."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if at_least is not None and value < at_least:
            raise argparse.ArgumentTypeError(f"{text!r} must be >= {at_least}")
        if at_most is not None and value > at_most:
            raise argparse.ArgumentTypeError(f"{text!r} must be <= {at_most}")
        return value

    return parse


positive = number(above=0.0)
non_negative = number(at_least=0.0)
share = number(at_least=0.0, at_most=1.0)
count = whole(at_least=0)
positive_whole = whole(at_least=1)


def out_directory_problem(path) -> str | None:
    """The error line to print when ``--out`` cannot be written (checked before any work; nothing is created)."""
    from .._files import unwritable_reason

    reason = unwritable_reason(path, directory=True)
    return None if reason is None else f"gridcharge: --out {path}: {reason}"


def out_file_problem(path) -> str | None:
    """The error line to print when an output file cannot be written (checked before any work; nothing created)."""
    from .._files import unwritable_reason

    reason = unwritable_reason(path, directory=False)
    return None if reason is None else f"gridcharge: --out {path}: {reason}"
