"""Load benchmark of the schedule service (issue 7): profile fetches while re-optimisations run.

The server (``gridcharge serve``) runs in its own process on loopback with a fresh SQLite file; this script is the
load generator (another process). Two phases:

1. **Fleet** (what the issue describes): ``--chargers`` chargers (default 5,000) each fetch their profile once every
   ``--fetch-interval`` seconds (default 60, each at its own random offset within the interval, with
   ``If-None-Match`` of the ETag it got last, as firmware would), while the operator sends a burst of ``--burst``
   plug-ins (default 500) spread evenly over ``--burst-seconds`` (default 60). Client: asyncio, a minimal HTTP/1.1
   client over ``--fleet-connections`` keep-alive connections (default 50) for the fetches, httpx for the plug-ins.
   Reports sustained requests/s, p50/p99 fetch latency (client side, request written to body read), how late the
   client sent (its own lag, p99), the HTTP statuses, and the re-optimisation latency (server side: from the commit
   of an event to the publication that includes it; ``GET /v1/sites/{id}``).
2. **Capacity**: ``--connections`` keep-alive connections (default 16) in a closed loop for ``--capacity-seconds``
   (default 60): each sends the next fetch (a random charger with its own token, a random OCPP version, no
   ``If-None-Match``: every answer a full 200 body, the worst case) as soon as the last answer is read, while a
   second burst of ``--burst`` plug-ins (on other chargers) keeps the re-optimiser busy. Reports requests/s,
   latency percentiles (write to body read), the server process's CPU time per fetch, and how many re-solves ran
   meanwhile. Client: Python asyncio (the same minimal HTTP/1.1 client), or ``--capacity-client wrk`` (C; ``apt-get
   install wrk``; its throughput is sound, but its latency figures broke Little's law on this machine: mean 78 ms at
   1,243 requests/s over 16 connections, which would take ~97 requests in flight; they stay in the JSON, unused).

Usage (from the repository root)::

    python benchmarks/bench_service.py --out benchmarks/out/service.json
    python benchmarks/bench_service.py --chargers 200 --burst 20 --burst-seconds 5 --fleet-seconds 10 \\
        --fetch-interval 5 --capacity-seconds 5      # smoke run, ~40 s

The site: ``gridcharge.bench.generate.residential(chargers, seed)`` without its sessions, its horizon moved so that
now is 2 hours into it (96 quarter-hours); the burst's cars take the generated sessions' energy, V2G fields and
stay length (cut to the horizon), arriving now.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WRK_SCRIPT = r"""
local ids, tokens, versions = {}, {}, {"1.6", "2.0.1", "2.1"}
local counter = 0
function setup(thread)
  thread:set("seed", math.random(1, 1000000))
