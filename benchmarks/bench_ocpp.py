"""Benchmark of the OCPP central system (issue 8): many chargers connected at once, profile push latency.

The server runs in its own process on loopback; this script is the fleet of simulated chargers (one asyncio
process, real ``ocpp`` ChargePoints on ``websockets`` connections: :mod:`gridcharge.ocpp.simulator`). Backends:

- ``service`` (default): ``gridcharge serve --ocpp`` with a fresh SQLite file; the site is created over the operator
  API, each charger logs in with the token it was given;
- ``memory``: :class:`gridcharge.ocpp.memory.MemoryBackend` behind :func:`gridcharge.ocpp.csms.ocpp_app` on uvicorn
  (no database; the HiGHS re-solve runs in a thread of the server process).

Phases (all figures client side, from ``time.perf_counter`` in this process):

1. **Connect**: after one warm-up connection (the first pays ~1 s of lazy imports in both processes; not
   counted), all ``--chargers`` connect at once (``asyncio.gather``): websocket handshake with HTTP Basic auth
   and subprotocol (``handshake``), then ``BootNotification``, until the charger holds its fail-safe
   ``TxDefaultProfile`` (``ready``: connection start → default profile received). Also the wall time until all
   are ready.
2. **Single plug-ins**: ``--plugins`` chargers, one after the other (each waits for the previous one's profile):
   time from just before ``TransactionEvent(Started)`` (1.6: ``StartTransaction``) is sent until that charger
   receives its ``TxProfile`` (the server: event → backend → re-optimisation → publication → render, validate,
   push). Every other charger stays connected.
3. **Burst**: ``--burst`` other chargers plug in at the same instant; the same latency per charger.

Usage (from the repository root)::

    python benchmarks/bench_ocpp.py --chargers 1000 --plugins 30 --burst 100 --out benchmarks/out/ocpp.json
    python benchmarks/bench_ocpp.py --chargers 100 --plugins 5 --burst 10      # smoke run, ~30 s

The site: ``gridcharge.bench.generate.residential(chargers, seed)`` without its sessions, the horizon moved so that
now is 2 hours into it; cars plug in without ISO 15118 needs (default stay 8 h, 20 kWh). OCPP versions are dealt
round-robin from ``--versions``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OPERATOR = "bench-operator-" + secrets.token_hex(8)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _site(chargers: int, seed: int, now: datetime) -> dict:
    from gridcharge.bench.generate import residential

    data = residential(chargers, seed=seed)
    data.pop("sessions")
    old_start = datetime.fromisoformat(data["horizon"]["start"])
    step = data["horizon"]["step_minutes"]
    local = now.astimezone(old_start.tzinfo)
    floor = local.replace(minute=(local.minute // step) * step, second=0, microsecond=0)
    data["horizon"]["start"] = (floor - timedelta(hours=2)).isoformat()
    return data


def _memory_server(site_path: str, passwords_path: str, port: int) -> None:  # runs in the server process
    import uvicorn

    from gridcharge.ocpp.csms import CentralSystem, ocpp_app
    from gridcharge.ocpp.memory import MemoryBackend

    site = json.loads(Path(site_path).read_text())
    passwords = json.loads(Path(passwords_path).read_text())
    backend = MemoryBackend(site, passwords).start()
    csms = CentralSystem(backend)
    uvicorn.run(ocpp_app(csms), host="127.0.0.1", port=port, log_level="warning", backlog=4096)


def _wait_port(port: int, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError("the server did not come up")


def _start(backend: str, site: dict, port: int, workdir: Path) -> tuple[subprocess.Popen, dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    log = (workdir / "server.log").open("w")
    if backend == "memory":
        passwords = {c["id"]: "pw-" + secrets.token_hex(12) for c in site["chargers"]}
        (workdir / "site.json").write_text(json.dumps(site))
        (workdir / "passwords.json").write_text(json.dumps(passwords))
        command = [sys.executable, __file__, "--serve-memory", str(workdir / "site.json"),
                   str(workdir / "passwords.json"), str(port)]
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT))
        _wait_port(port)
        return process, passwords
    import httpx

    token_file = workdir / "operator-token"
    token_file.write_text(OPERATOR)
    command = [sys.executable, "-m", "gridcharge.cli", "serve", "--ocpp", "--port", str(port), "--database",
               f"sqlite:///{workdir / 'gc.db'}", "--operator-token-file", str(token_file)]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT))
    _wait_port(port)
    answer = httpx.put(f"http://127.0.0.1:{port}/v1/sites/bench", json={"instance": site},
                       headers={"Authorization": f"Bearer {OPERATOR}"}, timeout=600)
    answer.raise_for_status()
    return process, answer.json()["charger_tokens"]


def _cpu_s(pid: int | None = None) -> float:
    """CPU time (user + system) of this process, or of process ``pid`` (from /proc) [s]."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _validation_cost(repeats: int = 50) -> dict:
    """Time [ms] of one schema validation (gridcharge.ocpp.profiles.validate_payload) of a 96-period TxProfile
    (charge-only in 1.6/2.0.1, CentralSetpoint in 2.1) and of a one-period TxDefaultProfile, per version: what the
    central system spends before each push."""
    from gridcharge.ocpp.profiles import build_set_charging_profile, failsafe_profile, validate_payload

    start = datetime(2026, 1, 15, tzinfo=timezone.utc)
    power = np.random.default_rng(0).uniform(-7, 7, 96).round(2)
    out = {}
    for version in ("1.6", "2.0.1", "2.1"):
        tx = build_set_charging_profile(version, power, start, period_minutes=15,
                                        bidirectional=version == "2.1").payload
        default = failsafe_profile(version, 3.0, start).payload
        for name, payload in (("tx", tx), ("default", default)):
            validate_payload(version, "SetChargingProfile", payload)
            started = time.perf_counter()
            for _ in range(repeats):
                validate_payload(version, "SetChargingProfile", payload)
            out[f"{version} {name}"] = round((time.perf_counter() - started) / repeats * 1e3, 2)
    return out


