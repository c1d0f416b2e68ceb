"""Capacity scenarios: file validation, sampling with common random numbers, hand-computed days, hosting statistics,
identical results on any number of dask workers, and the shipped study end to end (--quick)."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import gridcharge
from gridcharge.cli import EXIT_INVALID, EXIT_OK, main
from gridcharge.errors import InstanceError
from gridcharge.grid.thermal import simulate as thermal_simulate
from gridcharge.scenarios.hosting import hosting_capacity, violation_curve, wilson_interval
from gridcharge.scenarios.runner import TIMING_COLUMNS, Task, plan, run_study, run_task
from gridcharge.scenarios.sampling import assign_chargers, build_day
from gridcharge.scenarios.spec import load_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def tiny(**changes) -> dict:
    """Two identical cars (fixed distributions) on a 10 kW transformer with no base load: every figure by hand."""
    data = {
        "name": "tiny", "seed": 1, "days": 1, "strategies": ["uncontrolled", "optimal"],
        "horizon": {"date": "2026-01-15", "start_hour": 12, "step_minutes": 15},
        # continuous chargers: the hand computations below use 7 kW (6 A / 1 A chargers are checked on their own)
        "site": {"building_type": "residential", "parking_spaces": 2, "efficiency": 1.0, "min_current_a": 0,
                 "current_step_a": 0},
        "transformer": {"rated_kva": 10, "power_factor": 1.0, "ambient": {"preset": "beijing-winter",
                                                                          "daily_sd_c": 0.0}},
        "base_load": {"peak_kw": 0.0, "daily_sd": 0.0},
        "fleet": {"evs": 2,
                  "arrival_hour": {"distribution": "fixed", "value": 18.0},
                  "dwell_hours": {"distribution": "fixed", "value": 4.0},
                  "energy_kwh": {"distribution": "fixed", "value": 14.0},
                  "battery_kwh": [60.0], "initial_soc": {"distribution": "fixed", "value": 0.2}},
        "hosting": {"enabled": False},
    }
    for key, value in changes.items():
        data[key] = value
    return data


# ------------------------------------------------------------------------------------------------------------------
# files


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_scenarios_validate_and_meet_the_beijing_ratio(path):
    s = load_scenario(path)
    expected = {"residential": 1.0, "office": 0.25, "commercial": 0.20, "p-and-r": 0.20}[s.site.building_type]
    assert s.site.required_chargers == math.ceil(expected * s.site.parking_spaces)
    assert s.site.charger_count >= s.site.required_chargers
    assert plan(s)  # the study has tasks; each day builds a valid instance-v1 day
    gridcharge.load_instance(build_day(s, 0).instance)


def test_the_five_shipped_scenarios_are_there():
    names = {p.name for p in SCENARIOS.glob("*.toml")}
    assert {"beijing-residential-630kva.toml", "beijing-office-25pct.toml", "beijing-commercial-carpark.toml",
            "beijing-p-and-r.toml", "beijing-residential-v2g-pv.toml"} <= names
    assert (SCENARIOS / "beijing-residential-630kva.json").exists()  # the instance-v1 file `solve` uses stays


@pytest.mark.parametrize("kind, spaces, required", [
    ("residential", 300, 300), ("office", 401, 101), ("commercial", 500, 100), ("public", 37, 8),
    ("other-public", 100, 15), ("existing-public", 50, 5), ("existing-public", 12, 2), ("p-and-r", 600, 120),
])
def test_charger_ratio_by_building_type(kind, spaces, required):
    data = tiny(site={"building_type": kind, "parking_spaces": spaces})
    data["fleet"]["evs"] = 1
    assert load_scenario(data).site.required_chargers == required


def test_a_charger_count_below_the_ratio_is_a_reported_shortfall():
    from gridcharge.scenarios.report import compliance
    from gridcharge.scenarios.runner import StudyResult

    data = tiny(site={"building_type": "office", "parking_spaces": 400, "chargers": 60})
    s = load_scenario(data)
    text = compliance(StudyResult(rows=pd.DataFrame(), series=pd.DataFrame(), scenario=s))
    assert "SHORTFALL" in text and "requires 100" in text and "40 missing" in text


@pytest.mark.parametrize("change, path, expected", [
    (lambda d: d["transformer"].update(rated_kva=-630), "transformer.rated_kva", "> 0"),
    (lambda d: d["transformer"].update(ratedkva=630), "transformer.ratedkva", "unknown key"),
    (lambda d: d.pop("fleet"), "fleet", "missing"),
    (lambda d: d["fleet"].update(arrival_hour={"distribution": "normal", "mean": 18.0}),
     "fleet.arrival_hour.sd", "required for a normal distribution"),
    (lambda d: d.update(strategies=["uncontrolled", "smart"]), "strategies[1]", "one of"),
    (lambda d: d["site"].update(building_type="castle"), "site.building_type", "must be"),
    (lambda d: d["horizon"].update(date="soon"), "horizon.date", "must be a date like 2026-01-15"),
    (lambda d: d.update(hosting={"enabled": "maybe"}), "hosting.enabled", "must be true or false"),
    (lambda d: d["base_load"].update(csv="nowhere.csv", peak_kw=None), "base_load.csv", "no such file"),
    (lambda d: d["transformer"]["ambient"].update(preset="beijing-monsoon"), "transformer.ambient.preset", "one of"),
    (lambda d: d["fleet"].update(evs=3), "fleet", "at most site.chargers"),
    (lambda d: d["fleet"].update(dwell_hours={"distribution": "normal", "mean": 4, "sd": 1}),
     "fleet.dwell_hours.min", "minimum dwell > 0"),
    (lambda d: d.update(tariff={"period_by_hour": [0] * 23, "prices_cny_per_kwh": [0.5]}), "tariff.period_by_hour",
     "24 class indices"),
    (lambda d: d["site"].update(charger_kw=3.0, charger_phases="three", min_current_a=6, current_step_a=1), "site",
     "draws 3.96 kW at 220 V on 3 phase(s), above charger_kw 3"),
    (lambda d: d["site"].update(current_step_a=0.0001), "site", "0 (continuous) or at least 0.001 A"),
    (lambda d: d["site"].update(min_current_a=-6), "site.min_current_a", ">= 0"),
])
def test_malformed_scenarios_get_field_named_errors(change, path, expected):
    data = copy.deepcopy(tiny())
    change(data)
    with pytest.raises(InstanceError) as info:
        load_scenario(data)
    problem = next((p for p in info.value.problems if p.path == path), None)
    assert problem is not None, [str(p) for p in info.value.problems]
    assert expected in problem.expected


def test_cli_reports_a_bad_file_by_field_without_traceback(tmp_path, capsys):
    text = (SCENARIOS / "beijing-residential-630kva.toml").read_text().replace("rated_kva = 630", "rated_kva = \"big\"")
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    assert main(["scenario", "run", str(bad), "--workers", "0"]) == EXIT_INVALID
    err = capsys.readouterr().err
    assert "transformer.rated_kva: big — must be a number" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------------------------------------
# sampling


def test_common_random_numbers_more_evs_add_cars_to_the_same_day():
    s = load_scenario(SCENARIOS / "beijing-residential-630kva.toml")
    small = build_day(s, 3, 40).instance
    large = build_day(s, 3, 120).instance
    assert large["sessions"][:40] == small["sessions"]
    assert small["nodes"][1]["base_load_kw"] == large["nodes"][1]["base_load_kw"]
    assert build_day(s, 4, 40).instance["sessions"] != small["sessions"]  # another day, other cars
    assert build_day(s, 3, 40).instance == small  # reproducible


def test_uncontrolled_peak_never_falls_when_evs_are_added():
    s = load_scenario(SCENARIOS / "beijing-residential-630kva.toml")
    for day in range(2):
        peaks = [run_task(s, Task("uncontrolled", n, day))["row"]["peak_loading_pct"] for n in (0, 20, 60, 150)]
        assert peaks == sorted(peaks)


def test_shared_chargers_first_free_and_free_again_after_the_departure_period():
    # 2 chargers, 15-min periods: cars arrive at 0, 10, 20, 45 min and leave at 30, 40, 50, 60 min
    arrive = np.array([0, 10, 20, 45])
    leave = np.array([30, 40, 50, 60])
    # car 2 finds both busy (turned away); charger 0 is free again from 30 (its car left at 30, a boundary),
    # so car 3 at 45 takes charger 0
    assert assign_chargers(False, arrive, leave, 2, 15).tolist() == [0, 1, -1, 0]
    # car 0 leaving at 31 keeps its charger busy until 45 (end of that period): car 3 at 45 still gets it
    assert assign_chargers(False, arrive, np.array([31, 40, 50, 60]), 2, 15).tolist() == [0, 1, -1, 0]
    # ... but a car arriving at 44 does not (charger 1 is free from 45 too): turned away
    assert assign_chargers(False, np.array([0, 10, 44]), np.array([31, 40, 60]), 2, 15).tolist() == [0, 1, -1]
    assert assign_chargers(True, arrive, leave, 3, 15).tolist() == [0, 1, 2, -1]


# ------------------------------------------------------------------------------------------------------------------
# a day computed by hand


def test_the_default_6_a_1_a_chargers_reach_the_instances_and_cost_is_reported():
    data = tiny(strategies=["uncontrolled", "online", "optimal"])
    del data["site"]["min_current_a"], data["site"]["current_step_a"]
    s = load_scenario(data)
    assert (s.site.min_current_a, s.site.current_step_a) == (6.0, 1.0)
    rows = {t.strategy: run_task(s, t)["row"] for t in plan(s)}
    # single-phase 220 V at whole amps: 31 A = 6.82 kW is the most a 7 kW charger may be set to; two cars 13.64 kW
    assert rows["uncontrolled"]["peak_loading_pct"] == pytest.approx(136.4)
    assert np.isnan(rows["uncontrolled"]["executability_cost_cny"])
    for strategy in ("online", "optimal"):  # what executability cost: measured for both, never a gain
        o = rows[strategy]
        assert o["executability_cost_cny"] >= -1e-6 and o["executability_unmet_kwh"] >= -1e-9, (strategy, o)
        assert o["undeliverable_kwh"] + o["grid_limited_unmet_kwh"] == pytest.approx(o["unmet_kwh"])
        assert o["peak_loading_pct"] <= 100.0 + 1e-9 and o["overload_kwh"] == pytest.approx(0.0, abs=1e-9)


def test_the_online_strategy_on_continuous_chargers_loses_nothing_to_executability():
    s = load_scenario(tiny(strategies=["online"]))
    row = run_task(s, plan(s)[0])["row"]
    assert (row["executability_unmet_kwh"], row["executability_cost_cny"]) == (0.0, 0.0)


def test_two_cars_on_a_10_kw_transformer_by_hand():
    s = load_scenario(tiny())
    rows = {t.strategy: run_task(s, t)["row"] for t in plan(s)}
    u, o = rows["uncontrolled"], rows["optimal"]
    # uncontrolled: both cars at 7 kW from 18:00 until 14 kWh each, i.e. 2 h at 14 kW = 140 % of 10 kVA
    assert u["peak_loading_pct"] == pytest.approx(140.0)
    assert u["hours_above_rating_h"] == pytest.approx(2.0)
    assert u["kwh_above_rating"] == pytest.approx(8.0)  # 4 kW over for 2 h
    assert u["overload_kwh"] == pytest.approx(8.0)  # the verifier agrees (control limit = rating)
    assert u["energy_cost_cny"] == pytest.approx(28.0)  # 28 kWh in the 18-21 h peak at 1.00 CNY/kWh
    assert u["unmet_kwh"] == pytest.approx(0.0) and u["violates"] and "loading" in u["violated"]
    # optimal: 10 kW in 21-22 h (flat 0.65), the other 18 kWh at peak 1.00 -> 6.5 + 18 = 24.5 CNY, never above 100 %
    assert o["energy_cost_cny"] == pytest.approx(24.5, abs=1e-6)
    assert o["peak_loading_pct"] == pytest.approx(100.0)
    assert o["kwh_above_rating"] == pytest.approx(0.0, abs=1e-9) and o["unmet_kwh"] == pytest.approx(0, abs=1e-6)
    assert not o["violates"]


def test_thermal_metrics_are_the_iec_model_of_the_loading_series():
    s = load_scenario(tiny())
    out = run_task(s, Task("uncontrolled", 2, 0, series=True))
    series, row = out["series"], out["row"]
    again = thermal_simulate(series["loading_pct"] / 100, series["ambient_c"], 15.0, initial="cyclic")
    assert row["max_hot_spot_c"] == pytest.approx(again.hot_spot_c.max())
    assert row["loss_of_life_h"] == pytest.approx(again.loss_of_life_h)
    np.testing.assert_allclose(series["load_kw"], series["base_kw"] - series["pv_kw"] + series["ev_kw"], atol=1e-9)


# ------------------------------------------------------------------------------------------------------------------
# hosting statistics


def test_wilson_interval_known_values():
    # 0 of 10 at 95 %: upper bound z² / (n + z²) = 3.8415 / 13.8415 (hand)
    low, high = wilson_interval(0, 10, 0.95)
    assert low == 0.0 and high == pytest.approx(3.841459 / 13.841459, rel=1e-6)
    # 5 of 10: centre 0.5, half-width 1.96/(1 + 0.38415) * sqrt(0.025 + 0.0096) = 0.2634
    low, high = wilson_interval(5, 10, 0.95)
    assert (low, high) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    assert wilson_interval(10, 10, 0.95)[1] == 1.0


def test_hosting_capacity_is_the_last_count_before_the_first_exceedance():
    rows = pd.DataFrame({
        "strategy": ["a"] * 12 + ["b"] * 4,
        "evs": [10] * 4 + [20] * 4 + [30] * 4 + [10] * 2 + [20] * 2,
        "day": list(range(4)) * 3 + [0, 1, 0, 1],
        "violates": [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1] + [0, 0, 0, 0],
    })
    curve = violation_curve(rows)
    assert curve.loc[(curve.strategy == "a") & (curve.evs == 20), "probability"].item() == 0.25
    cap = hosting_capacity(curve, alpha=0.05).set_index("strategy")
    assert cap.loc["a", "hosting_evs"] == 10 and cap.loc["a", "limited"]
    assert cap.loc["b", "hosting_evs"] == 20 and not cap.loc["b", "limited"]
    assert cap.loc["b", "hosting_evs_confident"] == 0  # 0 of 2 days is not evidence of <= 5 %
    assert cap.loc["a", "hosting_evs"] == 10 and cap.loc["a", "largest_swept"] == 30


# ------------------------------------------------------------------------------------------------------------------
# distributed: identical numbers on any number of workers


def _small_study():
    s = load_scenario(SCENARIOS / "beijing-residential-630kva.toml")
    return s.model_copy(update={
        "days": 2, "strategies": ["uncontrolled", "optimal"],
        "hosting": s.hosting.model_copy(update={"ev_counts": [20, 60], "days": 2, "strategies": ["greedy_cost"]})})


def test_same_study_gives_identical_numbers_on_one_and_two_workers():
    s = _small_study()
    results = [run_study(s, workers=n, progress=False) for n in (0, 1, 2)]
    assert [r.workers for r in results] == [0, 1, 2]
    frames = [r.rows.drop(columns=list(TIMING_COLUMNS)) for r in results]
    assert len(frames[0]) == len(plan(s)) == 2 * 2 + 2 * 2
    for other, r in zip(frames[1:], results[1:]):
        pd.testing.assert_frame_equal(frames[0], other, check_exact=True)
        pd.testing.assert_frame_equal(results[0].series, r.series, check_exact=True)


def test_a_running_scheduler_given_by_address_gives_the_same_numbers():
    """``--scheduler tcp://HOST:PORT``: a cluster the study did not start (here a local one on loopback)."""
    from distributed import LocalCluster

    s = _small_study()
    alone = run_study(s, workers=0, progress=False)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        assert cluster.scheduler_address.startswith("tcp://")
        remote = run_study(s, scheduler=cluster.scheduler_address, progress=False)
    assert remote.workers == 1
    pd.testing.assert_frame_equal(alone.rows.drop(columns=list(TIMING_COLUMNS)),
                                  remote.rows.drop(columns=list(TIMING_COLUMNS)), check_exact=True)


