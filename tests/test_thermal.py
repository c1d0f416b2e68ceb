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
