"""OCPP SetChargingProfile payloads, schema validation and fail-safe default limits (gridcharge.ocpp.profiles)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from gridcharge import load_instance, verify
from gridcharge.ocpp import (VERSIONS, PayloadError, build_set_charging_profile, failsafe_limits_kw, failsafe_profile,
                             validate_payload)
from gridcharge.instance import raised_to_step
from tests.builders import charger, instance, node, session

START = datetime(2026, 7, 1, 18, 0, tzinfo=timezone(timedelta(hours=8)))


def _profile(payload: dict, version: str) -> dict:
    return payload["csChargingProfiles"] if version == "1.6" else payload["chargingProfile"]


def _schedule(payload: dict, version: str) -> dict:
    schedule = _profile(payload, version)["chargingSchedule"]
    return schedule if version == "1.6" else schedule[0]


def test_known_payload_16_by_hand():
    """7 kW, 7 kW, 3.3333 kW, -2 kW (dropped), 0 in 15-minute periods from 18:00+08:00 = 10:00Z."""
    result = build_set_charging_profile("1.6", [7, 7, 3.3333, -2, 0], START, period_minutes=15,
                                        valid_to=START + timedelta(hours=1), transaction_id=42)
    assert result.payload == {
        "connectorId": 1,
        "csChargingProfiles": {
            "chargingProfileId": 3, "transactionId": 42, "stackLevel": 1, "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Absolute", "validTo": "2026-07-01T11:00:00Z",
            "chargingSchedule": {
                "startSchedule": "2026-07-01T10:00:00Z", "duration": 4500, "chargingRateUnit": "W",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7000, "numberPhases": 3},
                                           {"startPeriod": 1800, "limit": 3333, "numberPhases": 3},
                                           {"startPeriod": 2700, "limit": 0, "numberPhases": 3}]}}}
    assert result.discharge_dropped and "1 period(s)" in result.warnings[0]
    validate_payload("1.6", "SetChargingProfile", result.payload)


def test_amps_by_hand():
    """7 kW on one phase at 230 V = 30.43 A -> 30.4 A; 11 kW on three phases = 15.94 A -> 15.9 A (towards zero)."""
    one = build_set_charging_profile("2.0.1", [7.0], START, period_minutes=60, rate_unit="A", voltage_v=230,
                                     phases=1)
    three = build_set_charging_profile("2.0.1", [11.0], START, period_minutes=60, rate_unit="A", voltage_v=230,
                                       phases=3)
    assert _schedule(one.payload, "2.0.1")["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 30.4, "numberPhases": 1}]
    assert _schedule(three.payload, "2.0.1")["chargingSchedulePeriod"][0]["limit"] == 15.9
    assert _schedule(three.payload, "2.0.1")["chargingRateUnit"] == "A"
    for result in (one, three):
        validate_payload("2.0.1", "SetChargingProfile", result.payload)
    with pytest.raises(ValueError, match="voltage_v"):
        build_set_charging_profile("1.6", [7.0], START, period_minutes=60, rate_unit="A")


def test_21_bidirectional_by_hand():
    """A V2G session in 2.1: CentralSetpoint periods, signed set-point bounded by limit and dischargeLimit <= 0."""
    result = build_set_charging_profile("2.1", [3.0, -5.5, -5.5], START, period_start_s=[0, 600, 1200],
                                        max_offline_duration_s=900, transaction_id="tx-1")
    profile = _profile(result.payload, "2.1")
    assert profile["maxOfflineDuration"] == 900 and profile["transactionId"] == "tx-1"
    assert not result.discharge_dropped
    assert _schedule(result.payload, "2.1")["duration"] == 1800
    assert _schedule(result.payload, "2.1")["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "operationMode": "CentralSetpoint", "setpoint": 3000, "limit": 3000,
         "dischargeLimit": 0, "numberPhases": 3},
        {"startPeriod": 600, "operationMode": "CentralSetpoint", "setpoint": -5500, "limit": 0,
         "dischargeLimit": -5500, "numberPhases": 3}]
    validate_payload("2.1", "SetChargingProfile", result.payload)
    charge_only = build_set_charging_profile("2.1", [3.0, -5.5], START, period_minutes=10, bidirectional=False)
    assert charge_only.discharge_dropped
    assert [p["limit"] for p in _schedule(charge_only.payload, "2.1")["chargingSchedulePeriod"]] == [3000, 0]
    with pytest.raises(ValueError, match="maxOfflineDuration"):
        build_set_charging_profile("2.0.1", [1.0], START, period_minutes=10, max_offline_duration_s=60)
    with pytest.raises(ValueError, match="cannot express discharge"):
        build_set_charging_profile("1.6", [1.0], START, period_minutes=10, bidirectional=True)


@pytest.mark.parametrize("version", VERSIONS)
def test_failsafe_and_station_max_profiles_validate(version):
    default = failsafe_profile(version, 6.0, START, valid_to=START + timedelta(days=1))
    station = failsafe_profile(version, 22.0, START, purpose="ChargingStationMaxProfile")
    expected_max = "ChargePointMaxProfile" if version == "1.6" else "ChargingStationMaxProfile"
    assert _profile(station.payload, version)["chargingProfilePurpose"] == expected_max
    assert _profile(default.payload, version)["chargingProfilePurpose"] == "TxDefaultProfile"
    assert "duration" not in _schedule(default.payload, version)
    assert _schedule(default.payload, version)["chargingSchedulePeriod"][0]["limit"] == 6000
    for result in (default, station):
        validate_payload(version, "SetChargingProfile", result.payload)


@pytest.mark.parametrize("version,bad,where", [
    ("1.6", {"connectorId": 1, "csChargingProfiles": {"chargingProfileId": 1, "stackLevel": 0,
                                                      "chargingProfilePurpose": "TxProfile",
                                                      "chargingProfileKind": "Absolute",
                                                      "chargingSchedule": {"chargingRateUnit": "W",
                                                                           "chargingSchedulePeriod": [
                                                                               {"startPeriod": 0, "limit": 1.05}]}}},
     "limit"),
    ("2.1", "dischargeLimit", "dischargeLimit"),
    ("2.0.1", "startSchedule", "startSchedule"),
])
def test_schema_rejects_bad_payloads(version, bad, where):
    """The validator is live: a limit off the 0.1 grid (1.6), a positive dischargeLimit, a date-time without zone."""
    if bad == "dischargeLimit":
        bad = build_set_charging_profile(version, [-1.0], START, period_minutes=15).payload
        _schedule(bad, version)["chargingSchedulePeriod"][0]["dischargeLimit"] = 5
    elif bad == "startSchedule":
        bad = build_set_charging_profile(version, [1.0], START, period_minutes=15).payload
        _schedule(bad, version)["startSchedule"] = "2026-07-01 10:00"
    with pytest.raises(PayloadError) as info:
        validate_payload(version, "SetChargingProfile", bad)
    assert any(where in path or where in message for path, message in info.value.problems)


def test_unknown_version_and_action():
    with pytest.raises(ValueError, match="ocpp version"):
        validate_payload("1.5", "SetChargingProfile", {})
    with pytest.raises(ValueError, match="no such message"):
        validate_payload("2.1", "SetChargingProfileX", {})


@given(power=st.lists(st.floats(-22, 22, allow_nan=False).map(lambda x: round(x, 3)) | st.sampled_from([0.0, 7.0]),
                      min_size=1, max_size=40),
       version=st.sampled_from(VERSIONS), unit=st.sampled_from(["W", "A"]), phases=st.sampled_from([1, 3]),
       step=st.sampled_from([5, 15, 60]))
def test_payload_round_trip(power, version, unit, phases, step):
    """Every payload validates; decoding the wire gives back each period's power rounded towards zero (charge-only
    where the version cannot discharge); consecutive wire periods differ (merged)."""
    voltage = 230.0
    result = build_set_charging_profile(version, power, START, period_minutes=step, rate_unit=unit,
                                        voltage_v=voltage, phases=phases)
    validate_payload(version, "SetChargingProfile", result.payload)
    schedule = _schedule(result.payload, version)
    periods = schedule["chargingSchedulePeriod"]
    assert schedule["duration"] == len(power) * step * 60
    starts = np.array([p["startPeriod"] for p in periods])
    assert starts[0] == 0 and (np.diff(starts) > 0).all()
    for a, b in zip(periods, periods[1:]):
        assert {k: v for k, v in a.items() if k != "startPeriod"} != {k: v for k, v in b.items() if k != "startPeriod"}
    to_kw = 1e-3 if unit == "W" else voltage * phases * 1e-3
    resolution_kw = 1e-3 if unit == "W" else 0.1 * to_kw
    bidirectional = version == "2.1" and min(power) < 0
    assert result.discharge_dropped == (not bidirectional and min(power) < 0)
    for i, p in enumerate(power):
        wire = periods[int(np.searchsorted(starts, i * step * 60, side="right")) - 1]
        sent = (wire["setpoint"] if bidirectional else wire["limit"]) * to_kw
        wanted = p if bidirectional else max(p, 0.0)
        assert abs(sent) <= abs(wanted) + 1e-9 and abs(wanted) - abs(sent) < resolution_kw + 1e-9
        assert sent * wanted >= 0
        if bidirectional:
            assert wire["dischargeLimit"] <= 0 <= wire["limit"]


# ----------------------------------------------------------------------------------------------------------------
# fail-safe limits


def _site(m1_limit=20.0):
    return instance(periods=2, nodes=[
        node("T", import_limit_kw=100.0, base_load_kw=[10.0, 40.0]),
        node("M1", "T", import_limit_kw=m1_limit, base_load_kw=5.0),
        node("M2", "T", phase_import_limit_kw=10.0, base_load_kw=6.0),
    ], chargers=[charger("c1", "M1", 22.0), charger("c2", "M1", 22.0), charger("c3", "M2", 7.0, phases="A"),
                 charger("c4", "M2", 22.0)])


def test_failsafe_limits_by_hand():
    """Worst subtree base at T: 40 + 5 + 6 = 51 kW -> 49 kW for 4 chargers = 12.25 each. M1: (20 - 5) / 2 = 7.5.
    M2 phase A: 10 - 6/3 = 8 kW shared by c3 (weight 1) and c4 (weight 1/3) -> 8 / (4/3) = 6 kW each."""
    limits = failsafe_limits_kw(_site())
    assert limits.to_dict() == pytest.approx({"c1": 7.5, "c2": 7.5, "c3": 6.0, "c4": 6.0})
    over = failsafe_limits_kw(_site(m1_limit=4.0))  # base 5 kW > 4 kW: nothing for M1's chargers, never negative
    assert over.to_dict() == pytest.approx({"c1": 0.0, "c2": 0.0, "c3": 6.0, "c4": 6.0})


@st.composite
def _sites(draw):
    T = draw(st.integers(1, 4))
    limit = st.one_of(st.none(), st.integers(0, 60).map(float))
    base = st.one_of(st.integers(0, 20).map(float), st.lists(st.integers(0, 20).map(float), min_size=T, max_size=T))
    nodes = [node("T", import_limit_kw=draw(limit), phase_import_limit_kw=draw(limit), base_load_kw=draw(base),
                  generation_kw=draw(st.sampled_from([0.0, 5.0])))]
    for i in range(draw(st.integers(0, 3))):
        nodes.append(node(f"F{i}", draw(st.sampled_from([n["id"] for n in nodes])), kind="feeder",
                          import_limit_kw=draw(limit), phase_import_limit_kw=draw(limit), base_load_kw=draw(base)))
    ids = [n["id"] for n in nodes]
    chargers = [charger(f"c{i}", draw(st.sampled_from(ids)), draw(st.sampled_from([3.5, 7.0, 22.0])),
                        phases=draw(st.sampled_from(["A", "B", "C", "ABC"])))
                for i in range(draw(st.integers(1, 8)))]
    sessions = [session(f"s{i}", c["id"], "2026-07-01T00:00:00+08:00", f"2026-07-01T{T:02d}:00:00+08:00", 1000.0)
                for i, c in enumerate(chargers)]
    return instance(periods=T, nodes=nodes, chargers=chargers, sessions=sessions)


@given(_sites(), st.dictionaries(st.sampled_from(["T", "F0", "F1", "F2"]), st.integers(0, 60).map(float),
                                 max_size=2))
def test_every_charger_at_its_default_overloads_nothing(data, caps):
    """All chargers at their defaults at once, in every period: the independent verifier finds no node or phase
    import violation that base load alone does not already cause (and those with the same value: nothing added).
    With demand-response caps, the verifier checks the instance whose import limits are the caps."""
    caps = {node: kw for node, kw in caps.items() if node in {n["id"] for n in data["nodes"]}}
    limits = failsafe_limits_kw(load_instance(data), import_limit_kw=caps)
    for n in data["nodes"]:
        if n["id"] in caps:
            own = n.get("import_limit_kw")
            n["import_limit_kw"] = caps[n["id"]] if own is None else min(own, caps[n["id"]])
    inst = load_instance(data)
    assert (limits >= 0).all()
    assert (limits <= np.array([c.max_charge_kw for c in inst.chargers])).all()
    power = np.repeat(limits.to_numpy()[:, None], inst.horizon.periods, axis=1)  # session i is on charger c{i}

    def limit_violations(p):
        return {(v.kind, v.where, v.period): v.value for v in verify(inst, p).violations
                if v.kind in ("node_import", "phase_import")}

    at_default, base_only = limit_violations(power), limit_violations(np.zeros_like(power))
    assert set(at_default) <= set(base_only)
    for key, value in at_default.items():
        assert value == pytest.approx(base_only[key], abs=1e-9)


def test_failsafe_limits_with_a_tighter_import_limit_by_hand():
    """A demand-response cap of 31 kW on T: (31 - 51 worst base) < 0 → nothing anywhere; a cap of 71 kW: (71 - 51)
    / 4 = 5 kW each, and c3, c4 keep their phase share 6 kW > 5 kW → 5 kW; M1's own 7.5 kW > 5 kW → 5 kW."""
    assert failsafe_limits_kw(_site(), import_limit_kw={"T": 31.0}).to_dict() == pytest.approx(
        {"c1": 0.0, "c2": 0.0, "c3": 0.0, "c4": 0.0})
    assert failsafe_limits_kw(_site(), import_limit_kw={"T": 71.0}).to_dict() == pytest.approx(
        {"c1": 5.0, "c2": 5.0, "c3": 5.0, "c4": 5.0})
    assert failsafe_limits_kw(_site(), import_limit_kw={"T": 500.0}).to_dict() == pytest.approx(
        failsafe_limits_kw(_site()).to_dict())  # a looser one changes nothing
    with pytest.raises(ValueError, match="node 'X'"):
        failsafe_limits_kw(_site(), import_limit_kw={"X": 1.0})


