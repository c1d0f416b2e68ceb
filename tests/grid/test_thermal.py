"""IEC 60076-7 thermal model: golden values computed by hand from the standard's equations, and cross-checks."""

import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridcharge.grid.thermal import (
    PRESETS,
    ThermalParameters,
    ageing_rate,
    simulate,
    steady_hot_spot_rise_k,
    steady_top_oil_rise_k,
)


def test_rated_load_at_20c_gives_98c_hot_spot_and_unit_ageing():
    # IEC 60076-7 Table 4, distribution ONAN: 20 + Δθor 55 + H·gr 23 = 98 °C; V(98) = 2^0 = 1
    result = simulate(np.ones(96), 20.0, 15.0)
    np.testing.assert_allclose(result.hot_spot_c, 98.0, atol=1e-9)
    np.testing.assert_allclose(result.top_oil_c, 75.0, atol=1e-9)
    np.testing.assert_allclose(result.ageing_rate, 1.0, atol=1e-12)
    assert result.loss_of_life_h == pytest.approx(24.0)  # one day of normal ageing


def test_steady_state_at_other_load_matches_closed_form():
    # K = 1.2, 30 °C: top-oil rise 55 * ((1 + 5 * 1.44) / 6)^0.8, gradient 23 * 1.2^1.6 (hand-computed below)
    top_rise = 55 * (8.2 / 6) ** 0.8
    gradient = 23 * 1.2 ** 1.6
    assert top_rise == pytest.approx(70.61, abs=0.01)
    assert gradient == pytest.approx(30.79, abs=0.01)
    assert steady_top_oil_rise_k(1.2) == pytest.approx(top_rise)
    assert steady_hot_spot_rise_k(1.2) == pytest.approx(gradient)
    result = simulate(np.full(400, 1.2), 30.0, 15.0)  # starts there
    np.testing.assert_allclose(result.hot_spot_c, 30 + top_rise + gradient, atol=1e-9)
    # from half load the step response settles to the same value (100 h >> k11·τo = 3 h)
    k = np.r_[0.5, np.full(400, 1.2)]
    settled = simulate(k, 30.0, 15.0).hot_spot_c[-1]
    assert settled == pytest.approx(30 + top_rise + gradient, abs=1e-6)


def test_top_oil_step_response_is_the_exact_exponential():
    # from steady state at no load (top oil 20 + 55 (1/6)^0.8: the no-load losses alone), a step to K=1:
    # top oil = 75 + (start - 75) exp(-t / (k11 τo))
    start = 20 + 55 * (1 / 6) ** 0.8
    assert start == pytest.approx(33.12, abs=0.01)
    k = np.r_[0.0, np.ones(24)]
    result = simulate(k, 20.0, 15.0)
    assert result.top_oil_c[0] == pytest.approx(start)
    t_min = 15.0 * np.arange(1, 25)
    np.testing.assert_allclose(result.top_oil_c[1:], 75 + (start - 75) * np.exp(-t_min / 180.0), atol=1e-9)
    # the hot-spot gradient (k21 = 1: only Δθh1, τ = k22 τw = 8 min): 23 (1 - exp(-t/8))
    np.testing.assert_allclose(result.hot_spot_c[1:] - result.top_oil_c[1:], 23 * (1 - np.exp(-t_min / 8.0)),
                               atol=1e-9)


def test_step_length_does_not_change_the_answer_for_piecewise_constant_load():
    # the update is exact: a profile held per quarter hour gives the same temperatures on 15-min and 1-min steps
    rng = np.random.default_rng(3)
    k15 = rng.uniform(0.2, 1.5, 96)
    amb15 = rng.uniform(-10, 10, 96)
    coarse = simulate(k15, amb15, 15.0)
    fine = simulate(np.repeat(k15, 15), np.repeat(amb15, 15), 1.0, initial="state",
                    initial_state=_state_of(k15[0], amb15[0]))
    np.testing.assert_allclose(fine.hot_spot_c[14::15], coarse.hot_spot_c, atol=1e-8)
    np.testing.assert_allclose(fine.top_oil_c[14::15], coarse.top_oil_c, atol=1e-8)


DEFAULT = ThermalParameters()


def _state_of(k, ambient, p=DEFAULT):
    g = p.hot_spot_gradient_k * k ** p.winding_exponent
    return ambient + float(steady_top_oil_rise_k(k, p)), p.k21 * g, (p.k21 - 1) * g


