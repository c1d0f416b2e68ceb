"""The schedule service over real HTTP on loopback (uvicorn in a thread, httpx as the client).

The site is small and designed so that its optimum is unique and known: prices rise every period, so each car
charges as early and as fast as the 18 kW of transformer headroom allows (20 kW limit - 2 kW base load; car1
11 kW + car2 7 kW = 18 kW). Served profiles are decoded back to kW and checked by the independent verifier.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import sqlite3
import threading
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import httpx
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridcharge import load_instance, verify
from gridcharge.ocpp import VERSIONS, validate_payload
from gridcharge.service import create_app
from gridcharge.service.schemas import ChargerSettingsIn
from tests.loopback import serving

TZ = timezone(timedelta(hours=8))
START = datetime(2026, 7, 1, 0, 0, tzinfo=TZ)
STEP = timedelta(minutes=15)
PERIODS = 16
OPERATOR = "test-operator-token-0123456789"
BASE_KW = 2.0
ROOT_LIMIT_KW = 20.0


def site_instance() -> dict:
    return {
        "format": "gridcharge/instance-v1", "name": "service test site",
        "horizon": {"start": START.isoformat(), "step_minutes": 15, "periods": PERIODS},
        "nodes": [{"id": "T", "parent": None, "kind": "transformer", "import_limit_kw": ROOT_LIMIT_KW,
                   "base_load_kw": BASE_KW},
                  {"id": "M1", "parent": "T", "kind": "meter"}, {"id": "M2", "parent": "T", "kind": "meter"}],
        "chargers": [{"id": "c1", "node": "M1", "max_charge_kw": 11.0, "max_discharge_kw": 11.0},
                     {"id": "c2", "node": "M2", "max_charge_kw": 7.0, "phases": "A"},
                     {"id": "c3", "node": "M2", "max_charge_kw": 7.0},
                     {"id": "c4", "node": "M1", "max_charge_kw": 7.0, "voltage_v": 230.0}],
        "tariff": {"import_cny_per_kwh": [round(0.30 + 0.01 * t, 2) for t in range(PERIODS)]},
    }


SETTINGS = {"c4": {"rate_unit": "A", "voltage_v": 230.0}}
CAR1 = {"id": "car1", "charger": "c1", "departure": (START + timedelta(hours=3)).isoformat(), "energy_kwh": 20.0,
        "max_discharge_kw": 5.0}
CAR2 = {"id": "car2", "charger": "c2", "departure": (START + timedelta(hours=3)).isoformat(), "energy_kwh": 10.0}


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Server:
    """uvicorn in a thread on a free loopback port."""

    def __init__(self, database: str, clock: Clock, **options):
        self.app = create_app(database, operator_token=OPERATOR, clock=clock, interval_s=0.2, **options)
        self._serving = contextlib.ExitStack()
        port = self._serving.enter_context(serving(self.app, log_level="warning", lifespan="on", stop_timeout_s=60))
        self.url = f"http://127.0.0.1:{port}"
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def stop(self) -> None:
        self.client.close()
        self._serving.close()

    # helpers ---------------------------------------------------------------------------------------------------
    def op(self, method: str, path: str, headers: dict | None = None, **kwargs) -> httpx.Response:
        return self.client.request(method, path, headers={"Authorization": f"Bearer {OPERATOR}", **(headers or {})},
                                   **kwargs)

    def profile(self, charger: str, version: str, token: str, **headers) -> httpx.Response:
        return self.client.get(f"/v1/chargers/{charger}/profile", params={"ocpp": version},
                               headers={"Authorization": f"Bearer {token}", **headers})

    def published(self, site: str, seq: int, timeout_s: float = 60) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.op("GET", f"/v1/sites/{site}").json()
            if status["published_seq"] >= seq and status["publication"] is not None:
                return status
            assert time.monotonic() < deadline, f"event {seq} not published: {status}"
            time.sleep(0.05)


def _problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["type"].startswith("urn:gridcharge:problem:") and body["detail"]
    return body


def _fields(problem: dict) -> set:
    return {e["field"] for e in problem.get("errors", [])}


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    database = f"sqlite:///{tmp_path_factory.mktemp('service') / 'service.db'}"
    clock = Clock(START + timedelta(minutes=5))
    server = Server(database, clock, max_body_bytes=256 * 1024)
    created = server.op("PUT", "/v1/sites/s1", json={"instance": site_instance(), "charger_settings": SETTINGS})
    assert created.status_code == 201, created.text
    server.tokens = created.json()["charger_tokens"]
    server.clock = clock
    server.database = database
    seqs = [server.op("POST", "/v1/sites/s1/sessions", json=car).json()["event_seq"] for car in (CAR1, CAR2)]
    server.published("s1", seqs[-1])
    yield server
    server.stop()


def _decode_kw(payload: dict, version: str, unit_factor_kw: float, period_starts: list[datetime]) -> np.ndarray:
    """Power [kW] per period from a TxProfile (limit for 1.6/2.0.1, signed setpoint in 2.1 V2G periods)."""
    profile = payload["csChargingProfiles"] if version == "1.6" else payload["chargingProfile"]
    schedule = profile["chargingSchedule"] if version == "1.6" else profile["chargingSchedule"][0]
    start = datetime.fromisoformat(schedule["startSchedule"].replace("Z", "+00:00"))
    periods = schedule["chargingSchedulePeriod"]
    offsets = np.array([p["startPeriod"] for p in periods])
    out = []
    for moment in period_starts:
        k = int(np.searchsorted(offsets, (moment - start).total_seconds(), side="right")) - 1
        p = periods[k]
        out.append(p.get("setpoint", p["limit"]) * unit_factor_kw)
    return np.array(out)


# ----------------------------------------------------------------------------------------------------------------


def test_openapi_document(service):
    response = service.client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    assert {"put"} <= set(paths["/v1/sites/{site_id}"]) and {"get"} <= set(paths["/v1/sites/{site_id}"])
    assert {"post"} <= set(paths["/v1/sites/{site_id}/sessions"])
    assert {"patch", "delete"} <= set(paths["/v1/sites/{site_id}/sessions/{session_id}"])
    assert {"post"} <= set(paths["/v1/sites/{site_id}/caps"])
    fetch = paths["/v1/chargers/{charger_id}/profile"]["get"]
    ocpp = next(p for p in fetch["parameters"] if p["name"] == "ocpp")
    assert ocpp["in"] == "query" and ocpp["schema"]["enum"] == list(VERSIONS)
    assert {"chargerToken": []} in fetch["security"]
    assert set(document["components"]["securitySchemes"]) == {"operatorToken", "chargerToken"}
    assert "application/problem+json" in fetch["responses"]["401"]["content"]
    session_schema = document["components"]["schemas"]["SessionIn"]
    assert {"id", "charger", "departure", "energy_kwh"} <= set(session_schema["required"])


def test_profiles_validate_and_verify(service):
    """Every payload of every charger in every version is valid against the official schema; the TxProfiles,
    decoded back to kW, pass the independent verifier on the site with the two cars; the fail-safe limits are the
    hand-computed (20 - 2) / 4 = 4.5 kW."""
    now = service.clock()
    period = int((now - START) // STEP)
    period_starts = [START + STEP * t for t in range(period, PERIODS)]
    decoded = {}
    for version in VERSIONS:
        for charger in ("c1", "c2", "c3", "c4"):
            response = service.profile(charger, version, service.tokens[charger])
            assert response.status_code == 200, response.text
            document = response.json()
            assert document["ocpp_version"] == version and document["charger_id"] == charger
            payloads = document["set_charging_profile"]
            for payload in payloads:
                validate_payload(version, "SetChargingProfile", payload)
            purposes = [(p.get("csChargingProfiles") or p["chargingProfile"])["chargingProfilePurpose"]
                        for p in payloads]
            station = "ChargePointMaxProfile" if version == "1.6" else "ChargingStationMaxProfile"
            expected = [station, "TxDefaultProfile"] + (["TxProfile"] if charger in ("c1", "c2") else [])
            assert purposes == expected
            default = payloads[1]
            schedule = (default.get("csChargingProfiles") or default["chargingProfile"])["chargingSchedule"]
            limit = (schedule if version == "1.6" else schedule[0])["chargingSchedulePeriod"][0]["limit"]
            assert limit == (6.5 if charger == "c4" else 4500)  # 4.5 kW / (230 V x 3) = 6.52 A -> 6.5 A
            assert document["failsafe_limit_kw"] == pytest.approx(4.5)
            if charger in ("c1", "c2"):
                tx = payloads[2]
                tx_profile = tx.get("csChargingProfiles") or tx["chargingProfile"]
                assert tx_profile["validTo"] == (START + STEP * (period + 1) + timedelta(seconds=300)) \
                    .astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                decoded[(charger, version)] = _decode_kw(tx, version, 1e-3, period_starts)
            if version == "2.1" and charger == "c1":
                assert not document["charge_only"]
                first = tx_profile["chargingSchedule"][0]["chargingSchedulePeriod"][0]
                assert first["operationMode"] == "CentralSetpoint" and first["dischargeLimit"] <= 0
                assert tx_profile["maxOfflineDuration"] == 300
            elif version != "2.1":
                assert document["charge_only"]
    for charger in ("c1", "c2"):  # the three versions say the same (no discharge in this optimum)
        assert np.allclose(decoded[(charger, "1.6")], decoded[(charger, "2.1")])
        assert np.allclose(decoded[(charger, "1.6")], decoded[(charger, "2.0.1")])
    # the decoded profiles on the remaining horizon, checked by the independent verifier
    remaining = site_instance()
    remaining["horizon"].update(start=period_starts[0].isoformat(), periods=len(period_starts))
    remaining["tariff"]["import_cny_per_kwh"] = remaining["tariff"]["import_cny_per_kwh"][period:]
    remaining["sessions"] = [{**CAR1, "arrival": now.isoformat()}, {**CAR2, "arrival": now.isoformat()}]
    power = np.vstack([decoded[("c1", "1.6")], decoded[("c2", "1.6")]])
    verdict = verify(load_instance(remaining), power)
    assert verdict.ok, str(verdict)
    # the known optimum: both cars at full power from the start (18 kW = the whole headroom) while they need it
    assert power[0, 0] == pytest.approx(11.0) and power[1, 0] == pytest.approx(7.0)
    assert verdict.delivered_kwh == pytest.approx(30.0, abs=0.01)


def test_etag_and_cache_control(service):
    token = service.tokens["c1"]
    first = service.profile("c1", "2.0.1", token)
    etag = first.headers["etag"]
    assert first.headers["cache-control"] == "private, max-age=1"  # interval 0.2 s, whole seconds up
    assert etag == '"' + hashlib.sha256(first.content).hexdigest()[:32] + '"'
    again = service.profile("c1", "2.0.1", token, **{"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    other = service.profile("c1", "2.0.1", token, **{"If-None-Match": '"something-else"'})
    assert other.status_code == 200 and other.content == first.content
    assert service.profile("c1", "1.6", token, **{"If-None-Match": etag}).status_code == 200  # per version


def test_auth_rules(service):
    t1, t2 = service.tokens["c1"], service.tokens["c2"]
    missing = _problem(service.client.get("/v1/chargers/c1/profile", params={"ocpp": "1.6"}), 401)
    assert "token" in missing["detail"]
    assert service.client.get("/v1/chargers/c1/profile", params={"ocpp": "1.6"}).headers["www-authenticate"]
    _problem(service.profile("c1", "1.6", "gcc_not-a-real-token-at-all"), 401)
    _problem(service.profile("c1", "1.6", t2), 403)  # another charger's valid token
    _problem(service.profile("nope", "1.6", t2), 403)
    assert service.profile("c1", "1.6", OPERATOR).status_code == 200  # the operator may read any
    _problem(service.profile("nope", "1.6", OPERATOR), 404)
    charger = {"Authorization": f"Bearer {t1}"}
    _problem(service.client.get("/v1/sites/s1", headers=charger), 403)
    _problem(service.client.post("/v1/sites/s1/sessions", json={**CAR2, "id": "x", "charger": "c3"},
                                 headers=charger), 403)
    _problem(service.client.put("/v1/sites/s1", json={"instance": site_instance()}, headers=charger), 403)
    _problem(service.client.get("/v1/sites/s1"), 401)
    _problem(service.client.get("/v1/sites/s1", headers={"Authorization": "Basic abc"}), 401)
    # tokens are stored hashed only
    raw = sqlite3.connect(service.database.removeprefix("sqlite:///"))
    stored = dict(raw.execute("select charger_id, token_hash from charger_tokens").fetchall())
    operator_hash = raw.execute("select value from meta").fetchone()[0]
    raw.close()
    assert stored["c1"] == hashlib.sha256(t1.encode()).hexdigest() and operator_hash != OPERATOR
    with open(service.database.removeprefix("sqlite:///"), "rb") as handle:
        assert t1.encode() not in handle.read()


def test_bad_requests_name_the_field_and_change_nothing(service):
    before = service.op("GET", "/v1/sites/s1").json()
    late = (START + timedelta(hours=3)).isoformat()
    cases = [
        (service.op("POST", "/v1/sites/s1/sessions", content=b'{"id": "x", ',
                    headers={"content-type": "application/json"}), 400, "body"),
        (service.op("POST", "/v1/sites/s1/sessions", json={**CAR2, "id": "x", "charger": "c3", "colour": "red"}),
         422, "colour"),
        (service.op("POST", "/v1/sites/s1/sessions", json={**CAR2, "id": "x", "charger": "c3", "energy_kwh": -1}),
         422, "energy_kwh"),
        (service.op("POST", "/v1/sites/s1/sessions", json={**CAR2, "id": "x", "charger": "c3",
                                                            "energy_kwh": "ten"}), 422, "energy_kwh"),
        (service.op("POST", "/v1/sites/s1/sessions", json={"id": "x", "charger": "c3", "energy_kwh": 1}),
         422, "departure"),
        (service.op("POST", "/v1/sites/s1/sessions", json={**CAR2, "id": "x", "charger": "c3",
                                                            "departure": "2026-07-01T03:00:00"}), 422, "departure"),
        (service.op("POST", "/v1/sites/s1/sessions", json={**CAR2, "id": "x", "charger": "c9"}), 422, "charger"),
        (service.op("POST", "/v1/sites/s1/sessions", json={**CAR2, "id": "x"}), 409, "charger"),  # c2 occupied
        (service.op("POST", "/v1/sites/s1/sessions", json={**CAR2, "charger": "c3"}), 409, "id"),  # car2 again
        (service.op("POST", "/v1/sites/nowhere/sessions", json={**CAR2, "id": "x", "charger": "c3"}), 404,
         "path.site_id"),
        (service.op("PATCH", "/v1/sites/s1/sessions/ghost", json={"energy_kwh": 3}), 404, "path.session_id"),
        (service.op("PATCH", "/v1/sites/s1/sessions/car1", json={}), 422, "body"),
        (service.op("PATCH", "/v1/sites/s1/sessions/car1", json={"departure": "2026-06-30T23:00:00+08:00"}), 422,
         "departure"),
        (service.op("DELETE", "/v1/sites/s1/sessions/ghost"), 404, "path.session_id"),
        (service.op("POST", "/v1/sites/s1/caps", json={"node": "X", "import_limit_kw": 5, "start": late,
                                                        "end": late}), 422, "node"),
        (service.op("POST", "/v1/sites/s1/caps", json={"node": "T", "import_limit_kw": 5,
                                                        "start": (START + STEP).isoformat(),
                                                        "end": START.isoformat()}), 422, "end"),
        (service.op("PUT", "/v1/sites/s1", json={"instance": {**site_instance(), "chargers": [
            {"id": "c1", "node": "M1", "max_charge_kw": -3}]}}), 422, "instance.chargers[0].max_charge_kw"),
        (service.op("PUT", "/v1/sites/s1", json={"instance": site_instance(),
                                                 "charger_settings": {"c1": {"rate_unit": "kW"}}}), 422,
         "charger_settings.c1.rate_unit"),
        (service.op("PUT", "/v1/sites/s1", json={"instance": site_instance(),
                                                 "charger_settings": {"c77": {"rate_unit": "A"}}}), 422,
         "charger_settings.c77"),
        (service.op("PUT", "/v1/sites/s2", json={"instance": site_instance()}), 409, "instance.chargers[0].id"),
        (service.profile("c1", "1.7", service.tokens["c1"]), 422, "query.ocpp"),
        (service.profile("c1", "", service.tokens["c1"]), 422, "query.ocpp"),
        (service.op("POST", "/v1/sites/s1/sessions", content=b"x" * (300 * 1024),
                    headers={"content-type": "application/json"}), 413, "body"),
        (service.op("POST", "/v1/sites/s1/sessions", content=iter([b"[" + b"1," * 200_000 + b"1]"]),
                    headers={"content-type": "application/json"}), 413, "body"),  # chunked: no Content-Length
    ]
    for response, status, field in cases:
        problem = _problem(response, status)
        assert field in _fields(problem), (field, problem)
    after = service.op("GET", "/v1/sites/s1").json()
    assert (after["accepted_seq"], after["generation"], after["active_sessions"]) == \
           (before["accepted_seq"], before["generation"], before["active_sessions"])
    assert service.client.get("/v1/sites/s1/nothing-here").status_code == 404


def test_physical_bounds_of_instance_v1_hold_over_http(service):
    """issue 15: the service validates with the same models, so an absurd number is a 422 naming the field."""
    before = service.op("GET", "/v1/sites/s1").json()
    huge = site_instance()
    huge["chargers"][0]["max_charge_kw"] = 1e308
    problem = _problem(service.op("PUT", "/v1/sites/s1", json={"instance": huge}), 422)
    assert "instance.chargers[0].max_charge_kw" in _fields(problem), problem
    error = next(e for e in problem["errors"] if e["field"] == "instance.chargers[0].max_charge_kw")
    assert error["value"] == 1e308 and "10,000" in error["detail"], error
    tiny_volts = {"c4": {"rate_unit": "A", "voltage_v": 5e-324}}
    problem = _problem(service.op("PUT", "/v1/sites/s1", json={"instance": site_instance(),
                                                               "charger_settings": tiny_volts}), 422)
    assert "charger_settings.c4.voltage_v" in _fields(problem), problem
    problem = _problem(service.op("POST", "/v1/sites/s1/sessions",
                                  json={**CAR2, "id": "x", "charger": "c3", "energy_kwh": 1e308}), 422)
    assert "energy_kwh" in _fields(problem), problem
    after = service.op("GET", "/v1/sites/s1").json()
    assert (after["accepted_seq"], after["generation"]) == (before["accepted_seq"], before["generation"])


def test_a_charger_s_voltage_is_the_instance_s_and_a_different_one_in_its_settings_is_refused(service):
    """issue 16: one definition of a charger's voltage. The settings' default is none (the instance's holds, 220 V
    by default there); a settings voltage that contradicts the instance is a 422 naming the field and changes
    nothing."""
    assert ChargerSettingsIn().voltage_v is None
    before = service.op("GET", "/v1/sites/s1").json()
    clash = {"c4": {"rate_unit": "A", "voltage_v": 220.0}}  # the instance says 230 V for c4
    problem = _problem(service.op("PUT", "/v1/sites/s1", json={"instance": site_instance(),
                                                               "charger_settings": clash}), 422)
    error = next(e for e in problem["errors"] if e["field"] == "charger_settings.c4.voltage_v")
    assert error["value"] == 220.0 and "230 V" in error["detail"], error
    defaulted = site_instance()
    del defaulted["chargers"][3]["voltage_v"]  # c4 at the instance's default, 220 V
    problem = _problem(service.op("PUT", "/v1/sites/s1", json={"instance": defaulted, "charger_settings": SETTINGS}),
                       422)
    assert "220 V" in next(e for e in problem["errors"] if e["field"] == "charger_settings.c4.voltage_v")["detail"]
    after = service.op("GET", "/v1/sites/s1").json()
    assert (after["accepted_seq"], after["generation"]) == (before["accepted_seq"], before["generation"])


def test_demand_response_cap_and_period_advance(service):
    """A 12 kW cap on T for the next hour leaves 10 kW for the cars; the served profiles keep it. Then the clock
    moves one period on: the TxProfile starts at the new period."""
    now = service.clock()
    period = int((now - START) // STEP)
    window_end = START + STEP * (period + 4)
    response = service.op("POST", "/v1/sites/s1/caps", json={"node": "T", "import_limit_kw": 12.0,
                                                              "start": now.isoformat(),
                                                              "end": window_end.isoformat()})
    assert response.status_code == 201, response.text
    # durable before the 2xx: the event row is already in the file, read by another connection
    raw = sqlite3.connect(service.database.removeprefix("sqlite:///"))
    assert raw.execute("select kind from events where seq = ?", (response.json()["event_seq"],)).fetchone() == \
           ("cap",)
    raw.close()
    service.published("s1", response.json()["event_seq"])
    starts = [START + STEP * t for t in range(period, period + 4)]
    total = sum(_decode_kw(service.profile(c, "1.6", service.tokens[c]).json()["set_charging_profile"][2], "1.6",
                           1e-3, starts) for c in ("c1", "c2"))
    assert (total <= 12.0 - BASE_KW + 1e-3).all() and total[0] == pytest.approx(10.0, abs=1e-3)
    # the fail-safe default respects the cap in its window: (12 - 2) / 4 chargers = 2.5 kW, else 4.5 kW
    for charger in ("c1", "c3"):
        document = service.profile(charger, "2.1", service.tokens[charger]).json()
        default = document["set_charging_profile"][1]["chargingProfile"]["chargingSchedule"][0]
        assert [(p["startPeriod"], p["limit"]) for p in default["chargingSchedulePeriod"]] == \
            ([(0, 4500)] if period else []) + [(period * 900, 2500), ((period + 4) * 900, 4500)]
        assert document["failsafe_limit_kw"] == pytest.approx(2.5)
        validate_payload("2.1", "SetChargingProfile", document["set_charging_profile"][1])

    idle_etag = service.profile("c3", "2.1", service.tokens["c3"]).headers["etag"]
    busy_etag = service.profile("c1", "2.1", service.tokens["c1"]).headers["etag"]
    service.clock.now = now + STEP
    deadline = time.monotonic() + 60
    while True:
        status = service.op("GET", "/v1/sites/s1").json()
        if status["publication"]["start_period"] == period + 1:
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    tx = service.profile("c1", "2.0.1", service.tokens["c1"]).json()["set_charging_profile"][2]
    start = tx["chargingProfile"]["chargingSchedule"][0]["startSchedule"]
    assert start == (START + STEP * (period + 1)).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    # a charger without a car keeps its ETag across periods (its firmware gets 304s); one with a car does not
    assert service.profile("c3", "2.1", service.tokens["c3"], **{"If-None-Match": idle_etag}).status_code == 304
    assert service.profile("c1", "2.1", service.tokens["c1"], **{"If-None-Match": busy_etag}).status_code == 200


def test_reservation_meter_reading_and_end(service):
    """A reservation on c3 (arrival in an hour) gets a TxProfile at zero until it arrives and its 3 kWh after; a
    meter reading is accepted (a negative one is 422 naming the field); ending car2 removes its TxProfile."""
    now = service.clock()
    period = int((now - START) // STEP)
    arrival = START + STEP * (period + 4)
    body = {"id": "car3", "charger": "c3", "arrival": arrival.isoformat(),
            "departure": (arrival + timedelta(hours=1)).isoformat(), "energy_kwh": 3.0}
    seq = service.op("POST", "/v1/sites/s1/sessions", json=body).json()["event_seq"]
    reading = service.op("PATCH", "/v1/sites/s1/sessions/car1", json={"energy_delivered_kwh": 5.0})
    assert reading.status_code == 200, reading.text
    bad = _problem(service.op("PATCH", "/v1/sites/s1/sessions/car1", json={"energy_delivered_kwh": -1.0}), 422)
    assert "energy_delivered_kwh" in _fields(bad)
    ended = service.op("DELETE", "/v1/sites/s1/sessions/car2")
    assert ended.status_code == 200, ended.text
    service.published("s1", ended.json()["event_seq"])
    starts = [START + STEP * t for t in range(period, period + 8)]
    tx = service.profile("c3", "2.0.1", service.tokens["c3"]).json()["set_charging_profile"][2]
    power = _decode_kw(tx, "2.0.1", 1e-3, starts)
    assert (power[:4] == 0).all() and power[4:].sum() * 0.25 == pytest.approx(3.0, abs=0.01)
    purposes = [p["csChargingProfiles"]["chargingProfilePurpose"]
                for p in service.profile("c2", "1.6", service.tokens["c2"]).json()["set_charging_profile"]]
    assert purposes == ["ChargePointMaxProfile", "TxDefaultProfile"]
    assert service.op("DELETE", "/v1/sites/s1/sessions/car2").status_code == 404  # gone
    assert seq < ended.json()["event_seq"]


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False)
                     | st.text(max_size=12), lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
_SESSION_KEYS = ["id", "charger", "departure", "energy_kwh", "arrival", "max_charge_kw", "max_discharge_kw",
                 "battery_kwh", "initial_kwh", "min_kwh", "colour"]
_VALUES = _JSON | st.sampled_from(["c3", "c4", "c9", (START + timedelta(hours=2)).isoformat(), "2026-07-01",
                                   "2026-07-01T02:00:00+08:00", 5.0, -1.0, 0.0, 1e308])


@given(kind=st.sampled_from(["session", "patch", "cap"]),
       body=st.dictionaries(st.sampled_from(_SESSION_KEYS + ["node", "import_limit_kw", "start", "end",
                                                           "energy_delivered_kwh"]), _VALUES, max_size=6)
       | _JSON)
def test_no_body_yields_a_500_or_a_partial_write(service, kind, body):
    """Whatever JSON arrives, the answer is a 2xx or a problem+json 4xx naming a field, and the site's event log
    grows only with a 2xx."""
    before = service.op("GET", "/v1/sites/s1").json()["accepted_seq"]
    path = {"session": ("POST", "/v1/sites/s1/sessions"), "patch": ("PATCH", "/v1/sites/s1/sessions/car1"),
            "cap": ("POST", "/v1/sites/s1/caps")}[kind]
    response = service.op(*path, content=json.dumps(body).encode(), headers={"content-type": "application/json"})
    after = service.op("GET", "/v1/sites/s1").json()["accepted_seq"]
    if response.status_code < 300:
        assert response.status_code in (200, 201) and after == before + 1
    else:
        problem = _problem(response, response.status_code)
        assert response.status_code in (400, 404, 409, 413, 422) and problem["errors"] and after == before


def test_restart_loses_nothing(tmp_path):
    """Stop the server, start a new one on the same SQLite file: same profiles and ETags, tokens still valid,
    sessions still known (a further update is accepted and re-optimised)."""
    database = f"sqlite:///{tmp_path / 'restart.db'}"
    clock = Clock(START + timedelta(minutes=20))
    first = Server(database, clock)
    try:
        tokens = first.op("PUT", "/v1/sites/r", json={"instance": site_instance(),
                                                       "charger_settings": SETTINGS}).json()["charger_tokens"]
        seq = first.op("POST", "/v1/sites/r/sessions", json=CAR1).json()["event_seq"]
        seq = first.op("POST", "/v1/sites/r/sessions", json={**CAR2, "charger": "c4"}).json()["event_seq"]
        first.published("r", seq)
        before = {(c, v): first.profile(c, v, tokens[c]) for c in ("c1", "c4") for v in VERSIONS}
        status_before = first.op("GET", "/v1/sites/r").json()
    finally:
        first.stop()
    journal = sqlite3.connect(tmp_path / "restart.db").execute("pragma journal_mode").fetchone()[0]
    assert journal == "wal"

    second = Server(database, clock)
    try:
        for (charger, version), response in before.items():  # served at once from the stored publication
            again = second.profile(charger, version, tokens[charger])
            assert again.status_code == 200 and again.headers["etag"] == response.headers["etag"]
            assert again.content == response.content
        second.published("r", status_before["published_seq"])
        time.sleep(1.0)  # worker passes: the stored plan is adopted, nothing is re-solved
        status = second.op("GET", "/v1/sites/r").json()
        assert status["solve_seconds"] is None, status
        assert status["active_sessions"] == 2 and status["accepted_seq"] == status_before["accepted_seq"]
        for (charger, version), response in before.items():  # the stored plan still: same bytes, same ETag
            assert second.profile(charger, version, tokens[charger],
                                  **{"If-None-Match": response.headers["etag"]}).status_code == 304
        update = second.op("PATCH", "/v1/sites/r/sessions/car1", json={"energy_kwh": 5.0})
        assert update.status_code == 200, update.text
        second.published("r", update.json()["event_seq"])
        changed = second.profile("c1", "1.6", tokens["c1"], **{"If-None-Match": before[("c1", "1.6")].headers["etag"]})
        assert changed.status_code == 200
        assert second.op("POST", "/v1/sites/r/sessions", json=CAR1).status_code == 409  # car1 is still known
        # the solver process dies: the next event rebuilds it from the stored events, nothing is lost
        second.app.state.engine.sites["r"].solver.process.kill()
        again = second.op("PATCH", "/v1/sites/r/sessions/car1", json={"energy_kwh": 6.0})
        assert again.status_code == 200
        deadline = time.monotonic() + 60
        while (status := second.op("GET", "/v1/sites/r").json())["solver_rebuilds"] < 1 \
                or status["published_seq"] < again.json()["event_seq"]:
            assert time.monotonic() < deadline, status
            time.sleep(0.05)
        assert status["divergences"] == [] and status["active_sessions"] == 2
        tx = second.profile("c1", "1.6", tokens["c1"]).json()["set_charging_profile"][2]
        periods = tx["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"]
        arrived = 300  # car1 arrived 5 minutes into the period the TxProfile starts with [s]
        assert sum((max(b["startPeriod"], arrived) - max(a["startPeriod"], arrived)) * a["limit"]
                   for a, b in zip(periods, periods[1:])) / 3.6e6 == pytest.approx(6.0, abs=0.01)  # [W s → kWh]
        # replacing the site: 200, new tokens (the old ones are dead), its sessions dropped
        replaced = second.op("PUT", "/v1/sites/r", json={"instance": site_instance()})
        assert replaced.status_code == 200 and replaced.json()["generation"] == 2
        _problem(second.profile("c1", "1.6", tokens["c1"]), 401)
        fresh = replaced.json()["charger_tokens"]["c1"]
        assert fresh != tokens["c1"] and second.profile("c1", "1.6", fresh).status_code == 200
        assert second.op("GET", "/v1/sites/r").json()["active_sessions"] == 0
        assert second.op("PUT", "/v1/sites/r", json={"instance": {**site_instance(), "chargers": 5}}) \
            .status_code == 422
    finally:
        second.stop()


def test_a_restart_serves_the_last_published_plan_of_a_tied_day(tmp_path):
    """At a flat price every plan that meets the cars' requests is optimal. The restart re-solved and landed on
    another optimum: most ETags changed. Now the stored plan is adopted: the same ETags, and the next period serves
    the rest of the same plan, as the service would have without the restart."""
    database = f"sqlite:///{tmp_path / 'tied.db'}"
    clock = Clock(START + timedelta(minutes=5))
    instance = {**site_instance(), "tariff": {"import_cny_per_kwh": 0.5},
                "nodes": [{"id": "T", "parent": None, "kind": "transformer", "import_limit_kw": 60.0,
                           "base_load_kw": BASE_KW}],
                "chargers": [{"id": f"t{i}", "node": "T", "max_charge_kw": 11.0} for i in range(12)]}
    first = Server(database, clock)
    try:
        tokens = first.op("PUT", "/v1/sites/tied", json={"instance": instance}).json()["charger_tokens"]
        for i in range(12):  # one at a time: each a warm re-solve from the last plan
            seq = first.op("POST", "/v1/sites/tied/sessions", json={
                "id": f"car{i}", "charger": f"t{i}", "energy_kwh": 4.0 + i % 5,
                "departure": (START + timedelta(hours=2, minutes=15 * (i % 4))).isoformat()}).json()["event_seq"]
            first.published("tied", seq)
        etags = {c: first.profile(c, "2.0.1", tokens[c]).headers["etag"] for c in tokens}
        rows = dict(first.app.state.engine.sites["tied"].served.rows)
    finally:
        first.stop()
    second = Server(database, clock)
    try:
        deadline = time.monotonic() + 3  # the old service re-solved at once after the restart
        while (second.op("GET", "/v1/sites/tied").json()["solve_seconds"] or {}).get("count", 0) < 1 \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        changed = [c for c in tokens if second.profile(c, "2.0.1", tokens[c]).headers["etag"] != etags[c]]
        assert changed == [], f"{len(changed)} of {len(tokens)} ETags changed after the restart: {changed}"
        clock.now += STEP  # the next period: the rest of the same plan (a refresh, no re-solve)
        deadline = time.monotonic() + 30
        while second.app.state.engine.sites["tied"].served.start_period < 1:
            assert time.monotonic() < deadline, "no publication for the next period"
            time.sleep(0.05)
        served = second.app.state.engine.sites["tied"].served
        assert set(served.rows) == set(rows)
        for charger, row in rows.items():
            np.testing.assert_allclose(served.rows[charger], row[1:], atol=1e-9)
    finally:
        second.stop()


def test_a_plug_in_is_served_a_provisional_plan_first_then_the_optimum(tmp_path):
    """After a second car plugs in, the solver process hands over the last plan with the new car filled into its
    headroom (verified) before it re-optimises; both are served and both reach the publication listeners, and the
    site's status counts the time to the first one apart from the time to the optimum."""
    clock = Clock(START + timedelta(minutes=5))
    server = Server(f"sqlite:///{tmp_path / 'provisional.db'}", clock)
    try:
        server.op("PUT", "/v1/sites/p", json={"instance": site_instance(), "charger_settings": SETTINGS})
        server.published("p", server.op("POST", "/v1/sites/p/sessions", json=CAR1).json()["event_seq"])
        seen = []
        server.app.state.engine.publication_listeners.append(lambda runtime, before, after: seen.append(after))
        seq = server.op("POST", "/v1/sites/p/sessions", json=CAR2).json()["event_seq"]
        status = server.published("p", seq)
        assert [served.source for served in seen] == ["provisional", "highs"], [s.status for s in seen]
        provisional, optimum = seen
        assert provisional.status.startswith("provisional") and provisional.after_seq == seq
        assert "c2" in provisional.rows and provisional.rows["c2"].max() > 0  # the new car charges at once
        assert optimum.status == "optimal" and status["publication"]["source"] == "highs"
        first, full = status["first_publication_latency"], status["reoptimisation_latency"]
        assert first["count"] == full["count"] == 2 and first["max_s"] <= full["max_s"]
    finally:
        server.stop()