# ----------------------------------------------------------------------------------------------------------------
# executable limits (issue 16): chargers with a minimum current and a current step


def test_a_6_a_1_a_charger_in_amps_gets_whole_amps_never_inside_the_minimum_and_its_min_charging_rate():
    """Single phase, 220 V: 0.5 kW (2.27 A) is below 6 A → 0; 1.5 kW (6.82 A) → 6 A; 3.3 kW (15 A exactly) stays;
    -2 kW is dropped (1.6); minChargingRate is 6 A. In W, 1.5 kW → 6 A = 1320 W and minChargingRate 1320 W."""
    currents = dict(phases=1, voltage_v=220.0, min_current_a=6.0, current_step_a=1.0)
    amps = build_set_charging_profile("1.6", [0.5, 1.5, 3.3, -2.0], START, period_minutes=15, rate_unit="A",
                                      **currents)
    schedule = _schedule(amps.payload, "1.6")
    assert [p["limit"] for p in schedule["chargingSchedulePeriod"]] == [0.0, 6.0, 15.0, 0.0]
    assert schedule["minChargingRate"] == 6.0
    watts = build_set_charging_profile("2.0.1", [0.5, 1.5, 3.3], START, period_minutes=15, **currents)
    schedule = _schedule(watts.payload, "2.0.1")
    assert [p["limit"] for p in schedule["chargingSchedulePeriod"]] == [0, 1320, 3300]
    assert schedule["minChargingRate"] == 1320
    # 2.1 V2G: a discharge of 1.0 kW (4.5 A) is inside the minimum → 0; -2.0 kW (9.09 A) → -9 A
    v2g = build_set_charging_profile("2.1", [-1.0, -2.0], START, period_minutes=15, rate_unit="A", **currents)
    assert [p["setpoint"] for p in _schedule(v2g.payload, "2.1")["chargingSchedulePeriod"]] == [0.0, -9.0]
    for version, result in (("1.6", amps), ("2.0.1", watts), ("2.1", v2g)):
        validate_payload(version, "SetChargingProfile", result.payload)
    # a continuous charger has no minChargingRate
    plain = build_set_charging_profile("2.0.1", [1.5], START, period_minutes=15)
    assert "minChargingRate" not in _schedule(plain.payload, "2.0.1")


