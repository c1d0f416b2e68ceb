"""Instance-v1 validation: every kind of bad input gets one clear :class:`gridcharge.InstanceError` naming the field
path, the value and what was expected; valid JSON, TOML and ``to_dict`` round trips load to equal instances."""

import json
import math

import pytest

import gridcharge
from gridcharge import InstanceError, load_instance
from tests.builders import DELETE, at, charger, instance, modified, node, session


def valid() -> dict:
    """A small valid instance: transformer T, meter M under it, one charger on M, two back-to-back sessions."""
    return instance(
        periods=4,
        nodes=[node("T", import_limit_kw=50.0), node("M", "T", import_limit_kw=10.0)],
        chargers=[charger("c1", "M", max_discharge_kw=3.0), charger("c2", "T")],
        sessions=[session("s1", "c1", at(0), at(2), 5.0), session("s2", "c1", at(2), at(4), 5.0)],
        objective={"unmet_penalty_cny_per_kwh": 100.0},
    )


def problems_of(data) -> list:
    with pytest.raises(InstanceError) as caught:
        load_instance(data)
    return caught.value.problems


def only_problem(data):
    """The one problem ``data`` has, and the full error message."""
    with pytest.raises(InstanceError) as caught:
        load_instance(data)
    problems = caught.value.problems
    assert len(problems) == 1, f"expected one problem, got {len(problems)}:\n{caught.value}"
    return problems[0], str(caught.value)


def test_the_base_instance_is_valid():
    inst = load_instance(valid())
    assert [n.id for n in inst.nodes] == ["T", "M"]
    assert inst.root.id == "T"
    assert inst.horizon.end.isoformat() == "2026-07-01T04:00:00+08:00"


# ------------------------------------------------------------------------------------------------------------------
# files


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nope.json"
    problem, message = only_problem(path)
    assert problem.value == str(path)
    assert "no such file" in message and str(path) in message


def test_malformed_json_names_line_and_column(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"format": "gridcharge/instance-v1",\n "name": "x",, }')
    problem, message = only_problem(path)
    assert problem.value == "line 2 column 14"
    assert "not valid JSON" in message and str(path) in message


def test_malformed_toml_names_line_and_column(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('format = "gridcharge/instance-v1"\nname = \n')
    problem, message = only_problem(path)
    assert problem.value == "line 2 column 8"
    assert "not valid TOML" in message and str(path) in message


def test_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"name": "\xe9"}')
    problem, message = only_problem(path)
    assert "UTF-8" in problem.expected and str(path) in message


def test_a_key_given_twice_in_json_is_an_error_not_a_silent_override(tmp_path):
    text = json.dumps(valid()).replace('"energy_kwh": 5.0', '"energy_kwh": 5.0, "energy_kwh": 50.0', 1)
    path = tmp_path / "twice.json"
    path.write_text(text)
    problem, message = only_problem(path)
    assert problem.value == "key 'energy_kwh'"
    assert "appears twice" in message and str(path) in message


def test_a_key_given_twice_in_toml_is_an_error(tmp_path):
    path = tmp_path / "twice.toml"
    path.write_text('format = "gridcharge/instance-v1"\nname = "a"\nname = "b"\n')
    problem, message = only_problem(path)
    assert problem.value == "line 3 column 11" and "not valid TOML" in message


@pytest.mark.parametrize("top, described", [("[1, 2]", "a list"), ('"text"', "a string"), ("null", "null")])
def test_top_level_must_be_an_object(tmp_path, top, described):
    path = tmp_path / "top.json"
    path.write_text(top)
    problem, message = only_problem(path)
    assert problem.value == f"top level is {described}"
    assert "must be a JSON object" in message


def test_a_directory_is_not_an_instance_file(tmp_path):
    problem, message = only_problem(tmp_path)
    assert "cannot be read" in problem.expected


def test_a_source_that_is_neither_path_nor_mapping():
    problem, _ = only_problem(42)
    assert problem.value == "int" and "mapping" in problem.expected


