"""Schedule: signed power per session and period, the node loads it causes, a summary, and the writers.

Every solver (optimal or heuristic) returns one of these. Write it with :meth:`Schedule.write`; read a written
``schedule.csv`` back with :func:`read_schedule_csv`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ._arrays import add_rows_at, energy_taken, request_from
from ._files import write_files_atomically
from .errors import FieldProblem, InstanceError
from .problem import PHASES, Problem
from .tables import read_frame


@dataclass(eq=False)
class Schedule:
    """The result of a solve.

    Attributes
    ----------
    power_kw : pandas.DataFrame
        Signed charger power per period (tz-aware index) and session (columns) [kW]; + charging, - discharging.
    node_load_kw : pandas.DataFrame
        Net load of each node (columns) per period: its subtree's base load - generation + charger powers [kW].
    summary : dict
        ``status``, ``objective_cny``, ``energy_requested_kwh``, ``energy_delivered_kwh``, ``unmet_kwh``,
        ``peak_kw``, ``build_seconds``, ``solve_seconds``, ``solver``, ``solver_version`` and more.
    overload_kwh : pandas.Series
        Energy above each node's limits [kWh] (non-zero only with ``allow_overload`` or for ``uncontrolled``).
    verification : Verification
        The independent check of this schedule (attached by :func:`gridcharge.solve`).
    """

    problem: Problem = field(repr=False)
    power: np.ndarray = field(repr=False)  # (S, T) signed power [kW]
    summary: dict
    overload_kwh: pd.Series | None = None
    verification: object | None = None  # gridcharge.verify.Verification, attached by gridcharge.solve

    @property
    def power_kw(self) -> pd.DataFrame:
        return power_frame(self.problem, self.power)

    @property
    def node_load_kw(self) -> pd.DataFrame:
        return node_load_frame(self.problem, self.power)

    @property
    def status(self) -> str:
        return self.summary["status"]

    def to_frame(self) -> pd.DataFrame:
        """Long form: one row per session and period in which the session is plugged in.

        Columns ``session_id``, ``period``, ``start`` (tz-aware), ``power_kw`` [kW].
        """
        s_idx, t_idx = np.nonzero(self.problem.presence)
        return pd.DataFrame({
            "session_id": np.asarray(self.problem.session_ids, dtype=object)[s_idx],
            "period": t_idx,
            "start": self.problem.period_start[t_idx],
            "power_kw": self.power[s_idx, t_idx],
        })

    def nodes_frame(self) -> pd.DataFrame:
        """Long form node table: ``node_id, period, start, load_kw, phase_A_kw, phase_B_kw, phase_C_kw``,
        the limits [kW] (NaN, an empty cell in CSV, where a node has none) and ``headroom_kw`` (import limit -
        load) [kW]."""
        p = self.problem
        N, T = p.n_nodes, p.n_periods
        load = node_loads(p, self.power)
        phases = phase_loads(p, self.power)
        frame = pd.DataFrame({
            "node_id": np.repeat(np.asarray(p.node_ids, dtype=object), T),
            "period": np.tile(np.arange(T), N),
            "start": p.period_start[np.tile(np.arange(T), N)],  # tz-aware values, not N x T Timestamp objects
            "load_kw": load.ravel(),
        })
        for i, name in enumerate(PHASES):
            frame[f"phase_{name}_kw"] = phases[i].ravel()
        for column, limit in (("import_limit_kw", p.import_limit_kw), ("export_limit_kw", p.export_limit_kw),
                              ("phase_import_limit_kw", p.phase_import_limit_kw)):
            frame[column] = np.repeat(np.where(np.isfinite(limit), limit, np.nan), T)  # no limit: empty, not inf
        frame["headroom_kw"] = frame["import_limit_kw"] - frame["load_kw"]
        return frame

    def capacity_report(self) -> CapacityReport:
        """Per transformer and feeder: peaks, hours at a limit and the rows that bind (:func:`capacity_report`)."""
        return capacity_report(self.problem, self.power)

    def write(self, out_dir: str | Path, *, table_format: str = "csv") -> dict[str, Path]:
        """Write the tables ``schedule``, ``nodes``, ``transformers`` and ``binding`` (as ``.csv`` or ``.parquet``,
        ``table_format``) and ``summary.json`` into ``out_dir`` (created if needed).

        All are written to temporary names first and moved into place together, so a reader never sees half a file
        and a failure leaves the earlier files untouched. In CSV a period's ``start`` is ISO-8601 text with its UTC
        offset; in Parquet a timestamp column with the time zone.
        """
        if table_format not in TABLE_FORMATS:
            raise ValueError(f"table_format: {table_format!r} — expected one of {', '.join(TABLE_FORMATS)}")
        report = self.capacity_report()
        tables = {"schedule": self.to_frame(), "nodes": self.nodes_frame(), "transformers": report.transformers,
                  "binding": report.binding}
        summary = dict(self.summary)
        if self.overload_kwh is not None:
            summary["overload_kwh_by_node"] = {k: float(v) for k, v in self.overload_kwh.items() if v > 0}
        summary["transformers"] = report.summary()
        files = {f"{name}.{table_format}": _table_writer(frame, table_format, self.problem)
                 for name, frame in tables.items()}
        files["summary.json"] = json.dumps(_jsonable(summary), indent=2) + "\n"
        written = write_files_atomically(out_dir, files)
        return {name.split(".")[0]: path for name, path in written.items()}


#: Formats :meth:`Schedule.write` writes its tables in.
TABLE_FORMATS = ("csv", "parquet")


def _table_writer(frame: pd.DataFrame, table_format: str, problem: Problem):
    """A writer of ``frame`` at the path it is given: Parquet as it is, CSV with ISO-8601 period starts."""
    if table_format == "parquet":
        return lambda tmp: frame.to_parquet(tmp, index=False)
    if "start" in frame.columns:  # each period's text once, not once per row (millions of rows in a district)
        text = np.array([start.isoformat() for start in problem.period_start], dtype=object)
        frame = frame.assign(start=text[frame["period"].to_numpy()])
    frame = frame.assign(**{column: frame[column].map(lambda value: "" if pd.isna(value) else value.isoformat())
                            for column in frame.columns if column.endswith("_start")})  # a peak's: empty if none
    return lambda tmp: frame.to_csv(tmp, index=False, float_format="%.10g")


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if np.isfinite(v) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def power_frame(problem: Problem, power: np.ndarray) -> pd.DataFrame:
    """Signed power as a frame: tz-aware period index x session-id columns [kW]."""
    return pd.DataFrame(power.T, index=problem.period_start.rename("start"),
                        columns=pd.Index(problem.session_ids, name="session_id"))


def node_load_frame(problem: Problem, power: np.ndarray) -> pd.DataFrame:
    """Net load of every node as a frame: tz-aware period index x node-id columns [kW]."""
    return pd.DataFrame(node_loads(problem, power).T, index=problem.period_start.rename("start"),
                        columns=pd.Index(problem.node_ids, name="node_id"))


def node_loads(problem: Problem, power: np.ndarray, nodes: np.ndarray | None = None) -> np.ndarray:
    """Net load of every node [kW], shape (N, T): subtree base net load + signed charger power in the subtree;
    with ``nodes`` (indices), of those nodes only, shape (len(nodes), T)."""
    at, sessions = _members(problem, nodes)
    load = problem.base_net_kw.copy() if nodes is None else problem.base_net_kw[nodes]
    add_rows_at(load, at, power[sessions])
    return load


def phase_loads(problem: Problem, power: np.ndarray, nodes: np.ndarray | None = None) -> np.ndarray:
    """Load per phase of every node [kW], shape (3, N, T) (with ``nodes``: (3, len(nodes), T))."""
    at, sessions = _members(problem, nodes)
    base = problem.base_net_kw if nodes is None else problem.base_net_kw[nodes]
    out = np.repeat(base[:, None, :] / 3.0, 3, axis=1)  # (N, 3, T) while summing
    add_rows_at(out, at, problem.phase_share[sessions, :, None] * power[sessions, None, :])
    return out.transpose(1, 0, 2)


def _members(problem: Problem, nodes: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(row of the output, session) of every pair (node, session in its subtree), for all nodes or ``nodes``."""
    if nodes is None:
        return problem.member_node, problem.member_session
    row = np.full(problem.n_nodes, -1, dtype=np.int64)
    row[nodes] = np.arange(len(nodes))
    at = row[problem.member_node]
    keep = at >= 0
    return at[keep], problem.member_session[keep]


