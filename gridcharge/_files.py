"""Writing output files whole: one atomic-write helper for every writer, and the check that an output place can be
written before any work is done (standard library only; no gridcharge imports, so every layer may use it).

A file is written to a temporary name in its own folder and moved into place with ``os.replace``, so a reader never
sees half a file and an interrupted run leaves the old file (or none). The temporary file is created like any other
file (mode 0666 minus the umask, normally 0644), unlike ``tempfile.mkstemp``'s 0600.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path

#: What a file's content may be: bytes, text (written as UTF-8), or a callable that writes a file at the path it is
#: given (``frame.to_csv``, ``figure.savefig``).
Content = bytes | str | Callable[[Path], object]


def _temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


def _write_temporary(path: Path, content: Content) -> Path:
    """Write ``content`` to a new temporary file beside ``path``; return its name (removed again on failure)."""
    tmp = _temporary_name(path)
    try:
        if callable(content):
            content(tmp)
            if not tmp.exists():
                raise OSError(f"the writer of {path.name} wrote no file")
        else:
            data = content.encode("utf-8") if isinstance(content, str) else content
            # O_EXCL: never write through someone else's file; 0o666: the umask gives the ordinary permissions
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def atomic_write(path: str | Path, content: Content) -> Path:
    """Replace ``path`` whole with ``content`` (its folder is created if missing).

    Parameters
    ----------
    path : str or pathlib.Path — the file to write
    content : bytes, str (UTF-8) or callable(path) that writes the file at the temporary path it is given

    Returns
    -------
    pathlib.Path — ``path``
    """
    return write_files_atomically(Path(path).parent, {Path(path).name: content})[Path(path).name]


def write_files_atomically(folder: str | Path, files: Mapping[str, Content]) -> dict[str, Path]:
    """Write several files into ``folder`` (created if missing): all are staged first, then moved into place, so a
    failure on any leaves every earlier version untouched.

    Returns
    -------
    dict — file name → path written
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    staged: dict[str, Path] = {}
    try:
        for name, content in files.items():
            staged[name] = _write_temporary(out / name, content)
        for name, tmp in staged.items():
            os.replace(tmp, out / name)
    finally:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
    return {name: out / name for name in files}


def unwritable_reason(path: str | Path, *, directory: bool = True) -> str | None:
    """Why ``path`` cannot be written, or None when it can — checked without creating anything that stays.

    A missing folder is fine when its nearest existing ancestor is a folder this process can create files in (the
    writer creates it later, once there is something to write); the check creates and removes a probe file there.

    Parameters
    ----------
    path : the output folder (``directory=True``) or output file (``directory=False``)

    Returns
    -------
    str or None — e.g. ``"is a file; expected a directory"``, ``"cannot create files in /data (Permission denied)"``
    """
    path = Path(path)
    if directory and path.exists() and not path.is_dir():
        return "is a file; expected a directory (created if missing)"
    if not directory and path.is_dir():
        return "is a directory; expected a file name"
    folder = path if directory else path.parent
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file; expected a folder there"
    probe = _temporary_name(existing / "gridcharge-write-probe")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        return f"cannot create files in {existing} ({exc.strerror or exc})"
    os.close(fd)
    probe.unlink(missing_ok=True)
    return None