def test_json_nan_literal_in_a_file_is_rejected(tmp_path):
    # Python's json reads the non-standard literals NaN and Infinity; neither may slip through as a limit
    text = json.dumps(valid()).replace('"import_limit_kw": 10.0', '"import_limit_kw": NaN')
    path = tmp_path / "nan.json"
    path.write_text(text)
    problem, message = only_problem(path)
    assert problem.path == "nodes[1].import_limit_kw"
    assert math.isnan(problem.value)
    assert "nodes[1].import_limit_kw: nan — must be a finite number" in message


VALID_TOML = """
format = "gridcharge/instance-v1"
name = "test"

[horizon]
start = 2026-07-01T00:00:00+08:00   # a native TOML date-time
step_minutes = 60
periods = 4

[[nodes]]
id = "T"
kind = "transformer"
import_limit_kw = 50.0

[[nodes]]
id = "M"
parent = "T"
kind = "meter"
import_limit_kw = 10.0

[[chargers]]
id = "c1"
node = "M"
max_charge_kw = 7.0
max_discharge_kw = 3.0

[[chargers]]
id = "c2"
node = "T"
max_charge_kw = 7.0

[[sessions]]
id = "s1"
charger = "c1"
arrival = "2026-07-01T00:00:00+08:00"
departure = "2026-07-01T02:00:00+08:00"
energy_kwh = 5.0

[[sessions]]
id = "s2"
charger = "c1"
arrival = 2026-07-01T02:00:00+08:00
departure = 2026-07-01T04:00:00+08:00
energy_kwh = 5.0

[tariff]
import_cny_per_kwh = 1.0
export_cny_per_kwh = 0.0

[objective]
unmet_penalty_cny_per_kwh = 100.0
"""


def test_toml_with_the_same_content_loads_to_an_equal_instance(tmp_path):
    toml_path = tmp_path / "inst.toml"
    toml_path.write_text(VALID_TOML)
    json_path = tmp_path / "inst.json"
    json_path.write_text(json.dumps(valid()))
    from_toml = load_instance(toml_path)
    from_json = load_instance(json_path)
    assert from_toml == from_json
    assert from_toml.sessions[1].departure.isoformat() == "2026-07-01T04:00:00+08:00"


def test_toml_local_datetime_without_offset_is_rejected(tmp_path):
    path = tmp_path / "naive.toml"
    path.write_text(VALID_TOML.replace("start = 2026-07-01T00:00:00+08:00", "start = 2026-07-01T00:00:00"))
    problem, message = only_problem(path)
    assert problem.path == "horizon.start"
    assert problem.value == "2026-07-01T00:00:00"  # as written, not a Python repr
    assert "no UTC offset" in message


def test_to_dict_round_trips_through_load_instance(tmp_path):
    data = valid()
    data["nodes"][1].update(base_load_kw=[1.0, 2.0, 0.5, 0.0], generation_kw=0.5, phase_import_limit_kw=4.0)
    data["chargers"][0].update(phases="B", efficiency=0.92)
    data["sessions"][0].update(battery_kwh=60.0, initial_kwh=20.0, min_kwh=10.0, max_discharge_kw=3.0)
    data["tariff"]["export_cny_per_kwh"] = [0.1, 0.2, 0.3, 0.4]
    data["objective"] = {"peak_cny_per_kw": 2.0, "degradation_cny_per_kwh": 0.05}
    data["horizon"]["timezone"] = "UTC"
    inst = load_instance(data)
    again = load_instance(inst.to_dict())
    assert again == inst
    assert again.sessions[0].min_kwh == 10.0 and again.horizon.timezone == "UTC"
    path = tmp_path / "dumped.json"
    path.write_text(json.dumps(inst.to_dict()))
    assert load_instance(path) == inst


# ------------------------------------------------------------------------------------------------------------------
# schema: keys, types, numbers


@pytest.mark.parametrize("path, allowed", [
    ("colour", "format, name, horizon"),
    ("horizon.length", "start, step_minutes, periods, timezone"),
    ("nodes[1].rating_kva", "id, parent, kind, import_limit_kw"),
    ("chargers[0].brand", "id, node, max_charge_kw"),
    ("sessions[1].plate", "id, charger, arrival, departure, energy_kwh"),
    ("tariff.demand_cny", "import_cny_per_kwh, export_cny_per_kwh"),
    ("objective.risk", "unmet_penalty_cny_per_kwh"),
])
def test_unknown_keys_are_errors_at_every_level(path, allowed):
    problem, message = only_problem(modified(valid(), path, "surprise"))
    assert problem.path == path
    assert problem.value == "surprise"
    assert "unknown key" in message and allowed in message