def overload_kwh(problem: Problem, power: np.ndarray) -> np.ndarray:
    """Energy above each node's import, export and phase limits, shape (N,) [kWh]: import and phase at the
    set-points, export at the power the cars draw (:func:`drawn_kw`), each side at its worst."""
    load = node_loads(problem, power)
    phases = phase_loads(problem, power)
    drawn_load = node_loads(problem, drawn_kw(problem, power))
    over = (np.clip(load - problem.import_limit_kw[:, None], 0.0, None)
            + np.clip(-drawn_load - problem.export_limit_kw[:, None], 0.0, None)
            + np.clip(phases - problem.phase_import_limit_kw[None, :, None], 0.0, None).sum(axis=0))
    return over.sum(axis=1) * problem.step_hours


#: Node kinds the per-transformer report covers: transformers (a district's substation and distribution
#: transformers, a site's transformer) and feeders (a district's 10 kV lines, a site's LV feeders).
REPORTED_KINDS = ("transformer", "feeder")
#: A row counts as at its limit when its load is within ``max(AT_LIMIT_KW, AT_LIMIT_SHARE * limit)`` of it [kW]:
#: 1 W, or 1 ppm of a limit above 1 MW (an interior point ends that close to a binding row, not on it), and carries
#: more than ``AT_LIMIT_KW`` in that direction.
AT_LIMIT_KW = 1e-3
#: [-]
AT_LIMIT_SHARE = 1e-6
#: Most loaded nodes listed in the JSON summary [-].
TOP_LOADED = 5


