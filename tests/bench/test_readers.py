"""Readers of session logs: plain CSV and ACN-Data (JSON and CSV), synthetic fixtures written here; sessions onto a
site; field-named errors for malformed rows."""

import json

import pandas as pd
import pytest

import gridcharge
from gridcharge.bench.readers import ClippedSessionsWarning, read_acn, read_sessions_csv, sessions_to_instance
from gridcharge.errors import InstanceError

SITE = {
    "format": "gridcharge/instance-v1", "name": "two-charger site",
    "horizon": {"start": "2026-01-15T12:00:00+08:00", "step_minutes": 60, "periods": 24},
    "nodes": [{"id": "T", "kind": "transformer", "import_limit_kw": 10.0}],
    "chargers": [{"id": "C1", "node": "T", "max_charge_kw": 7.0}, {"id": "C2", "node": "T", "max_charge_kw": 7.0}],
    "tariff": {"import_cny_per_kwh": 0.5},
}


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_plain_csv_to_instance_and_its_solve(tmp_path):
    path = write(tmp_path, "log.csv", "arrival,departure,energy_kwh,charger\n"
                                      "2026-01-15T18:00:00+08:00,2026-01-15T22:00:00+08:00,10,C1\n"
                                      "2026-01-15 19:00,2026-01-16 07:00,20.5,C2\n")  # naive: read in timezone=
    sessions = read_sessions_csv(path, timezone="Asia/Shanghai")
    assert list(sessions["id"]) == ["R00002", "R00003"] and list(sessions["energy_kwh"]) == [10.0, 20.5]
    data = sessions_to_instance(SITE, sessions)
    assert [s["arrival"] for s in data["sessions"]] == ["2026-01-15T18:00:00+08:00", "2026-01-15T19:00:00+08:00"]
    assert data["sessions"][1]["departure"] == "2026-01-16T07:00:00+08:00"
    schedule = gridcharge.solve(data)
    assert schedule.verification.ok and schedule.summary["unmet_kwh"] == pytest.approx(0, abs=1e-6)
    assert schedule.summary["energy_delivered_kwh"] == pytest.approx(30.5)


def test_plain_csv_errors_name_row_column_value_and_expectation(tmp_path):
    path = write(tmp_path, "bad.csv", "arrival,departure,energy_kwh,charger\n"
                                      "2026-01-15T18:00:00+08:00,2026-01-15T17:00:00+08:00,10,C1\n"
                                      "yesterday,2026-01-16T07:00:00+08:00,-3,\n")
    with pytest.raises(InstanceError) as caught:
        read_sessions_csv(path)
    text = str(caught.value)
    assert "row 2.departure" in text and "after the arrival" in text
    assert "row 3.arrival" in text and "yesterday" in text and "ISO-8601" in text
    assert "row 3.energy_kwh" in text and "-3" in text and ">= 0" in text
    assert "row 3.charger" in text and "(empty)" in text
    missing = write(tmp_path, "cols.csv", "arrival,departure,kwh\n")
    with pytest.raises(InstanceError, match="missing energy_kwh, charger"):
        read_sessions_csv(missing)


ACN_ITEMS = [
    {"sessionID": "2_39_78_362_2019-01-02 13:49:14", "stationID": "2-39-78-362", "siteID": "0002",
     "connectionTime": "Wed, 02 Jan 2019 13:49:14 GMT", "disconnectTime": "Wed, 02 Jan 2019 20:05:09 GMT",
     "doneChargingTime": "Wed, 02 Jan 2019 16:20:01 GMT", "kWhDelivered": 11.5, "timezone": "America/Los_Angeles",
     "userInputs": [{"kWhRequested": 20.0, "requestedDeparture": "Wed, 02 Jan 2019 21:00:00 GMT"},
                    {"kWhRequested": 15.0, "requestedDeparture": "Wed, 02 Jan 2019 19:00:00 GMT"}]},
    {"sessionID": "2_39_79_380_2019-01-02 14:00:00", "stationID": "2-39-79-380", "siteID": "0002",
     "connectionTime": "Wed, 02 Jan 2019 14:00:00 GMT", "disconnectTime": "Wed, 02 Jan 2019 18:00:00 GMT",
     "doneChargingTime": None, "kWhDelivered": 6.25, "timezone": "America/Los_Angeles", "userInputs": None},
]
ACN_SITE = dict(SITE, horizon={"start": "2019-01-02T00:00:00-08:00", "step_minutes": 15, "periods": 96,
                               "timezone": "America/Los_Angeles"}, chargers=[])


def test_acn_json_requested_energy_where_given_and_new_chargers(tmp_path):
    path = write(tmp_path, "acn.json", json.dumps({"_items": ACN_ITEMS, "_meta": {"total": 2}}))
    sessions = read_acn(path)
    assert list(sessions["energy_kwh"]) == [15.0, 6.25]  # the last kWhRequested; else kWhDelivered
    assert sessions["arrival"].iloc[0] == pd.Timestamp("2019-01-02T13:49:14Z")
    assert list(read_acn(path, energy="delivered")["energy_kwh"]) == [11.5, 6.25]
    with pytest.raises(InstanceError, match=r"_items\[1\]\.userInputs\[-1\]\.requestedDeparture: \(empty\)"):
        read_acn(path, departure="requested")  # item 1 has no user input
    only_first = write(tmp_path, "one.json", json.dumps([ACN_ITEMS[0]]))  # a top-level list works too
    assert read_acn(only_first, departure="requested")["departure"].iloc[0] == pd.Timestamp("2019-01-02T19:00:00Z")
    with pytest.raises(InstanceError, match="charger ids of the site"):
        sessions_to_instance(ACN_SITE, sessions)
    data = sessions_to_instance(ACN_SITE, sessions, new_chargers={"node": "T", "max_charge_kw": 6.6})
    assert [c["id"] for c in data["chargers"]] == ["2-39-78-362", "2-39-79-380"]
    assert data["sessions"][0]["arrival"] == "2019-01-02T05:49:14-08:00"  # in the site's time zone
    assert gridcharge.solve(data).verification.ok