@pytest.mark.parametrize("key", ["limit[kW]", "float", "constrained-x", "function-y"])
def test_an_unknown_key_that_looks_like_a_type_name_is_still_named(key):
    data = valid()
    data["nodes"][1][key] = 1.0
    problem, _ = only_problem(data)
    assert problem.path == f"nodes[1].{key}" and "unknown key" in problem.expected


@pytest.mark.parametrize("path", [
    "format", "name", "horizon", "nodes", "tariff", "horizon.start", "horizon.step_minutes", "horizon.periods",
    "nodes[1].id", "nodes[1].kind", "chargers[0].node", "chargers[0].max_charge_kw", "sessions[1].charger",
    "sessions[1].arrival", "sessions[1].departure", "sessions[1].energy_kwh", "tariff.import_cny_per_kwh",
])
def test_missing_required_keys(path):
    problem, message = only_problem(modified(valid(), path, DELETE))
    assert problem.path == path
    assert problem.value == "(missing)"
    assert f"{path}: (missing) — missing required key" in message


def test_optional_keys_may_be_left_out():
    data = instance(periods=2, nodes=[{"id": "T", "kind": "transformer"}])  # no parent key: the root
    for path in ("chargers", "sessions", "tariff.export_cny_per_kwh"):
        data = modified(data, path, DELETE)
    inst = load_instance(data)
    assert inst.sessions == [] and inst.chargers == [] and inst.horizon.timezone == "Asia/Shanghai"
    assert inst.objective.unmet_penalty_cny_per_kwh == 100.0
    assert inst.objective.overload_penalty_cny_per_kwh == 1000.0
    assert inst.tariff.export_cny_per_kwh == 0.0 and inst.root.id == "T"


@pytest.mark.parametrize("fmt", ["gridcharge/instance-v2", "instance-v1", ""])
def test_wrong_format_string(fmt):
    problem, message = only_problem(modified(valid(), "format", fmt))
    assert problem.path == "format" and problem.value == fmt
    assert "must be 'gridcharge/instance-v1'" in message


@pytest.mark.parametrize("path, value, expected", [
    ("nodes[1].import_limit_kw", -1.0, "must be >= 0"),
    ("nodes[0].export_limit_kw", -0.5, "must be >= 0"),
    ("nodes[0].phase_import_limit_kw", -3, "must be >= 0"),
    ("nodes[1].base_load_kw", -2.0, "must be >= 0"),
    ("nodes[1].generation_kw", -1, "must be >= 0"),
    ("chargers[0].max_charge_kw", 0, "must be >= 0.001"),
    ("chargers[0].max_charge_kw", -7.0, "must be >= 0.001"),
    ("chargers[0].max_discharge_kw", -1.0, "must be >= 0"),
    ("sessions[0].energy_kwh", -5.0, "must be >= 0"),
    ("sessions[0].max_charge_kw", 0.0, "must be > 0"),
    ("sessions[0].max_discharge_kw", -1.0, "must be >= 0"),
    ("sessions[0].battery_kwh", 0.0, "must be > 0"),
    ("tariff.import_cny_per_kwh", -0.3, "must be >= 0"),
    ("tariff.export_cny_per_kwh", -0.1, "must be >= 0"),
    ("objective.unmet_penalty_cny_per_kwh", -100.0, "must be >= 0"),
    ("objective.peak_cny_per_kw", -1.0, "must be >= 0"),
    ("horizon.step_minutes", 0, "must be > 0"),
    ("horizon.periods", -4, "must be > 0"),
    ("chargers[0].efficiency", 0, "must be >= 0.1"),
    ("chargers[0].efficiency", 0.0, "must be >= 0.1"),
    ("chargers[0].efficiency", 1.01, "must be <= 1"),
])
def test_numbers_out_of_range(path, value, expected):
    problem, message = only_problem(modified(valid(), path, value))
    assert problem.path == path
    assert problem.value == value
    assert f"{path}: {value} — {expected}" in message