def test_a_step_the_wire_cannot_carry_is_moved_onto_both_grids():
    """A 0.25 A step in amps on the 0.1 A wire: only multiples of 0.5 A are both; 6.25 A minimum → 6.5 A on the wire."""
    result = build_set_charging_profile("1.6", [6.3 * 0.23, 6.8 * 0.23, 7.4 * 0.23], START, period_minutes=15,
                                        rate_unit="A", phases=1, voltage_v=230.0, min_current_a=6.25,
                                        current_step_a=0.25)
    schedule = _schedule(result.payload, "1.6")
    assert [p["limit"] for p in schedule["chargingSchedulePeriod"]] == [0.0, 6.5, 7.0]
    assert schedule["minChargingRate"] == 6.5
    validate_payload("1.6", "SetChargingProfile", result.payload)


@given(power=st.lists(st.floats(-22, 22, allow_nan=False).map(lambda x: round(x, 3))
                      | st.sampled_from([0.0, 0.4, 1.32, 1.38, 3.96]), min_size=1, max_size=30),
       version=st.sampled_from(VERSIONS), unit=st.sampled_from(["W", "A"]), phases=st.sampled_from([1, 3]),
       voltage=st.sampled_from([220.0, 230.0, 229.5]), minimum=st.sampled_from([0.0, 6.0, 8.0]),
       step=st.sampled_from([None, 1.0, 0.5, 2.0]), purpose=st.sampled_from(["TxProfile", "TxDefaultProfile"]))
