"""Progress that tells the truth: the time left of a study weighted by each task's cost class, and a study that ends
(normally or by Ctrl-C) without a traceback from dask."""

from __future__ import annotations

import heapq
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gridcharge.scenarios.runner import PRIOR_SECONDS_PER_UNIT, FIXED_UNITS, Task, TimeLeft

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "scenarios" / "beijing-residential-630kva.toml"


def _simulate(tasks: list[Task], cost_s: dict[str, float], slots: int, overhead_s: float = 0.0):
    """Run ``tasks`` in submission order on ``slots`` workers with a fake clock; yield (clock, estimate) after each
    completion and the true end. ``cost_s``: seconds per size unit by strategy."""
    now = [0.0]
    eta = TimeLeft(tasks, slots, clock=lambda: now[0])
    free = [0.0] * slots
    finish = []
    for position, task in enumerate(tasks):  # a list scheduler: the next task goes to the first free worker
        start = heapq.heappop(free)
        seconds = cost_s[task.strategy] * (task.evs + FIXED_UNITS)
        end = start + seconds + overhead_s
        heapq.heappush(free, end)
        finish.append((end, position, seconds))
    estimates = []
    for end, position, seconds in sorted(finish):
        now[0] = end
        eta.finished(position, seconds)
        estimates.append((end, eta.seconds()))
    return estimates, max(f[0] for f in finish)


def _study_tasks() -> list[Task]:
    """The README's main job's shape: 20 days x 4 strategies at 180 EVs (online first among the expensive ones),
    then a hosting sweep of 3 cheap strategies x 15 counts x 20 days."""
    tasks = [Task(s, 180, d, series=True) for s in ("uncontrolled", "equal_share", "online", "optimal")
             for d in range(20)]
    counts = [5, 10, 15, 20, 30, 45, 60, 90, 120, 150, 210, 240, 270, 300]
    tasks += [Task(s, n, d) for s in ("uncontrolled", "equal_share", "greedy_cost") for n in counts for d in range(20)]
    return tasks


@pytest.mark.parametrize("machine", [1.0, 3.0, 0.5])  # this machine against the priors: same, slower, faster
@pytest.mark.parametrize("online_off", [1.0, 2.0, 0.5])  # the online controller's real cost against its prior
@pytest.mark.parametrize("overhead_s", [0.0, 0.03])  # wall time per task outside its own work (dispatch, results)
def test_the_estimated_run_time_is_within_2x_after_5_percent_of_the_run(machine, online_off, overhead_s):
    cost = {s: machine * rate for s, rate in PRIOR_SECONDS_PER_UNIT.items()}
    cost["online"] *= online_off
    tasks = _study_tasks()
    estimates, end = _simulate(tasks, cost, slots=2, overhead_s=overhead_s * machine)
    for clock, left in estimates:
        if clock >= 0.05 * end:
            assert 0.5 <= (clock + left) / end <= 2.0, (clock, left, end)
            if clock <= 0.9 * end:  # the time left itself, too, while more than the last few tasks are left
                assert 0.5 <= left / (end - clock) <= 2.0, (clock, left, end)


def test_counting_tasks_alike_would_be_off_by_more_than_2x():
    # why the weights: the old progress line's estimate (elapsed / done x left) on the same run
    tasks = _study_tasks()
    estimates, end = _simulate(tasks, PRIOR_SECONDS_PER_UNIT, slots=2)
    worst = max(max(r, 1 / r) for r in ((clock + clock / (i + 1) * (len(tasks) - i - 1)) / end
                                        for i, (clock, _) in enumerate(estimates) if clock >= 0.05 * end))
    assert worst > 2.0


def test_the_estimate_counts_down_to_zero():
    tasks = _study_tasks()
    estimates, end = _simulate(tasks, PRIOR_SECONDS_PER_UNIT, slots=2)
    assert estimates[-1][1] == pytest.approx(0.0, abs=1e-9)
    assert all(left >= 0 for _, left in estimates)


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def test_a_study_on_dask_ends_without_a_traceback_and_shows_the_time_left(tmp_path):
    done = subprocess.run([sys.executable, "-m", "gridcharge.cli", "scenario", "run", str(STUDY), "--quick",
                           "--workers", "2", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    for noise in ("Traceback", "ERROR", "heartbeat", "CRITICAL"):
        assert noise not in done.stderr, done.stderr
    assert "30/30 tasks" in done.stderr and " left]" in done.stderr


def test_ctrl_c_stops_a_study_on_dask_without_a_traceback(tmp_path):
    err = tmp_path / "stderr.txt"
    with open(err, "w") as handle:
        child = subprocess.Popen([sys.executable, "-m", "gridcharge.cli", "scenario", "run", str(STUDY),
                                  "--workers", "2"], stdout=subprocess.DEVNULL, stderr=handle, env=_env(),
                                 cwd=tmp_path, start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            while " left]" not in err.read_text() and time.monotonic() < deadline:  # tasks are running
                time.sleep(0.2)
            time.sleep(1.0)
            os.killpg(child.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
            code = child.wait(timeout=60)
        finally:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
    text = err.read_text()
    assert code == 1 and "gridcharge: interrupted" in text, text
    assert "Traceback" not in text and "ERROR" not in text and "CRITICAL" not in text, text