# ------------------------------------------------------------------------------------------------------------------
# the README's main job, quick


def test_beijing_study_quick_writes_the_report(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["scenario", "run", str(SCENARIOS / "beijing-residential-630kva.toml"), "--quick", "--workers", "0",
                 "--quiet", "--out", str(out)])
    assert code == EXIT_OK
    for name in ("report.md", "report.html", "results.csv", "results.parquet", "timeseries.parquet", "hosting.csv",
                 "load_stack.png", "loading_duration.png", "hot_spot.png", "hosting_capacity.png"):
        assert (out / name).stat().st_size > 0, name
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = pd.read_parquet(out / "results.parquet")
    pd.testing.assert_frame_equal(rows, pd.read_csv(out / "results.csv", keep_default_na=False, na_values={
        c: [""] for c in ("executability_unmet_kwh", "executability_cost_cny")}).astype(rows.dtypes.to_dict()),
                                  check_exact=False)
    s = load_scenario(SCENARIOS / "beijing-residential-630kva.toml").quick()
    assert len(rows) == len(plan(s))
    study = rows[rows.evs == 180].set_index(["strategy", "day"])
    # 420 flats at 1.2 kW peak alone are 84 % of 630 kVA: 180 cars charging freely overload it; control does not
    assert (study.loc["uncontrolled", "peak_loading_pct"] > 150).all()
    assert (study.loc["optimal", "peak_loading_pct"] <= 100 + 1e-6).all()
    assert (study.loc["uncontrolled", "loss_of_life_h"] > study.loc["optimal", "loss_of_life_h"]).all()
    report = (out / "report.md").read_text()
    assert "Compliant: 300 chargers for 300 spaces" in report and "## Hosting capacity" in report
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4
    printed = capsys.readouterr().out
    assert "Hosting capacity" in printed and "uncontrolled" in printed