@pytest.mark.parametrize("path, value, expected", [
    ("sessions[0].energy_kwh", 1e308, "must be <= 100,000 (its physical range is [0, 100,000])"),
    ("chargers[0].max_charge_kw", 1e308, "must be <= 10,000 (its physical range is [0.001, 10,000])"),
    ("chargers[0].max_charge_kw", 5e-324, "must be >= 0.001 (its physical range is [0.001, 10,000])"),
    ("chargers[0].max_discharge_kw", 2e4, "must be <= 10,000"),
    ("sessions[0].max_charge_kw", 1e5, "must be <= 10,000"),
    ("sessions[0].battery_kwh", 1e9, "must be <= 100,000"),
    ("nodes[0].import_limit_kw", 1e300, "must be <= 1,000,000 (its physical range is [0, 1,000,000])"),
    ("nodes[0].export_limit_kw", 2e6, "must be <= 1,000,000"),
    ("nodes[0].phase_import_limit_kw", 2e6, "must be <= 1,000,000"),
    ("nodes[1].base_load_kw", 2e6, "must be <= 1,000,000"),
    ("nodes[1].generation_kw", 2e6, "must be <= 1,000,000"),
    ("tariff.import_cny_per_kwh", 1e300, "must be <= 1,000,000 (its physical range is [0, 1,000,000])"),
    ("tariff.export_cny_per_kwh", 1e7, "must be <= 1,000,000"),
    ("objective.unmet_penalty_cny_per_kwh", 1e300, "must be <= 1,000,000,000"),
    ("objective.overload_penalty_cny_per_kwh", 1e300, "must be <= 1,000,000,000"),
    ("objective.peak_cny_per_kw", 1e300, "must be <= 1,000,000,000"),
    ("objective.degradation_cny_per_kwh", 1e300, "must be <= 1,000,000"),
    ("horizon.periods", 1_000_000_000, "must be <= 527,040 (its physical range is [1, 527,040])"),
    ("horizon.step_minutes", 1441, "must be <= 1,440 (its physical range is [1, 1,440])"),
    ("chargers[0].efficiency", 1e-9, "must be >= 0.1 (its physical range is [0.1, 1])"),
])
def test_every_number_has_a_physical_bound_named_with_its_range(path, value, expected):
    """issue 15: energy_kwh 1e308 solved to an objective of inf; 1e9 periods was an OverflowError."""
    problem, message = only_problem(modified(valid(), path, value))
    assert (problem.path, problem.value) == (path, value)
    assert f"{path}: {value} — {expected}" in message


def test_a_horizon_longer_than_366_days_is_refused_before_any_array_is_built():
    problem, message = only_problem(modified(modified(valid(), "horizon.step_minutes", 60), "horizon.periods", 9000))
    assert problem.path == "horizon.periods" and problem.value == 9000
    assert "at most 366 days of periods: 8,784 periods of 60 minutes (this horizon is 375.0 days)" in message


@pytest.mark.parametrize("value", ["eur", "EURO", "", 978])
def test_the_tariff_currency_is_an_iso_4217_code(value):
    problem, message = only_problem(modified(valid(), "tariff.currency", value))
    assert problem.path == "tariff.currency"
    assert load_instance(modified(valid(), "tariff.currency", "EUR")).tariff.currency == "EUR"
    assert load_instance(valid()).tariff.currency == "CNY"


def test_efficiency_of_exactly_one_is_valid():
    assert load_instance(modified(valid(), "chargers[0].efficiency", 1.0)).chargers[0].efficiency == 1.0


@pytest.mark.parametrize("value, shown", [(float("nan"), "nan"), (float("inf"), "inf"), (float("-inf"), "-inf")])
@pytest.mark.parametrize("path", ["nodes[1].import_limit_kw", "sessions[0].energy_kwh", "tariff.import_cny_per_kwh",
                                  "chargers[0].max_charge_kw", "nodes[1].base_load_kw"])
def test_nan_and_infinity_are_rejected(path, value, shown):
    problem, message = only_problem(modified(valid(), path, value))
    assert problem.path == path
    assert f"{path}: {shown} — " in message
    # -inf on a ">= 0" field may be reported either as non-finite or as negative; both name the value
    assert "finite" in message or ">= 0" in message or "> 0" in message


