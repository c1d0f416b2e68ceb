"""The README is executable documentation: every ```bash and ```python block of README.md runs, as written, in a
folder of its own, so a README that drifts from the code fails here.

Rules (README authors, read these):

- A block is ```bash (commands, run by ``bash -e -o pipefail``), ```python (run by the interpreter under test) or
  ```text (a synopsis, a format, a layout: never run). A block without a language is an error.
- The first two blocks (install + the main job, install + the tests) are not run here: they are what CI itself runs.
- ``gridcharge``, ``python`` and ``python3`` are the package and interpreter under test (shims first on ``PATH``); the
  repository's ``scenarios/`` and ``benchmarks/`` are in the folder, as in a clone.
- A ```python block whose info string names a file (```python myalgo.py) is the file the text asks the reader to save:
  it is saved under that name in every block's folder (and run like the others).
- Files a reader brings along (their ACN-Data export, their site) are written by :func:`_readers_files` below.
- A block that starts a service in the background (``... &``) should stop it; whatever it leaves running is stopped
  with its process group. A block that serves in the foreground says so in its info string (```python serves PORT or
  ```bash serves PORT): it passes once PORT answers HTTP, then it is stopped.
- The one change made to a block: the TCP ports it uses are replaced by free ones (so parallel runs and a service of
  your own on 8080 do not collide). Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: Seconds a block may take (the slowest, the bench example, takes about 20 s on 2 busy cores).
BLOCK_TIMEOUT_S = 240
#: Ports the README uses; each run gets free ones instead.
README_PORTS = ("8080", "9000")


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence in README.md
    language: str
    words: tuple[str, ...]  # the rest of the info string
    text: str

    @property
    def id(self) -> str:
        return f"L{self.line}-{self.language}"


def readme_blocks() -> list[Block]:
    blocks, current, start, info = [], None, 0, ""
    for number, line in enumerate(README.read_text(encoding="utf-8").splitlines(), 1):
        fence = re.match(r"^```(.*)$", line)
        if current is None and fence:
            current, start, info = [], number, fence.group(1).strip()
        elif current is not None and line.strip() == "```":
            words = info.split()
            blocks.append(Block(start, words[0] if words else "", tuple(words[1:]), "\n".join(current) + "\n"))
            current = None
        elif current is not None:
            current.append(line)
    assert current is None, f"README.md:{start}: a block is never closed"
    return blocks


BLOCKS = readme_blocks()
RUN = [b for b in BLOCKS[2:] if b.language in ("bash", "python")]


def test_every_block_says_its_language_and_the_readme_opens_with_the_two_commands():
    unlabelled = [b.line for b in BLOCKS if b.language not in ("bash", "python", "text")]
    assert not unlabelled, f"README.md lines {unlabelled}: say ```bash, ```python or ```text"
    first, second = BLOCKS[:2]
    assert first.language == second.language == "bash"
    assert "pip install" in first.text and "gridcharge scenario run" in first.text
    assert "pip install" in second.text and "pytest" in second.text
    # one sentence saying what gridcharge is, then the two commands
    text = README.read_text(encoding="utf-8")
    before = text[text.index("\n", text.index("# gridcharge")):text.index("```")].strip()
    assert before and before.count(". ") == 0 and before.endswith("."), before


def _shims(folder: Path) -> Path:
    """``gridcharge``, ``python``, ``python3``: the interpreter running this test, with this checkout's package."""
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    for name, target in (("python", ""), ("python3", ""), ("gridcharge", " -m gridcharge.cli")):
        path = bin_dir / name
        path.write_text(f'#!/bin/sh\nexec "{sys.executable}"{target} "$@"\n')
        path.chmod(0o755)
    return bin_dir