def test_profiles_never_carry_a_limit_inside_the_minimum_nor_off_the_step(power, version, unit, phases, voltage,
                                                                           minimum, step, purpose):
    """Every limit, set-point and discharge limit in A is 0 or at least the lowest allowed current and a whole number
    of steps; in W it is whole watts at most 1 W below such a power (never inside (0, minimum) by more than the
    wire's watt); never more than scheduled; minChargingRate is the lowest allowed value."""
    assume(minimum > 0 or step is not None)
    if purpose == "TxDefaultProfile":
        power = [abs(p) for p in power]
        result = failsafe_profile(version, power, START, period_start_s=[900 * i for i in range(len(power))],
                                  rate_unit=unit, voltage_v=voltage, phases=phases, min_current_a=minimum,
                                  current_step_a=step)
    else:
        result = build_set_charging_profile(version, power, START, period_minutes=15, rate_unit=unit,
                                            voltage_v=voltage, phases=phases, min_current_a=minimum,
                                            current_step_a=step)
    validate_payload(version, "SetChargingProfile", result.payload)
    schedule = _schedule(result.payload, version)
    periods = schedule["chargingSchedulePeriod"]
    starts = np.array([p["startPeriod"] for p in periods])
    lowest = raised_to_step(minimum, step)
    per_a_w = voltage * phases  # W per A on each phase
    slack = 1e-9 if unit == "A" else 1.0 / per_a_w  # whole watts towards zero: at most 1 W below
    for i, p in enumerate(power):
        wire = periods[int(np.searchsorted(starts, i * 900, side="right")) - 1]
        for key in ("limit", "setpoint", "dischargeLimit"):
            if key not in wire or wire[key] == 0:
                continue
            amps = abs(wire[key]) if unit == "A" else abs(wire[key]) / per_a_w
            assert amps <= abs(p) * 1000.0 / per_a_w + 1e-9, (key, wire, p)  # never more than scheduled
            allowed = math.ceil(amps / step - 1e-9) * step if step else amps  # the next current a car follows
            assert allowed - amps <= slack + 1e-9 and allowed >= lowest - 1e-9, (key, wire, lowest, step)
    grid = math.lcm(10, int(step * 10)) / 10 if unit == "A" and step else None  # the wire's 0.1 A and the step
    expected = (math.ceil(lowest / grid - 1e-9) * grid if grid else lowest) if unit == "A" \
        else math.ceil(lowest * per_a_w - 1e-6)
    assert schedule["minChargingRate"] == pytest.approx(expected)