@pytest.mark.parametrize("path, value", [
    ("nodes[1].import_limit_kw", "10"),
    ("sessions[0].energy_kwh", "5 kWh"),
    ("chargers[0].max_charge_kw", "7"),
    ("tariff.import_cny_per_kwh", "1.0"),
    ("objective.peak_cny_per_kw", "2"),
])
def test_strings_where_numbers_are_expected(path, value):
    problem, message = only_problem(modified(valid(), path, value))
    assert problem.path == path and problem.value == value
    assert "must be a number" in message and "not a string" in message


@pytest.mark.parametrize("path, value", [
    ("nodes[1].import_limit_kw", True),
    ("sessions[0].energy_kwh", False),
    ("chargers[0].efficiency", True),
    ("nodes[1].base_load_kw", True),
    ("horizon.step_minutes", True),
    ("horizon.periods", False),
])
def test_booleans_where_numbers_are_expected(path, value):
    # JSON true would otherwise be read as 1 and false as 0
    problem, message = only_problem(modified(valid(), path, value))
    assert problem.path == path and problem.value is value
    assert "not a boolean" in message


@pytest.mark.parametrize("path, value, expected", [
    ("horizon.step_minutes", 15.5, "must be a whole number, not a decimal number"),
    ("horizon.periods", "4", "must be a whole number, not a string"),
    ("name", 7, "must be a string, not an integer"),
    ("nodes[1].id", 5, "must be a string, not an integer"),
    ("nodes[1].id", "", "must not be empty"),
    ("nodes[1].parent", 0, "must be a string, not an integer"),
    ("nodes[1].kind", "substation", "must be 'transformer', 'feeder', 'meter' or 'group'"),
    ("chargers[0].phases", "AB", "must be 'A', 'B', 'C' or 'ABC'"),
    ("horizon.timezone", 8, "must be a string, not an integer"),
    ("nodes", [], "must not be empty"),
    ("nodes", {"T": {}}, "must be a list, not an object"),
    ("horizon", "2026-07-01", "must be an object"),
    ("sessions[0]", 5, "must be an object"),
])
def test_wrong_types_and_choices(path, value, expected):
    problem, message = only_problem(modified(valid(), path, value))
    assert problem.path == path
    assert expected in problem.expected
    assert f"{path}: " in message


@pytest.mark.parametrize("path", ["nodes[1].base_load_kw", "nodes[0].generation_kw", "tariff.import_cny_per_kwh",
                                  "tariff.export_cny_per_kwh"])
@pytest.mark.parametrize("length", [1, 3, 5])
def test_series_length_must_equal_periods(path, length):
    problem, message = only_problem(modified(valid(), path, [1.0] * length))
    assert problem.path == path
    assert problem.value == f"a list of {length} numbers"
    assert "exactly 4 (one per period)" in message


def test_a_series_of_the_right_length_is_valid():
    data = modified(modified(valid(), "nodes[1].base_load_kw", [1.0, 2.0, 3.0, 4.0]),
                    "tariff.import_cny_per_kwh", [0.3, 0.3, 1.0, 1.0])
    assert load_instance(data).nodes[1].base_load_kw == [1.0, 2.0, 3.0, 4.0]


def test_a_bad_element_of_a_series_is_one_problem_naming_the_element():
    problem, message = only_problem(modified(valid(), "nodes[1].base_load_kw", [1.0, 2.0, -3.0, 4.0]))
    assert problem.path == "nodes[1].base_load_kw[2]"
    assert problem.value == -3.0
    assert "must be >= 0" in message
    problem, _ = only_problem(modified(valid(), "tariff.import_cny_per_kwh", [1.0, "x", 1.0, 1.0]))
    assert problem.path == "tariff.import_cny_per_kwh[1]" and "not a string" in problem.expected


def test_a_series_that_is_neither_number_nor_list():
    problem, _ = only_problem(modified(valid(), "nodes[1].generation_kw", "sunny"))
    assert problem.path == "nodes[1].generation_kw" and problem.value == "sunny"
    assert problem.expected == "must be a number, or a list with one number per period, not a string"


# ------------------------------------------------------------------------------------------------------------------
# the tree and references


def test_two_roots():
    problem, message = only_problem(modified(valid(), "nodes[1].parent", None))
    assert problem.path == "nodes"
    assert problem.value == "roots: nodes[0] 'T', nodes[1] 'M'"
    assert "exactly one node with parent null" in message


