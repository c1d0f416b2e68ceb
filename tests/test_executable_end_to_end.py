"""issue 16, done when: a 6 A / 1 A instance goes end to end — solve, verify, baselines, online control, a service
profile and an OCPP push — with set-points and limits a car can follow only (0, or at least 6 A in whole amps)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

import httpx
import numpy as np
import pytest

import gridcharge
from gridcharge.ocpp import validate_payload
from gridcharge.ocpp.csms import CentralSystem, ocpp_app, schedule_of
from gridcharge.ocpp.memory import MemoryBackend
from gridcharge.ocpp.simulator import SimulatedCharger
from gridcharge.online import simulate
from gridcharge.problem import build_problem
from gridcharge.service import create_app
from gridcharge.solvers.baselines import BASELINES
from gridcharge.solvers.executable import off_grid
from tests.loopback import serving

pytest.importorskip("uvicorn")

OPERATOR = "gco_end-to-end-operator-token-0123456789"
CURRENTS = {"min_current_a": 6.0, "current_step_a": 1.0}
PASSWORDS = {"c1": "secret-c1-0123456789", "c2": "secret-c2-0123456789", "c3": "secret-c3-0123456789"}


def site(start: datetime, periods: int = 16) -> dict:
    """A 12 kW transformer (2 kW base load) over three 7 kW chargers at 6 A / 1 A: two single-phase (220 V: 1.32 kW,
    then 0.22 kW a step), one three-phase (3.96 kW, then 0.66 kW); prices cheap, then dear, then cheap."""
    prices = [0.3] * 4 + [1.2] * 6 + [0.4] * (periods - 10)
    return {"format": "gridcharge/instance-v1", "name": "end to end, 6 A / 1 A",
            "horizon": {"start": start.isoformat(), "step_minutes": 15, "periods": periods},
            "nodes": [{"id": "T", "kind": "transformer", "import_limit_kw": 12.0, "base_load_kw": 2.0}],
            "chargers": [{"id": "c1", "node": "T", "max_charge_kw": 7.0, "phases": "A", **CURRENTS},
                         {"id": "c2", "node": "T", "max_charge_kw": 7.0, "phases": "B", **CURRENTS},
                         {"id": "c3", "node": "T", "max_charge_kw": 7.0, "phases": "ABC", **CURRENTS}],
            "tariff": {"import_cny_per_kwh": prices}, "sessions": []}


def cars(start: datetime) -> list[dict]:
    def at(minutes):
        return (start + timedelta(minutes=minutes)).isoformat()

    return [{"id": "s1", "charger": "c1", "arrival": at(0), "departure": at(200), "energy_kwh": 9.0},
            {"id": "s2", "charger": "c2", "arrival": at(20), "departure": at(230), "energy_kwh": 6.5},
            {"id": "s3", "charger": "c3", "arrival": at(10), "departure": at(240), "energy_kwh": 14.0}]


def assert_executable(problem, power) -> None:
    assert not off_grid(problem, power).any(), power[off_grid(problem, power)]
    verdict = gridcharge.verify(problem.instance, power)
    assert verdict.ok, str(verdict)


def assert_whole_amps(payload: dict, version: str) -> None:
    """Every limit of a profile in A is 0 or whole amps from 6 A; the schedule says minChargingRate 6 A."""
    validate_payload(version, "SetChargingProfile", payload)
    schedule = schedule_of(payload)
    assert schedule["chargingRateUnit"] == "A" and schedule["minChargingRate"] == 6.0
    limits = [p["limit"] for p in schedule["chargingSchedulePeriod"]]
    assert all(v == 0 or (v >= 6 and v == round(v)) for v in limits), limits


def test_a_6_a_1_a_instance_end_to_end():
    start = datetime(2026, 7, 1, 18, 0, tzinfo=timezone(timedelta(hours=8)))
    data = {**site(start), "sessions": cars(start)}
    problem = build_problem(data)
    assert problem.executable
    # solve (exact MIP and rounding) and verify
    for mode in ("exact", "rounding"):
        schedule = gridcharge.solve(data, executable=mode)
        assert_executable(problem, schedule.power)
    # every baseline (uncontrolled ignores the limits by definition: its powers must still be executable)
    for name in BASELINES:
        power = gridcharge.solve(data, solver=name).power
        if name == "uncontrolled":
            assert not off_grid(problem, power).any()
        else:
            assert_executable(problem, power)
    # online control, closed loop: every realised set-point, on the actual day
    result = simulate(data, strategy="online", controller_options={"provisional": True})
    assert result.fallbacks == 0, result.statuses
    assert_executable(result.problem, result.power)
    assert result.power.max() > 0


def test_a_6_a_1_a_site_s_service_profile_and_ocpp_push_carry_whole_amps_only(tmp_path):
    now = datetime.now(timezone.utc)
    start = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
    instance = site(start, periods=96)
    instance.pop("sessions")
    departure = (start + timedelta(hours=4)).isoformat()

    # the HTTP service: a plug-in, its published plan, the charger's profile in amps
    app = create_app(f"sqlite:///{tmp_path / 'gc.db'}", operator_token=OPERATOR, interval_s=0.2)
    operator = {"Authorization": f"Bearer {OPERATOR}"}
    with serving(app, lifespan="on") as port, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        created = http.put("/v1/sites/e2e", headers=operator,
                           json={"instance": instance, "charger_settings": {"c1": {"rate_unit": "A"}}})
        assert created.status_code == 201, created.text
        token = created.json()["charger_tokens"]["c1"]
        answer = http.post("/v1/sites/e2e/sessions", headers=operator,
                           json={"id": "car1", "charger": "c1", "departure": departure, "energy_kwh": 9.0})
        assert answer.status_code == 201, answer.text
        deadline = time.monotonic() + 60
        while http.get("/v1/sites/e2e", headers=operator).json()["published_seq"] < answer.json()["event_seq"]:
            assert time.monotonic() < deadline, "the plug-in was not published"
            time.sleep(0.05)
        for version in ("1.6", "2.0.1", "2.1"):
            served = http.get("/v1/chargers/c1/profile", params={"ocpp": version},
                              headers={"Authorization": f"Bearer {token}"})
            assert served.status_code == 200, served.text
            payloads = served.json()["set_charging_profile"]
            assert [schedule_of(p)["chargingRateUnit"] for p in payloads] == ["A"] * 3  # max, default, TxProfile
            for payload in payloads:
                assert_whole_amps(payload, version)
            tx = schedule_of(payloads[2])["chargingSchedulePeriod"]
            assert max(p["limit"] for p in tx) >= 6  # the car is planned to charge

    # an OCPP 1.6 charger in amps, pushed by the central system over the in-memory backend
    backend = MemoryBackend(instance, PASSWORDS, rate_unit="A").start()
    csms = CentralSystem(backend, meter_interval_s=0, response_timeout_s=10)
    try:
        with serving(ocpp_app(csms)) as port:
            async def scenario():
                sim = SimulatedCharger("c3", "1.6", f"ws://127.0.0.1:{port}/ocpp", PASSWORDS["c3"])
                await sim.connect()
                await sim.boot()
                await sim.start_transaction()
                deadline = time.monotonic() + 30
                while sim.tx_profile() is None:
                    assert time.monotonic() < deadline, "no TxProfile pushed"
                    await asyncio.sleep(0.02)
                for purpose in ("ChargePointMaxProfile", "TxDefaultProfile", "TxProfile"):
                    assert_whole_amps(sim.installed[purpose], "1.6")
                await sim.close()

            asyncio.run(asyncio.wait_for(scenario(), 60))
        pub = backend.controller.publication
        assert pub.schedule is not None
        assert_executable(pub.schedule.problem, pub.power_kw)
        assert np.asarray(pub.power_kw).max() >= 3.96 - 1e-9  # c3 charges: at least 6 A on three phases
    finally:
        backend.stop()
