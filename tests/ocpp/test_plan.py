"""The one plan-to-profiles path (gridcharge.ocpp.plan): a publication per charger, what changed between two, the
profiles of a charger at a period (defaults under a demand-response cap, the TxProfile's start and validity), and the
cache that keeps an unchanged charger's rendering."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from gridcharge import load_instance
from gridcharge.online.state import Cap
from gridcharge.ocpp.csms import parse_time, purpose_of, schedule_of
from gridcharge.ocpp.plan import (ChargerSettings, PeriodGrid, Plan, PlannedSession, PublishedPlan, SiteProfiles,
                                  failsafe_defaults)
from gridcharge.ocpp.profiles import failsafe_limits_kw
from tests.builders import charger, instance, node


def _site():
    return load_instance(instance(periods=8, step_minutes=15, nodes=[node("T", import_limit_kw=30.0,
                                                                          base_load_kw=6.0)],
                                  chargers=[charger("c1", max_charge_kw=11.0, max_discharge_kw=11.0),
                                            charger("c2", max_charge_kw=11.0), charger("c3", max_charge_kw=7.0)]))


def _published(start_period, rows, sessions=(("s1", "c1", True), ("s2", "c2", False), ("s3", "c2", False))):
    return PublishedPlan(start_period, tuple(PlannedSession(*s) for s in sessions), np.array(rows, dtype=float),
                         "highs", "optimal")


def test_a_plan_sums_a_chargers_sessions_and_says_which_chargers_changed():
    first = Plan.of(_published(2, [[5.0, -3.0], [2.0, 2.0], [1.0, 4.0]]), after_seq=7)
    assert first.after_seq == 7 and first.source == "highs"
    np.testing.assert_allclose(first.rows["c2"], [3.0, 6.0])  # two sessions on one charger, summed
    assert first.bidirectional == {"c1": True, "c2": False}
    assert first.setpoints_kw(3) == {"c1": -3.0, "c2": 6.0} and first.setpoints_kw(4) == {"c1": 0.0, "c2": 0.0}
    # the same rows for c1, others for c2: only c2 changed
    second = Plan.of(_published(2, [[5.0, -3.0], [2.0, 2.0], [1.0, 5.0]]))
    assert second.changed_since(first) == {"c2"}
    assert Plan.of(_published(2, [[5.0, -3.0], [2.0, 2.0], [1.0, 4.0]])).changed_since(first) == set()
    # a charger that lost its car changed too; a new start period changes every TxProfile (None: all)
    assert Plan.of(_published(2, [[5.0, -3.0]], [("s1", "c1", True)])).changed_since(first) == {"c2"}
    assert Plan.of(_published(3, [[-3.0], [2.0], [4.0]])).changed_since(first) is None
    assert first.changed_since(None) is None


def test_the_period_grid_clips_to_the_day():
    grid = PeriodGrid.of(_site())
    start = grid.start
    assert grid.period_of(start - timedelta(hours=1)) == 0
    assert grid.period_of(start + timedelta(minutes=44, seconds=59)) == 2
    assert grid.period_of(start + timedelta(minutes=45)) == 3
    assert grid.period_of(start + timedelta(days=1)) == 8 == grid.periods
    assert grid.time_of(3) == start + timedelta(minutes=45)


def test_the_failsafe_default_is_lower_within_a_cap_window_only():
    site = _site()
    plain = failsafe_limits_kw(site)
    capped = failsafe_limits_kw(site, import_limit_kw={"T": 12.0})
    assert (capped < plain).all()
    defaults = failsafe_defaults(site, [Cap("T", 12.0, 2, 5)], version=3)
    assert defaults.starts == (0, 2, 5) and defaults.version == 3
    for cid in ("c1", "c2", "c3"):
        assert defaults.limits_kw[cid] == pytest.approx((plain[cid], capped[cid], plain[cid]))
        assert [defaults.at(cid, p) for p in (0, 1, 2, 4, 5, 7)] == pytest.approx(
            [plain[cid]] * 2 + [capped[cid]] * 2 + [plain[cid]] * 2)


def test_a_chargers_profiles_at_a_period():
    site = _site()
    profiles = SiteProfiles(site, {"c1": ChargerSettings(evse_id=2)}, grace_s=120)
    profiles.follow_caps([Cap("T", 12.0, 2, 5)])
    plan = Plan.of(_published(2, [[5.0, -3.0, 4.0], [2.0, 2.0, 0.0], [1.0, 4.0, 0.0]]))
    got = profiles.render("c1", "2.1", 3, plan)
    assert [purpose_of(p) for p in got.payloads] == ["ChargingStationMaxProfile", "TxDefaultProfile", "TxProfile"]
    default = schedule_of(got.payloads[1])
    assert [p["startPeriod"] for p in default["chargingSchedulePeriod"]] == [0, 2 * 900, 5 * 900]
    assert got.failsafe_limit_kw == pytest.approx(failsafe_limits_kw(site, import_limit_kw={"T": 12.0})["c1"])
    tx = got.payloads[2]
    schedule = schedule_of(tx)
    # from the current period (3), not the plan's first (2); valid to the period's end + grace
    start = profiles.grid.time_of(3)
    assert parse_time(schedule["startSchedule"]) == start
    assert parse_time(tx["chargingProfile"]["validTo"]) == start + timedelta(seconds=900 + 120)
    assert tx["evseId"] == 2 and tx["chargingProfile"]["maxOfflineDuration"] == 120
    assert not got.charge_only and got.schedule_source == "highs"  # V2G in 2.1: a discharge set-point is sent
    # 1.6 cannot discharge: charge-only, said so
    old = profiles.render("c1", "1.6", 3, plan)
    assert old.charge_only and old.warnings
    # a charger without a car: station maximum and default only; no schedule source
    idle = profiles.render("c3", "2.0.1", 3, plan)
    assert [purpose_of(p) for p in idle.payloads] == ["ChargingStationMaxProfile", "TxDefaultProfile"]
    assert idle.schedule_source is None
    # past the plan's end: no TxProfile either
    assert len(profiles.render("c1", "2.1", 5, plan).payloads) == 2


def test_an_unchanged_charger_keeps_its_rendering_until_its_row_the_period_or_the_defaults_change():
    profiles = SiteProfiles(_site())
    plan = Plan.of(_published(0, [[5.0, 5.0], [2.0, 2.0], [1.0, 1.0]]))
    first = profiles.profiles("c1", "2.0.1", 0, plan)
    other = Plan.of(_published(0, [[5.0, 5.0], [2.0, 2.0], [1.0, 2.0]]))  # c2 changed, c1 did not
    assert profiles.profiles("c1", "2.0.1", 0, other) is first
    assert profiles.profiles("c1", "2.0.1", 1, other) is not first  # a new period: the TxProfile moves
    again = profiles.profiles("c1", "2.0.1", 1, other)
    profiles.follow_caps([Cap("T", 12.0, 0, 2)])
    assert profiles.profiles("c1", "2.0.1", 1, other) is not again  # new defaults
    changed = Plan.of(_published(0, [[6.0, 6.0], [2.0, 2.0], [1.0, 2.0]]))
    assert profiles.profiles("c1", "2.0.1", 1, changed).payloads[2] != again.payloads[2]
    assert isinstance(first.payloads[0], dict)  # wire dicts, not JSON text
    assert isinstance(profiles.grid.start, datetime)


def test_the_in_memory_backend_lowers_the_failsafe_default_within_a_cap_window():
    """A cap on the in-memory backend reaches the chargers' defaults (one rendering for every backend)."""
    import time

    from gridcharge.ocpp.memory import MemoryBackend

    data = instance(periods=8, step_minutes=15, nodes=[node("T", import_limit_kw=30.0, base_load_kw=6.0)],
                    chargers=[charger("c1", max_charge_kw=11.0), charger("c2", max_charge_kw=11.0)])
    site = load_instance(data)
    now = site.horizon.start + timedelta(minutes=1)
    backend = MemoryBackend(data, {"c1": "a-long-password-1"}, clock=lambda: now).start()
    try:
        before = [p for p in backend.profiles("c1", "2.0.1") if purpose_of(p) == "TxDefaultProfile"][0]
        assert len(schedule_of(before)["chargingSchedulePeriod"]) == 1
        published = backend.publications
        backend.cap("T", 12.0, 2, 5)
        deadline = time.monotonic() + 30
        while backend.publications == published:
            assert time.monotonic() < deadline, "no publication after the cap"
            time.sleep(0.02)
        after = [p for p in backend.profiles("c1", "2.0.1") if purpose_of(p) == "TxDefaultProfile"][0]
        periods = schedule_of(after)["chargingSchedulePeriod"]
        assert [p["startPeriod"] for p in periods] == [0, 2 * 900, 5 * 900]
        capped = failsafe_limits_kw(site, import_limit_kw={"T": 12.0})["c1"]
        assert periods[1]["limit"] < periods[0]["limit"] and periods[1]["limit"] <= capped * 1000
    finally:
        backend.stop()