def test_csv_profiles_are_placed_on_the_horizon_from_midnight(tmp_path):
    # ambient: 24 hourly values = hour of day [°C]; base load: 96 quarter-hour values = the period index from 00:00 [kW]
    (tmp_path / "ambient.csv").write_text("hour,temperature_c\n" + "".join(f"{h},{h}\n" for h in range(24)))
    (tmp_path / "base.csv").write_text("load_kw\n" + "".join(f"{i}\n" for i in range(96)))
    data = tiny()
    data["transformer"]["ambient"] = {"csv": "ambient.csv", "daily_sd_c": 0.0}
    data["base_load"] = {"csv": "base.csv", "daily_sd": 0.0}
    path = tmp_path / "s.toml"
    path.write_text(_toml(data))
    s = load_scenario(path)
    day = build_day(s, 0)
    # the horizon starts at 12:00: the first period is quarter-hour 48 of the CSV, the last wraps to 47
    assert day.base_kw[0] == 48 and day.base_kw[47] == 95 and day.base_kw[48] == 0 and day.base_kw[-1] == 47
    # hourly values are interpolated linearly: 12:00 -> 12 °C, 12:15 -> 12.25 °C, 23:45 -> between 23 and 0 (wrap)
    assert day.ambient_c[0] == pytest.approx(12.0) and day.ambient_c[1] == pytest.approx(12.25)
    assert day.ambient_c[47] == pytest.approx(23 + 0.75 * (0 - 23))


