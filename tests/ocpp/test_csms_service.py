"""OCPP on the schedule service (``gridcharge serve --ocpp``): real ``ocpp`` clients and real HTTP on one loopback
port. The operator creates the site over HTTP (tokens shown once); chargers log in over OCPP with those tokens;
what they are pushed is exactly what the firmware API serves for them (plus the transaction binding)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from datetime import datetime, timezone

import httpx
import pytest

from gridcharge.ocpp.csms import purpose_of, schedule_of
from gridcharge.ocpp.profiles import validate_payload
from gridcharge.ocpp.simulator import SimulatedCharger
from tests.loopback import serving

OPERATOR = "operator-token-for-tests-0123456789"


def _site(start: datetime) -> dict:
    prices = [0.3] * 96
    for j in range(8, 16):
        prices[j] = 1.5
    return {"format": "gridcharge/instance-v1", "name": "svc-ocpp",
            "horizon": {"start": start.isoformat(), "step_minutes": 15, "periods": 96},
            "nodes": [{"id": "tx", "kind": "transformer", "import_limit_kw": 40.0, "base_load_kw": 8.0}],
            "chargers": [{"id": "w1", "node": "tx", "max_charge_kw": 11.0},
                         {"id": "w2", "node": "tx", "max_charge_kw": 11.0, "max_discharge_kw": 11.0},
                         {"id": "w3", "node": "tx", "max_charge_kw": 7.4, "voltage_v": 230.0}],
            "tariff": {"import_cny_per_kwh": prices, "export_cny_per_kwh": prices}}


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    from gridcharge.service import create_app
    from gridcharge.service.ocpp_backend import mount_ocpp

    database = tmp_path_factory.mktemp("ocpp-service") / "gc.db"
    app = create_app(f"sqlite:///{database}", operator_token=OPERATOR, interval_s=30)
    csms = mount_ocpp(app, meter_interval_s=0, response_timeout_s=10)
    now = datetime.now(timezone.utc)
    start = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
    with serving(app) as port, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        answer = http.put("/v1/sites/s1", json={"instance": _site(start),
                                                "charger_settings": {"w3": {"rate_unit": "A", "voltage_v": 230.0}}},
                          headers={"Authorization": f"Bearer {OPERATOR}"})
        assert answer.status_code == 201, answer.text
        yield {"http": http, "port": port, "tokens": answer.json()["charger_tokens"], "csms": csms,
               "url": f"ws://127.0.0.1:{port}/ocpp", "engine": app.state.engine}


def fetched(service, charger_id: str, version: str) -> list[dict]:
    answer = service["http"].get(f"/v1/chargers/{charger_id}/profile", params={"ocpp": version},
                                 headers={"Authorization": f"Bearer {service['tokens'][charger_id]}"})
    assert answer.status_code == 200, answer.text
    return answer.json()["set_charging_profile"]


def bound(payload: dict, transaction_id: str, evse: int) -> dict:
    """A firmware-API TxProfile with the transaction binding the central system adds."""
    return {**payload, "evseId": evse, "chargingProfile": {**payload["chargingProfile"],
                                                            "transactionId": transaction_id}}


async def until(condition, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_v2g_charger_on_the_service_gets_what_the_firmware_api_serves(service):
    engine = service["engine"]
    runtime = engine.sites["s1"]

    async def scenario():
        sim = SimulatedCharger("w2", "2.1", service["url"], service["tokens"]["w2"])
        assert await sim.connect() == "ocpp2.1"
        await sim.boot()
        await sim.wait_for(lambda s: "TxDefaultProfile" in s.installed)
        served = {purpose_of(p): p for p in fetched(service, "w2", "2.1")}
        assert sim.installed["TxDefaultProfile"] == served["TxDefaultProfile"]
        assert sim.installed["ChargingStationMaxProfile"] == served["ChargingStationMaxProfile"]

        await sim.start_transaction("TX-w2")
        departure = runtime.grid.time_of(runtime.grid.period_of(engine.clock()) + 24)
        await sim.needs({"requestedEnergyTransfer": "DC_BPT",
                         "departureTime": departure.strftime("%Y-%m-%dT%H:%M:%SZ"),
                         "v2xChargingParameters": {"maxChargePower": 11000, "maxDischargePower": 11000,
                                                   "evTargetEnergyRequest": 10000, "evMinV2XEnergyRequest": -20000,
                                                   "evMaxEnergyRequest": 40000}})
        # the session went through the engine (validated, stored): the operator sees it
        await until(lambda: "w2/TX-w2/1" in runtime.validator.state.cars, what="V2G session in the engine")
        status = service["http"].get("/v1/sites/s1", headers={"Authorization": f"Bearer {OPERATOR}"}).json()
        assert status["active_sessions"] == 1

        def same_as_http(s):
            tx = s.tx_profile()
            served = {purpose_of(p): p for p in fetched(service, "w2", "2.1")}
            return tx is not None and "TxProfile" in served and tx == bound(served["TxProfile"], "TX-w2", 1)

        await sim.wait_for(same_as_http, timeout=30)
        periods = schedule_of(sim.tx_profile())["chargingSchedulePeriod"]
        assert all(p["operationMode"] == "CentralSetpoint" and p["dischargeLimit"] <= 0 for p in periods)
        assert min(p["setpoint"] for p in periods) < 0  # sells into the dear periods
        for _, payload in sim.received:
            validate_payload("2.1", "SetChargingProfile", payload)

        await sim.end_transaction(5000)
        await until(lambda: "w2/TX-w2/1" not in runtime.validator.state.cars,
                    what="end in the engine")
        await sim.close()

    asyncio.run(asyncio.wait_for(scenario(), 90))
    assert service["csms"].stats["payload_errors"] == 0


def test_charger_tokens_are_the_ocpp_passwords(service):
    async def scenario():
        good = SimulatedCharger("w1", "2.0.1", service["url"], service["tokens"]["w1"])
        assert await good.connect() == "ocpp2.0.1"
        await good.close()
        import websockets

        for cid, token in (("w1", "gcc_wrong"), ("w1", service["tokens"]["w3"]), ("w1", OPERATOR)):
            with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
                await SimulatedCharger(cid, "2.0.1", service["url"], token).connect()
            assert refused.value.response.status_code == 401

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_16_charger_on_the_service(service):
    engine = service["engine"]
    runtime = engine.sites["s1"]

    async def scenario():
        sim = SimulatedCharger("w3", "1.6", service["url"], service["tokens"]["w3"])
        await sim.connect()
        await sim.boot()
        await sim.start_transaction(meter_wh=0)
        sid = f"w3/{sim.transaction_id}"
        await until(lambda: sid in runtime.validator.state.cars, what="1.6 session in the engine")
        served = {}

        def same_as_http(s):
            served.update({purpose_of(p): p for p in fetched(service, "w3", "1.6")})
            tx = s.tx_profile()
            if tx is None or "TxProfile" not in served:
                return False
            expected = {**served["TxProfile"], "connectorId": 1,
                        "csChargingProfiles": {**served["TxProfile"]["csChargingProfiles"],
                                               "transactionId": sim.transaction_id}}
            return tx == expected

        await sim.wait_for(same_as_http, timeout=30)
        assert sim.installed["TxDefaultProfile"] == served["TxDefaultProfile"]
        # w3 is set up in amps: 0.1 A steps (1.6's multipleOf 0.1), and the charger's composite agrees
        periods = sim.tx_profile()["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"]
        assert sim.tx_profile()["csChargingProfiles"]["chargingSchedule"]["chargingRateUnit"] == "A"
        assert all(round(p["limit"] * 10) == p["limit"] * 10 and p["limit"] <= 7400 / 690 + 1e-9 for p in periods)
        await until(lambda: service["csms"].records.get("w3", {}).get("composite_ok") is not None, what="check")
        assert service["csms"].records["w3"]["composite_ok"] is True
        for _, payload in sim.received:
            validate_payload("1.6", "SetChargingProfile", payload)
        await sim.end_transaction(1000)
        await sim.close()

    asyncio.run(asyncio.wait_for(scenario(), 90))


def test_gridcharge_serve_ocpp_command_line(tmp_path):
    """The README's command: ``gridcharge serve --ocpp`` in its own process; a charger logs in with its token."""
    import os
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token_file = tmp_path / "operator-token"
    token_file.write_text(OPERATOR)
    process = subprocess.Popen([sys.executable, "-m", "gridcharge.cli", "serve", "--ocpp", "--port", str(port),
                                "--database", f"sqlite:///{tmp_path / 'gc.db'}", "--operator-token-file",
                                str(token_file)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "gridcharge serve did not come up"
            time.sleep(0.1)
        now = datetime.now(timezone.utc)
        start = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
        answer = httpx.put(base + "/v1/sites/cli", json={"instance": _site(start)},
                           headers={"Authorization": f"Bearer {OPERATOR}"}, timeout=60)
        assert answer.status_code == 201, answer.text
        tokens = answer.json()["charger_tokens"]

        async def scenario():
            sim = SimulatedCharger("w1", "2.0.1", f"ws://127.0.0.1:{port}/ocpp", tokens["w1"])
            assert await sim.connect(subprotocols=["ocpp2.0.1", "ocpp1.6"]) == "ocpp2.0.1"
            assert await sim.boot() == "Accepted"
            await sim.wait_for(lambda s: "TxDefaultProfile" in s.installed, timeout=30)
            answer = await asyncio.to_thread(httpx.get, base + "/v1/chargers/w1/profile", params={"ocpp": "2.0.1"},
                                             headers={"Authorization": f"Bearer {tokens['w1']}"})
            served = answer.json()["set_charging_profile"]
            assert sim.installed["TxDefaultProfile"] == next(p for p in served
                                                             if purpose_of(p) == "TxDefaultProfile")
            await sim.close()
            import websockets

            with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
                await SimulatedCharger("w1", "2.0.1", f"ws://127.0.0.1:{port}/ocpp", tokens["w2"]).connect()
            assert refused.value.response.status_code == 401

        asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        process.terminate()
        try:
            output = process.communicate(timeout=30)[0].decode()
        except subprocess.TimeoutExpired:
            process.kill()
            output = process.communicate()[0].decode()
    assert f"OCPP at ws://127.0.0.1:{port}/ocpp/{{charger_id}}" in output
    assert "Traceback" not in output and "ERROR" not in output, output


# ----------------------------------------------------------------------------------------------------------------
# issue 14, "the holes"


def test_replacing_a_site_closes_the_websockets_of_its_revoked_tokens_and_refuses_their_messages(service):
    """A TransactionEvent(Started) on a connection opened with a token the replacement revoked created a session
    in the new site. (And the session of an OCPP transaction, ``<charger>/<transaction>``, could not be PATCHed or
    DELETEd over HTTP.)"""
    import websockets

    http, operator = service["http"], {"Authorization": f"Bearer {OPERATOR}"}
    start = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    start = start.replace(minute=start.minute - start.minute % 15)
    instance = {**_site(start), "chargers": [{"id": "rv1", "node": "tx", "max_charge_kw": 11.0}]}
    created = http.put("/v1/sites/rv", json={"instance": instance}, headers=operator)
    assert created.status_code == 201, created.text
    old_token = created.json()["charger_tokens"]["rv1"]

    async def scenario():
        sim = SimulatedCharger("rv1", "2.0.1", service["url"], old_token, response_timeout=5)
        await sim.connect()
        await sim.boot()
        replaced = await asyncio.to_thread(http.put, "/v1/sites/rv", json={"instance": instance}, headers=operator)
        assert replaced.status_code == 200, replaced.text
        with contextlib.suppress(Exception):  # refused (no answer) or the connection is already closed
            await sim.start_transaction("tx-revoked")
        await until(lambda: sim.websocket.close_code is not None, 10, "the revoked connection closed")
        assert sim.websocket.close_code == 1008
        await sim.close()
        status = await asyncio.to_thread(http.get, "/v1/sites/rv", headers=operator)
        assert status.json()["active_sessions"] == 0 and status.json()["accepted_seq"] == 0, status.text
        with pytest.raises(websockets.exceptions.InvalidStatus):  # the old token no longer opens one
            await SimulatedCharger("rv1", "2.0.1", service["url"], old_token).connect()
        fresh = SimulatedCharger("rv1", "2.0.1", service["url"], replaced.json()["charger_tokens"]["rv1"])
        await fresh.connect()
        await fresh.boot()
        await fresh.start_transaction("tx-new")
        await until(lambda: http.get("/v1/sites/rv", headers=operator).json()["active_sessions"] == 1, 20,
                    "the session of the new token")
        # the central system's session id holds a '/': the operator API reaches it (percent-encoded or not)
        changed = await asyncio.to_thread(http.patch, "/v1/sites/rv/sessions/rv1%2Ftx-new",
                                          json={"energy_kwh": 3.0}, headers=operator)
        assert changed.status_code == 200 and changed.json()["session_id"] == "rv1/tx-new", changed.text
        ended = await asyncio.to_thread(http.delete, "/v1/sites/rv/sessions/rv1/tx-new", headers=operator)
        assert ended.status_code == 200, ended.text
        await fresh.close()

    asyncio.run(asyncio.wait_for(scenario(), 90))