def test_a_chargers_profiles_use_its_instance_voltage_minimum_and_step():
    """issue 16: kW -> A at the instance charger's voltage (220 V by default, 230 V where it says so; the settings
    hold no voltage), and on 6 A / 1 A chargers every limit is 0 or whole amps from 6 A, with minChargingRate. The
    fail-safe default is min(11 kW own maximum, (30 - 6) / 2 = 12 kW share) = 11 kW."""
    currents = dict(min_current_a=6.0, current_step_a=1.0)
    site = load_instance(instance(periods=4, step_minutes=15, nodes=[node("T", import_limit_kw=30.0,
                                                                          base_load_kw=6.0)],
                                  chargers=[charger("c1", max_charge_kw=11.0, phases="A", **currents),
                                            charger("c2", max_charge_kw=11.0, voltage_v=230.0, **currents)]))
    assert ChargerSettings().rate_unit == "W" and not hasattr(ChargerSettings(), "voltage_v")
    profiles = SiteProfiles(site, {cid: ChargerSettings(rate_unit="A") for cid in ("c1", "c2")})
    plan = Plan.of(_published(0, [[0.5, 1.5, 3.3, 0.0], [3.0, 11.0, 0.0, 0.0]],
                              (("s1", "c1", False), ("s2", "c2", False))))

    def limits(cid, purpose):
        payload = next(p for p in profiles.render(cid, "2.0.1", 0, plan).payloads if purpose_of(p) == purpose)
        schedule = schedule_of(payload)
        return [p["limit"] for p in schedule["chargingSchedulePeriod"]], schedule["minChargingRate"]

    # c1: one phase at 220 V: 0.5 kW (2.3 A) → 0, 1.5 kW (6.8 A) → 6 A, 3.3 kW → 15 A; max 11 kW = 50 A
    assert limits("c1", "TxProfile") == ([0.0, 6.0, 15.0, 0.0], 6.0)
    assert limits("c1", "ChargingStationMaxProfile") == ([50.0], 6.0)
    # c2: three phases at 230 V (690 W per A): 3 kW → 4.3 A, inside the minimum → 0; 11 kW → 15.9 A → 15 A
    assert limits("c2", "TxProfile") == ([0.0, 15.0, 0.0], 6.0)
    assert limits("c2", "TxDefaultProfile") == ([15.0], 6.0)  # 11 kW / 690 W per A = 15.9 A
    assert limits("c1", "TxDefaultProfile") == ([50.0], 6.0)  # min(11 kW, 12 kW) on one phase: 50 A
