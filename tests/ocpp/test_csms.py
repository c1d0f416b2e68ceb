"""The OCPP central system over loopback websockets with real ``ocpp`` ChargePoint clients (1.6, 2.0.1, 2.1)
against the in-memory backend (a real online Controller solving with HiGHS).

Each test uses its own chargers of one shared site, so the server starts once. Known answers: the station maximum
and the fail-safe default are computed by hand from the site; TxProfile limits are compared period by period with
the controller's published set-points (whole watts, towards zero); the V2G window mapping and meter arithmetic are
computed by hand.
"""

from __future__ import annotations

import asyncio
import base64
import math
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
import websockets

from gridcharge.ocpp.csms import (
    CentralSystem,
    ChargerInfo,
    energy_registers,
    limit_at,
    needs_to_session,
    ocpp_app,
    purpose_of,
    schedule_of,
)
from gridcharge.ocpp.memory import MemoryBackend
from gridcharge.ocpp.profiles import failsafe_limits_kw, validate_payload
from gridcharge.ocpp.simulator import SimulatedCharger
from tests.loopback import serving

uvicorn = pytest.importorskip("uvicorn")

STEP_S = 900
PERIODS = 96


def _site(start: datetime) -> dict:
    """Transformer 60 kW with 12 kW base load over 12 chargers; import price cheap, then dear (periods 8-15)."""
    prices = [0.3] * PERIODS
    for j in range(8, 16):
        prices[j] = 1.5
    chargers = [{"id": f"a{i}", "node": "tx", "max_charge_kw": 11.0} for i in range(1, 6)]
    chargers += [{"id": f"v{i}", "node": "tx", "max_charge_kw": 11.0, "max_discharge_kw": 11.0} for i in range(1, 4)]
    chargers += [{"id": f"s{i}", "node": "tx", "max_charge_kw": 7.0} for i in range(1, 3)]
    chargers += [{"id": "m1", "node": "tx", "max_charge_kw": 11.0, "efficiency": 0.9},
                 {"id": "p1", "node": "tx", "max_charge_kw": 3.7, "phases": "A"}]
    return {"format": "gridcharge/instance-v1", "name": "ocpp-test",
            "horizon": {"start": start.isoformat(), "step_minutes": STEP_S // 60, "periods": PERIODS},
            "nodes": [{"id": "tx", "kind": "transformer", "import_limit_kw": 60.0, "phase_import_limit_kw": 22.0,
                       "base_load_kw": 12.0}],
            "chargers": chargers,
            "tariff": {"import_cny_per_kwh": prices, "export_cny_per_kwh": prices}}


PASSWORDS = {cid: f"secret-{cid}-0123456789" for cid in
             ["a1", "a2", "a3", "a4", "a5", "v1", "v2", "v3", "s1", "s2", "m1", "p1"]}


@pytest.fixture(scope="module")
def server():
    now = datetime.now(timezone.utc)
    start = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
    site = _site(start)
    backend = MemoryBackend(site, PASSWORDS).start()
    csms = CentralSystem(backend, meter_interval_s=0, response_timeout_s=10)
    with serving(ocpp_app(csms)) as port:
        yield {"url": f"ws://127.0.0.1:{port}/ocpp", "backend": backend, "csms": csms, "site": site, "port": port}
    backend.stop()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


async def until(condition, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def assert_schema_valid(sim: SimulatedCharger) -> None:
    """Every SetChargingProfile the charger received passes its version's official schema."""
    assert sim.received, "nothing received"
    for _, payload in sim.received:
        validate_payload(sim.version, "SetChargingProfile", payload)


def expand(payload: dict, start_period_time: datetime, n: int, key: str = "limit") -> np.ndarray:
    """The TxProfile's ``key`` per site period from ``start_period_time`` (n periods)."""
    schedule = schedule_of(payload)
    origin = datetime.fromisoformat(schedule["startSchedule"])
    assert origin == start_period_time
    periods = schedule["chargingSchedulePeriod"]
    out = np.empty(n)
    for j in range(n):
        offset = j * STEP_S
        current = [p for p in periods if p["startPeriod"] <= offset][-1]
        out[j] = current.get(key, 0)
    return out


def published_w(backend: MemoryBackend, cid: str) -> tuple[np.ndarray, datetime]:
    """The controller's published row of charger ``cid`` from the current period [W, towards zero]."""
    snapshot = backend.plan
    period = backend.grid.period_of(backend.clock())
    first = max(period, snapshot.start_period) - snapshot.start_period
    row = snapshot.rows[cid][first:] * 1000.0
    return np.trunc(row + np.sign(row) * 1e-6), backend.grid.time_of(snapshot.start_period + first)


def matches_publication(sim: SimulatedCharger, backend: MemoryBackend, key: str = "limit") -> bool:
    tx = sim.tx_profile()
    snapshot = backend.plan
    if tx is None or sim.charger_id not in snapshot.rows:
        return False
    expected, start = published_w(backend, sim.charger_id)
    if key == "limit":
        expected = np.clip(expected, 0, None)
    try:
        return bool(np.array_equal(expand(tx, start, len(expected), key), expected))
    except AssertionError:
        return False


# ----------------------------------------------------------------------------------------------------------------
# pure parts: hand-computed answers


def test_energy_registers_units_and_multipliers():
    v2 = [{"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [
        {"value": 12.5, "measurand": "Energy.Active.Import.Register", "unitOfMeasure": {"unit": "kWh"}},
        {"value": 3.0, "measurand": "Energy.Active.Export.Register", "unitOfMeasure": {"unit": "Wh", "multiplier": 3}},
        {"value": 999.0, "measurand": "Energy.Active.Import.Register", "phase": "L1"},  # per phase: ignored
        {"value": 7.0, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "W"}}]}]
    assert energy_registers(v2, "2.0.1") == (12500.0, 3000.0)
    v16 = [{"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [{"value": "1.25", "unit": "kWh"}]}]
    assert energy_registers(v16, "1.6") == (1250.0, None)  # no measurand = import register
    assert energy_registers([], "2.1") == (None, None)


def test_needs_to_session_v2g_window_and_departure():
    now = datetime(2026, 7, 1, 8, 0, tzinfo=timezone.utc)
    info = ChargerInfo("v", 11.0, 7.0, 1.0, now + timedelta(hours=10))
    needs = {"requestedEnergyTransfer": "DC_BPT", "departureTime": "2026-07-01T12:00:00Z",
             "v2xChargingParameters": {"maxChargePower": 22000, "maxDischargePower": 11000,
                                       "evTargetEnergyRequest": 10000, "evMinV2XEnergyRequest": -15000,
                                       "evMaxEnergyRequest": 30000}}
    fields, notes = needs_to_session(needs, "2.1", info, now)
    assert notes == []
    assert fields == {"departure": "2026-07-01T12:00:00+00:00", "energy_kwh": 10.0, "max_charge_kw": 22.0,
                      "max_discharge_kw": 7.0,  # the charger's 7 kW, not the EV's 11
                      "battery_kwh": 45.0, "initial_kwh": 15.0, "min_kwh": 0.0}
    # 2.0.1 cannot discharge: the same needs give a charge-only session
    fields, _ = needs_to_session(needs, "2.0.1", info, now)
    assert "max_discharge_kw" not in fields and "battery_kwh" not in fields
    # a departure beyond the horizon is planned to its end, and said so
    late = {"requestedEnergyTransfer": "AC_three_phase", "departureTime": "2026-07-02T08:00:00Z",
            "acChargingParameters": {"energyAmount": 5000, "evMinCurrent": 6, "evMaxCurrent": 16,
                                     "evMaxVoltage": 400}}
    fields, notes = needs_to_session(late, "2.0.1", info, now)
    assert fields == {"departure": "2026-07-01T18:00:00+00:00", "energy_kwh": 5.0}
    assert len(notes) == 1 and "horizon" in notes[0]


def test_limit_at_picks_the_period_in_force():
    payload = {"evseId": 1, "chargingProfile": {"id": 3, "stackLevel": 1, "chargingProfilePurpose": "TxProfile",
               "chargingProfileKind": "Absolute", "chargingSchedule": [{
                   "id": 3, "startSchedule": "2026-07-01T08:00:00Z", "duration": 1800, "chargingRateUnit": "W",
                   "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 5000}, {"startPeriod": 900, "limit": 0}]}]}}
    t0 = datetime(2026, 7, 1, 8, 0, tzinfo=timezone.utc)
    assert limit_at(payload, t0 + timedelta(seconds=899)) == 5000
    assert limit_at(payload, t0 + timedelta(seconds=900)) == 0
    assert limit_at(payload, t0 + timedelta(seconds=1800)) is None
    assert limit_at(payload, t0 - timedelta(seconds=1)) is None


# ----------------------------------------------------------------------------------------------------------------
# over the wire


def test_charge_only_201_session_lifecycle(server):
    backend, csms, url = server["backend"], server["csms"], server["url"]
    failsafe = failsafe_limits_kw(server["site"])

    async def scenario():
        sim = SimulatedCharger("a1", "2.0.1", url, PASSWORDS["a1"])
        assert await sim.connect() == "ocpp2.0.1"
        assert await sim.boot() == "Accepted"
        await sim.wait_for(lambda s: "TxDefaultProfile" in s.installed)
        # the fail-safe profiles come first: station maximum, then the default (EVSE 0, whole watts, towards zero)
        first = [purpose_of(p) for _, p in sim.received[:2]]
        assert first == ["ChargingStationMaxProfile", "TxDefaultProfile"]
        default = sim.installed["TxDefaultProfile"]
        assert default["evseId"] == 0
        assert schedule_of(default)["chargingSchedulePeriod"][0]["limit"] == math.floor(failsafe["a1"] * 1000)
        assert schedule_of(sim.installed["ChargingStationMaxProfile"])["chargingSchedulePeriod"][0]["limit"] == 11000

        await sim.start_transaction("T-a1", meter_wh=1000)
        await until(lambda: "a1/T-a1" in backend.controller.state.cars, what="plug-in")
        departure = (backend.clock() + timedelta(hours=3)).replace(microsecond=0)
        status = await sim.needs({"requestedEnergyTransfer": "AC_three_phase",
                                  "departureTime": departure.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                  "acChargingParameters": {"energyAmount": 15000, "evMinCurrent": 6,
                                                           "evMaxCurrent": 16, "evMaxVoltage": 400}})
        assert status == "Accepted"
        await until(lambda: backend.controller.state.cars["a1/T-a1"].session.energy_kwh == 15.0, what="needs")
        car = backend.controller.state.cars["a1/T-a1"]
        assert car.session.departure == departure
        # the TxProfile the charger holds is the controller's published plan, bound to the transaction
        await sim.wait_for(lambda s: matches_publication(s, backend))
        tx = sim.tx_profile()
        assert tx["evseId"] == 1 and tx["chargingProfile"]["transactionId"] == "T-a1"
        assert tx["chargingProfile"]["stackLevel"] > default["chargingProfile"]["stackLevel"]
        expected, _ = published_w(backend, "a1")
        assert expected.max() > 0  # a plan that charges
        await until(lambda: csms.records.get("a1", {}).get("composite_ok") is not None, what="composite")
        assert csms.records["a1"]["composite_ok"] is True

        # a meter reading: 1000 Wh at the start, 3500 Wh now -> 2.5 kWh delivered (efficiency 1)
        await sim.meter(3500)
        await until(lambda: abs(backend.controller.state.cars["a1/T-a1"].delivered_kwh - 2.5) < 1e-9, what="meter")

        await sim.end_transaction(4000)
        await until(lambda: "a1/T-a1" not in backend.controller.state.cars, what="departure")
        # it left with the 2.5 kWh the meter said (the controller credits nothing more for this period)
        assert backend.controller.state.finished["a1/T-a1"].delivered_kwh == 2.5
        assert_schema_valid(sim)
        await sim.close()

    run(scenario())
    assert csms.stats["payload_errors"] == 0


def test_v2g_21_gets_setpoint_and_discharge_periods(server):
    backend, url = server["backend"], server["url"]

    async def scenario():
        sim = SimulatedCharger("v1", "2.1", url, PASSWORDS["v1"])
        assert await sim.connect(subprotocols=["ocpp2.1", "ocpp2.0.1", "ocpp1.6"]) == "ocpp2.1"
        await sim.boot()
        await sim.start_transaction("T-v1")
        departure = backend.grid.time_of(backend.grid.period_of(backend.clock()) + 24)  # 6 h, past the dear periods
        await sim.needs({"requestedEnergyTransfer": "AC_BPT", "departureTime": departure.strftime("%Y-%m-%dT%H:%M:%SZ"),
                         "controlMode": "ScheduledControl",
                         "v2xChargingParameters": {"maxChargePower": 11000, "maxDischargePower": 11000,
                                                   "evTargetEnergyRequest": 10000, "evMinV2XEnergyRequest": -20000,
                                                   "evMaxEnergyRequest": 40000}})
        # the needs carry V2G consent: the session is replaced by a bidirectional one (window 20 kWh down, 40 up)
        await until(lambda: "v1/T-v1/1" in backend.controller.state.cars, what="V2G session")
        session = backend.controller.state.cars["v1/T-v1/1"].session
        assert (session.max_discharge_kw, session.battery_kwh, session.initial_kwh, session.min_kwh,
                session.energy_kwh) == (11.0, 60.0, 20.0, 0.0, 10.0)
        assert "v1/T-v1" not in backend.controller.state.cars
        await sim.wait_for(lambda s: matches_publication(s, backend, key="setpoint"))
        tx = sim.tx_profile()
        periods = schedule_of(tx)["chargingSchedulePeriod"]
        assert all(p["operationMode"] == "CentralSetpoint" for p in periods)
        assert all(p["dischargeLimit"] <= 0 <= p["limit"] and p["setpoint"] == p["limit"] + p["dischargeLimit"]
                   for p in periods)
        # the dear periods are worth selling into: the plan discharges, and the profile says so
        assert min(p["setpoint"] for p in periods) < 0
        assert tx["chargingProfile"]["maxOfflineDuration"] == 300 and "validTo" in tx["chargingProfile"]
        assert_schema_valid(sim)
        await sim.close()

    run(scenario())


def test_201_charger_asking_for_v2g_gets_charge_only(server):
    backend, url = server["backend"], server["url"]

    async def scenario():
        sim = SimulatedCharger("v2", "2.0.1", url, PASSWORDS["v2"])
        await sim.connect()
        await sim.boot()
        await sim.start_transaction("T-v2")
        departure = backend.grid.time_of(backend.grid.period_of(backend.clock()) + 24)
        await sim.needs({"requestedEnergyTransfer": "DC", "departureTime": departure.strftime("%Y-%m-%dT%H:%M:%SZ"),
                         "dcChargingParameters": {"evMaxCurrent": 100, "evMaxVoltage": 400, "energyAmount": 8000,
                                                  "evMaxPower": 9000}})
        # the EV's 9 kW is a plug-time field: the session is replaced by one with max_charge_kw 9, no discharge
        await until(lambda: "v2/T-v2/1" in backend.controller.state.cars, what="replaced session")
        session = backend.controller.state.cars["v2/T-v2/1"].session
        assert (session.max_charge_kw, session.max_discharge_kw, session.energy_kwh) == (9.0, 0.0, 8.0)
        # the plan of the replaced session: until it is re-solved, the published plan still holds the first one's
        await until(lambda: "v2/T-v2/1" in backend.controller.publication.session_ids, what="plan of the replacement")
        await sim.wait_for(lambda s: matches_publication(s, backend))
        periods = schedule_of(sim.tx_profile())["chargingSchedulePeriod"]
        assert all(set(p) == {"startPeriod", "limit", "numberPhases"} and 0 <= p["limit"] <= 9000 for p in periods), periods
        assert_schema_valid(sim)
        await sim.close()

    run(scenario())


def test_reconnect_after_drop_repushes_default_and_txprofile(server):
    backend, csms, url = server["backend"], server["csms"], server["url"]

    async def scenario():
        sim = SimulatedCharger("a2", "2.0.1", url, PASSWORDS["a2"])
        await sim.connect()
        await sim.boot()
        await sim.start_transaction("T-a2")
        await sim.wait_for(lambda s: matches_publication(s, backend))
        before = sim.tx_profile()
        await sim.drop()  # no closing handshake
        await until(lambda: "a2" not in csms.links, what="server noticing the drop")
        again = SimulatedCharger("a2", "2.0.1", url, PASSWORDS["a2"])
        await again.connect()  # no BootNotification: the station was accepted before
        await again.wait_for(lambda s: s.tx_profile() is not None)
        purposes = [purpose_of(p) for _, p in again.received]
        assert purposes[:3] == ["ChargingStationMaxProfile", "TxDefaultProfile", "TxProfile"]
        assert again.tx_profile()["chargingProfile"]["transactionId"] == "T-a2"
        assert again.tx_profile() == before or matches_publication(again, backend)
        assert_schema_valid(again)
        await again.end_transaction()
        await again.close()

    run(scenario())


def test_ocpp16_gets_default_and_tx_limits_and_meter(server):
    backend, url = server["backend"], server["url"]

    async def scenario():
        sim = SimulatedCharger("m1", "1.6", url, PASSWORDS["m1"])
        assert await sim.connect() == "ocpp1.6"
        await sim.boot()
        await sim.wait_for(lambda s: "TxDefaultProfile" in s.installed)
        default = sim.installed["TxDefaultProfile"]
        assert default["connectorId"] == 0 and "ChargePointMaxProfile" in sim.installed
        await sim.start_transaction(meter_wh=10000)
        tid = sim.transaction_id
        assert isinstance(tid, int)
        sid = f"m1/{tid}"
        await until(lambda: sid in backend.controller.state.cars, what="1.6 plug-in")
        await sim.wait_for(lambda s: matches_publication(s, backend))
        tx = sim.tx_profile()
        assert tx["connectorId"] == 1 and tx["csChargingProfiles"]["transactionId"] == tid
        # 2,000 Wh through the meter at 90 % efficiency: 1.8 kWh into the battery
        await sim.meter(12000)
        await until(lambda: abs(backend.controller.state.cars[sid].delivered_kwh - 1.8) < 1e-9, what="1.6 meter")
        await sim.end_transaction(12500)
        await until(lambda: sid not in backend.controller.state.cars, what="1.6 stop")
        assert sid in backend.controller.state.finished
        assert_schema_valid(sim)
        await sim.close()

    run(scenario())


def test_single_phase_charger_default_profile(server):
    """A single-phase charger's profiles say numberPhases 1 and its TxDefault is within its phase share; heartbeat
    and status notifications are answered and recorded."""
    failsafe = failsafe_limits_kw(server["site"])

    async def scenario():
        sim = SimulatedCharger("p1", "2.0.1", server["url"], PASSWORDS["p1"])
        await sim.connect()
        await sim.boot()
        await sim.wait_for(lambda s: "TxDefaultProfile" in s.installed)
        period = schedule_of(sim.installed["TxDefaultProfile"])["chargingSchedulePeriod"][0]
        assert period["numberPhases"] == 1 and period["limit"] == math.floor(failsafe["p1"] * 1000)
        assert period["limit"] <= 3700
        # heartbeat and status: the central system's clock, and what the charger said is kept
        beat = datetime.fromisoformat(await sim.heartbeat())
        assert abs((beat - datetime.now(timezone.utc)).total_seconds()) < 5
        await sim.status("Occupied")
        assert server["csms"].records["p1"]["status"] == {1: "Occupied"}
        assert server["csms"].records["p1"]["boot"] == {"model": "sim", "vendorName": "gridcharge"}
        await sim.close()

    run(scenario())


def test_bad_credentials_rejected_at_the_handshake(server):
    url = server["url"]

    async def status_of(path: str, headers: dict | None):
        try:
            async with websockets.connect(f"{url}/{path}", subprotocols=["ocpp2.0.1"],
                                          additional_headers=headers or {}):
                return 101
        except websockets.exceptions.InvalidStatus as exc:
            return exc.response.status_code

    def basic(user, password):
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

    async def scenario():
        assert await status_of("a3", basic("a3", "wrong-password")) == 401
        assert await status_of("a3", None) == 401
        assert await status_of("a3", basic("a4", PASSWORDS["a4"])) == 401  # another charger's credentials
        assert await status_of("nosuch", basic("nosuch", "x")) == 401
        assert await status_of("a3", {"Authorization": "Bearer " + PASSWORDS["a3"]}) == 401
        assert await status_of("a3", basic("a3", PASSWORDS["a3"])) == 101

    run(scenario())


def test_unsupported_subprotocol_is_closed(server):
    url = server["url"]

    async def scenario():
        headers = {"Authorization": "Basic " + base64.b64encode(f"a5:{PASSWORDS['a5']}".encode()).decode()}
        async with websockets.connect(f"{url}/a5", subprotocols=["ocpp1.5"], additional_headers=headers) as ws:
            assert ws.subprotocol is None
            with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd.code == 1002

    run(scenario())


# ----------------------------------------------------------------------------------------------------------------
# property: whatever schema-valid ISO 15118 needs a charger reports, the session they map to is one the controller
# accepts (the V2G window always holds the requested energy; departures land inside the horizon or are dropped)

from hypothesis import assume, given
from hypothesis import strategies as st

from gridcharge.online import Controller

_T0 = datetime(2026, 7, 1, 0, 0, tzinfo=timezone.utc)
_PROPERTY_SITE = {"format": "gridcharge/instance-v1", "name": "needs-property",
                  "horizon": {"start": _T0.isoformat(), "step_minutes": 15, "periods": 96},
                  "nodes": [{"id": "tx", "kind": "transformer", "import_limit_kw": 50.0}],
                  "chargers": [{"id": "c", "node": "tx", "max_charge_kw": 11.0, "max_discharge_kw": 7.0}],
                  "tariff": {"import_cny_per_kwh": 0.5}}
_CONTROLLER: list = []


def _property_controller():
    if not _CONTROLLER:
        controller = Controller(_PROPERTY_SITE)
        controller.auto_resolve = False
        controller.advance(8)
        _CONTROLLER.append((controller, controller.state))
    return _CONTROLLER[0]


_wh = st.floats(min_value=-80000, max_value=80000, allow_nan=False, allow_infinity=False)


@given(mode=st.sampled_from(["AC_three_phase", "DC", "AC_BPT", "DC_BPT"]), version=st.sampled_from(["2.0.1", "2.1"]),
       departure_min=st.integers(min_value=-600, max_value=2000), target=st.floats(0, 90000),
       max_charge=st.floats(0, 350000), max_discharge=st.floats(0, 350000),
       low=st.one_of(st.none(), _wh), high=st.one_of(st.none(), st.floats(0, 90000)))
def test_needs_always_map_to_a_session_the_controller_accepts(mode, version, departure_min, target, max_charge,
                                                               max_discharge, low, high):
    assume(version == "2.1" or not mode.endswith("BPT"))  # 2.0.1 has no bidirectional transfer modes
    controller, base_state = _property_controller()
    controller.state = base_state  # the immutable state before any car (as the service restores it)
    now = controller.time
    info = ChargerInfo("c", 11.0, 7.0, 1.0, controller.time_of(controller.periods))
    needs = {"requestedEnergyTransfer": mode,
             "departureTime": (now + timedelta(minutes=departure_min)).strftime("%Y-%m-%dT%H:%M:%SZ")}
    if version == "2.1" and mode.endswith("BPT"):
        v2x = {"maxChargePower": max_charge, "maxDischargePower": max_discharge, "evTargetEnergyRequest": target}
        if low is not None:
            v2x["evMinV2XEnergyRequest"] = low
        if high is not None:
            v2x["evMaxEnergyRequest"] = high
        needs["v2xChargingParameters"] = v2x
    elif mode == "DC":  # 2.0.1 says whole Wh / W here; 2.1 any number
        needs["dcChargingParameters"] = {"evMaxCurrent": 200, "evMaxVoltage": 800,
                                         "evMaxPower": round(max_charge) if version == "2.0.1" else max_charge,
                                         "energyAmount": round(target) if version == "2.0.1" else target}
    else:
        needs["acChargingParameters"] = {"energyAmount": round(target) if version == "2.0.1" else target,
                                         "evMinCurrent": 6, "evMaxCurrent": 32, "evMaxVoltage": 400}
    validate_payload(version, "NotifyEVChargingNeeds", {"evseId": 1, "chargingNeeds": needs})
    fields, _ = needs_to_session(needs, version, info, now)
    session = {"id": "car", "charger": "c", "arrival": now.isoformat(),
               "departure": fields.pop("departure", (now + timedelta(hours=4)).isoformat()),
               "energy_kwh": fields.pop("energy_kwh", 20.0), **fields}
    controller.plug_in(session)  # raises InstanceError naming the field if the mapping were wrong
    car = controller.state.cars["car"].session
    assert car.max_discharge_kw <= 7.0
    assert (car.max_discharge_kw > 0) == (version == "2.1" and mode.endswith("BPT") and max_discharge / 1000 > 0)


def test_central_system_restart_picks_up_running_transactions(server):
    """A new central system on the same backend (as after a restart of ``gridcharge serve``: the sessions are
    stored): a charger that kept its transaction and reconnects without booting is pushed its profiles, its
    transaction is recognised as the session made before (no second session), and its end ends that session."""
    backend, url = server["backend"], server["url"]
    second = CentralSystem(backend, meter_interval_s=0, response_timeout_s=10)

    async def scenario(port: int):
        sim = SimulatedCharger("a3", "2.0.1", url, PASSWORDS["a3"])
        await sim.connect()
        await sim.boot()
        await sim.start_transaction("T-a3", meter_wh=0)
        await sim.wait_for(lambda s: matches_publication(s, backend))
        await sim.meter(2000)
        await until(lambda: backend.controller.state.cars["a3/T-a3"].delivered_kwh == 2.0, what="first meter")
        await sim.drop()
        again = SimulatedCharger("a3", "2.0.1", f"ws://127.0.0.1:{port}/ocpp", PASSWORDS["a3"])
        await again.connect()
        again.transaction_id = "T-a3"
        await again.meter(2900)  # its first message after the reconnect: a reading of the running transaction
        await again.wait_for(lambda s: s.tx_profile() is not None)
        assert [purpose_of(p) for _, p in again.received][:3] == ["ChargingStationMaxProfile", "TxDefaultProfile",
                                                                  "TxProfile"]
        assert again.tx_profile()["chargingProfile"]["transactionId"] == "T-a3"
        assert [sid for sid in backend.controller.state.cars if sid.startswith("a3/")] == ["a3/T-a3"]
        # the register at the start is unknown to the new process: its first reading is not taken as the start
        # (that would tell the controller "0 kWh so far"); the 2.0 kWh measured before stay
        await asyncio.sleep(0.3)
        assert backend.controller.state.cars["a3/T-a3"].delivered_kwh == 2.0
        await again.end_transaction(1000)
        await until(lambda: "a3/T-a3" not in backend.controller.state.cars,
                    what="the end of the picked-up session")
        assert_schema_valid(again)
        await again.close()

    with serving(ocpp_app(second)) as port:
        run(scenario(port))


def test_second_connection_of_a_charger_replaces_the_first(server):
    csms, url = server["csms"], server["url"]

    async def scenario():
        first = SimulatedCharger("a4", "2.0.1", url, PASSWORDS["a4"])
        await first.connect()
        await first.boot()
        await first.wait_for(lambda s: "TxDefaultProfile" in s.installed)
        second = SimulatedCharger("a4", "2.1", url, PASSWORDS["a4"])
        assert await second.connect() == "ocpp2.1"
        await second.wait_for(lambda s: "TxDefaultProfile" in s.installed)  # accepted before: pushed at once
        await asyncio.wait_for(first.websocket.wait_closed(), 5)
        assert first.websocket.close_code == 1000
        assert csms.links["a4"].version == "2.1"
        # a BootNotification on a running connection (the station rebooted): the fail-safe profiles come again
        held = len(second.received)
        assert await second.boot() == "Accepted"
        await second.wait_for(lambda s: len(s.received) >= held + 2)
        assert [purpose_of(p) for _, p in second.received[held:held + 2]] == ["ChargingStationMaxProfile",
                                                                             "TxDefaultProfile"]
        assert_schema_valid(second)
        await second.close()
        await until(lambda: "a4" not in csms.links, what="the link to go")

    run(scenario())


def test_the_memory_backend_serves_a_new_car_s_provisional_plan_before_the_optimum():
    """Its own backend (no server): after a first car's optimum, a second car's plug-in is announced twice, first
    with the provisional plan (the last plan with the car filled in, verified), then with the optimum."""
    now = datetime.now(timezone.utc)
    start = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
    backend = MemoryBackend(_site(start), PASSWORDS)
    served = []
    backend.subscribe(lambda changed: served.append((backend.plan.source, set(backend.plan.rows))))
    backend.start()
    try:
        def plug(charger, energy_kwh):
            count = backend.publications
            backend.plug_in(charger, {"id": f"car-{charger}", "charger": charger,
                                      "departure": (start + timedelta(hours=6)).isoformat(),
                                      "energy_kwh": energy_kwh})
            deadline = time.monotonic() + 60
            while backend.plan.source != "highs" or backend.publications == count \
                    or charger not in backend.plan.rows:
                assert time.monotonic() < deadline, served
                time.sleep(0.01)

        plug("a1", 20.0)
        served.clear()
        plug("a2", 15.0)
        sources = [source for source, _ in served]
        assert sources[0] == "provisional" and sources[-1] == "highs", served
        assert "a2" in served[0][1]  # the new car has a row in the provisional plan already
    finally:
        backend.stop()


# ----------------------------------------------------------------------------------------------------------------
# issue 14, "the holes": malformed frames and unhandled actions are answered as OCPP-J asks, with one log line


@pytest.mark.parametrize("charger, version, frames", [
    ("s1", "2.1", [
        ('[2,"d1","DataTransfer",{"vendorId":"acme"}]', ("d1", 3, {"status": "UnknownVendorId"})),
        ('[2,"n1","NotifyChargingLimit",{"chargingLimit":{"chargingLimitSource":"SO"}}]',
         ("n1", 4, "NotImplemented")),
        ('[2,"u1","NoSuchAction",{}]', ("u1", 4, "NotSupported")),
        ('{"not": "an array"', ("-1", 4, "RpcFrameworkError")),
        ('[7,"m1","Heartbeat",{}]', ("m1", 4, "MessageTypeNotSupported")),
        ('[2,"p1","Heartbeat"]', ("p1", 4, "RpcFrameworkError")),
        ('[2,"v1","Heartbeat",{"bogus":1}]', ("v1", 4, None)),  # against the schema: the package's CALLERROR
        ('[2,"h1","Heartbeat",{}]', ("h1", 3, None)),  # and the connection still works
    ]),
    ("a5", "2.0.1", [
        ('[2,"n1","NotifyChargingLimit",{"chargingLimit":{"chargingLimitSource":"SO"}}]',
         ("n1", 4, "NotImplemented")),
        ('[2,"u1","NoSuchAction",{}]', ("u1", 4, "NotSupported")),
        ('not json', ("-1", 4, "RpcFrameworkError")),
        ('[9,"m1"]', ("m1", 4, "MessageTypeNotSupported")),
        ('[2,"h1","Heartbeat",{}]', ("h1", 3, None)),
    ]),
    ("s2", "1.6", [
        ('[2,"u1","NoSuchAction",{}]', ("u1", 4, "NotSupported")),
        ('not json', ("-1", 4, "FormatViolation")),
        ('[7,"m1","Heartbeat",{}]', ("m1", 4, "ProtocolError")),
        ('[2,"h1","Heartbeat",{}]', ("h1", 3, None)),
    ]),
])
def test_malformed_frames_and_unhandled_actions_get_a_callerror_and_one_log_line(server, caplog, charger, version,
                                                                                  frames):
    """2.1 left DataTransfer, NotifyChargingLimit and unknown actions unanswered; broken JSON and a wrong
    MessageTypeId got no CALLERROR (any version) and a traceback in the log each."""
    import json

    headers = {"Authorization": "Basic " + base64.b64encode(f"{charger}:{PASSWORDS[charger]}".encode()).decode()}

    async def answer(ws, unique_id: str) -> list:
        while True:  # the central system's own calls (profile pushes) come in between: not ours to check
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if frame[0] != 2 and frame[1] == unique_id:
                return frame

    async def scenario():
        async with websockets.connect(f"{server['url']}/{charger}", subprotocols=[f"ocpp{version}"],
                                      additional_headers=headers) as ws:
            for raw, (unique_id, kind, expected) in frames:
                await ws.send(raw)
                frame = await answer(ws, unique_id)
                assert frame[0] == kind, (raw, frame)
                if expected is not None:
                    assert frame[2] == expected, (raw, frame)

    with caplog.at_level("INFO"):
        run(scenario())
    errors = [r for r in caplog.records if r.levelno >= 30 and charger in r.getMessage()]
    assert len(errors) == sum(1 for _, (_, kind, _) in frames if kind == 4), [r.getMessage() for r in errors]
    assert not [r for r in caplog.records if r.exc_info], "no traceback for a charger's protocol mistake"


def test_a_refused_plug_in_is_counted_by_its_reason_and_the_charger_keeps_its_default(server):
    """A transaction starting on a charger reserved later in the day: the default stay would overlap the
    reservation, the controller refuses the plug-in as ``charger_occupied`` (a typed reason, not words), the
    central system counts it under that reason and sends no TxProfile; the charger still holds its defaults."""
    backend, csms = server["backend"], server["csms"]
    now = backend.clock()
    reservation = {"id": "v3-reserved", "charger": "v3", "arrival": (now + timedelta(hours=1)).isoformat(),
                   "departure": (now + timedelta(hours=3)).isoformat(), "energy_kwh": 5.0}
    backend.plug_in("v3", reservation)
    before = csms.stats["refusals"].get("charger_occupied", 0)

    async def scenario():
        sim = SimulatedCharger("v3", "2.0.1", server["url"], PASSWORDS["v3"])
        await sim.connect()
        await sim.boot()
        await sim.start_transaction("tx-refused")
        await until(lambda: csms.stats["refusals"].get("charger_occupied", 0) > before, what="the refusal")
        await sim.wait_for(lambda s: "TxDefaultProfile" in s.installed)
        assert "TxProfile" not in sim.installed
        await sim.close()

    try:
        run(scenario())
    finally:
        backend.end("v3", "v3-reserved", None)  # the reservation cancelled
    assert any("(charger_occupied)" in p and "v3" in p for p in csms.problems)