def test_news_interrupts_the_solver_process_which_replies_with_its_interim_plan_and_goes_on_next_pass():
    """A long re-solve in the child process stops when the engine says events are waiting (``interrupt``): the
    reply comes at once with the optimum pending, and the next pass continues it."""
    from gridcharge.bench.generate import residential
    from gridcharge.online.feed import PlugIn
    from gridcharge.service.runtime import SERVICE_OPTIONS
    from gridcharge.service.solver import AdvanceOp, EventOp, SolverProcess

    day = residential(3000, seed=3)
    sessions = day.pop("sessions")
    day["sessions"] = []
    solver = SolverProcess(day, SERVICE_OPTIONS)
    try:
        solver.run([AdvanceOp(0)], None)  # the child is up
        ops = [EventOp(0, PlugIn(session), i + 1) for i, session in enumerate(sessions)]
        done = threading.Event()

        def news():  # events keep arriving while the solver works
            while not done.wait(0.05):
                solver.interrupt()

        thread = threading.Thread(target=news, daemon=True)
        thread.start()
        began = time.monotonic()
        reply = solver.run(ops, "resolve")
        stopped_after = time.monotonic() - began
        done.set()
        thread.join()
        assert reply.optimum_pending and "interrupted (news is waiting)" in reply.plan.status, reply.plan.status
        assert reply.plan.power_kw.shape[0] == len(sessions)  # every car has a (verified) set-point already
        solver.interrupt()  # no re-solve runs now: nothing is sent, the next pass is not disturbed
        assert solver.run([], None).divergences == []
        assert stopped_after < 60
    finally:
        solver.close()