def _stats(values) -> dict:
    a = np.asarray(values, dtype=float)
    if a.size == 0:
        return {"count": 0}
    return {"count": int(a.size), "p50_ms": round(float(np.percentile(a, 50)) * 1e3, 1),
            "p99_ms": round(float(np.percentile(a, 99)) * 1e3, 1), "max_ms": round(float(a.max()) * 1e3, 1),
            "mean_ms": round(float(a.mean()) * 1e3, 1)}


async def _fleet(url: str, passwords: dict, versions: list[str], plugins: int, burst: int, server_pid: int) -> dict:
    from gridcharge.ocpp.csms import purpose_of
    from gridcharge.ocpp.simulator import SimulatedCharger

    ids = list(passwords)
    sims = [SimulatedCharger(cid, versions[i % len(versions)], url, passwords[cid], response_timeout=120)
            for i, cid in enumerate(ids)]
    handshake, ready, failures = [], [], []

    async def connect(sim):
        started = time.perf_counter()
        try:
            await sim.connect()
            handshake.append(time.perf_counter() - started)
            await sim.boot()
            await sim.wait_for(lambda s: "TxDefaultProfile" in s.installed, timeout=300)
            ready.append(time.perf_counter() - started)
        except Exception as exc:  # noqa: BLE001 - count, do not stop the run
            failures.append(f"{sim.charger_id}: {type(exc).__name__}: {exc}")

    # warm-up: the first connection pays for lazy imports in both processes (~1 s); not counted
    warm = sims[0]
    await connect(warm)
    await warm.close()
    handshake.clear(), ready.clear(), failures.clear()
    sims[0] = SimulatedCharger(warm.charger_id, warm.version, url, passwords[warm.charger_id], response_timeout=120)
    load_before = os.getloadavg()
    cpu = {"client": _cpu_s(), "server": _cpu_s(server_pid)}
    used = {}

    def phase(name):
        now = {"client": _cpu_s(), "server": _cpu_s(server_pid)}
        used[name] = {k: round(now[k] - cpu[k], 2) for k in now}
        cpu.update(now)

    wall = time.perf_counter()
    await asyncio.gather(*(connect(s) for s in sims))
    connect_wall = time.perf_counter() - wall
    phase("connect")
    load_connect = os.getloadavg()

    async def plug(sim, k):
        sent = await sim.start_transaction(f"bench-{k}")
        await sim.wait_for(lambda s: s.tx_profile() is not None, timeout=300)
        tx = sim.tx_profile()
        arrived = next(t for t, p in reversed(sim.received) if p is tx)
        return arrived - sent

    alive = [s for s in sims if "TxDefaultProfile" in s.installed]
    single = []
    for k, sim in enumerate(alive[:plugins]):
        single.append(await plug(sim, k))
        await asyncio.sleep(0.2)
    phase("single")
    load_single = os.getloadavg()
    burst_sims = alive[plugins:plugins + burst]
    wall = time.perf_counter()
    burst_latency = await asyncio.gather(*(plug(s, plugins + k) for k, s in enumerate(burst_sims)))
    burst_wall = time.perf_counter() - wall
    phase("burst")
    load_burst = os.getloadavg()
    pushed_tx = sum(1 for s in sims for _, p in s.received if purpose_of(p) == "TxProfile")
    await asyncio.gather(*(s.close() for s in sims), return_exceptions=True)
    return {
        "connected": len(ready), "failures": failures[:20], "failure_count": len(failures),
        "connect_wall_s": round(connect_wall, 2), "handshake": _stats(handshake), "ready": _stats(ready),
        "single_plugin_push": _stats(single), "burst_push": _stats(burst_latency), "burst_wall_s": round(burst_wall, 2),
        "tx_profiles_received": pushed_tx, "cpu_s": used,
        "loadavg": {"before": load_before, "after_connect": load_connect, "after_single": load_single,
                    "after_burst": load_burst},
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chargers", type=int, default=1000, help="simulated chargers, all connected at once")
    parser.add_argument("--plugins", type=int, default=30, help="single plug-ins, one after the other")
    parser.add_argument("--burst", type=int, default=100, help="plug-ins at the same instant")
    parser.add_argument("--versions", default="2.0.1,2.1,1.6", help="OCPP versions, dealt round-robin")
    parser.add_argument("--backend", choices=["service", "memory"], default="service")
    parser.add_argument("--seed", type=int, default=1, help="generator seed of the site")
    parser.add_argument("--out", type=Path, help="write the result as JSON here")
    parser.add_argument("--serve-memory", nargs=3, metavar=("SITE", "PASSWORDS", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_memory:
        _memory_server(args.serve_memory[0], args.serve_memory[1], int(args.serve_memory[2]))
        return 0
    versions = [v.strip() for v in args.versions.split(",") if v.strip()]
    validation_ms = _validation_cost()
    site = _site(args.chargers, args.seed, datetime.now(timezone.utc))
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="bench-ocpp-") as tmp:
        workdir = Path(tmp)
        started = time.perf_counter()
        process, passwords = _start(args.backend, site, port, workdir)
        setup_s = time.perf_counter() - started
        try:
            result = asyncio.run(_fleet(f"ws://127.0.0.1:{port}/ocpp", passwords, versions, args.plugins,
                                        args.burst, process.pid))
            if args.backend == "service":  # server side: event committed -> publication, and the solve alone
                import httpx

                status = httpx.get(f"http://127.0.0.1:{port}/v1/sites/bench",
                                   headers={"Authorization": f"Bearer {OPERATOR}"}, timeout=60).json()
                result["server"] = {k: status.get(k) for k in ("reoptimisation_latency", "solve_seconds",
                                                               "active_sessions")}
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
            server_log = (workdir / "server.log").read_text()[-3000:]
    result = {"command": "python benchmarks/bench_ocpp.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "backend": args.backend, "chargers": args.chargers, "versions": versions,
              "server_setup_s": round(setup_s, 2), **result, "validation_ms": validation_ms,
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
              "server_log_tail": server_log.splitlines()[-10:]}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp_out = args.out.with_suffix(args.out.suffix + ".tmp")
        tmp_out.write_text(text)
        os.replace(tmp_out, args.out)
    return 0 if result["failure_count"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