def test_a_cycle_without_a_root_is_reported_once_as_the_cycle():
    problem, message = only_problem(modified(valid(), "nodes[0].parent", "M"))
    assert problem.path == "nodes[0].parent" and problem.value == "M"
    assert "cycle: T -> M -> T" in message


def test_a_cycle_beside_the_root():
    nodes = [node("T"), node("A", "B", kind="feeder"), node("B", "A", kind="feeder"), node("M", "T")]
    problem, message = only_problem(modified(valid(), "nodes", nodes))
    assert problem.path == "nodes[1].parent"
    assert "cycle: A -> B -> A" in message


def test_no_root_because_the_only_candidate_has_an_unknown_parent():
    problem, message = only_problem(modified(valid(), "nodes[0].parent", "grid"))
    assert problem.path == "nodes[0].parent" and problem.value == "grid"
    assert "or null for the root" in message and "known: 'T', 'M'" in message


def test_a_node_cannot_be_its_own_parent():
    problem, message = only_problem(modified(valid(), "nodes[1].parent", "M"))
    assert problem.path == "nodes[1].parent" and problem.value == "M"
    assert "its own parent" in message


@pytest.mark.parametrize("path, value, expected", [
    ("nodes[1].parent", "X", "the id of another node (known: 'T', 'M')"),
    ("chargers[0].node", "M2", "the id of a node (known: 'T', 'M')"),
    ("sessions[1].charger", "c9", "the id of a charger (known: 'c1', 'c2')"),
])
def test_unknown_references(path, value, expected):
    problem, message = only_problem(modified(valid(), path, value))
    assert (problem.path, problem.value, problem.expected) == (path, value, expected)
    assert f"{path}: {value} — {expected}" in message


@pytest.mark.parametrize("field, item, index", [
    ("nodes", node("M", "T"), 2),
    ("chargers", charger("c1", "T"), 2),
    ("sessions", session("s1", "c2", at(0), at(1), 1.0), 2),
])
def test_duplicate_ids(field, item, index):
    data = valid()
    data[field].append(item)
    problem, message = only_problem(data)
    assert problem.path == f"{field}[{index}].id"
    assert "a unique id" in message and f"also used by {field}[" in message


# ------------------------------------------------------------------------------------------------------------------
# time


@pytest.mark.parametrize("path", ["horizon.start", "sessions[0].arrival", "sessions[1].departure"])
def test_naive_datetimes_without_utc_offset(path):
    problem, message = only_problem(modified(valid(), path, "2026-07-01T02:00:00"))
    assert problem.path == path and problem.value == "2026-07-01T02:00:00"
    assert "no UTC offset" in message


@pytest.mark.parametrize("value", ["tonight", "2026-13-01T00:00:00+08:00", 1751328000])
def test_unreadable_datetimes(value):
    problem, message = only_problem(modified(valid(), "sessions[0].arrival", value))
    assert problem.path == "sessions[0].arrival" and problem.value == value
    assert "ISO-8601" in message


def test_departure_before_arrival():
    problem, message = only_problem(modified(valid(), "sessions[0].departure", at(0)))
    assert problem.path == "sessions[0].departure"
    assert problem.value == "2026-07-01T00:00:00+08:00"
    assert "must be after arrival 2026-07-01T00:00:00+08:00" in message
    problem, _ = only_problem(modified(valid(), "sessions[1].departure", at(1)))
    assert problem.path == "sessions[1].departure" and "must be after arrival" in problem.expected


def test_departure_after_the_horizon_end():
    problem, message = only_problem(modified(valid(), "sessions[1].departure", at(8)))
    assert problem.path == "sessions[1].departure"
    assert problem.value == "2026-07-01T08:00:00+08:00"
    assert ("sessions[1].departure: 2026-07-01T08:00:00+08:00 — must not be after the horizon end "
            "2026-07-01T04:00:00+08:00") in message


def test_departure_exactly_at_the_horizon_end_is_valid():
    inst = load_instance(modified(valid(), "sessions[1].departure", "2026-07-01T04:00:00+08:00"))
    assert inst.sessions[1].departure == inst.horizon.end


