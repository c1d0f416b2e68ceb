"""Importing gridcharge first turns numpy's huge-page advice off for this process only, and never overrides a
choice made before it (docs/design/structured.md, "Huge pages"). Each case runs in a fresh interpreter: numpy reads
the setting once, at its import."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
#: Prints the process's huge-page advice as numpy holds it (the toggle returns the previous value; it is set back)
#: and the variable as children would inherit it.
PROBE = """
import os, sys
{first}
import gridcharge, numpy
from numpy._core import multiarray
previous = multiarray._set_madvise_hugepage(False)
multiarray._set_madvise_hugepage(previous)
print(int(previous), os.environ.get("NUMPY_MADVISE_HUGEPAGE", "unset"))
"""


def probe(first: str = "", **environ) -> str:
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    env.update(environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", PROBE.format(first=first)], capture_output=True, text=True,
                          env=env, cwd=REPO, check=True)
    return done.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="numpy advises huge pages on Linux only")
def test_off_when_gridcharge_imports_numpy_first_and_not_inherited():
    assert probe() == "0 unset"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="numpy advises huge pages on Linux only")
def test_the_users_choice_wins():
    assert probe(NUMPY_MADVISE_HUGEPAGE="1") == "1 1"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="numpy advises huge pages on Linux only")
def test_a_numpy_imported_before_keeps_its_setting():
    assert probe("import numpy") == "1 unset"
