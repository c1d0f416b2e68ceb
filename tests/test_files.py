"""The one atomic-write helper (gridcharge._files): ordinary permissions, whole files, nothing left behind, and the
check that an output place can be written, made before any work."""

import os
import stat

import pytest

from gridcharge._files import atomic_write, unwritable_reason, write_files_atomically


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_files_get_the_ordinary_permissions_not_mkstemps_0600(tmp_path):
    for content in (b"bytes", "text ü", lambda path: path.write_text("by a writer")):
        path = atomic_write(tmp_path / "sub" / "file.txt", content)
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_umask()
    assert (tmp_path / "sub" / "file.txt").read_text() == "by a writer"
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["file.txt"]  # no temporary left


def test_a_failing_writer_leaves_every_earlier_file_and_no_temporary(tmp_path):
    write_files_atomically(tmp_path, {"a.csv": "old a", "b.csv": "old b"})

    def broken(path):
        path.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_files_atomically(tmp_path, {"a.csv": "new a", "b.csv": broken})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.csv"]
    assert (tmp_path / "a.csv").read_text() == "old a" and (tmp_path / "b.csv").read_text() == "old b"


def test_unwritable_reason_creates_nothing(tmp_path):
    assert unwritable_reason(tmp_path / "new" / "deeper") is None
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("")
    assert unwritable_reason(tmp_path / "file") == "is a file; expected a directory (created if missing)"
    assert unwritable_reason(tmp_path / "file" / "out") == f"{tmp_path / 'file'} is a file; expected a folder there"
    assert unwritable_reason(tmp_path, directory=False) == "is a directory; expected a file name"
    assert unwritable_reason(tmp_path / "x.json", directory=False) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