def test_departure_at_or_before_the_horizon_start():
    data = modified(modified(valid(), "sessions[0].arrival", "2026-06-30T20:00:00+08:00"),
                    "sessions[0].departure", "2026-06-30T23:00:00+08:00")
    problem, message = only_problem(data)
    assert problem.path == "sessions[0].departure" and problem.value == "2026-06-30T23:00:00+08:00"
    assert "must be after the horizon start 2026-07-01T00:00:00+08:00" in message
    data = modified(data, "sessions[0].departure", "2026-07-01T00:00:00+08:00")
    assert only_problem(data)[0].path == "sessions[0].departure"


def test_arrival_before_the_horizon_start_is_valid():
    inst = load_instance(modified(valid(), "sessions[0].arrival", "2026-06-30T20:00:00+08:00"))
    assert inst.sessions[0].arrival.isoformat() == "2026-06-30T20:00:00+08:00"


def test_an_other_offset_is_the_same_instant():
    # 01:00 UTC is 09:00 Beijing, after the 04:00 horizon end
    problem, message = only_problem(modified(valid(), "sessions[1].departure", "2026-07-01T01:00:00+00:00"))
    assert problem.path == "sessions[1].departure" and "horizon end" in message
    # 19:00 UTC the day before is 03:00 Beijing: inside
    load_instance(modified(valid(), "sessions[1].departure", "2026-06-30T19:00:00+00:00"))


def test_overlapping_sessions_on_one_charger():
    problem, message = only_problem(modified(valid(), "sessions[1].arrival", at(1.5)))
    assert problem.path == "sessions[1].arrival"
    assert problem.value == "2026-07-01T01:30:00+08:00"
    assert "overlaps sessions[0] 's1' on charger 'c1' (until 2026-07-01T02:00:00+08:00)" in message


def test_overlap_is_found_whatever_the_order_in_the_file():
    data = valid()
    data["sessions"].insert(0, session("s0", "c1", at(3), at(4), 1.0))
    problem, _ = only_problem(data)
    assert problem.path == "sessions[0].arrival" and "overlaps sessions[2] 's2'" in problem.expected


def test_back_to_back_sessions_and_sessions_on_other_chargers_do_not_overlap():
    data = valid()
    data["sessions"].append(session("s3", "c2", at(0), at(4), 1.0))
    assert len(load_instance(data).sessions) == 3


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "asia/shanghai", "America", "Asia/", "", "x" * 300])
def test_bad_timezone(zone):
    problem, message = only_problem(modified(valid(), "horizon.timezone", zone))
    assert problem.path == "horizon.timezone" and problem.value == zone
    assert "an IANA time zone" in message


def test_valid_timezones():
    assert load_instance(modified(valid(), "horizon.timezone", "Europe/Berlin")).horizon.timezone == "Europe/Berlin"
    assert load_instance(modified(valid(), "horizon.timezone", "UTC")).horizon.timezone == "UTC"


# ------------------------------------------------------------------------------------------------------------------
# batteries


def with_battery(**fields) -> dict:
    data = valid()
    data["sessions"][0].update(fields)
    return data


def test_min_above_initial():
    problem, message = only_problem(with_battery(battery_kwh=60.0, initial_kwh=10.0, min_kwh=20.0))
    assert problem.path == "sessions[0].min_kwh" and problem.value == 20.0
    assert "must be <= initial_kwh 10" in message


def test_min_above_the_default_initial_of_zero():
    problem, message = only_problem(with_battery(battery_kwh=60.0, min_kwh=5.0))
    assert problem.path == "sessions[0].min_kwh" and "initial_kwh 0 (its default)" in message


def test_initial_above_battery():
    problem, message = only_problem(with_battery(battery_kwh=60.0, initial_kwh=70.0))
    assert problem.path == "sessions[0].initial_kwh" and problem.value == 70.0
    assert "must be <= battery_kwh 60" in message


def test_initial_plus_energy_above_battery():
    problem, message = only_problem(with_battery(battery_kwh=60.0, initial_kwh=58.0))
    assert problem.path == "sessions[0].energy_kwh" and problem.value == 5.0
    assert "initial_kwh + energy_kwh <= battery_kwh (58 + 5 > 60)" in message