def test_no_oscillation_at_15_minute_steps_where_the_explicit_form_does():
    # a step up to K = 1.5: the true response rises monotonically to its steady state
    k = np.r_[0.3, np.full(40, 1.5)]
    hot = simulate(k, 20.0, 15.0).hot_spot_c
    assert np.all(np.diff(hot) >= -1e-12)
    assert hot[-1] <= 20 + steady_top_oil_rise_k(1.5) + steady_hot_spot_rise_k(1.5) + 1e-9
    # the explicit difference form Δθh1 += Δt/(k22 τw) (target - Δθh1) with Δt/(k22 τw) = 15/8 > 1 overshoots and
    # flips sign each step — the reason for the exact update
    ratio = 15.0 / (2.0 * 4.0)
    dh1, target, path = steady_hot_spot_rise_k(0.3), steady_hot_spot_rise_k(1.5), []
    for _ in range(6):
        dh1 = dh1 + ratio * (target - dh1)
        path.append(dh1 - target)
    assert all(a * b < 0 for a, b in itertools.pairwise(path))


def test_cross_check_against_fine_numerical_integration():
    # medium/large preset (k21 = 2: both hot-spot parts active) against scipy's ODE solver on the same equations
    from scipy.integrate import solve_ivp

    p = PRESETS["onan-medium-large"]
    rng = np.random.default_rng(11)
    k = rng.uniform(0.3, 1.4, 48)
    amb = 25.0
    x0 = _state_of(k[0], amb, p)
    result = simulate(k, amb, 30.0, p)

    def rhs(t, x):
        kk = k[min(int(t // 30.0), len(k) - 1)]
        top_ss = amb + p.top_oil_rise_k * ((1 + p.loss_ratio * kk ** 2) / (1 + p.loss_ratio)) ** p.oil_exponent
        g = p.hot_spot_gradient_k * kk ** p.winding_exponent
        return [(top_ss - x[0]) / (p.k11 * p.tau_oil_min), (p.k21 * g - x[1]) / (p.k22 * p.tau_winding_min),
                ((p.k21 - 1) * g - x[2]) / (p.tau_oil_min / p.k22)]

    t_end = 30.0 * np.arange(1, 49)
    sol = solve_ivp(rhs, (0, t_end[-1]), x0, t_eval=t_end, max_step=0.5, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(result.top_oil_c, sol.y[0], atol=1e-4)
    np.testing.assert_allclose(result.hot_spot_c, sol.y[0] + sol.y[1] - sol.y[2], atol=1e-4)


def test_ageing_rates_and_loss_of_life():
    # IEC eq. 2: doubles every 6 K above 98 °C
    assert ageing_rate(98.0) == pytest.approx(1.0)
    assert ageing_rate(104.0) == pytest.approx(2.0)
    assert ageing_rate(86.0) == pytest.approx(0.25)
    # eq. 3 / IEEE F_AA: 1 at 110 °C; at 120 °C exp(15000/383 - 15000/393) = exp(0.99655...) by hand
    assert ageing_rate(110.0, "iec-upgraded") == pytest.approx(1.0)
    assert ageing_rate(120.0, "ieee") == pytest.approx(math.exp(15000 / 383 - 15000 / 393))
    assert ageing_rate(120.0, "ieee") == pytest.approx(2.709, abs=1e-3)
    # constant 104 °C hot spot for a day ages the paper 48 equivalent hours: find the K that gives it
    # (20 °C ambient) by bisection on the closed form, then integrate
    lo, hi = 1.0, 1.5
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if 20 + steady_top_oil_rise_k(mid) + steady_hot_spot_rise_k(mid) < 104 else (lo, mid)
    result = simulate(np.full(96, lo), 20.0, 15.0)
    assert result.loss_of_life_h == pytest.approx(48.0, rel=1e-9)


def test_cyclic_start_reaches_the_periodic_state():
    rng = np.random.default_rng(5)
    k = rng.uniform(0.2, 1.3, 96)
    three = simulate(k, 5.0, 15.0, initial="cyclic", cycles=3)
    ten = simulate(k, 5.0, 15.0, initial="cyclic", cycles=10)
    np.testing.assert_allclose(three.hot_spot_c, ten.hot_spot_c, atol=0.05)  # τo = 3 h: 2 days settle it
    # periodic: the end of the day flows into its start
    again = simulate(k, 5.0, 15.0, initial="state",
                     initial_state=(ten.top_oil_c[-1], ten.hot_spot_c[-1] - ten.top_oil_c[-1], 0.0))
    np.testing.assert_allclose(again.hot_spot_c, ten.hot_spot_c, atol=1e-6)


@given(st.lists(st.floats(0.0, 2.0), min_size=2, max_size=60), st.floats(-30, 40))
def test_temperatures_stay_between_the_steady_states_of_the_lightest_and_heaviest_load(ks, ambient):
    k = np.asarray(ks)
    result = simulate(k, ambient, 15.0)
    low = ambient + steady_top_oil_rise_k(k.min()) + steady_hot_spot_rise_k(k.min())
    high = ambient + steady_top_oil_rise_k(k.max()) + steady_hot_spot_rise_k(k.max())
    assert np.all(result.hot_spot_c >= low - 1e-9) and np.all(result.hot_spot_c <= high + 1e-9)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="tau_oil_min"):
        ThermalParameters(tau_oil_min=0.0)
    with pytest.raises(ValueError, match="method"):
        ageing_rate(90.0, "arrhenius")


def test_the_thermal_model_is_also_gridcharge_thermal():
    import gridcharge
    import gridcharge.grid.thermal

    assert gridcharge.thermal is gridcharge.grid.thermal


# ------------------------------------------------------------------------------------------------------------------
# loss of life: the integral of V over the exact temperatures, not V sampled at the step ends


def test_ageing_of_a_step_change_is_the_exponential_integral_in_closed_form():
    # No top-oil rise (Δθor = 0): top oil = ambient, hot spot = θa + Δθh1 with Δθh1 = g + (g0 - g) exp(-t/τ), τ = 8 min.
    # Normal paper V = exp(c (θh - 98)), c = ln2 / 6, so over the step
    # ∫ V dt = exp(c (θa + g - 98)) ∫ exp(b e^(-t/τ)) dt = τ exp(c (θa + g - 98)) (Ei(b) - Ei(b e^(-Δt/τ))),
    # b = c (g0 - g) (substitute u = b e^(-t/τ); Ei the exponential integral).
    from scipy.special import expi

    p = ThermalParameters(top_oil_rise_k=0.0, hot_spot_gradient_k=60.0)
    ambient, tau, dt = 40.0, 8.0, 15.0
    k = np.array([0.4, 1.3])
    result = simulate(k, ambient, dt, p)
    c = math.log(2) / 6
    g0, g = 60.0 * 0.4 ** 1.6, 60.0 * 1.3 ** 1.6
    b = c * (g0 - g)
    exact_h = tau * math.exp(c * (ambient + g - 98)) * (expi(b) - expi(b * math.exp(-dt / tau))) / 60
    assert result.hot_spot_c[1] == pytest.approx(ambient + g + (g0 - g) * math.exp(-dt / tau), abs=1e-9)
    assert result.step_loss_of_life_h[0] == pytest.approx(dt / 60 * 2 ** ((ambient + g0 - 98) / 6), rel=1e-12)
    assert result.step_loss_of_life_h[1] == pytest.approx(exact_h, rel=1e-3)  # a 73 K jump: the hardest case
    # V at the end of the step, times the step (the old rule): 3.9 times the integral on this jump
    assert result.ageing_rate[1] * dt / 60 / exact_h == pytest.approx(3.92, abs=0.01)
    # a shorter sub-step settles further, towards the same closed form
    finer = simulate(k, ambient, dt, p, ageing_substep_minutes=0.1)
    assert finer.step_loss_of_life_h[1] == pytest.approx(exact_h, rel=1e-9)


def _evening_peak_day(seed=2026):
    """A winter day of a Beijing compound, 12:00 -> 12:00 at 15 min, as scenarios/beijing-residential-630kva.toml
    builds it: 420 flats (1.2 kW diversified peak) and 180 uncontrolled 7 kW cars plugging in around 18:48; loading
    K on 630 kVA at pf 0.95, and the January ambient [°C]."""
    from gridcharge.grid.profiles import HOUSEHOLD_SHAPE, ambient_preset, hourly_to_periods

    rng = np.random.default_rng(seed)
    base_kw = 420 * 1.2 * hourly_to_periods(HOUSEHOLD_SHAPE, 12.0, 15.0, 96)
    arrival_h = np.clip(rng.normal(18.8, 1.6, 180), 14.0, 23.5) - 12.0  # hours after the start
    charge_h = np.clip(rng.gamma(4.0, 3.5, 180), 2.0, 45.0) / 7.0
    t_h = np.arange(96) / 4.0
    # energy-exact 15-min means of each car's 7 kW block [arrival, arrival + charge)
    overlap = (np.clip(np.minimum(arrival_h + charge_h, t_h[:, None] + 0.25) - np.maximum(arrival_h, t_h[:, None]),
                       0.0, None))
    ev_kw = 7.0 * overlap.sum(axis=1) / 0.25
    return (base_kw + ev_kw) / 0.95 / 630.0, hourly_to_periods(ambient_preset("beijing-winter"), 12.0, 15.0, 96)


def _settled_loss_of_life_h(k, ambient, step, p, ageing, x0):
    """Independent reference: scipy's adaptive solver on the three equations of 8.2.2 with ageing ∫ V dt as a
    fourth state [h], restarted at every step boundary (the load jumps there), tolerances 1e-11."""
    from scipy.integrate import solve_ivp

    x = [*x0, 0.0]
    for kk, a in zip(k, np.broadcast_to(ambient, k.shape), strict=True):
        top_ss = a + p.top_oil_rise_k * ((1 + p.loss_ratio * kk ** 2) / (1 + p.loss_ratio)) ** p.oil_exponent
        g = p.hot_spot_gradient_k * kk ** p.winding_exponent

        def rhs(t, y, top_ss=top_ss, g=g):
            return [(top_ss - y[0]) / (p.k11 * p.tau_oil_min), (p.k21 * g - y[1]) / (p.k22 * p.tau_winding_min),
                    ((p.k21 - 1) * g - y[2]) / (p.tau_oil_min / p.k22),
                    ageing_rate(y[0] + y[1] - y[2], ageing) / 60.0]

        x = solve_ivp(rhs, (0.0, step), x, method="DOP853", rtol=1e-11, atol=1e-11).y[:, -1]
    return x[3]


@pytest.mark.parametrize(("ageing", "old_error"), [("iec-normal", (0.040, 0.048)), ("iec-upgraded", (0.031, 0.039))])
def test_loss_of_life_of_an_evening_peak_day_agrees_with_a_settled_ode_solution(ageing, old_error):
    k, ambient = _evening_peak_day()
    assert 1.5 < k.max() < 2.2  # the uncontrolled evening peak overloads the transformer, as in the scenario
    result = simulate(k, ambient, 15.0, ageing=ageing, initial="cyclic")
    # the reported day starts where the previous pass of the cycle ended
    previous = simulate(k, ambient, 15.0, ageing=ageing, initial="cyclic", cycles=2)
    x0 = (previous.top_oil_c[-1], previous.hot_spot_c[-1] - previous.top_oil_c[-1], 0.0)
    settled = _settled_loss_of_life_h(k, ambient, 15.0, DEFAULT, ageing, x0)
    assert settled > {"iec-normal": 24, "iec-upgraded": 2}[ageing]  # an ageing day (relative to each reference)
    assert result.loss_of_life_h == pytest.approx(settled, rel=1e-3)  # < 0.1 %
    assert result.loss_of_life_h == pytest.approx(result.step_loss_of_life_h.sum(), rel=1e-12)
    # the old rectangle rule on the step ends (V at the end of each 15-min step x 15 min) overstates this day by
    # 4.4 % (normal paper) and 3.5 % (upgraded); the scenario's own uncontrolled day 0 at 180 EVs by 6.0 % and 4.3 %
    old = result.ageing_rate.sum() * 15.0 / 60.0
    assert old_error[0] < old / settled - 1 < old_error[1]
    # the default sub-step is converged: a 10x finer one moves the day by < 0.01 %
    finer = simulate(k, ambient, 15.0, ageing=ageing, initial="cyclic", ageing_substep_minutes=0.25)
    assert result.loss_of_life_h == pytest.approx(finer.loss_of_life_h, rel=1e-4)


def test_ageing_integral_does_not_depend_on_how_a_constant_hold_is_cut_into_steps():
    # the same piecewise-constant load held per 15 min, simulated on 15-min and on 5-min steps: same exact path,
    # same integral (each to its own sub-step accuracy)
    rng = np.random.default_rng(8)
    k15 = rng.uniform(0.3, 1.8, 96)
    coarse = simulate(k15, 10.0, 15.0)
    fine = simulate(np.repeat(k15, 3), 10.0, 5.0)
    assert fine.loss_of_life_h == pytest.approx(coarse.loss_of_life_h, rel=2e-4)
    np.testing.assert_allclose(fine.step_loss_of_life_h.reshape(96, 3).sum(axis=1), coarse.step_loss_of_life_h,
                               rtol=2e-3)


def test_a_bad_ageing_sub_step_is_refused():
    with pytest.raises(ValueError, match="ageing_substep_minutes"):
        simulate(np.ones(4), 20.0, 15.0, ageing_substep_minutes=0.0)
