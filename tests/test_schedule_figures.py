"""The summary's figures, computed once per schedule from shared intermediates, equal the public functions that
define them one by one (and the verifier's independent cost), on random set-points that also overfill cars."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import gridcharge
from gridcharge.bench.generate import generate
from gridcharge.schedule import cost_cny, delivered_kwh, drawn_kw, node_loads, summarise

PROBLEMS = {variant: gridcharge.build_problem(generate("residential", 40, 3, **params))
            for variant, params in {"v2g": {}, "chargeonly": {"v2g_share": 0.0}, "tight": {"capacity": "tight"}}.items()}


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(sorted(PROBLEMS)), st.integers(0, 2**32 - 1), st.floats(0.0, 3.0))
def test_summary_figures_equal_their_definitions(variant, seed, scale):
    p = PROBLEMS[variant]
    rng = np.random.default_rng(seed)
    power = scale * rng.uniform(-p.discharge_max_kw[:, None], p.charge_max_kw[:, None], p.presence.shape)
    power *= p.presence > 0
    summary = summarise(p, power)
    delivered = delivered_kwh(p, power)
    assert summary["objective_cny"] == cost_cny(p, power)
    assert summary["energy_delivered_kwh"] == float(delivered.sum())
    assert summary["unmet_kwh"] == float(np.clip(p.energy_request_kwh - delivered, 0.0, None).sum())
    root_load = node_loads(p, drawn_kw(p, power))[p.root]
    assert summary["peak_kw"] == float(root_load.max())
    drawn = drawn_kw(p, power)
    energy = p.presence * p.step_hours
    by_hand = (np.clip(drawn, 0, None) * energy).sum(axis=0) @ p.import_price \
        - (np.clip(-drawn, 0, None) * energy).sum(axis=0) @ p.export_price \
        + p.degradation_cost * (np.clip(-drawn, 0, None) * energy).sum() \
        + p.unmet_penalty * np.clip(p.energy_request_kwh - delivered, 0, None).sum() + p.peak_cost * root_load.max()
    np.testing.assert_allclose(summary["objective_cny"], by_hand, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(summary["objective_cny"], gridcharge.verify(p.instance, power).cost_cny, rtol=1e-9,
                               atol=1e-6)