def _readers_files(folder: Path) -> None:
    """What the README's reader has of their own: an ACN-Data export (two sessions, the API's JSON), the site they
    put it on (``my_site.json``), and a site for the in-memory OCPP central system (``site.json``, today)."""
    items = [
        {"sessionID": "1", "stationID": "CA-301", "connectionTime": "Wed, 02 Jan 2019 16:00:00 GMT",
         "disconnectTime": "Wed, 02 Jan 2019 23:00:00 GMT", "kWhDelivered": 9.5,
         "userInputs": [{"kWhRequested": 12.0, "requestedDeparture": "Wed, 02 Jan 2019 23:00:00 GMT"}]},
        {"sessionID": "2", "stationID": "CA-302", "connectionTime": "Wed, 02 Jan 2019 17:30:00 GMT",
         "disconnectTime": "Wed, 02 Jan 2019 21:00:00 GMT", "kWhDelivered": 6.0, "userInputs": None},
    ]
    (folder / "acn_caltech_2019-01.json").write_text(json.dumps({"_items": items}))
    site = {"format": "gridcharge/instance-v1", "name": "my site",
            "horizon": {"start": "2019-01-02T00:00:00-08:00", "step_minutes": 15, "periods": 96,
                        "timezone": "America/Los_Angeles"},
            "nodes": [{"id": "T1", "kind": "transformer", "import_limit_kw": 50.0}], "chargers": [],
            "tariff": {"import_cny_per_kwh": 0.5}}
    (folder / "my_site.json").write_text(json.dumps(site))
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()
    ocpp_site = {"format": "gridcharge/instance-v1", "name": "lab bench",
                 "horizon": {"start": f"{today}T00:00:00+08:00", "step_minutes": 15, "periods": 192},
                 "nodes": [{"id": "T1", "kind": "transformer", "import_limit_kw": 30.0}],
                 "chargers": [{"id": "c1", "node": "T1", "max_charge_kw": 7.0}],
                 "tariff": {"import_cny_per_kwh": 0.5}}
    (folder / "site.json").write_text(json.dumps(ocpp_site))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
    except urllib.error.HTTPError:
        return True  # it answered (404 is an answer)
    except OSError:
        return False
    return True


def _stop(child: subprocess.Popen) -> None:
    """Stop the block's process group (and whatever it started in the background)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            return
        try:
            child.wait(timeout=10)
            time.sleep(0.2)  # background children of a finished shell
        except subprocess.TimeoutExpired:
            continue


@pytest.mark.parametrize("block", RUN, ids=[b.id for b in RUN])
def test_readme_block_runs_as_written(block: Block, tmp_path):
    folder = tmp_path / "work"
    folder.mkdir()
    for name in ("scenarios", "benchmarks"):
        (folder / name).symlink_to(ROOT / name)
    _readers_files(folder)
    for other in BLOCKS:
        if other.language == "python" and other.words and other.words[0].endswith(".py"):
            (folder / other.words[0]).write_text(other.text)
    text = block.text
    ports = {port: str(_free_port()) for port in README_PORTS}
    for readme_port, port in ports.items():
        text = text.replace(readme_port, port)
    script = folder / ("block.sh" if block.language == "bash" else "block.py")
    script.write_text(text)
    command = ["bash", "-e", "-o", "pipefail", str(script)] if block.language == "bash" else \
        [sys.executable, str(script)]
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(_shims(tmp_path)), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.pop("GRIDCHARGE_OPERATOR_TOKEN", None)
    log = tmp_path / "output.txt"
    with open(log, "w") as output:
        child = subprocess.Popen(command, cwd=folder, env=env, stdout=output, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        try:
            if block.words[:1] == ("serves",):
                port = int(ports.get(block.words[1], block.words[1]))
                deadline = time.monotonic() + BLOCK_TIMEOUT_S
                while not _answers(port):
                    assert child.poll() is None, f"README.md:{block.line}: exited {child.returncode}:\n" \
                                                 f"{log.read_text()}"
                    assert time.monotonic() < deadline, f"README.md:{block.line}: never answered on its port"
                    time.sleep(0.3)
                code = 0
            else:
                try:
                    code = child.wait(timeout=BLOCK_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    pytest.fail(f"README.md:{block.line}: still running after {BLOCK_TIMEOUT_S} s (a block that "
                                f"serves in the foreground says so: ```{block.language} serves PORT):\n"
                                f"{log.read_text()}")
        finally:
            _stop(child)
    shown = log.read_text()
    assert code == 0, f"README.md:{block.line}: exit code {code}:\n{shown}"
    assert "Traceback" not in shown, f"README.md:{block.line}:\n{shown}"


def test_the_shims_run_this_checkout(tmp_path):
    bin_dir = _shims(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([str(bin_dir / "python3"), "-c", "import gridcharge; print(gridcharge.__file__)"],
                          capture_output=True, text=True, env=env, check=True)
    assert Path(done.stdout.strip()).is_relative_to(ROOT)
    assert shutil.which("gridcharge", path=str(bin_dir)) == str(bin_dir / "gridcharge")