def _toml(data: dict, prefix: str = "") -> str:
    """A minimal TOML writer for the test's nested dicts (scalars, lists of scalars, inline tables)."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return f'"{v}"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items() if x is not None) + " }"
        return repr(v)

    lines, tables = [], []
    for k, v in data.items():
        if v is None:
            continue
        if isinstance(v, dict) and not k.endswith(("_hour", "_hours", "_kwh", "_soc")):
            tables.append((k, v))
        else:
            lines.append(f"{k} = {value(v)}")
    out = "\n".join(lines) + "\n"
    for k, v in tables:
        out += f"\n[{prefix}{k}]\n" + _toml(v, f"{prefix}{k}.")
    return out


from hypothesis import given
from hypothesis import strategies as st


@given(seed=st.integers(0, 10_000), evs=st.integers(0, 60), day=st.integers(0, 50))
def test_controlled_strategies_keep_the_rating_and_account_for_every_kwh(seed, evs, day):
    # any day of the P+R car park (its base load alone is far below the rating): the controlled strategies never
    # load the transformer above 100 %, delivered + unmet = requested, and nobody pays for energy nobody bought
    s = load_scenario(SCENARIOS / "beijing-p-and-r.toml").model_copy(update={"seed": seed})
    for strategy in ("equal_share", "optimal"):
        row = run_task(s, Task(strategy, evs, day))["row"]
        assert row["peak_loading_pct"] <= 100 + 1e-6
        assert row["overload_kwh"] == pytest.approx(0.0, abs=1e-6)
        assert row["delivered_kwh"] + row["unmet_kwh"] == pytest.approx(row["requested_kwh"], abs=1e-6)
        assert row["energy_cost_cny"] >= -1e-9 and row["v2g_exported_kwh"] == 0.0
        assert row["violates"] == (row["unmet_share"] > 0.01 or row["max_hot_spot_c"] > 120
                                   or row["loss_of_life_h"] > 24 or row["max_top_oil_c"] > 105)


def test_several_files_are_one_sweep_with_a_report_each(tmp_path, capsys):
    from gridcharge.scenarios.runner import run_studies

    small = load_scenario(tiny())
    big = load_scenario(tiny(transformer={"rated_kva": 20, "power_factor": 1.0,
                                          "ambient": {"preset": "beijing-winter", "daily_sd_c": 0.0}}))
    both = run_studies([small, big], workers=0, progress=False)
    alone = run_study(big, workers=0, progress=False)
    pd.testing.assert_frame_equal(both[1].rows.drop(columns=list(TIMING_COLUMNS)),
                                  alone.rows.drop(columns=list(TIMING_COLUMNS)))
    assert both[1].rows.set_index("strategy").loc["uncontrolled", "peak_loading_pct"] == pytest.approx(70.0)
    # the command line: one folder per file and sweep.csv
    for name, data in (("small", tiny()), ("big", tiny(transformer={"rated_kva": 20, "power_factor": 1.0}))):
        (tmp_path / f"{name}.toml").write_text(_toml(data))
    out = tmp_path / "out"
    assert main(["scenario", "run", str(tmp_path / "small.toml"), str(tmp_path / "big.toml"), "--workers", "0",
                 "--quiet", "--out", str(out)]) == EXIT_OK
    assert (out / "small" / "report.md").exists() and (out / "big" / "report.html").exists()
    sweep = pd.read_csv(out / "sweep.csv").set_index(["scenario", "strategy"])
    assert sweep.loc[("small", "uncontrolled"), "peak_loading_pct_max"] == pytest.approx(140.0)
    assert sweep.loc[("big", "uncontrolled"), "peak_loading_pct_max"] == pytest.approx(70.0)


def test_a_bad_scenario_file_is_called_a_scenario_in_the_message(tmp_path, capsys):
    text = (SCENARIOS / "beijing-residential-630kva.toml").read_text()
    assert "rated_kva = 630" in text
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("rated_kva = 630", "rated_kva = -630"))
    assert main(["scenario", "run", str(bad), "--quick"]) == EXIT_INVALID
    assert capsys.readouterr().err.strip() == f"gridcharge: invalid scenario {bad}: transformer.rated_kva: -630 — must be > 0"


# ------------------------------------------------------------------------------------------------------------------
# physical bounds (issue 15: `days = 100000000` passed `scenario check` and then ate memory)


@pytest.mark.parametrize("change, path, expected", [
    (lambda d: d.update(days=100_000_000), "days", "must be <= 3,660"),
    (lambda d: d["site"].update(charger_kw=1e308), "site.charger_kw", "must be <= 10,000"),
    (lambda d: d["site"].update(charger_kw=float("inf")), "site.charger_kw", "finite number"),
    (lambda d: d["site"].update(parking_spaces=10**9), "site.parking_spaces", "must be <= 100,000"),
    (lambda d: d["transformer"].update(rated_kva=1e308), "transformer.rated_kva", "must be <= 1,000,000"),
    (lambda d: d["transformer"].update(power_factor=5e-324), "transformer.power_factor", "must be >= 0.1"),
    (lambda d: d["transformer"]["ambient"].update(offset_c=1e9), "transformer.ambient.offset_c", "must be <= 60"),
    (lambda d: d["base_load"].update(peak_kw=float("nan")), "base_load.peak_kw", "finite number"),
    (lambda d: d["fleet"].update(energy_kwh={"distribution": "fixed", "value": 1e308}), "fleet.energy_kwh.value",
     "must be <= 1,000,000"),
    (lambda d: d["fleet"].update(battery_kwh=[1e9]), "fleet.battery_kwh[0]", "must be <= 100,000"),
    (lambda d: d.update(tariff={"prices_cny_per_kwh": [1e300], "period_by_hour": [0] * 24}),
     "tariff.prices_cny_per_kwh[0]", "must be <= 1,000,000"),
    (lambda d: d.update(tariff={"currency": "euro"}), "tariff.currency", "ISO 4217"),
    (lambda d: d.update(time_limit_s=1e308), "time_limit_s", "must be <= 604,800"),
    (lambda d: d["horizon"].update(date="9999-12-31"), "horizon.date", "must be <= 2200-12-31"),
    (lambda d: (d["site"].update(building_type="office"), d.update(hosting={"max_evs": 100, "steps": 100,
                                                                             "days": 3000})), "days",
     "at most 100,000 tasks"),
])
def test_every_number_of_a_scenario_has_a_physical_bound(change, path, expected):
    test_malformed_scenarios_get_field_named_errors(change, path, expected)


def test_scenario_check_refuses_a_hundred_million_days_naming_the_field(tmp_path, capsys):
    bad = tmp_path / "long.toml"
    bad.write_text((SCENARIOS / "beijing-residential-630kva.toml").read_text().replace("days = 20 ", "days = 100000000 "))
    assert main(["scenario", "check", str(bad)]) == EXIT_INVALID
    err = capsys.readouterr().err
    assert "days: 100000000 — must be <= 3,660" in err and "Traceback" not in err


def test_the_tariff_currency_reaches_every_day_instance():
    scenario = load_scenario(tiny(tariff={"currency": "EUR"}))
    assert scenario.tariff.currency == "EUR"
    assert build_day(scenario, 0).instance["tariff"]["currency"] == "EUR"
    assert load_scenario(tiny()).tariff.currency == "CNY"
    from gridcharge.scenarios.runner import StudyResult

    assert StudyResult(pd.DataFrame(), pd.DataFrame(), scenario).currency == "EUR"  # what the report labels costs in
