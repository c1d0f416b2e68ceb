"""Benchmark: where the memory of a district solve is, per process and per stage, over time.

Runs ``gridcharge solve DISTRICT --workers N --out DIR`` (the real command) in a child process and samples the
resident set size (RSS) of that process and of every process below it (the dask workers; the scheduler and the
nannies of gridcharge's local cluster run inside the command's process) with psutil every ``--interval`` seconds.
The child announces each stage of the solve as it starts (instance loaded, problem, LP, layout, plan, shares sent to
the workers, the interior point's loop, write-back, verify, outputs), by wrappers around the library's functions,
so each stage's start can be set beside the memory curve. Reported: per process its peak RSS and its CPU seconds
(user + system, as last sampled before it ended), the peak of the sum
over all of them (and when it happened), and per stage its start [s], the summed RSS when it started and the largest
summed RSS while it ran [MB].

The district is generated first (``gridcharge generate district``, in its own process, not sampled) unless its file
is there already.

Usage (from the repository root)::

    python benchmarks/bench_district_memory.py --sessions 10000 --transformers 50 --workers 2 \\
        --dir benchmarks/out/district10k --out benchmarks/out/district_memory_10k.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
#: Prefix of the child's stage lines on stderr.
MARK = "@stage "
MB = 2**20


def _child(argv: list[str]) -> int:
    """Run ``gridcharge`` with ``argv``, announcing each stage on stderr (``@stage NAME TIME``)."""
    sys.path.insert(0, str(REPO_ROOT))
    import functools

    import gridcharge
    import gridcharge.cli
    import gridcharge.formulation.lp
    import gridcharge.schedule
    import gridcharge.solvers.exact
    import gridcharge.solvers.structured as structured
    import gridcharge.solvers.structured.partition as partition
    from gridcharge.solvers.structured import on_dask

    def mark(name: str) -> None:
        print(f"{MARK}{name} {time.time():.3f}", file=sys.stderr, flush=True)

    def wrap(owner, attribute: str, name: str, after: str | None = None) -> None:
        inner = getattr(owner, attribute)

        @functools.wraps(inner)
        def wrapped(*args, **kwargs):
            mark(name)
            try:
                return inner(*args, **kwargs)
            finally:
                if after:
                    mark(after)
        setattr(owner, attribute, wrapped)

    wrap(gridcharge, "load_instance", "load instance")
    wrap(gridcharge, "build_problem", "build problem")
    wrap(gridcharge.solvers.exact, "build_lp", "build LP")
    wrap(structured, "derive_layout", "derive layout")
    wrap(partition, "plan", "plan partitions")
    wrap(on_dask.DaskExecutor, "start", "send shares", after="loop")
    wrap(partition.InProcess, "start", "make partitions in process", after="loop")
    wrap(structured, "verify", "verify")
    wrap(gridcharge.schedule.Schedule, "write", "write outputs", after="done")
    wrap(structured, "split_interior_point", "split interior point", after="write back")
    wrap(gridcharge.solvers.exact, "summarise", "summarise")
    return gridcharge.cli.main(argv)


class Sampler(threading.Thread):
    """Samples the RSS of process ``pid`` and every process below it [bytes] every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float):
        super().__init__(daemon=True)
        import psutil

        self.root = psutil.Process(pid)
        self.interval = interval
        self.samples: list[tuple[float, dict]] = []  # (time, {pid: rss})
        self.cpu: dict[int, float] = {}  # per process, its CPU seconds (user + system) when last sampled
        self.names: dict[int, str] = {pid: "command"}
        self.done = threading.Event()

    def _label(self, proc) -> str:
        line = " ".join(proc.cmdline())
        if "resource_tracker" in line:
            return "resource tracker"
        if "spawn_main" in line:  # a dask worker, started by its nanny (which runs in the command's process)
            return "worker"
        return line[:40]

    def run(self) -> None:
        import psutil

        while not self.done.is_set():
            now = time.time()
            rss = {}
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:  # the command has ended, or a child went while being listed
                if not self.root.is_running():
                    break
                continue
            for proc in procs:
                try:
                    rss[proc.pid] = proc.memory_info().rss
                    times = proc.cpu_times()
                    self.cpu[proc.pid] = times.user + times.system
                    if proc.pid not in self.names:
                        self.names[proc.pid] = self._label(proc)
                except psutil.Error:  # gone meanwhile
                    continue
            self.samples.append((now, rss))
            self.done.wait(self.interval)