@dataclass(eq=False)
class CapacityReport:
    """Per transformer and feeder node (:data:`REPORTED_KINDS`) what a schedule does to it.

    Attributes
    ----------
    transformers : pandas.DataFrame
        One row per node: ``node_id``, ``kind``, ``parent_id``, its limits ``import_limit_kw``, ``export_limit_kw``,
        ``phase_import_limit_kw`` [kW] (NaN: none), ``peak_import_kw`` [kW] with its ``peak_import_period`` and
        ``peak_import_start`` (the first period at the peak, within the tolerance of :data:`AT_LIMIT_KW`: a node
        held at its limit all evening peaks when the evening starts), ``peak_loading_pct`` (peak import over import
        limit [%]), ``peak_export_kw`` [kW] (reverse flow, 0 if none) with ``peak_export_period`` /
        ``peak_export_start`` (empty if none),
        ``peak_phase_kw`` (largest load of one phase [kW]), ``hours_at_limit_h`` (periods in which any of its rows is
        at its limit [h]) and the binding rows counted by kind: ``import_binding_periods``,
        ``export_binding_periods``, ``phase_binding_rows`` (phase x period) [-].
    binding : pandas.DataFrame
        One row per row at its limit: ``node_id``, ``period``, ``start``, ``direction`` (``import`` / ``export``),
        ``phase`` (``A``, ``B``, ``C``; empty for the node's total), ``load_kw`` (the net or phase load) and
        ``limit_kw`` (the bound it is at, in the same sign: an export limit as ``-export_limit_kw``) [kW].
    """

    transformers: pd.DataFrame
    binding: pd.DataFrame

    def summary(self, top: int = TOP_LOADED) -> dict:
        """Small enough for summary.json: counts, and the ``top`` nodes by peak loading [%]."""
        frame = self.transformers
        loaded = frame.dropna(subset=["peak_loading_pct"]).nlargest(top, "peak_loading_pct")
        return {
            "nodes": len(frame),
            "nodes_by_kind": {kind: int((frame["kind"] == kind).sum()) for kind in REPORTED_KINDS
                              if (frame["kind"] == kind).any()},
            "nodes_at_limit": int((frame["hours_at_limit_h"] > 0).sum()),
            "binding_rows": len(self.binding),
            "most_loaded": [
                {"node_id": row.node_id, "kind": row.kind, "peak_import_kw": row.peak_import_kw,
                 "import_limit_kw": row.import_limit_kw, "peak_loading_pct": row.peak_loading_pct,
                 "peak_import_start": None if pd.isna(row.peak_import_start) else row.peak_import_start.isoformat(),
                 "hours_at_limit_h": row.hours_at_limit_h}
                for row in loaded.itertuples()],
        }