end
function init(args)
  for line in io.lines(args[1]) do
    local id, token = line:match("^(%S+) (%S+)$")
    if id then ids[#ids + 1] = id; tokens[#tokens + 1] = token end
  end
  math.randomseed(seed or os.time())
end
function request()
  local i = math.random(1, #ids)
  local v = versions[math.random(1, 3)]
  return wrk.format("GET", "/v1/chargers/" .. ids[i] .. "/profile?ocpp=" .. v,
                    {["Authorization"] = "Bearer " .. tokens[i]})
end
function done(summary, latency, requests)
  local statuses = {}
  io.write(string.format(
    "WRKJSON {\"requests\": %d, \"duration_us\": %d, \"p50_us\": %d, \"p90_us\": %d, \"p99_us\": %d, " ..
    "\"p999_us\": %d, \"max_us\": %d, \"mean_us\": %.1f, \"errors_status\": %d, \"errors_connect\": %d, " ..
    "\"errors_read\": %d, \"errors_write\": %d, \"errors_timeout\": %d}\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout))
end
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _site(chargers: int, seed: int, now: datetime) -> tuple[dict, list[dict]]:
    from gridcharge.bench.generate import residential

    data = residential(chargers, seed=seed)
    sessions = data.pop("sessions")
    old_start = datetime.fromisoformat(data["horizon"]["start"])
    step = data["horizon"]["step_minutes"]
    local = now.astimezone(old_start.tzinfo)
    floor = local.replace(minute=(local.minute // step) * step, second=0, microsecond=0)
    start = floor - timedelta(hours=2)
    data["horizon"]["start"] = start.isoformat()
    end = start + timedelta(minutes=step * data["horizon"]["periods"])
    cars = []
    for s in sessions:
        stay = datetime.fromisoformat(s["departure"]) - datetime.fromisoformat(s["arrival"])
        car = {k: v for k, v in s.items() if k not in ("arrival", "departure")}
        car["departure_after_s"] = min(stay.total_seconds(), (end - now).total_seconds() - 60)
        cars.append(car)
    return data, cars


def _start_server(port: int, database: str, token_file: Path, interval: float, log: Path,
                  extra: list | None = None) -> subprocess.Popen:
    command = [sys.executable, "-m", "gridcharge.cli", "serve", "--port", str(port), "--database", database,
               "--operator-token-file", str(token_file), "--interval", str(interval), *(extra or [])]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, cwd=str(ROOT))
    return process


def _wait_up(base: str, timeout_s: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/v1/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the server did not come up")


def _plug_in_body(car: dict, session_id: str, now: datetime) -> dict:
    body = {k: v for k, v in car.items() if k not in ("id", "departure_after_s")}
    body["id"] = session_id
    body["departure"] = (now + timedelta(seconds=car["departure_after_s"])).isoformat()
    return body


async def _burst(client, base: str, site: str, cars: list[dict], chargers: list[str], seconds: float, prefix: str,
                 headers: dict, results: list) -> None:
    if not cars:
        return
    gap = seconds / len(cars)
    started = time.perf_counter()
    for i, (car, charger) in enumerate(zip(cars, chargers)):
        delay = started + i * gap - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        body = _plug_in_body(car, f"{prefix}{i:05d}", datetime.now(timezone.utc))
        body["charger"] = charger
        t0 = time.perf_counter()
        response = await client.post(f"{base}/v1/sites/{site}/sessions", json=body, headers=headers)
        results.append((time.perf_counter() - t0, response.status_code,
                        response.json().get("event_seq") if response.status_code == 201 else response.text[:300]))


async def _http_get(reader, writer, path: str, headers: dict) -> tuple[int, dict, bytes]:
    """One HTTP/1.1 keep-alive GET on an open connection (a minimal client: status, headers, Content-Length body)."""
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1"] + [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    received = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode().partition(":")
        received[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(received.get("content-length", 0)))
    return status, received, body


async def _fleet(base: str, site: str, tokens: dict, interval: float, seconds: float, connections: int,
                 burst_cars, burst_chargers, burst_seconds: float, operator_headers: dict) -> dict:
    """Every charger fetches once per ``interval`` at its own offset, with If-None-Match, over ``connections``
    keep-alive connections (a minimal asyncio HTTP/1.1 client: httpx's pool was the bottleneck here); the burst
    of plug-ins goes through httpx at the same time."""
    import httpx

    host, port = base.removeprefix("http://").split(":")
    versions = ["1.6", "2.0.1", "2.1"]
    rng = random.Random(7)
    ids = list(tokens)
    version_of = {cid: versions[i % 3] for i, cid in enumerate(ids)}
    plan = sorted((offset + k * interval, cid) for cid in ids
                  for offset in [rng.uniform(0, interval)] for k in range(int(seconds // interval) + 1)
                  if offset + k * interval < seconds)
    queue: asyncio.Queue = asyncio.Queue()
    latencies: list[float] = []
    lateness: list[float] = []
    statuses: dict[int, int] = {}
    etags: dict[str, str] = {}
    burst_results: list = []
    started = time.perf_counter()

    async def scheduler():
        for due, cid in plan:
            delay = started + due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            queue.put_nowait((started + due, cid))
        for _ in range(connections):
            queue.put_nowait(None)

    async def connection():
        reader, writer = await asyncio.open_connection(host, int(port))
        while (item := await queue.get()) is not None:
            due, cid = item
            headers = {"Authorization": f"Bearer {tokens[cid]}"}
            if cid in etags:
                headers["If-None-Match"] = etags[cid]
            t0 = time.perf_counter()
            status, received, _ = await _http_get(reader, writer, f"/v1/chargers/{cid}/profile?ocpp={version_of[cid]}",
                                                  headers)
            latencies.append(time.perf_counter() - t0)
            lateness.append(t0 - due)
            statuses[status] = statuses.get(status, 0) + 1
            if "etag" in received:
                etags[cid] = received["etag"]
        writer.close()

    async with httpx.AsyncClient(timeout=60) as client:
        await asyncio.gather(scheduler(), *[connection() for _ in range(connections)],
                             _burst(client, base, site, burst_cars, burst_chargers, burst_seconds, "fleet-",
                                    operator_headers, burst_results))
    elapsed = time.perf_counter() - started
    lat = np.array(latencies)
    late = np.array(lateness)
    plug = np.array([r[0] for r in burst_results]) if burst_results else np.zeros(1)
    return {"requests": int(lat.size), "seconds": elapsed, "requests_per_s": lat.size / elapsed,
            "p50_ms": float(np.percentile(lat, 50) * 1e3), "p99_ms": float(np.percentile(lat, 99) * 1e3),
            "max_ms": float(lat.max() * 1e3), "client_lateness_p99_ms": float(np.percentile(late, 99) * 1e3),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "plug_ins": len(burst_results), "plug_in_statuses": _count(r[1] for r in burst_results),
            "plug_in_p50_ms": float(np.percentile(plug, 50) * 1e3), "plug_in_p99_ms": float(np.percentile(plug, 99) * 1e3),
            "plug_in_errors": [r[2] for r in burst_results if r[1] != 201][:3]}


async def _closed_loop(base: str, tokens: dict, seconds: float, connections: int) -> dict:
    """``connections`` keep-alive connections, each sending the next fetch (random charger, own token, random
    version, no If-None-Match) as soon as the last answer is read; per-request latency from write to body read."""
    host, port = base.removeprefix("http://").split(":")
    ids = list(tokens)
    versions = ["1.6", "2.0.1", "2.1"]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    stop = time.perf_counter() + seconds

    async def connection(seed: int):
        rng = random.Random(seed)
        reader, writer = await asyncio.open_connection(host, int(port))
        while time.perf_counter() < stop:
            cid = rng.choice(ids)
            t0 = time.perf_counter()
            status, _, _ = await _http_get(reader, writer,
                                           f"/v1/chargers/{cid}/profile?ocpp={rng.choice(versions)}",
                                           {"Authorization": f"Bearer {tokens[cid]}"})
            latencies.append(time.perf_counter() - t0)
            statuses[status] = statuses.get(status, 0) + 1
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*[connection(i) for i in range(connections)])
    elapsed = time.perf_counter() - started
    lat = np.array(latencies)
    return {"client": f"python asyncio, {connections} keep-alive connections, closed loop",
            "requests": int(lat.size), "duration_us": int(elapsed * 1e6), "requests_per_s": lat.size / elapsed,
            "p50_us": int(np.percentile(lat, 50) * 1e6), "p90_us": int(np.percentile(lat, 90) * 1e6),
            "p99_us": int(np.percentile(lat, 99) * 1e6), "p999_us": int(np.percentile(lat, 99.9) * 1e6),
            "max_us": int(lat.max() * 1e6), "mean_us": float(lat.mean() * 1e6),
            "statuses": {str(k): v for k, v in sorted(statuses.items())}}


def _count(values) -> dict:
    out: dict = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return out


def _wrk(base: str, tokens: dict, seconds: float, connections: int, threads: int, workdir: Path) -> dict | None:
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    script = workdir / "profiles.lua"
    script.write_text(WRK_SCRIPT)
    token_file = workdir / "tokens.txt"
    token_file.write_text("".join(f"{cid} {tok}\n" for cid, tok in tokens.items()))
    command = [wrk, "-t", str(threads), "-c", str(connections), "-d", f"{int(seconds)}s", "--timeout", "10s",
               "-s", str(script), base, "--", str(token_file)]
    output = subprocess.run(command, capture_output=True, text=True, check=False).stdout
    line = next((l for l in output.splitlines() if l.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no summary:\n{output}")
    result = json.loads(line[len("WRKJSON "):])
    result["requests_per_s"] = result["requests"] / (result["duration_us"] / 1e6)
    result["command"] = " ".join(command[:-3] + ["<lua script: random charger, own token, random version>"])
    return result


def _cpu_s(pid: int) -> float:
    """User + system CPU time of a process [s] (Linux /proc), 0 elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chargers", type=int, default=5000, help="chargers of the site (default 5000)")
    parser.add_argument("--burst", type=int, default=500, help="plug-ins per burst (default 500)")
    parser.add_argument("--burst-seconds", type=float, default=60.0, help="a burst is spread over this [s]")
    parser.add_argument("--fetch-interval", type=float, default=60.0, help="each charger fetches this often [s]")
    parser.add_argument("--fleet-seconds", type=float, default=120.0, help="length of the fleet phase [s]")
    parser.add_argument("--fleet-connections", type=int, default=50,
                        help="keep-alive connections of the fleet phase (default 50)")
    parser.add_argument("--capacity-seconds", type=float, default=60.0, help="length of the capacity phase [s]")
    parser.add_argument("--connections", type=int, default=16, help="connections of the capacity phase (default 16)")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--phases", default="fleet,capacity", help="phases to run (default fleet,capacity)")
    parser.add_argument("--capacity-client", choices=["wrk", "python"], default="python",
                        help="load generator of the capacity phase: python (default; an asyncio closed loop) or wrk")
    parser.add_argument("--seed", type=int, default=1, help="generator seed")
    parser.add_argument("--database", help="SQLAlchemy URL (default: a fresh SQLite file in a temporary directory)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--variants", default="process",
                        help="server variants, run one after the other in this invocation: process (default: the "
                             "solver controller in a child process) and/or thread (gridcharge serve "
                             "--solver-in-process: in the server's worker thread), e.g. process,thread")
    args = parser.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - {"process", "thread"}
    if unknown:
        parser.error(f"--variants: unknown {sorted(unknown)}; expected process and/or thread")
    results = {"chargers": args.chargers, "burst": args.burst, "burst_seconds": args.burst_seconds,
               "fetch_interval_s": args.fetch_interval, "cpus": os.cpu_count(),
               "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "variants": {}}
    for variant in variants:
        print(f"variant {variant} ...", file=sys.stderr, flush=True)
        results["variants"][variant] = _run(args, variant)
    text = json.dumps(results, indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


def _run(args, variant: str) -> dict:
    """One server (fresh database), its site, the phases; the results of this variant."""
    import httpx

    workdir = Path(tempfile.mkdtemp(prefix="gridcharge-bench-service-"))
    database = args.database or f"sqlite:///{workdir / 'service.db'}"
    operator = "bench-operator-token-" + os.urandom(8).hex()
    token_file = workdir / "operator.token"
    token_file.write_text(operator)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    results: dict = {"loadavg_before": _loadavg(), "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    extra = ["--solver-in-process"] if variant == "thread" else []
    server = _start_server(port, database, token_file, args.fetch_interval, workdir / "server.log", extra)
    try:
        _wait_up(base)
        now = datetime.now(timezone.utc)
        site, cars = _site(args.chargers, args.seed, now)
        headers = {"Authorization": f"Bearer {operator}"}
        t0 = time.perf_counter()
        response = httpx.put(f"{base}/v1/sites/bench", json={"instance": site}, headers=headers, timeout=600)
        response.raise_for_status()
        results["site_put_s"] = time.perf_counter() - t0
        tokens = response.json()["charger_tokens"]
        charger_ids = [c["id"] for c in site["chargers"]]
        print(f"site: {len(tokens)} chargers in {results['site_put_s']:.1f} s", file=sys.stderr, flush=True)

        phases = set(args.phases.split(","))
        if "fleet" in phases:
            cpu_before = _cpu_s(server.pid)
            fleet = asyncio.run(_fleet(base, "bench", tokens, args.fetch_interval, args.fleet_seconds,
                                       args.fleet_connections, cars[:args.burst], charger_ids[:args.burst],
                                       args.burst_seconds, headers))
            fleet["server_cpu_s"] = _cpu_s(server.pid) - cpu_before
            status = _settle(base, headers)
            fleet["reoptimisation"] = status["reoptimisation_latency"]
            fleet["first_publication"] = status.get("first_publication_latency")  # provisional plans served
            fleet["solve_seconds"] = status["solve_seconds"]
            fleet["active_sessions"] = status["active_sessions"]
            fleet["publication_status"] = status["publication"]["status"] if status["publication"] else None
            fleet["divergences"] = status.get("divergences")
            fleet["worker_errors"] = status.get("worker_errors")
            results["fleet"] = fleet
            print(json.dumps({"fleet": fleet}, indent=1), file=sys.stderr, flush=True)
        if "capacity" in phases:
            results.update(_capacity(args, base, headers, tokens, cars, charger_ids, server, workdir))
        results["loadavg_after"] = _loadavg()
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    log = workdir / "server.log"
    if log.exists():  # anything the server said beyond its start line (errors, warnings)
        lines = [l for l in log.read_text(errors="replace").splitlines() if not l.startswith("gridcharge serve:")]
        results["server_log_lines"] = len(lines)
        results["server_log_tail"] = lines[-40:]
    shutil.rmtree(workdir, ignore_errors=True)
    return results


def _capacity(args, base, headers, tokens, cars, charger_ids, server, workdir) -> dict:
    import httpx

    out: dict = {}
    burst2 = cars[args.burst:2 * args.burst]
    plug_results: list = []

    def second_burst():
        async def go():
            async with httpx.AsyncClient(timeout=60) as client:
                await _burst(client, base, "bench", burst2, charger_ids[args.burst:2 * args.burst],
                             min(args.burst_seconds, args.capacity_seconds), "cap-", headers, plug_results)
        asyncio.run(go())

    before = httpx.get(f"{base}/v1/sites/bench", headers=headers).json()
    thread = threading.Thread(target=second_burst)
    thread.start()
    out["loadavg_capacity_start"] = _loadavg()
    cpu_before = _cpu_s(server.pid)
    if args.capacity_client == "wrk":
        capacity = _wrk(base, tokens, args.capacity_seconds, args.connections, args.wrk_threads, workdir)
    else:
        capacity = asyncio.run(_closed_loop(base, tokens, args.capacity_seconds, args.connections))
    cpu_used = _cpu_s(server.pid) - cpu_before
    thread.join()
    status = _settle(base, headers)
    if capacity is None:
        out["capacity"] = "skipped: wrk not on PATH (apt-get install wrk)"
        return out
    capacity["server_cpu_us_per_fetch"] = cpu_used / max(capacity["requests"], 1) * 1e6
    capacity["plug_ins"] = len(plug_results)
    capacity["plug_in_statuses"] = _count(r[1] for r in plug_results)
    count_before = (before["solve_seconds"] or {}).get("count", 0)
    capacity["reoptimisations_during"] = status["solve_seconds"]["count"] - count_before
    capacity["reoptimisation_all_events"] = status["reoptimisation_latency"]
    capacity["first_publication_all_events"] = status.get("first_publication_latency")
    capacity["active_sessions_after"] = status["active_sessions"]
    capacity["divergences"] = status.get("divergences")
    capacity["worker_errors"] = status.get("worker_errors")
    out["capacity"] = capacity
    print(json.dumps({"capacity": capacity}, indent=1), file=sys.stderr, flush=True)
    return out


def _settle(base: str, headers: dict, timeout_s: float = 600.0) -> dict:
    """Wait until every accepted event is published; the site status then."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        status = httpx.get(f"{base}/v1/sites/bench", headers=headers, timeout=30).json()
        if status["published_seq"] >= status["accepted_seq"] or time.monotonic() > deadline:
            return status
        time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
