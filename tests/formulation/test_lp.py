"""The LP builder: only the rows that can bind, and infeasibility reported before any solve."""

import numpy as np
import pytest

import gridcharge
from gridcharge.formulation.lp import build_lp
from tests.builders import at, charger, instance, node, session


def site(meter_limit_kw, transformer_limit_kw=None, **transformer):
    nodes = [node("T", import_limit_kw=transformer_limit_kw, **transformer), node("M", "T", import_limit_kw=meter_limit_kw)]
    return instance(periods=2, nodes=nodes, chargers=[charger("c", "M", max_charge_kw=7.0)],
                    sessions=[session("s", "c", at(0), at(2), 5.0)])


def names(lp):
    return {block.name for block in lp.row_blocks}


def test_a_meter_limit_at_the_charger_rating_is_left_out_because_it_can_never_bind():
    lp = build_lp(gridcharge.build_problem(site(meter_limit_kw=7.0)))
    assert "node_limit" not in names(lp)


def test_a_meter_limit_below_the_charger_rating_gets_one_row_per_period():
    lp = build_lp(gridcharge.build_problem(site(meter_limit_kw=3.0)))
    (block,) = [b for b in lp.row_blocks if b.name == "node_limit"]
    assert block.stop - block.start == 2
    np.testing.assert_allclose(lp.row_upper[block.start:block.stop], [3.0, 3.0])


def test_base_load_over_an_import_limit_is_infeasible_before_solving():
    with pytest.raises(gridcharge.InfeasibleError) as caught:
        build_lp(gridcharge.build_problem(site(7.0, transformer_limit_kw=10.0, base_load_kw=[4.0, 12.5])))
    (o,) = caught.value.overloads
    assert (o.node, o.kind, o.period, o.excess_kw) == ("T", "import", 1, pytest.approx(2.5))


def test_generation_beyond_the_reverse_flow_limit_that_chargers_cannot_absorb_is_infeasible():
    # 20 kW of PV, 5 kW reverse flow allowed, one 7 kW charger: 8 kW cannot go anywhere
    with pytest.raises(gridcharge.InfeasibleError) as caught:
        build_lp(gridcharge.build_problem(site(7.0, export_limit_kw=5.0, generation_kw=20.0)))
    kinds = {(o.node, o.kind, o.period, round(o.excess_kw, 6)) for o in caught.value.overloads}
    assert kinds == {("T", "export", 0, 8.0), ("T", "export", 1, 8.0)}


def test_a_phase_limit_under_the_base_load_share_names_the_phase():
    with pytest.raises(gridcharge.InfeasibleError) as caught:
        build_lp(gridcharge.build_problem(site(7.0, phase_import_limit_kw=2.0, base_load_kw=9.0)))
    assert {o.kind for o in caught.value.overloads} == {"phase_A", "phase_B", "phase_C"}
    assert caught.value.overloads[0].excess_kw == pytest.approx(1.0)


def test_with_allow_overload_the_same_model_is_built_with_slack_and_no_error():
    lp = build_lp(gridcharge.build_problem(site(7.0, transformer_limit_kw=10.0, base_load_kw=[4.0, 12.5])),
                  allow_overload=True)
    assert "overload_kw" in {b.name for b in lp.col_blocks}
    assert set(lp.slack_kind) == {"import"}


def test_columns_exist_only_where_the_car_is_plugged_in():
    data = instance(periods=4, chargers=[charger("c")], sessions=[session("s", "c", at(1), at(2.5), 3.0)])
    lp = build_lp(gridcharge.build_problem(data))
    assert lp.pair_period.tolist() == [1, 2]
    assert lp.n_col == 2  # charge only: no discharge or energy-state columns for a one-way session
