"""The structured solver's interior point split by transformer subtree (gridcharge/solvers/structured/partition.py),
each partition keeping its iterates and running its passes, in process or on dask workers (on_dask.py): the optimum of
the unsplit solve, the same numbers on 0, 1 and 2 workers, HiGHS's optimum on small districts, and a worker lost
mid-solve re-created without changing a number."""

from __future__ import annotations

import gc
import os
import weakref

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import gridcharge
from gridcharge.bench.generate import generate
from gridcharge.formulation.lp import build_lp
from gridcharge.solvers.structured import on_dask
from gridcharge.solvers.structured.certificate import lower_bound
from gridcharge.solvers.structured.ipm import interior_point
from gridcharge.solvers.structured.layout import Derived, derive_layout
from gridcharge.solvers.structured.on_dask import DaskExecutor, WorkerLost
from gridcharge.solvers.structured.partition import InProcess, plan, split_interior_point
from gridcharge.testing import assert_feasible
from tests.solvers.test_structured import _both, _check_certified, small_districts


def _district_layout(n=120, transformers=4, seed=4):
    lp = build_lp(gridcharge.build_problem(generate("district", n, seed, transformers=transformers)))
    return lp, derive_layout(lp)


@pytest.fixture(scope="module")
def cluster():
    """A local cluster of 2 worker processes for the module's tests (started once: it takes seconds)."""
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c:
        with distributed.Client(c) as client:
            yield c, client


def test_the_plan_splits_cars_and_rows_once():
    _, layout = _district_layout()
    split = plan(layout, 2)
    assert len(split.parts) == 2
    everyone = [split.top, *split.parts]
    # every car once (by its local rows), every coupling row eliminated by exactly one front
    local = np.concatenate([p.rows[:len(p.layout.local_rows)] for p in everyone])
    assert np.array_equal(np.sort(local), np.sort(layout.local_rows))
    owned = np.concatenate([p.rows[len(p.layout.local_rows) + rows[:own]] for p in everyone
                            for rows, own in zip(p.layout.front_rows, p.layout.front_own)])
    assert np.array_equal(np.sort(owned), np.sort(layout.coupling_rows))
    # a partition's rows above its fronts are the coordinator's
    top_rows = split.top.rows[len(split.top.layout.local_rows):]
    for p, above in zip(split.parts, split.above_global):
        assert np.isin(p.rows[len(p.layout.local_rows) + p.above], top_rows).all() and len(p.above)
        assert np.array_equal(p.above_global, above)  # what the coordinator knows without building the slice
    # every column is one part's (its iterates live there)
    assert np.array_equal(np.sort(np.concatenate([p.cols for p in everyone])), np.arange(layout.n_col))


@pytest.mark.parametrize("n_parts", [1, 2, 3, 8])
def test_the_split_interior_point_reaches_the_unsplit_optimum(n_parts):
    lp, layout = _district_layout()
    whole = interior_point(layout, lp.col_cost, offset=lp.offset, max_iterations=200)
    split = split_interior_point(layout, lp.col_cost, offset=lp.offset, max_iterations=200, n_parts=n_parts)
    assert whole.status == split.status == "optimal"
    scale = max(1.0, abs(whole.primal_objective + lp.offset))
    assert abs(split.primal_objective - whole.primal_objective) <= 1e-9 * scale
    assert abs(split.iterations - whole.iterations) <= 3
    # the bound summed from the parts' shares is the whole certificate's at the same duals, and a bound
    assert abs(split.lower_bound - lower_bound(layout, lp.col_cost, split.y)) <= 1e-12 * scale
    assert split.lower_bound <= whole.primal_objective + 1e-9 * scale
    # the rows hold for the x gathered from the parts
    activity = layout.a_csr @ split.x
    assert (activity >= layout.row_lower - 1e-6).all() and (activity <= layout.row_upper + 1e-6).all()


def test_zero_one_and_two_workers_give_the_same_numbers(cluster):
    data = generate("district", 150, 3, transformers=4)
    address = cluster[0].scheduler_address
    runs = [gridcharge.solve(data, solver="structured", workers=0),
            gridcharge.solve(data, solver="structured", workers=1),
            gridcharge.solve(data, solver="structured", scheduler=address)]
    for schedule in runs:
        assert schedule.summary["fallback"] is None and schedule.verification.ok
        assert_feasible(data, schedule)
    for schedule in runs[1:]:
        assert schedule.summary["objective_cny"] == runs[0].summary["objective_cny"]
        assert schedule.summary["iterations"] == runs[0].summary["iterations"]
        assert np.array_equal(schedule.power, runs[0].power)
        assert schedule.summary["lower_bound_cny"] == runs[0].summary["lower_bound_cny"]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=small_districts())
def test_split_solves_certify_small_districts_like_highs(cluster, data):
    for options in ({"workers": 0}, {"scheduler": cluster[0].scheduler_address}):
        structured, highs = _both(data, **options)
        if structured is not None:
            _check_certified(structured, highs, data)
            assert structured.summary["fallback"] is None
            whole = gridcharge.solve(data, solver="structured").summary["objective_cny"]
            assert abs(structured.summary["objective_cny"] - whole) <= 1e-7 * max(1.0, abs(whole))


