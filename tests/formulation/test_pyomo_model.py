"""The Pyomo builder: the same model as the direct path, readable names, user constraints, solver names."""

import highspy
import numpy as np
import pyomo.environ as pyo
import pytest
from hypothesis import given, settings

import gridcharge
from gridcharge.formulation.lp import build_lp
from gridcharge.formulation.pyomo_model import build_pyomo
from gridcharge.solvers.highs import run_highs
from gridcharge.testing import assert_feasible, assert_objective_close
from tests.builders import at, charger, instance, node, session
from tests.test_properties import close, instances, solve_or_none


def small_site(**objective):
    """Two meters under a limited feeder, one V2G car, phase limits, partial periods, a peak charge."""
    nodes = [node("T", import_limit_kw=30.0, export_limit_kw=5.0, phase_import_limit_kw=9.0, base_load_kw=[6, 9, 12, 3]),
             node("F", "T", kind="feeder", import_limit_kw=12.0),
             node("M1", "F", import_limit_kw=7.0), node("M2", "F", import_limit_kw=7.0)]
    chargers = [charger("c1", "M1", phases="A"), charger("c2", "M2", max_discharge_kw=7.0, efficiency=0.92)]
    sessions = [session("a", "c1", at(0.25), at(3.5), 12.0),
                session("b", "c2", at(0), at(4), 6.0, max_discharge_kw=5.0, battery_kwh=40.0, initial_kwh=20.0,
                        min_kwh=8.0)]
    return instance(periods=4, nodes=nodes, chargers=chargers, sessions=sessions, import_price=[1.2, 1.0, 0.4, 0.3],
                    export_price=[1.1, 0.2, 0.1, 0.1], objective={"peak_cny_per_kw": 0.5, **objective})


def test_the_model_has_readable_components_and_pair_lookup():
    problem = gridcharge.build_problem(small_site())
    model = build_pyomo(problem)
    for name in ("charge_kw", "discharge_kw", "energy_kwh", "energy_balance", "energy_by_departure", "node_limit",
                 "phase_import_limit", "peak_kw", "peak_definition", "cost"):
        assert hasattr(model, name), name
    k = model.pair["b", 2]
    assert model.pair_session_id[k] == "b" and model.pair_period[k] == 2
    assert model.charge_kw[k].ub == pytest.approx(7.0)
    assert model.discharge_kw[k].ub == pytest.approx(5.0)
    assert ("a", 0) in model.pair and ("a", 3) in model.pair  # present for part of periods 0 and 3
    assert "a" in model.energy_by_departure and "b" not in model.energy_by_departure  # b has an energy state
    assert ("T", "A", 1) in model.phase_import_limit


def test_the_pyomo_model_and_the_direct_model_agree_in_size_when_written_to_lp_files(tmp_path):
    problem = gridcharge.build_problem(small_site())
    lp = build_lp(problem)
    model = build_pyomo(problem)
    model.write(str(tmp_path / "pyomo.lp"), io_options={"symbolic_solver_labels": True})
    direct = highspy._Highs()
    direct.setOptionValue("output_flag", False)
    direct.passModel(lp.n_col, lp.n_row, lp.n_nz, 1, 1, lp.offset, lp.col_cost, lp.col_lower, lp.col_upper,
                     lp.row_lower, lp.row_upper, lp.a_start, lp.a_index, lp.a_value, np.zeros(lp.n_col, dtype=np.int32))
    direct.writeModel(str(tmp_path / "direct.lp"))
    sizes = []
    for path in ("pyomo.lp", "direct.lp"):
        reader = highspy._Highs()
        reader.setOptionValue("output_flag", False)
        reader.readModel(str(tmp_path / path))
        sizes.append((reader.getNumCol(), reader.getNumRow(), reader.getNumNz()))
    # Pyomo's LP writer adds one constant column (ONE_VAR_CONSTANT) for the objective offset
    (p_cols, p_rows, p_nz), (d_cols, d_rows, d_nz) = sizes
    assert (p_rows, p_nz) == (d_rows, d_nz)
    assert p_cols - d_cols in (0, 1)


@pytest.mark.parametrize("solver", ["pyomo:highs", "pyomo:appsi_highs"])
def test_pyomo_solvers_reach_the_direct_optimum(solver):
    data = small_site()
    direct = gridcharge.solve(data)
    through_pyomo = gridcharge.solve(data, solver=solver)
    assert_feasible(data, through_pyomo)
    assert_objective_close(through_pyomo.summary["objective_cny"], direct.summary["objective_cny"], rel=1e-6)
    assert through_pyomo.summary["solver"] == solver


def test_a_user_constraint_added_through_extend_is_kept_and_costs_what_it_should():
    data = small_site(peak_cny_per_kw=0.0)
    free = gridcharge.solve(data, solver="pyomo:highs")

    def no_charging_for_a_in_the_cheapest_hour(model, inst):
        k = model.pair["a", 3]
        model.curfew = pyo.Constraint(expr=model.charge_kw[k] == 0)

    held = gridcharge.solve(data, solver="pyomo:highs", extend=no_charging_for_a_in_the_cheapest_hour)
    assert held.power_kw["a"].iloc[3] == pytest.approx(0.0, abs=1e-9)
    assert free.power_kw["a"].iloc[3] > 0.1  # the constraint really binds
    assert held.summary["objective_cny"] > free.summary["objective_cny"] + 1e-6
    assert held.summary["extended"] is True
    assert_feasible(data, held)


def test_an_unavailable_pyomo_solver_is_a_clear_error_listing_what_is_available():
    with pytest.raises(gridcharge.UnknownSolverError) as caught:
        gridcharge.solve(small_site(), solver="pyomo:no-such-solver")
    message = str(caught.value)
    assert "no-such-solver" in message and "pyomo:highs" in message and "highs" in message


def test_run_highs_and_pyomo_agree_on_the_lp_objective_before_write_back():
    problem = gridcharge.build_problem(small_site())
    lp = build_lp(problem)
    direct = run_highs(lp)
    model = build_pyomo(problem)
    pyo.SolverFactory("appsi_highs").solve(model)
    assert pyo.value(model.cost) == pytest.approx(direct.objective + lp.offset, rel=1e-9, abs=1e-9)


@given(instances())
@settings(max_examples=15)
def test_both_builders_reach_the_same_optimum_on_random_instances(data):
    direct = solve_or_none(data)
    if direct is None:
        with pytest.raises(gridcharge.InfeasibleError):
            gridcharge.solve(data, solver="pyomo:highs")
        return
    through_pyomo = gridcharge.solve(data, solver="pyomo:highs")
    assert close(through_pyomo.summary["objective_cny"], direct.summary["objective_cny"]), (
        through_pyomo.summary["objective_cny"], direct.summary["objective_cny"])
    assert_feasible(data, through_pyomo)
