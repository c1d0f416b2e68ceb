"""Sessions as a table (``sessions_file``): the same instance as JSON, and row-and-column errors."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gridcharge
from gridcharge.bench.generate import generate
from gridcharge.errors import InstanceError
from gridcharge.instance import Session, load_instance
from gridcharge.tables import column_kinds, read_table, write_table
from gridcharge.testing import assert_feasible, assert_objective_close


def _split(tmp_path, data: dict, table_name: str) -> tuple:
    """``data`` as full.json and as site.json + a sessions table."""
    full = tmp_path / "full.json"
    full.write_text(json.dumps(data))
    write_table(tmp_path / table_name, data["sessions"], Session)
    site = {k: v for k, v in data.items() if k != "sessions"}
    site["sessions_file"] = table_name
    site_path = tmp_path / "site.json"
    site_path.write_text(json.dumps(site))
    return full, site_path


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_a_day_as_json_and_as_table_is_the_same_instance_and_optimum(tmp_path, suffix):
    data = generate("feeder", 60, 3, site_sessions=20, v2g_share=0.5)  # V2G cars: battery columns are partly empty
    full, site = _split(tmp_path, data, f"sessions.{suffix}")
    from_json, from_table = load_instance(full), load_instance(site)
    assert from_json == from_table
    assert from_table.to_dict() == from_json.to_dict()  # times shown in the horizon's zone, as the JSON wrote them
    a, b = gridcharge.build_problem(from_json), gridcharge.build_problem(from_table)
    assert a.session_ids == b.session_ids and a.period_start.equals(b.period_start)
    for name in ("presence", "charge_max_kw", "discharge_max_kw", "efficiency", "energy_lower_kwh", "energy_upper_kwh",
                 "energy_request_kwh", "phase_share", "session_node", "member_session"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    sa, sb = gridcharge.solve(from_json), gridcharge.solve(from_table)
    assert_feasible(from_table, sb)
    assert_objective_close(sb.summary["objective_cny"], sa.summary["objective_cny"], rel=1e-12)


def test_every_session_field_is_a_column_kind():
    kinds = column_kinds(Session)
    assert set(kinds) == set(Session.model_fields)  # a field added to Session is a column at once
    assert kinds["arrival"] == "time" and kinds["energy_kwh"] == "number" and kinds["charger"] == "text"
    assert "unsupported" not in kinds.values()


CSV_HEADER = "id,charger,arrival,departure,energy_kwh\n"


def _site_with_csv(tmp_path, body: str, header: str = CSV_HEADER) -> object:
    data = generate("residential", 3, 0)
    site = {k: v for k, v in data.items() if k != "sessions"}
    site["sessions_file"] = "s.csv"
    (tmp_path / "s.csv").write_text(header + body)
    path = tmp_path / "site.json"
    path.write_text(json.dumps(site))
    return path


GOOD = "S1,C00001,2026-01-15T19:00:00+08:00,2026-01-16T07:00:00+08:00,10\n"


def _problems(path) -> list[str]:
    with pytest.raises(InstanceError) as info:
        load_instance(path)
    return [str(p) for p in info.value.problems]


def test_a_good_csv_loads(tmp_path):
    inst = load_instance(_site_with_csv(tmp_path, GOOD))
    assert [s.id for s in inst.sessions] == ["S1"] and inst.sessions[0].energy_kwh == 10.0


@pytest.mark.parametrize("row, expected", [
    ("S2,C00002,2026-01-15T19:00:00+08:00,2026-01-16T07:00:00+08:00,ten\n",
     "s.csv row 3.energy_kwh: ten — must be a finite number"),
    ("S2,C00002,2026-01-15T19:00:00+08:00,2026-01-16T07:00:00+08:00,-4\n",
     "s.csv row 3.energy_kwh: -4.0 — must be >= 0"),
    ("S2,C00002,2026-01-15 19:00,2026-01-16T07:00:00+08:00,4\n",
     "s.csv row 3.arrival: 2026-01-15 19:00 — has no UTC offset"),
    ("S2,C00002,2026-01-15,2026-01-16T07:00:00+08:00,4\n",  # a date alone: its -15 is no UTC offset
     "s.csv row 3.arrival: 2026-01-15 — has no UTC offset"),
    ("S2,C00002,yesterday,2026-01-16T07:00:00+08:00,4\n",
     "s.csv row 3.arrival: yesterday — must be an ISO-8601 date-time with UTC offset"),
    ("S2,C09999,2026-01-15T19:00:00+08:00,2026-01-16T07:00:00+08:00,4\n",
     "s.csv row 3.charger: C09999 — the id of a charger"),
    ("S1,C00002,2026-01-15T19:00:00+08:00,2026-01-16T07:00:00+08:00,4\n",
     "s.csv row 3.id: S1 — a unique id (also used by s.csv row 2)"),
    ("S2,C00002,2026-01-15T19:00:00+08:00,,4\n",
     "s.csv row 3.departure: (missing) — missing required key"),
])
def test_a_bad_cell_is_named_by_row_column_value_and_expectation(tmp_path, row, expected):
    problems = _problems(_site_with_csv(tmp_path, GOOD + row))
    assert any(p.startswith(expected) for p in problems), problems


def test_unknown_and_missing_columns_are_named(tmp_path):
    header = "id,charger,arrival,energy_kwh,colour\n"
    problems = _problems(_site_with_csv(tmp_path, "S1,C00001,2026-01-15T19:00:00+08:00,10,red\n", header))
    assert any(p.startswith("column 'colour': colour — unknown column; the columns are id, charger") for p in problems)
    assert any(p.startswith("column 'departure': (missing) — a required column") for p in problems)


def test_many_bad_rows_are_summarised_per_column(tmp_path):
    rows = "".join(f"S{i},C00001,2026-01-15T19:00:00+08:00,2026-01-16T07:00:00+08:00,x\n" for i in range(9))
    problems = _problems(_site_with_csv(tmp_path, rows))
    assert len(problems) == 6 and problems[-1].startswith("energy_kwh: 4 more rows like these")


def test_parquet_naive_timestamps_are_refused_by_row(tmp_path):
    frame = pd.DataFrame({"id": ["S1"], "charger": ["C00001"], "arrival": [pd.Timestamp("2026-01-15 19:00")],
                          "departure": [pd.Timestamp("2026-01-16 07:00")], "energy_kwh": [10.0]})
    frame.to_parquet(tmp_path / "s.parquet")
    with pytest.raises(InstanceError) as info:
        read_table(tmp_path / "s.parquet", Session)
    text = str(info.value)
    assert "s.parquet row 1.arrival" in text and "time zone" in text and "s.parquet row 1.departure" in text


def test_parquet_with_a_zone_and_typed_columns_loads(tmp_path):
    frame = pd.DataFrame({"id": ["S1"], "charger": ["C00001"],
                          "arrival": [pd.Timestamp("2026-01-15 11:00", tz="UTC")],
                          "departure": [pd.Timestamp("2026-01-16 07:00", tz="Asia/Shanghai")], "energy_kwh": [10.0],
                          "max_charge_kw": [np.nan]})
    frame.to_parquet(tmp_path / "s.parquet")
    table = read_table(tmp_path / "s.parquet", Session, zone="Asia/Shanghai")
    assert table.records[0]["arrival"].isoformat() == "2026-01-15T19:00:00+08:00"
    assert "max_charge_kw" not in table.records[0]  # null: the model's default


def test_sessions_file_refusals(tmp_path):
    data = generate("residential", 2, 0)
    for value, expected in ((3, "a .csv or .parquet file name"), ("none.csv", "no such file"),
                            ("x.txt", "a .csv or .parquet table")):
        site = {k: v for k, v in data.items() if k != "sessions"} | {"sessions_file": value}
        (tmp_path / "site.json").write_text(json.dumps(site))
        assert any(expected in p for p in _problems(tmp_path / "site.json"))
    (tmp_path / "s.csv").write_text(CSV_HEADER + GOOD)
    both = dict(data, sessions_file="s.csv")
    (tmp_path / "site.json").write_text(json.dumps(both))
    assert any("not both" in p for p in _problems(tmp_path / "site.json"))
    with pytest.raises(InstanceError, match="sessions_file"):  # never read from a mapping (an HTTP body)
        load_instance({k: v for k, v in data.items() if k != "sessions"} | {"sessions_file": "s.csv"})


def test_a_spreadsheets_byte_order_mark_is_not_part_of_the_first_column(tmp_path):
    path = _site_with_csv(tmp_path, GOOD)
    (tmp_path / "s.csv").write_bytes(b"\xef\xbb\xbf" + (CSV_HEADER + GOOD).encode())
    assert load_instance(path).sessions[0].id == "S1"


_OFFSETS = [timezone(timedelta(hours=h)) for h in (-5, 0, 8)]
_SESSION = st.fixed_dictionaries(
    {"id": st.from_regex(r"[A-Za-z0-9_-]{1,8}", fullmatch=True), "charger": st.sampled_from(["C1", "C2"]),
     "arrival": st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 31),
                             timezones=st.sampled_from(_OFFSETS)),
     "departure": st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 31),
                               timezones=st.sampled_from(_OFFSETS)),
     "energy_kwh": st.floats(0, 1e5)},
    optional={"max_charge_kw": st.floats(1e-3, 1e4), "max_discharge_kw": st.floats(0, 1e4),
              "battery_kwh": st.floats(1e-3, 1e5)})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(_SESSION, max_size=6), suffix=st.sampled_from(["csv", "parquet"]))
def test_a_table_gives_back_the_sessions_it_was_written_from(tmp_path, records, suffix):
    path = tmp_path / f"s.{suffix}"
    as_json = [{**r, "arrival": r["arrival"].isoformat(), "departure": r["departure"].isoformat()} for r in records]
    write_table(path, as_json, Session)
    back = read_table(path, Session, zone="Asia/Shanghai").records
    assert [Session.model_validate(r) for r in back] == [Session.model_validate(r) for r in as_json]