def measure(argv: list[str], interval: float) -> dict:
    """Run the command in a child process, sample it, and summarise (see the module docstring)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--", *argv]
    started = time.time()
    child = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = Sampler(child.pid, interval)
    sampler.start()
    stages: list[tuple[str, float]] = []
    other: list[str] = []

    def read_stderr():
        for line in child.stderr:
            if line.startswith(MARK):
                name, _, when = line[len(MARK):].rstrip().rpartition(" ")
                stages.append((name, float(when)))
            else:
                other.append(line.rstrip())
    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    stdout = child.stdout.read()
    code = child.wait()
    reader.join()
    sampler.done.set()
    sampler.join()
    ended = time.time()
    samples = sampler.samples
    totals = [(t, sum(r.values())) for t, r in samples]
    peak_t, peak = max(totals, key=lambda s: s[1]) if totals else (started, 0)
    per_process: dict[str, float] = {}
    for pid, name in sampler.names.items():
        values = [r[pid] for _, r in samples if pid in r]
        if values:
            per_process[f"{name} ({pid})"] = round(max(values) / MB, 1)
    at_peak = {f"{sampler.names.get(pid, '?')} ({pid})": round(v / MB, 1)
               for pid, v in next(r for t, r in samples if t == peak_t).items()} if samples else {}
    stage_rows = []
    bounds = [*stages, ("end", ended)]
    for (name, t0), (_, t1) in zip(bounds, bounds[1:]):
        inside = [s for t, s in totals if t0 <= t < t1]
        before = [s for t, s in totals if t <= t0]
        stage_rows.append({"stage": name, "start_s": round(t0 - started, 2),
                           "sum_at_start_mb": round(before[-1] / MB, 1) if before else None,
                           "sum_peak_mb": round(max(inside) / MB, 1) if inside else None})
    series = [{"t_s": round(t - started, 2), **{f"{sampler.names.get(pid, '?')} ({pid})": round(v / MB, 1)
                                                for pid, v in r.items()}} for t, r in samples]
    cpu = {f"{name} ({pid})": round(sampler.cpu[pid], 1) for pid, name in sampler.names.items() if pid in sampler.cpu}
    return {"command": " ".join(["gridcharge", *argv]), "exit_code": code, "wall_s": round(ended - started, 2),
            "load_before": None, "samples": len(samples), "interval_s": interval,
            "sum_peak_mb": round(peak / MB, 1), "sum_peak_at_s": round(peak_t - started, 2),
            "at_sum_peak_mb": at_peak, "process_peak_mb": per_process,
            "process_cpu_s": cpu, "cpu_s": round(sum(cpu.values()), 1), "stages": stage_rows,
            "summary": stdout.strip().splitlines()[-12:], "stderr_tail": other[-5:], "series": series}


def main(argv=None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:2] == ["--child", "--"]:
        return _child(args_in[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10000)
    parser.add_argument("--transformers", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", default="2", help="--workers of gridcharge solve (a count)")
    parser.add_argument("--dir", default="benchmarks/out/district_memory",
                        help="folder of the district (district.json, sessions.parquet) and of the solve's out/")
    parser.add_argument("--interval", type=float, default=0.25, help="sampling interval [s]")
    parser.add_argument("--out", default="benchmarks/out/district_memory.json")
    args = parser.parse_args(args_in)
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    district = folder / "district.json"
    if not district.exists():
        subprocess.run([sys.executable, "-c", "import sys; from gridcharge.cli import main; sys.exit(main())",
                        "generate", "district", "--transformers", str(args.transformers), "--sessions",
                        str(args.sessions), "--seed", str(args.seed), "--out", str(district), "--sessions-out",
                        str(folder / "sessions.parquet")], check=True, cwd=REPO_ROOT,
                       env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    load = os.getloadavg()[0]
    result = measure(["solve", str(district), "--workers", args.workers, "--format", "parquet", "--out",
                      str(folder / "out"), "--progress"], args.interval)
    result.update(load_before=load, load_after=os.getloadavg()[0], sessions=args.sessions,
                  transformers=args.transformers, workers=args.workers)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k not in ("stages", "summary", "series")}, indent=1))
    for row in result["stages"]:
        print(f"{row['start_s']:8.2f} s  {row['stage']:<28} sum at start {row['sum_at_start_mb']} MB, "
              f"peak while it ran {row['sum_peak_mb']} MB")
    return 0 if result["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