class _KillingExecutor(DaskExecutor):
    """Kills the worker holding the first share of partitions just before the ``at``-th call of ``method``."""

    def __init__(self, client, method, at):
        super().__init__(client)
        self.method, self.at, self.calls, self.killed = method, at, 0, []

    def map(self, method, args):
        if method == self.method:
            self.calls += 1
            if self.calls == self.at:
                who = self.client.who_has(self.futures[0])[self.futures[0].key]
                self.client.run(os._exit, 1, workers=list(who), on_error="ignore")
                self.killed.extend(who)
        return super().map(method, args)


# a step carries the factorisation and the predictor's forward; the 3rd backward is a predictor's (it carries the
# corrector's forward halves), the 4th a corrector's
@pytest.mark.parametrize("method, at", [("step", 4), ("backward", 3), ("backward", 4)])
def test_a_worker_lost_mid_solve_is_replaced_without_changing_a_number(cluster, method, at):
    lp, layout = _district_layout(n=80, transformers=3)
    client = cluster[1]
    reference = split_interior_point(layout, lp.col_cost, offset=lp.offset)
    executor = _KillingExecutor(client, method, at=at)
    result = split_interior_point(layout, lp.col_cost, offset=lp.offset, executor=executor)
    assert executor.killed  # the loss happened mid-solve
    assert result.status == reference.status == "optimal"
    assert result.iterations == reference.iterations
    assert np.array_equal(result.x, reference.x) and np.array_equal(result.y, reference.y)
    assert result.lower_bound == reference.lower_bound


def test_a_worker_lost_for_good_stops_the_solve_with_an_error(cluster, monkeypatch):
    lp, layout = _district_layout(n=80, transformers=3)
    monkeypatch.setattr(on_dask, "ATTEMPTS", 1)  # no second attempt: the loss is final
    with pytest.raises(WorkerLost, match="could not be run on the dask cluster"):
        split_interior_point(layout, lp.col_cost, offset=lp.offset,
                             executor=_KillingExecutor(cluster[1], "backward", at=2))


class _Watching(InProcess):
    """Records, at the first call after the partitions are made, whether the whole layout is still alive."""

    def __init__(self, whole):
        self.whole, self.alive = whole, []

    def map(self, method, args):
        if not self.alive:
            gc.collect()
            self.alive.append(self.whole() is not None)
        return super().map(method, args)


def test_the_coordinator_lets_go_of_the_whole_layout_once_the_partitions_hold_their_slices():
    lp, layout = _district_layout()
    reference = split_interior_point(layout, lp.col_cost, offset=lp.offset)
    source = Derived(lp, derive_layout(lp))
    executor = _Watching(weakref.ref(source.get()))
    result = split_interior_point(source, lp.col_cost, offset=lp.offset, executor=executor)
    assert executor.alive == [False] and not source.held
    assert result.iterations == reference.iterations
    assert np.array_equal(result.x, reference.x) and np.array_equal(result.y, reference.y)
    # a Layout given as such is the caller's: kept
    kept = _Watching(weakref.ref(layout))
    split_interior_point(layout, lp.col_cost, offset=lp.offset, executor=kept)
    assert kept.alive == [True]


def test_a_lost_share_is_cut_from_the_layout_derived_again_with_the_same_numbers(cluster):
    lp, layout = _district_layout(n=80, transformers=3)
    reference = split_interior_point(layout, lp.col_cost, offset=lp.offset)
    source = Derived(lp, derive_layout(lp))
    executor = _KillingExecutor(cluster[1], "backward", at=4)
    result = split_interior_point(source, lp.col_cost, offset=lp.offset, executor=executor)
    assert executor.killed and not source.held  # derived again for the new share, and let go again
    assert result.iterations == reference.iterations
    assert np.array_equal(result.x, reference.x) and np.array_equal(result.y, reference.y)
    assert result.lower_bound == reference.lower_bound


def test_the_local_cluster_ends_before_the_write_back_and_the_verifier(monkeypatch):
    import contextlib

    from gridcharge import cluster as cluster_module
    from gridcharge.solvers import structured

    events = []
    opened = cluster_module.dask_client

    @contextlib.contextmanager
    def recorded(workers, scheduler):
        with opened(workers, scheduler) as client:
            events.append("open")
            yield client
        events.append("closed")

    checked = structured.verify
    monkeypatch.setattr(cluster_module, "dask_client", recorded)
    monkeypatch.setattr(structured, "verify", lambda *a, **k: events.append("verify") or checked(*a, **k))
    schedule = gridcharge.solve(generate("district", 80, 3, transformers=3), solver="structured", workers=1)
    assert schedule.summary["fallback"] is None and schedule.verification.ok
    assert events == ["open", "closed", "verify"]  # the workers' memory is gone before the verifier's is taken