def test_energy_alone_above_battery():
    problem, _ = only_problem(with_battery(battery_kwh=4.0))
    assert problem.path == "sessions[0].energy_kwh" and "(0 (its default) + 5 > 4)" in problem.expected


@pytest.mark.parametrize("key", ["initial_kwh", "min_kwh"])
def test_initial_or_min_without_battery(key):
    problem, message = only_problem(with_battery(**{key: 5.0}))
    assert problem.path == f"sessions[0].{key}" and problem.value == 5.0
    assert "give battery_kwh too" in message


def test_a_consistent_battery_is_valid():
    inst = load_instance(with_battery(battery_kwh=60.0, initial_kwh=55.0, min_kwh=10.0))
    assert inst.sessions[0].battery_kwh == 60.0
    # initial + energy == battery exactly fits
    load_instance(with_battery(battery_kwh=60.0, initial_kwh=55.0))


# ------------------------------------------------------------------------------------------------------------------
# several at once


def test_several_schema_errors_are_all_reported():
    data = modified(valid(), "nodes[1].import_limit_kw", -1.0)
    data = modified(data, "chargers[0].efficiency", 1.5)
    data = modified(data, "sessions[1].energy_kwh", "lots")
    data = modified(data, "horizon.colour", "blue")
    data = modified(data, "name", DELETE)
    problems = problems_of(data)
    assert sorted(p.path for p in problems) == sorted([
        "nodes[1].import_limit_kw", "chargers[0].efficiency", "sessions[1].energy_kwh", "horizon.colour", "name"])
    with pytest.raises(InstanceError) as caught:
        load_instance(data)
    text = str(caught.value)
    assert text.startswith("invalid instance, 5 problems:")
    assert "nodes[1].import_limit_kw: -1.0 — must be >= 0" in text
    assert "sessions[1].energy_kwh: lots — must be a number, not a string" in text


def test_several_cross_field_errors_are_all_reported():
    data = modified(valid(), "chargers[1].node", "nowhere")
    data = modified(data, "sessions[0].departure", at(9))
    data = modified(data, "tariff.import_cny_per_kwh", [1.0, 2.0])
    data = modified(data, "horizon.timezone", "Nowhere/City")
    data["sessions"][1].update(min_kwh=1.0)
    problems = problems_of(data)
    assert {p.path for p in problems} == {"chargers[1].node", "sessions[0].departure", "tariff.import_cny_per_kwh",
                                          "horizon.timezone", "sessions[1].min_kwh"}
    assert len(problems) == 5


def test_the_error_is_a_value_error_and_carries_the_file_name(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(modified(valid(), "nodes[1].import_limit_kw", -1.0)))
    with pytest.raises(ValueError) as caught:
        load_instance(path)
    assert isinstance(caught.value, gridcharge.InstanceError)
    assert caught.value.source == str(path)
    assert str(caught.value) == (f"invalid instance {path}: nodes[1].import_limit_kw: -1.0 — must be >= 0 "
                                 "(its physical range is [0, 1,000,000])")


def test_one_translation_of_pydantic_errors_names_fields_for_every_input():
    """instance.field_problems is what instances, scenarios, controller events and HTTP bodies use: a prefix, the
    caller's words for an unknown key, instance-v1's words for everything else."""
    from pydantic import ValidationError

    from gridcharge.instance import Session, field_problems

    with pytest.raises(ValidationError) as caught:
        Session.model_validate({"id": "a", "charger": "c", "departure": "2026-01-15T20:00:00+08:00",
                                "arrival": "2026-01-15T18:00:00+08:00", "energy_kwh": "lots", "max_discharge_kw": True,
                                "colour": 1})
    problems = {p.path: p for p in field_problems(caught.value, prefix="session", unknown_key="no such key")}
    assert set(problems) == {"session.energy_kwh", "session.max_discharge_kw", "session.colour"}
    assert problems["session.energy_kwh"].expected == "must be a number, not a string"
    assert problems["session.max_discharge_kw"].expected == "must be a number, not a boolean"
    assert (problems["session.colour"].value, problems["session.colour"].expected) == (1, "no such key")
    # the same list as FastAPI gives it (loc from the body's top) gives the same problems
    assert field_problems(caught.value.errors(), prefix="session", unknown_key="no such key") == list(problems.values())