def test_acn_csv_export_and_its_errors(tmp_path):
    good = pd.DataFrame(ACN_ITEMS).astype(object)
    good["userInputs"] = [json.dumps(v) if v else "" for v in good["userInputs"]]
    path = tmp_path / "acn.csv"
    good.to_csv(path, index=False)
    assert list(read_acn(path)["energy_kwh"]) == [15.0, 6.25]
    bad = good.copy()
    bad.loc[1, "kWhDelivered"] = "lots"
    bad.loc[0, "userInputs"] = "{not json"
    bad.to_csv(path, index=False)
    with pytest.raises(InstanceError) as caught:
        read_acn(path)
    assert "row 2.userInputs" in str(caught.value) and "{not json" in str(caught.value)
    del bad["stationID"]
    bad.to_csv(path, index=False)
    with pytest.raises(InstanceError, match="missing stationID"):
        read_acn(path)
    bad_energy = good.copy()
    bad_energy["userInputs"] = ""
    bad_energy.loc[1, "kWhDelivered"] = "lots"
    bad_energy.to_csv(path, index=False)
    with pytest.raises(InstanceError) as caught:
        read_acn(path)
    assert "row 3.kWhRequested or kWhDelivered: lots" in str(caught.value).replace("'", "")


def test_outside_the_horizon_is_an_error_unless_dropped_or_clipped(tmp_path):
    path = write(tmp_path, "log.csv", "id,arrival,departure,energy_kwh,charger\n"
                                      "a,2026-01-15T10:00:00+08:00,2026-01-15T14:00:00+08:00,5,C1\n"
                                      "b,2026-01-15T18:00:00+08:00,2026-01-15T20:00:00+08:00,5,C1\n"
                                      "c,2026-01-17T18:00:00+08:00,2026-01-17T20:00:00+08:00,5,C2\n")
    sessions = read_sessions_csv(path)
    with pytest.raises(InstanceError) as caught:
        sessions_to_instance(SITE, sessions)
    assert "'a'" in str(caught.value) and "'c'" in str(caught.value) and "'b'" not in str(caught.value)
    assert [s["id"] for s in sessions_to_instance(SITE, sessions, outside="drop")["sessions"]] == ["b"]
    with pytest.warns(ClippedSessionsWarning) as caught:
        data = sessions_to_instance(SITE, sessions, outside="clip")
    clipped = data["sessions"]
    assert [s["id"] for s in clipped] == ["a", "b"] and clipped[0]["arrival"] == "2026-01-15T12:00:00+08:00"
    # issue 15: clipping kept a's full 5 kWh for a stay cut from 4 h to 2 h without a word; now it says so
    warning = caught[0].message
    assert (warning.count, warning.hours_cut, warning.energy_kwh) == (1, 2.0, 5.0)
    assert "1 session(s) clipped to the horizon: 2.0 h of their stays cut, their 5.0 kWh requested kept" in data["name"]
    assert clipped[0]["energy_kwh"] == 5.0


def test_a_time_without_offset_needs_an_explicit_zone(tmp_path):
    """issue 15: the CSV reader guessed Asia/Shanghai and the ACN reader UTC for times without an offset."""
    path = write(tmp_path, "log.csv", "arrival,departure,energy_kwh,charger\n"
                                      "2026-01-15 19:00,2026-01-16T23:00:00+08:00,5,C1\n")
    with pytest.raises(InstanceError) as caught:
        read_sessions_csv(path)
    assert len(caught.value.problems) == 1
    problem = caught.value.problems[0]
    assert (problem.path, problem.value) == ("row 2.arrival", "2026-01-15 19:00") and "timezone=" in problem.expected
    assert read_sessions_csv(path, timezone="Europe/Berlin")["arrival"].iloc[0] == pd.Timestamp("2026-01-15T18:00Z")
    with pytest.raises(InstanceError, match="timezone: Mars/Olympus — an IANA time zone"):
        read_sessions_csv(path, timezone="Mars/Olympus")
    items = [dict(ACN_ITEMS[1], connectionTime="2019-01-02 06:00:00")]
    acn = write(tmp_path, "acn.json", json.dumps(items))
    with pytest.raises(InstanceError, match=r"\[0\]\.connectionTime: 2019-01-02 06:00:00 — a UTC offset"):
        read_acn(acn)
    assert read_acn(acn, timezone="America/Los_Angeles")["arrival"].iloc[0] == pd.Timestamp("2019-01-02T14:00Z")
    assert read_acn(write(tmp_path, "gmt.json", json.dumps(ACN_ITEMS)))["arrival"].iloc[1] == \
        pd.Timestamp("2019-01-02T14:00Z")  # the API's GMT times need no zone


def test_overlapping_sessions_on_one_charger_are_reported_by_the_instance_check(tmp_path):
    path = write(tmp_path, "log.csv", "id,arrival,departure,energy_kwh,charger\n"
                                      "a,2026-01-15T18:00:00+08:00,2026-01-15T22:00:00+08:00,5,C1\n"
                                      "b,2026-01-15T21:00:00+08:00,2026-01-15T23:00:00+08:00,5,C1\n")
    with pytest.raises(InstanceError, match="overlaps"):
        sessions_to_instance(SITE, read_sessions_csv(path))
