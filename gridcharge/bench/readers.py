"""Readers for real charging-session logs: ACN-Data exports and a plain CSV → sessions of an instance on your site.

gridcharge ships no session data. Bring your own:

- **Plain CSV** (:func:`read_sessions_csv`): columns ``arrival``, ``departure`` (ISO-8601 date-times),
  ``energy_kwh`` (energy to add [kWh], >= 0), ``charger`` (a charger id of the site); optional ``id`` (default
  ``R<row>``).
- **ACN-Data** (Caltech's Adaptive Charging Network, https://ev.caltech.edu/dataset) (:func:`read_acn`): the API's
  JSON (an object with ``_items``, or a list of session objects) or a CSV export with the same field names:
  ``sessionID``, ``stationID``, ``connectionTime``, ``disconnectTime``, ``doneChargingTime``, ``kWhDelivered`` and
  ``userInputs`` (a list of objects with ``kWhRequested`` and ``requestedDeparture``; in a CSV, that list as JSON
  text). Date-times are RFC 1123 (``Wed, 25 Apr 2018 11:08:04 GMT``, as the API writes them) or ISO-8601.
  The energy is the user's request (the last ``userInputs`` entry) where there is one, else ``kWhDelivered``
  (``energy="requested_or_delivered"``, the default), or always one of them; the departure is ``disconnectTime``
  (``departure="disconnect"``) or the user's ``requestedDeparture``.

**Time zones.** A date-time with a UTC offset (``+08:00``, ``Z``, RFC 1123 ``GMT``) means what it says. One without
(``2026-01-15 19:00``) is read in the ``timezone=`` you pass, and is an error naming the row when you pass none: a
guessed zone would shift every session by hours without a word (the readers used to guess Asia/Shanghai for the CSV
and UTC for ACN-Data). The ACN-Data API writes every time in GMT, so its JSON never needs ``timezone``.

Both give a DataFrame with columns ``id, charger, arrival, departure, energy_kwh`` (tz-aware times), which
:func:`sessions_to_instance` puts on a site you choose (an instance-v1 file or mapping: horizon, nodes, chargers,
tariff, objective; its own sessions, if any, are replaced) and validates as a whole.

Every malformed row is reported, not skipped: :class:`~gridcharge.errors.InstanceError` with one problem per field
naming the row (``row 7`` is the 7th line of a CSV, the header being row 1; ``_items[3]`` in JSON), the column, the
value as written and what was expected. Sessions outside the site's horizon are an error unless you ask to ``drop``
them or ``clip`` them to it; clipping shortens a stay but keeps its full request, and says so (a
:class:`ClippedSessionsWarning` with the count, the hours cut and the energy requested by the clipped sessions, and
the instance's name).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import FieldProblem, InstanceError
from ..instance import load_instance
from ..tables import SHOWN, report_rows

#: Columns of the plain CSV (``id`` optional).
PLAIN_COLUMNS = ("arrival", "departure", "energy_kwh", "charger")
#: Columns of the session frames the readers return.
SESSION_COLUMNS = ("id", "charger", "arrival", "departure", "energy_kwh")


def _raise(problems: list[FieldProblem], label: str) -> None:
    if problems:
        raise InstanceError(problems, label, what="invalid session log")


class ClippedSessionsWarning(UserWarning):
    """``sessions_to_instance(outside="clip")`` shortened some stays to the horizon and kept their full requests.

    count : int — sessions clipped
    hours_cut : float — plugged-in time removed, summed over them [h]
    energy_kwh : float — energy they request, kept in full [kWh] (it may no longer fit the shorter stay: unmet)
    """

    def __init__(self, count: int, hours_cut: float, energy_kwh: float):
        self.count, self.hours_cut, self.energy_kwh = count, hours_cut, energy_kwh
        super().__init__(clip_note(count, hours_cut, energy_kwh))


def clip_note(count: int, hours_cut: float, energy_kwh: float) -> str:
    """``3 sessions clipped to the horizon: 5.5 h of their stays cut, their 30.0 kWh requested kept``."""
    return (f"{count} session(s) clipped to the horizon: {hours_cut:.1f} h of their stays cut, their {energy_kwh:.1f} "
            "kWh requested kept")


def _zone_problem(timezone: str | None) -> FieldProblem | None:
    if timezone is None:
        return None
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError, TypeError):
        return FieldProblem("timezone", timezone, "an IANA time zone such as Asia/Shanghai")
    return None


def _naive(texts: pd.Series) -> np.ndarray:
    """Which texts are date-times without a UTC offset (readable ones only)."""
    def one(text):
        if text is None or (isinstance(text, float) and np.isnan(text)) or not str(text).strip():
            return False
        try:
            stamp = pd.Timestamp(str(text).strip())
        except (ValueError, TypeError):
            return False
        return stamp is not pd.NaT and stamp.tzinfo is None

    return np.array([one(t) for t in texts], dtype=bool)


def _times(texts: pd.Series, timezone: str | None) -> pd.Series:
    """Parse date-times one by one (mixed formats allowed); NaT where unreadable. Naive ones are read in ``timezone``
    (NaT if it is None)."""
    def one(text):
        if text is None or (isinstance(text, float) and np.isnan(text)) or not str(text).strip():
            return pd.NaT
        try:
            stamp = pd.Timestamp(str(text).strip())
        except (ValueError, TypeError):
            try:
                stamp = pd.to_datetime(str(text).strip(), format="%a, %d %b %Y %H:%M:%S GMT", utc=True)
            except (ValueError, TypeError):
                return pd.NaT
        if stamp is pd.NaT:
            return pd.NaT
        if stamp.tzinfo is None:
            if timezone is None:
                return pd.NaT
            stamp = stamp.tz_localize(timezone)
        return stamp.tz_convert("UTC")

    return pd.Series([one(t) for t in texts], index=texts.index, dtype="datetime64[ns, UTC]")


def _numbers(texts: pd.Series) -> pd.Series:
    return pd.to_numeric(texts.map(lambda t: str(t).strip() if t is not None else ""), errors="coerce")


def _read_csv_text(path: Path, label: str) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        _raise([FieldProblem("", str(path), "no such file; expected a CSV session log")], label)
    except pd.errors.EmptyDataError:
        _raise([FieldProblem("", "empty file", "a header line and one row per session")], label)
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        _raise([FieldProblem("", "not a readable CSV", f"comma-separated UTF-8 text ({exc})")], label)
    raise AssertionError("unreachable")  # pragma: no cover


def read_sessions_csv(path: str | Path, timezone: str | None = None) -> pd.DataFrame:
    """Read a plain session CSV (``arrival, departure, energy_kwh, charger[, id]``).

    Parameters
    ----------
    path : path of the CSV
    timezone : str, optional — IANA zone of date-times written without a UTC offset; without it such a date-time is
        an error naming its row (no zone is guessed)

    Returns
    -------
    pandas.DataFrame — columns ``id, charger, arrival, departure, energy_kwh`` (times tz-aware, UTC) [kWh]

    Raises
    ------
    InstanceError — a missing column, or rows with unreadable or impossible values (row, column, value, expected)
    """
    path = Path(path)
    label = str(path)
    frame = _read_csv_text(path, label)
    missing = [c for c in PLAIN_COLUMNS if c not in frame.columns]
    if missing:
        _raise([FieldProblem("columns", ",".join(frame.columns),
                             f"must include {', '.join(PLAIN_COLUMNS)} (missing {', '.join(missing)})")], label)
    where = [f"row {i + 2}" for i in range(len(frame))]
    ids = frame["id"] if "id" in frame.columns else pd.Series([f"R{i + 2:05d}" for i in range(len(frame))])
    return _validated(frame["arrival"], frame["departure"], frame["energy_kwh"], frame["charger"], ids, where,
                      timezone, label, ("arrival", "departure", "energy_kwh", "charger", "id"))


def _validated(arrival_text, departure_text, energy_text, charger_text, id_text, where, timezone, label,
               names) -> pd.DataFrame:
    problems: list[FieldProblem] = []
    if zone_problem := _zone_problem(timezone):
        _raise([zone_problem], label)
    arrival = _times(arrival_text.reset_index(drop=True), timezone)
    departure = _times(departure_text.reset_index(drop=True), timezone)
    energy = _numbers(energy_text.reset_index(drop=True))
    charger = charger_text.reset_index(drop=True).map(lambda t: "" if t is None else str(t).strip())
    ids = id_text.reset_index(drop=True).map(lambda t: "" if t is None else str(t).strip())
    when = "an ISO-8601 date-time such as 2026-01-15T18:30:00+08:00 (or RFC 1123 ... GMT)"
    zoneless = ("a UTC offset (e.g. 2026-01-15T18:30:00+08:00), or pass timezone= the IANA zone the log was written "
                "in (e.g. 'Asia/Shanghai'); no zone is guessed")
    for name, text, parsed in ((names[0], arrival_text, arrival), (names[1], departure_text, departure)):
        text = text.reset_index(drop=True)
        naive = _naive(text) if timezone is None else np.zeros(len(text), dtype=bool)
        report_rows(problems, where, name, text, naive, zoneless)
        report_rows(problems, where, name, text, parsed.isna().to_numpy() & ~naive, when)
    order = (departure <= arrival).fillna(False).to_numpy()
    report_rows(problems, where, names[1], departure_text.reset_index(drop=True), order,
            "a date-time after the arrival")
    bad_energy = ~(np.isfinite(energy.to_numpy(dtype=float, na_value=np.nan)) & (energy.to_numpy(na_value=-1) >= 0))
    report_rows(problems, where, names[2], energy_text.reset_index(drop=True), bad_energy, "a number >= 0 [kWh]")
    report_rows(problems, where, names[3], charger_text.reset_index(drop=True), (charger == "").to_numpy(),
            "a charger id (not empty)")
    report_rows(problems, where, names[4], id_text.reset_index(drop=True), (ids == "").to_numpy(),
            "a session id (not empty)")
    duplicate = ids.duplicated(keep="first").to_numpy() & (ids != "").to_numpy()
    report_rows(problems, where, names[4], id_text.reset_index(drop=True), duplicate, "a unique session id")
    _raise(problems, label)
    return pd.DataFrame({"id": ids, "charger": charger, "arrival": arrival, "departure": departure,
                         "energy_kwh": energy.astype(float)})


def read_acn(path: str | Path, *, energy: str = "requested_or_delivered", departure: str = "disconnect",
             timezone: str | None = None) -> pd.DataFrame:
    """Read an ACN-Data export: the API's JSON (``_items``) or a CSV with its field names.

    Parameters
    ----------
    path : path of a ``.json`` or ``.csv`` file
    energy : str — ``requested_or_delivered`` (the user's last ``kWhRequested`` where given, else ``kWhDelivered``),
        ``requested`` (an error where missing) or ``delivered`` [kWh]
    departure : str — ``disconnect`` (``disconnectTime``) or ``requested`` (the user's last ``requestedDeparture``)
    timezone : str, optional — IANA zone of date-times without a UTC offset (the API writes GMT, so its JSON needs
        none); without it such a date-time is an error naming its row (no zone is guessed)

    Returns
    -------
    pandas.DataFrame — columns ``id, charger, arrival, departure, energy_kwh``; ``charger`` is the ``stationID``

    Raises
    ------
    InstanceError — unreadable file, missing fields, malformed rows (row or ``_items[i]``, field, value, expected)
    ValueError — an unknown ``energy`` or ``departure`` option
    """
    if energy not in ("requested_or_delivered", "requested", "delivered"):
        raise ValueError(f"energy: {energy!r} — expected 'requested_or_delivered', 'requested' or 'delivered'")
    if departure not in ("disconnect", "requested"):
        raise ValueError(f"departure: {departure!r} — expected 'disconnect' or 'requested'")
    path = Path(path)
    label = str(path)
    problems: list[FieldProblem] = []
    if path.suffix.lower() == ".json":
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            _raise([FieldProblem("", str(path), "no such file; expected an ACN-Data JSON export")], label)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            _raise([FieldProblem("", "not valid JSON", f"an ACN-Data API response ({exc})")], label)
        items = payload.get("_items") if isinstance(payload, dict) else payload
        if not isinstance(items, list):
            _raise([FieldProblem("_items", type(items).__name__,
                                 "a list of session objects (the API's _items), or a top-level list")], label)
        prefix = "_items" if isinstance(payload, dict) else ""
        where = [f"{prefix}[{i}]" for i in range(len(items))]
        not_objects = [i for i, item in enumerate(items) if not isinstance(item, dict)]
        for i in not_objects[:SHOWN]:
            problems.append(FieldProblem(where[i], items[i], "a session object"))
        _raise(problems, label)
        frame = pd.DataFrame(items)
        inputs = frame["userInputs"] if "userInputs" in frame.columns else pd.Series([None] * len(frame))
    else:
        frame = _read_csv_text(path, label)
        where = [f"row {i + 2}" for i in range(len(frame))]
        raw = frame["userInputs"] if "userInputs" in frame.columns else pd.Series([""] * len(frame))
        inputs = []
        for i, text in enumerate(raw):
            text = str(text).strip()
            if text in ("", "null", "None", "nan"):
                inputs.append(None)
                continue
            try:
                inputs.append(json.loads(text))
            except json.JSONDecodeError:
                inputs.append(None)
                problems.append(FieldProblem(f"{where[i]}.userInputs", text, "empty, or a JSON list of objects"))
        inputs = pd.Series(inputs, dtype=object)
    required = ["sessionID", "stationID", "connectionTime"] + (["disconnectTime"] if departure == "disconnect" else [])
    required += ["kWhDelivered"] if energy != "requested" else []
    missing = [c for c in required if c not in frame.columns]
    if missing:
        _raise([FieldProblem("fields", ", ".join(map(str, frame.columns)) or "(none)",
                             f"ACN-Data session fields {', '.join(required)} (missing {', '.join(missing)})")], label)
    _raise(problems, label)

    def last_input(value, key):
        if isinstance(value, list) and value and isinstance(value[-1], dict):
            return value[-1].get(key)
        return None

    n = len(frame)
    requested_kwh = pd.Series([last_input(v, "kWhRequested") for v in inputs.reset_index(drop=True)], dtype=object)
    if energy == "delivered":
        energy_text, energy_name = frame["kWhDelivered"], "kWhDelivered"
    elif energy == "requested":
        energy_text, energy_name = requested_kwh, "userInputs[-1].kWhRequested"
    else:
        delivered = frame["kWhDelivered"].reset_index(drop=True)
        energy_text = pd.Series([r if r is not None else d for r, d in zip(requested_kwh, delivered)], dtype=object)
        energy_name = "kWhRequested or kWhDelivered"
    if departure == "disconnect":
        departure_text, departure_name = frame["disconnectTime"], "disconnectTime"
    else:
        departure_text = pd.Series([last_input(v, "requestedDeparture") for v in inputs.reset_index(drop=True)],
                                   dtype=object)
        departure_name = "userInputs[-1].requestedDeparture"
    as_text = (lambda s: s.map(lambda v: v if v is None or isinstance(v, str) else str(v)))  # noqa: E731
    return _validated(as_text(frame["connectionTime"]), as_text(departure_text), as_text(energy_text),
                      as_text(frame["stationID"]), as_text(frame["sessionID"]), where if n else [], timezone, label,
                      ("connectionTime", departure_name, energy_name, "stationID", "sessionID"))


def sessions_to_instance(site, sessions: pd.DataFrame, *, outside: str = "error", new_chargers: Mapping | None = None,
                         name: str | None = None) -> dict:
    """Put read sessions on a site: the site's instance-v1 mapping with these sessions, validated.

    Parameters
    ----------
    site : path or mapping — an instance-v1 site (``format, name, horizon, nodes, chargers, tariff, objective``);
        its ``sessions``, if any, are replaced
    sessions : pandas.DataFrame — from :func:`read_sessions_csv` or :func:`read_acn`
    outside : str — sessions not wholly inside the horizon: ``error`` (default), ``drop`` them, or ``clip`` their
        arrival and departure to it (a session that does not overlap the horizon at all is dropped by ``clip`` too).
        A clipped session keeps its full ``energy_kwh`` for the shorter stay (it may then be partly unmet); how many
        were clipped, the hours cut and the energy they request are issued as a :class:`ClippedSessionsWarning`
        and written into the instance's name
    new_chargers : mapping, optional — a charger template (``node``, ``max_charge_kw`` [kW], optional
        ``max_discharge_kw``, ``phases``, ``efficiency``) used to add every charger the sessions name but the site
        lacks (e.g. ACN-Data station ids); without it an unknown charger is an error
    name : str, optional — the instance's name (default: the site's name + how many sessions were read)

    Returns
    -------
    dict — a valid instance-v1 mapping (checked with :func:`gridcharge.load_instance`)

    Raises
    ------
    InstanceError — the site is invalid, a session names an unknown charger, lies outside the horizon (with
        ``outside="error"``) or overlaps another on its charger; each problem names the session and field
    """
    if outside not in ("error", "drop", "clip"):
        raise ValueError(f"outside: {outside!r} — expected 'error', 'drop' or 'clip'")
    if isinstance(site, (str, Path)):
        label = str(site)
        data = load_instance(site).to_dict()
    else:
        label = "site"
        data = load_instance({**dict(site), "sessions": []}).to_dict()
    data["sessions"] = []
    horizon = load_instance(data).horizon
    start, end = pd.Timestamp(horizon.start), pd.Timestamp(horizon.end)
    frame = sessions.reset_index(drop=True)
    arrival, departure = frame["arrival"], frame["departure"]
    inside = (arrival >= start) & (departure <= end)
    overlapping = (departure > start) & (arrival < end)
    problems = []
    if outside == "error":
        for i in np.flatnonzero(~inside.to_numpy())[:SHOWN]:
            problems.append(FieldProblem(f"sessions {frame['id'].iloc[i]!r}",
                                         f"{arrival.iloc[i].isoformat()} .. {departure.iloc[i].isoformat()}",
                                         f"inside the site's horizon {start.isoformat()} .. {end.isoformat()} "
                                         f"(or pass outside='drop' / 'clip')"))
        if (~inside).sum() > SHOWN:
            problems.append(FieldProblem("sessions", f"{int((~inside).sum()) - SHOWN} more outside the horizon",
                                         "inside the site's horizon"))
        keep = np.ones(len(frame), dtype=bool)
    elif outside == "drop":
        keep = inside.to_numpy()
    else:
        keep = overlapping.to_numpy()
        clipped = keep & ~inside.to_numpy()
        stay_h = (departure - arrival).dt.total_seconds() / 3600
        arrival, departure = arrival.clip(lower=start), departure.clip(upper=end)
        cut_h = float((stay_h - (departure - arrival).dt.total_seconds() / 3600)[clipped].sum())
        clipped_kwh = float(frame["energy_kwh"][clipped].astype(float).sum())
        n_clipped = int(clipped.sum())
    known = {c["id"] for c in data["chargers"]}
    wanted = list(dict.fromkeys(frame["charger"][keep]))
    unknown = [c for c in wanted if c not in known]
    if unknown and new_chargers is None:
        shown = ", ".join(repr(c) for c in unknown[:SHOWN]) + (" ..." if len(unknown) > SHOWN else "")
        problems.append(FieldProblem("sessions.charger", shown,
                                     f"charger ids of the site ({len(known)} known), or pass new_chargers= a charger "
                                     f"template to add them"))
    _raise(problems, label)
    for charger_id in unknown:
        data["chargers"].append({"id": charger_id, **dict(new_chargers)})
    zone = horizon.timezone
    chosen = np.flatnonzero(keep)
    arrival_text = arrival.iloc[chosen].dt.tz_convert(zone).map(pd.Timestamp.isoformat).tolist()
    departure_text = departure.iloc[chosen].dt.tz_convert(zone).map(pd.Timestamp.isoformat).tolist()
    ids = frame["id"].iloc[chosen].tolist()
    chargers = frame["charger"].iloc[chosen].tolist()
    energy = frame["energy_kwh"].iloc[chosen].astype(float).tolist()
    data["sessions"] = [{"id": str(ids[k]), "charger": chargers[k], "arrival": arrival_text[k],
                         "departure": departure_text[k], "energy_kwh": energy[k]} for k in range(len(chosen))]
    dropped = len(frame) - len(chosen)
    notes = [f"{dropped} outside the horizon dropped"] if dropped else []
    if outside == "clip" and n_clipped:
        notes.append(clip_note(n_clipped, cut_h, clipped_kwh))
    data["name"] = name or (f"{data['name']} + {len(chosen)} sessions read"
                            + (f" ({'; '.join(notes)})" if notes else ""))
    load_instance(data)  # the whole instance is valid (overlaps on a charger, departure rules ...)
    if outside == "clip" and n_clipped:
        warnings.warn(ClippedSessionsWarning(n_clipped, cut_h, clipped_kwh), stacklevel=2)
    return data