def capacity_report(problem: Problem, power: np.ndarray) -> CapacityReport:
    """The :class:`CapacityReport` of the schedule ``power`` [kW], shape (S, T), computed on whole arrays."""
    kinds = np.array([node.kind for node in problem.instance.nodes], dtype=object)
    nodes = np.flatnonzero(np.isin(kinds, REPORTED_KINDS))
    load = node_loads(problem, power, nodes)  # (K, T) [kW]
    phases = phase_loads(problem, power, nodes)  # (3, K, T) [kW]
    limits = {"import": problem.import_limit_kw[nodes], "export": problem.export_limit_kw[nodes],
              "phase": problem.phase_import_limit_kw[nodes]}

    def at_limit(value: np.ndarray, limit: np.ndarray) -> np.ndarray:
        finite = np.isfinite(limit)
        bound = np.where(finite, limit, 0.0)
        slack = np.maximum(AT_LIMIT_KW, AT_LIMIT_SHARE * np.abs(bound))
        # ... and carries power that way: a row at a limit of 0 kW with nothing flowing is not reported
        return finite[:, None] & (value >= (bound - slack)[:, None]) & (value > AT_LIMIT_KW)

    at_import, at_export = at_limit(load, limits["import"]), at_limit(-load, limits["export"])
    at_phase = at_limit(phases, limits["phase"])  # broadcasts over the phase axis
    row = np.arange(len(nodes))

    def first_peak(value: np.ndarray) -> np.ndarray:  # the first period within the tolerance of the highest
        top = value.max(axis=1)
        return np.argmax(value >= (top - np.maximum(AT_LIMIT_KW, AT_LIMIT_SHARE * np.abs(top)))[:, None], axis=1)

    peak_t, export_t = first_peak(load), first_peak(-load)
    peak = np.clip(load[row, peak_t], 0.0, None)
    export = np.clip(-load[row, export_t], 0.0, None)
    ids = np.asarray(problem.node_ids, dtype=object)
    parent = problem.node_parent[nodes]

    def when(t: np.ndarray, happens: np.ndarray):  # (period, start) of a peak; NA / NaT where there is none
        period = pd.array(t, dtype="Int64")
        period[~happens] = pd.NA
        return period, problem.period_start[t].where(happens)

    peak_period, peak_start = when(peak_t, peak > 0)
    export_period, export_start = when(export_t, export > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        loading = np.where(np.isfinite(limits["import"]) & (limits["import"] > 0), 100.0 * peak / limits["import"],
                           np.nan)
    transformers = pd.DataFrame({
        "node_id": ids[nodes],
        "kind": kinds[nodes],
        "parent_id": np.where(parent >= 0, ids[np.maximum(parent, 0)], None),
        **{f"{name}_limit_kw": np.where(np.isfinite(limit), limit, np.nan)
           for name, limit in (("import", limits["import"]), ("export", limits["export"]),
                               ("phase_import", limits["phase"]))},
        "peak_import_kw": peak,
        "peak_import_period": peak_period,
        "peak_import_start": peak_start,
        "peak_loading_pct": loading,
        "peak_export_kw": export,
        "peak_export_period": export_period,
        "peak_export_start": export_start,
        "peak_phase_kw": phases.max(axis=(0, 2)) if problem.n_periods else np.zeros(len(nodes)),
        "hours_at_limit_h": (at_import | at_export | at_phase.any(axis=0)).sum(axis=1) * problem.step_hours,
        "import_binding_periods": at_import.sum(axis=1),
        "export_binding_periods": at_export.sum(axis=1),
        "phase_binding_rows": at_phase.sum(axis=(0, 2)),
    })
    parts = []
    for direction, phase, mask, value, limit in (  # load_kw and limit_kw in the sign of the net load [kW]
            ("import", None, at_import[None], load[None], limits["import"]),
            ("export", None, at_export[None], load[None], -limits["export"]),
            ("import", PHASES, at_phase, phases, limits["phase"])):
        which, k, t = np.nonzero(mask)
        parts.append(pd.DataFrame({
            "node_id": ids[nodes[k]], "period": t, "start": problem.period_start[t], "direction": direction,
            "phase": None if phase is None else np.asarray(phase, dtype=object)[which],
            "load_kw": value[which, k, t], "limit_kw": limit[k], "_order": k}))
    binding = (pd.concat(parts, ignore_index=True).sort_values(["_order", "period"], kind="stable")
               .drop(columns="_order").reset_index(drop=True))
    return CapacityReport(transformers, binding)


def battery_power_kw(power: np.ndarray, efficiency: np.ndarray) -> np.ndarray:
    """Power into the battery [kW] for a signed charger power [kW]: ``efficiency * p`` when charging, ``p / efficiency``
    when discharging. ``efficiency`` broadcasts against ``power`` (shape (S, 1) for an (S, T) schedule)."""
    return np.where(power >= 0, efficiency * power, power / efficiency)


@dataclass(frozen=True)
class EnergyCaps:
    """Where a car stops drawing because it is full (docs/design/executable.md, "A set-point is a limit").

    cap_kwh : numpy.ndarray, shape (S,) — the most the energy added so far may reach while the car will still give
        energy back later in its stay [kWh]: the battery's upper bound (a V2G car may hold more than its request
        mid-stay and sell it)
    final_cap_kwh : numpy.ndarray, shape (S,) — the same after the car's last discharge (from the start for a car
        that never discharges): min(upper bound, request) [kWh]
    """

    cap_kwh: np.ndarray
    final_cap_kwh: np.ndarray

    def per_period(self, gain: np.ndarray) -> np.ndarray:
        """The cap in force in each period of a schedule with energy ``gain`` per period [kWh], shape (S, T)."""
        later = np.arange(gain.shape[1])[None, :] >= request_from(gain)[:, None]
        return np.where(later, self.final_cap_kwh[:, None], self.cap_kwh[:, None])


def energy_caps(problem: Problem) -> EnergyCaps:
    """The caps at which each car stops drawing (:class:`EnergyCaps`)."""
    return EnergyCaps(cap_kwh=problem.energy_upper_kwh.astype(float),
                      final_cap_kwh=np.minimum(problem.energy_upper_kwh, problem.energy_request_kwh))


def scheduled_gain_kwh(problem: Problem, power: np.ndarray) -> np.ndarray:
    """Energy into each battery per period at the set-points [kWh], shape (S, T)."""
    return battery_power_kw(power, problem.efficiency[:, None]) * problem.presence * problem.step_hours


def taken_kwh(problem: Problem, power: np.ndarray) -> np.ndarray:
    """Energy each battery actually takes per period [kWh], shape (S, T): the set-point's energy, except that a car
    stops drawing once full (:class:`EnergyCaps`). The one definition of delivered energy."""
    return _taken(problem, scheduled_gain_kwh(problem, power))


def _taken(problem: Problem, gain: np.ndarray) -> np.ndarray:
    """:func:`taken_kwh` from the schedule's :func:`scheduled_gain_kwh` [kWh]."""
    caps = energy_caps(problem)
    return energy_taken(gain, caps.cap_kwh, caps.final_cap_kwh)


def drawn_kw(problem: Problem, power: np.ndarray) -> np.ndarray:
    """The power each car actually draws [kW], shape (S, T): the set-point, less in the period where a car becomes
    full and 0 after (discharge as scheduled). Export limits, the bill and the battery's lower bound hold at this;
    import and phase limits are checked at the set-points (the most a car can draw)."""
    gain = scheduled_gain_kwh(problem, power)
    return _drawn(power, gain, _taken(problem, gain))


def _drawn(power: np.ndarray, gain: np.ndarray, taken: np.ndarray) -> np.ndarray:
    """:func:`drawn_kw` from the schedule's energy per period at the set-points and taken [kWh]."""
    charging = gain > 0
    share = np.where(charging, taken / np.where(charging, gain, 1.0), 1.0)
    return power * np.clip(share, 0.0, 1.0)


def delivered_kwh(problem: Problem, power: np.ndarray) -> np.ndarray:
    """Energy added to each battery by departure [kWh], shape (S,): what the cars take (:func:`taken_kwh`), so
    ``min(request, scheduled)`` for a car that only charges."""
    return taken_kwh(problem, power).sum(axis=1)


def cost_cny(problem: Problem, power: np.ndarray) -> float:
    """The objective of a schedule [CNY]: energy bought − sold + degradation + unmet penalty + peak charge, all at
    the power the cars actually draw (:func:`drawn_kw`)."""
    gain = scheduled_gain_kwh(problem, power)
    taken = _taken(problem, gain)
    drawn = _drawn(power, gain, taken)
    return _cost(problem, drawn, taken.sum(axis=1), _root_load_kw(problem, drawn))


def _root_load_kw(problem: Problem, drawn: np.ndarray) -> np.ndarray:
    """The root's net load at the power drawn [kW], shape (T,) (:func:`node_loads` of the root alone)."""
    return node_loads(problem, drawn, np.array([problem.root]))[0]


def _cost(problem: Problem, drawn: np.ndarray, delivered: np.ndarray, root_load: np.ndarray) -> float:
    """:func:`cost_cny` from the power drawn [kW], the energy delivered [kWh] and the root's load [kW]."""
    energy = problem.presence * problem.step_hours
    charge = np.clip(drawn, 0.0, None) * energy
    discharge = np.clip(-drawn, 0.0, None) * energy
    unmet = np.clip(problem.energy_request_kwh - delivered, 0.0, None)
    peak = root_load.max() if problem.n_periods else 0.0
    return float((charge.sum(axis=0) @ problem.import_price) - (discharge.sum(axis=0) @ problem.export_price)
                 + problem.degradation_cost * discharge.sum() + problem.unmet_penalty * unmet.sum()
                 + problem.peak_cost * peak)


def summarise(problem: Problem, power: np.ndarray, **extra) -> dict:
    """The figures every schedule reports, computed from the emitted power alone, plus ``extra`` (status, timings ...).

    ``objective_cny`` is the cost of the emitted schedule (:func:`cost_cny`); a solver's own objective value, which
    can differ from it by the solver's tolerances, goes in ``extra`` as ``solver_objective_cny``.
    """
    gain = scheduled_gain_kwh(problem, power)  # the energy taken and the power drawn once, for every figure below
    taken = _taken(problem, gain)
    drawn = _drawn(power, gain, taken)
    delivered = taken.sum(axis=1)
    request = problem.energy_request_kwh
    root_load = _root_load_kw(problem, drawn)
    discharge = np.clip(-power, 0.0, None) * problem.presence * problem.step_hours
    unmet = np.clip(request - delivered, 0.0, None)
    undeliverable = np.minimum(problem.undeliverable_kwh(), unmet)
    summary = {
        "status": extra.pop("status", "optimal"),
        "objective_cny": _cost(problem, drawn, delivered, root_load),
        "currency": problem.instance.tariff.currency,  # of every *_cny figure (the names are kept for compatibility)
        "energy_requested_kwh": float(request.sum()),
        "energy_delivered_kwh": float(delivered.sum()),
        "unmet_kwh": float(unmet.sum()),
        # honest unmet energy: what no schedule could deliver (the charger's most over the whole stay) and the rest,
        # which the grid's limits (and the executability rule) cost
        "undeliverable_kwh": float(undeliverable.sum()),
        "grid_limited_unmet_kwh": float(np.clip(unmet - undeliverable, 0.0, None).sum()),
        "energy_discharged_kwh": float(discharge.sum()),
        "peak_kw": float(root_load.max()),
        "n_sessions": problem.n_sessions,
        "n_periods": problem.n_periods,
    }
    summary.update(extra)
    return summary


def read_schedule_csv(path: str | Path, instance) -> np.ndarray:
    """Read ``schedule.csv`` (``session_id, period, power_kw``; other columns ignored), or the ``schedule.parquet``
    of ``solve --format parquet``, as an (S, T) power array.

    Missing rows mean 0 kW. Unknown sessions, periods out of range, duplicates and non-numbers are errors.
    ``instance`` gives the session ids and the number of periods.

    Raises
    ------
    InstanceError
        Invalid input (the CLI's exit code 2), with a message that starts ``invalid schedule PATH`` and names the
        row, the column, the value as written and what was expected.
    """
    session_ids = [s.id for s in instance.sessions]
    n_periods = instance.horizon.periods
    path = Path(path)
    label = str(path)
    shown_rows = 5

    def invalid(problems) -> InstanceError:
        return InstanceError(problems, label, what="invalid schedule")  # the schedule is what is bad

    parquet = path.suffix.lower() == ".parquet"
    if parquet:  # as solve --format parquet writes it; its cells as text from here on (floats as their repr: exact)
        frame = read_frame(path, label, "invalid schedule")
        frame = frame.astype(str).where(frame.notna(), "")
    else:
        frame = _read_schedule_text(path, invalid)
    first_row = 1 if parquet else 2  # the number of the first record: a CSV's row 1 is its header
    missing = [c for c in ("session_id", "period", "power_kw") if c not in frame.columns]
    if missing:
        raise invalid(FieldProblem("columns", ",".join(map(str, frame.columns)),
                                   f"must include session_id, period, power_kw (missing {', '.join(missing)})"))

    def as_written(text: str) -> str:
        return text if text.strip() else "(empty)"

    def report(column: str, mask: np.ndarray, expected: str) -> list[FieldProblem]:
        rows = np.flatnonzero(mask)
        found = [FieldProblem(f"row {row + first_row}.{column}", as_written(frame[column].iloc[row]), expected)
                 for row in rows[:shown_rows]]
        if len(rows) > shown_rows:
            found.append(FieldProblem(column, f"{len(rows) - shown_rows} more rows like these", expected))
        return found

    index = {sid: i for i, sid in enumerate(session_ids)}
    s_idx = frame["session_id"].map(index)
    known = ", ".join(repr(sid) for sid in session_ids[:shown_rows]) + (" ..." if len(session_ids) > shown_rows else "")
    problems = report("session_id", s_idx.isna().to_numpy(), f"a session id of the instance ({known or 'none'})")
    period = pd.to_numeric(frame["period"].str.strip(), errors="coerce")
    bad_period = period.isna() | (period < 0) | (period >= n_periods) | (period != period.round())
    problems += report("period", bad_period.to_numpy(), f"an integer period 0 .. {n_periods - 1}")
    power = pd.to_numeric(frame["power_kw"].str.strip(), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    problems += report("power_kw", ~np.isfinite(power), "a finite number [kW]")
    if not problems:
        dup = frame.assign(period=period).duplicated(["session_id", "period"], keep="first").to_numpy()
        problems += [FieldProblem(f"row {row + first_row}",
                                  f"{frame['session_id'].iloc[row]}, period {int(period.iloc[row])}",
                                  "one row per session and period (this one repeats an earlier row)")
                     for row in np.flatnonzero(dup)[:shown_rows]]
    if problems:
        raise invalid(problems)
    out = np.zeros((len(session_ids), n_periods))
    out[s_idx.to_numpy(dtype=np.int64), period.to_numpy(dtype=np.int64)] = power
    return out


def _read_schedule_text(path: Path, invalid) -> pd.DataFrame:
    """A schedule CSV, every column as the text written, so that an error shows the value as it stands in the file."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise invalid(FieldProblem("", "no such file",
                                   "expected a schedule CSV as written by gridcharge solve")) from None
    except OSError as exc:
        raise invalid(FieldProblem("", "cannot be read", f"expected a readable CSV file ({exc.strerror})")) from None
    except pd.errors.EmptyDataError:
        raise invalid(FieldProblem("", "empty file", "expected a header line session_id,period,power_kw")) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise invalid(FieldProblem("", "not a readable CSV", f"expected comma-separated UTF-8 text ({exc})")) from None