def test_operator_token_generated_once(tmp_path):
    """Without a token the first start makes one (returned once), later starts keep the stored hash."""
    database = f"sqlite:///{tmp_path / 'token.db'}"
    app = create_app(database, start_worker=False)
    token = app.state.new_operator_token
    assert token.startswith("gco_") and len(token) > 40
    again = create_app(database, start_worker=False)
    assert again.state.new_operator_token is None
    stored = sqlite3.connect(tmp_path / "token.db").execute("select value from meta").fetchone()[0]
    assert stored == hashlib.sha256(token.encode()).hexdigest()
    for built in (app, again):
        built.state.engine.stop()
        built.state.store.close()


def test_serve_command_prints_a_new_operator_token_once(tmp_path):
    """`gridcharge serve` as a user starts it: no token given → one is printed once and works; a restart on the
    same database prints none and still accepts it."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "GRIDCHARGE_OPERATOR_TOKEN"}
    database = f"sqlite:///{tmp_path / 'cli.db'}"

    def start():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        process = subprocess.Popen([sys.executable, "-m", "gridcharge.cli", "serve", "--port", str(port),
                                    "--database", database], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env=env, cwd=tmp_path)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/v1/health", timeout=1).status_code == 200:
                    return process, url
            except httpx.HTTPError:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)

    def stop(process) -> tuple[str, str]:
        process.terminate()
        return process.communicate(timeout=60)

    process, url = start()
    try:
        operator = {"Authorization": "Bearer " + process.stdout.readline().split(": ")[-1].strip()}
        created = httpx.put(url + "/v1/sites/cli", json={"instance": site_instance()}, headers=operator)
        assert created.status_code == 201, created.text
    finally:
        out, err = stop(process)
    assert "Traceback" not in err
    process, url = start()
    try:
        assert httpx.get(url + "/v1/sites/cli", headers=operator).status_code == 200
    finally:
        out, err = stop(process)
    assert "operator token" not in out and "Traceback" not in err


def test_serve_port_0_prints_the_port_it_got(tmp_path):
    """issue 15: `serve --port 0` printed http://127.0.0.1:0; it prints the port it listens on."""
    import os
    import re
    import subprocess
    import sys

    env = {**os.environ, "GRIDCHARGE_OPERATOR_TOKEN": OPERATOR}
    process = subprocess.Popen([sys.executable, "-m", "gridcharge.cli", "serve", "--port", "0", "--database",
                                f"sqlite:///{tmp_path / 'port0.db'}"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        line = process.stderr.readline()
        found = re.match(r"gridcharge serve: http://127\.0\.0\.1:(\d+) \(database ", line)
        assert found, line
        port = int(found[1])
        assert port != 0
        assert httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=30).status_code == 200
    finally:
        process.terminate()
        _, err = process.communicate(timeout=60)
    assert "Traceback" not in err


def test_charger_tokens_fit_ocpp_password_limits_and_the_operator_token_is_longer():
    """A charger uses its token as its OCPP Basic-auth password: 1.6 AuthorizationKey 16-20 bytes, 2.0.1
    BasicAuthPassword 16-40 characters."""
    from gridcharge.service.auth import CHARGER_PREFIX, OPERATOR_PREFIX, new_token

    chargers = {new_token(CHARGER_PREFIX) for _ in range(200)}
    assert len(chargers) == 200
    assert all(16 <= len(t.encode("ascii")) <= 20 and t.startswith("gcc_") for t in chargers)
    assert len(new_token(OPERATOR_PREFIX)) >= 40


def test_the_services_database_and_token_files_are_ignored_by_git():
    """issue 15: site-tokens.json holds charger tokens; the README's service example writes it in the checkout."""
    import shutil
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    names = ["gridcharge.db", "gridcharge.db-wal", "gridcharge.db-shm", "site.json", "site-tokens.json"]
    result = subprocess.run(["git", "check-ignore", "--no-index", *names], cwd=root, capture_output=True, text=True)
    assert sorted(result.stdout.split()) == sorted(names), result.stdout + result.stderr


# ----------------------------------------------------------------------------------------------------------------
# issue 14, "the holes": each test below failed before its fix


def _own_site(service, site_id: str) -> str:
    """A site of its own on the shared server (chargers ``<site_id>-c1`` ..); returns the id of its first charger."""
    instance = site_instance()
    instance["chargers"] = [{**c, "id": f"{site_id}-{c['id']}"} for c in instance["chargers"]]
    created = service.op("PUT", f"/v1/sites/{site_id}", json={"instance": instance})
    assert created.status_code == 201, created.text
    return instance["chargers"][0]["id"]


def test_a_non_latin1_session_id_gets_a_percent_encoded_location_and_is_addressable(service):
    """车-1 was committed, then the Location header raised: 500 'nothing was changed', and a retry got 409."""
    charger = _own_site(service, "latin")
    session = {"id": "车-1", "charger": charger, "departure": (service.clock.now + timedelta(hours=2)).isoformat(),
               "energy_kwh": 2.0}
    created = service.op("POST", "/v1/sites/latin/sessions", json=session)
    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/v1/sites/latin/sessions/%E8%BD%A6-1"
    assert created.json()["session_id"] == "车-1"
    assert service.op("POST", "/v1/sites/latin/sessions", json=session).status_code == 409  # committed once
    changed = service.op("PATCH", created.headers["location"], json={"energy_kwh": 1.0})
    assert changed.status_code == 200 and changed.json()["session_id"] == "车-1", changed.text
    assert service.op("DELETE", created.headers["location"]).status_code == 200


def test_a_session_id_with_a_slash_is_addressable(service):
    """The OCPP central system names its sessions ``<charger>/<transaction>``: PATCH and DELETE reach them (the id
    percent-encoded as one segment, or with its slash as it is)."""
    charger = _own_site(service, "slash")
    session = {"id": f"{charger}/tx-7", "charger": charger,
               "departure": (service.clock.now + timedelta(hours=2)).isoformat(), "energy_kwh": 2.0}
    created = service.op("POST", "/v1/sites/slash/sessions", json=session)
    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"/v1/sites/slash/sessions/{charger}%2Ftx-7"
    changed = service.op("PATCH", created.headers["location"], json={"energy_kwh": 1.0})
    assert changed.status_code == 200 and changed.json()["session_id"] == f"{charger}/tx-7", changed.text
    assert service.op("PATCH", f"/v1/sites/slash/sessions/{charger}/tx-7", json={"energy_kwh": 1.5}).status_code \
        == 200
    ended = service.op("DELETE", f"/v1/sites/slash/sessions/{charger}%2Ftx-7")
    assert ended.status_code == 200 and ended.json()["session_id"] == f"{charger}/tx-7"
    _problem(service.op("DELETE", f"/v1/sites/slash/sessions/{charger}%2Ftx-7"), 404)


@pytest.mark.parametrize("site_id, charger_id, field", [
    ("ok-site", "c/1", "instance.chargers[0].id"),
    ("ok-site", "c:1", "instance.chargers[0].id"),  # a Basic-auth user cannot hold a colon
    ("ok-site", "x" * 49, "instance.chargers[0].id"),
    ("ok-site", "wallbox 1", "instance.chargers[0].id"),
    ("ok-site", "充电桩", "instance.chargers[0].id"),
    ("s" * 49, "c1-grammar", "path.site_id"),
    ("site%20one", "c1-grammar", "path.site_id"),  # a space, percent-encoded in the URL
    ("%E7%AB%99", "c1-grammar", "path.site_id"),  # non-ASCII
])
def test_site_and_charger_ids_follow_the_ocpp_identity_grammar(service, site_id, charger_id, field):
    """Ids with '/' were accepted (201), then their profile was 404 and their OCPP handshake 403."""
    instance = {**site_instance(), "chargers": [{"id": charger_id, "node": "M1", "max_charge_kw": 7.0}]}
    problem = _problem(service.op("PUT", f"/v1/sites/{site_id}", json={"instance": instance}), 422)
    assert field in _fields(problem), problem
    assert service.op("GET", f"/v1/sites/{site_id}").status_code in (404, 422)


def test_the_longest_ocpp_identity_is_a_valid_charger_and_site_id(service):
    ident = "A-z_0.9*=+|@~!" + "x" * 34
    assert len(ident) == 48
    instance = {**site_instance(), "chargers": [{"id": ident, "node": "M1", "max_charge_kw": 7.0}]}
    created = service.op("PUT", f"/v1/sites/{quote(ident, safe='')}", json={"instance": instance})
    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"/v1/sites/{quote(ident, safe='')}"
    token = created.json()["charger_tokens"][ident]
    assert service.client.get(f"/v1/chargers/{quote(ident, safe='')}/profile", params={"ocpp": "2.0.1"},
                              headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_405_names_the_allowed_methods(service):
    for method, path, allowed in [("POST", "/v1/sites/s1", {"GET", "PUT"}),
                                  ("GET", "/v1/sites/s1/sessions", {"POST"}),
                                  ("PUT", "/v1/sites/s1/sessions/car1", {"PATCH", "DELETE"}),
                                  ("DELETE", "/v1/chargers/c1/profile", {"GET"})]:
        problem = _problem(service.op(method, path), 405)
        answer = service.op(method, path)
        assert {m.strip() for m in answer.headers["allow"].split(",")} == allowed, (method, path, answer.headers)
        assert problem["title"] == "Method Not Allowed"


def test_openapi_says_ocpp_is_required_and_times_are_date_times(service):
    document = service.client.get("/openapi.json").json()
    fetch = document["paths"]["/v1/chargers/{charger_id}/profile"]["get"]
    ocpp = [p for p in fetch["parameters"] if p["name"] == "ocpp"]
    assert len(ocpp) == 1 and ocpp[0]["required"] is True and ocpp[0]["in"] == "query"
    assert ocpp[0]["schema"]["enum"] == list(VERSIONS)
    schemas = document["components"]["schemas"]

    def formats(schema: dict) -> set:
        return {schema.get("format")} | {b.get("format") for b in schema.get("anyOf", [])}

    for model, names in [("SessionIn", ("departure", "arrival")), ("SessionPatch", ("departure",)),
                         ("CapIn", ("start", "end"))]:
        for name in names:
            assert "date-time" in formats(schemas[model]["properties"][name]), (model, name)
    # still answered as before: a missing ocpp is a 400 naming query.ocpp, on the fast path and the FastAPI route
    problem = _problem(service.client.get("/v1/chargers/c1/profile",
                                          headers={"Authorization": f"Bearer {service.tokens['c1']}"}), 400)
    assert "query.ocpp" in _fields(problem)


def test_a_stopped_solver_process_is_restarted_and_reported_and_other_sites_keep_being_published(tmp_path):
    """A solver process stopped with SIGSTOP (not dead) blocked the re-optimisation of every site for as long as it
    hung, and the status showed no error."""
    import os
    import signal

    clock = Clock(START + timedelta(minutes=5))
    server = Server(f"sqlite:///{tmp_path / 'stall.db'}", clock, solver_stall_s=2.0)
    stopped = None
    try:
        for site in ("hang", "live"):
            instance = site_instance()
            instance["chargers"] = [{**c, "id": f"{site}-{c['id']}"} for c in instance["chargers"]]
            assert server.op("PUT", f"/v1/sites/{site}", json={"instance": instance}).status_code == 201
            seq = server.op("POST", f"/v1/sites/{site}/sessions",
                            json={**CAR2, "charger": f"{site}-c2"}).json()["event_seq"]
            server.published(site, seq)
        stopped = server.app.state.engine.sites["hang"].solver.process.pid
        os.kill(stopped, signal.SIGSTOP)
        hung = server.op("POST", "/v1/sites/hang/sessions", json={**CAR1, "charger": "hang-c1"})
        live = server.op("POST", "/v1/sites/live/sessions", json={**CAR1, "charger": "live-c1"})
        assert hung.status_code == live.status_code == 201
        server.published("live", live.json()["event_seq"], timeout_s=30)  # not held up by the stopped one
        status = server.published("hang", hung.json()["event_seq"], timeout_s=30)  # its rebuilt solver published
        assert status["solver_stalls"]["count"] >= 1 and status["solver_stalls"]["last_s"] >= 2.0, status
        assert status["solver_rebuilds"] >= 1 and status["divergences"] == [] and status["active_sessions"] == 2
        assert server.app.state.engine.sites["hang"].solver.process.pid != stopped
    finally:
        if stopped is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(stopped, signal.SIGKILL)
        server.stop()


def test_an_error_after_the_commit_does_not_claim_that_nothing_changed(service):
    charger = _own_site(service, "late-error")
    runtime = service.app.state.engine.sites["late-error"]

    def broken() -> None:
        raise RuntimeError("after the commit")

    kept, runtime.solver.interrupt = runtime.solver.interrupt, broken  # runs after the event is committed
    try:
        answer = service.op("POST", "/v1/sites/late-error/sessions", json={
            "id": "late", "charger": charger, "energy_kwh": 1.0,
            "departure": (service.clock.now + timedelta(hours=2)).isoformat()})
    finally:
        runtime.solver.interrupt = kept
    problem = _problem(answer, 500)
    assert "nothing was changed" not in problem["detail"] and "committed" in problem["detail"]
    service.client.close()  # uvicorn drops a connection after a 500: the next request takes a new one
    service.client = httpx.Client(base_url=service.url, timeout=30)
    assert service.op("GET", "/v1/sites/late-error").json()["accepted_seq"] > 0  # it was


def test_a_solver_rebuilt_while_idle_keeps_the_published_plan(tmp_path):
    """A solver process that dies between events is rebuilt from the store; the plan it had published (which
    includes every event) stands: the next period serves its rest, no re-solve picks another optimum."""
    clock = Clock(START + timedelta(minutes=5))
    server = Server(f"sqlite:///{tmp_path / 'idle.db'}", clock)
    try:
        instance = {**site_instance(), "tariff": {"import_cny_per_kwh": 0.5}}
        assert server.op("PUT", "/v1/sites/idle", json={"instance": instance}).status_code == 201
        for car in (CAR1, CAR2, {**CAR2, "id": "car3", "charger": "c3", "energy_kwh": 6.0}):
            seq = server.op("POST", "/v1/sites/idle/sessions", json=car).json()["event_seq"]
            server.published("idle", seq)
        runtime = server.app.state.engine.sites["idle"]
        rows, solves = dict(runtime.served.rows), server.op("GET", "/v1/sites/idle").json()["solve_seconds"]["count"]
        runtime.solver.process.kill()
        runtime.solver.process.wait(timeout=10)
        clock.now += STEP
        deadline = time.monotonic() + 60
        while (status := server.op("GET", "/v1/sites/idle").json())["solver_rebuilds"] < 1 \
                or runtime.served.start_period < 1:
            assert time.monotonic() < deadline, status
            time.sleep(0.05)
        assert status["solve_seconds"]["count"] == solves + 1  # the rebuilt solver's refresh for the new period
        assert runtime.served.source == "highs" and set(runtime.served.rows) == set(rows)
        for charger, row in rows.items():
            np.testing.assert_allclose(runtime.served.rows[charger], row[1:], atol=1e-9)
    finally:
        server.stop()
