"""Tables of records (CSV or Parquet) whose columns are the fields of a pydantic model: read column by column with
pandas, every bad cell reported by row, column, value and what was expected.

Used for the sessions of an instance (``sessions_file``, README "Instance format v1"): a day of 100,000 sessions is
a table, not JSON. The columns are derived from the model, so a field added to it is a column at once. This module
only turns cells into typed values (numbers, tz-aware date-times, booleans, text); the model's own rules (bounds,
cross-field checks) are applied by the caller's validation, the same as for JSON.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal, Union, get_args, get_origin
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from pydantic import BaseModel

from ._files import atomic_write
from .errors import FieldProblem, InstanceError

#: Problems shown per column before "N more rows like these".
SHOWN = 5
#: File suffixes a table may have.
SUFFIXES = (".csv", ".parquet")
#: A date-time text that ends in a time of day and its UTC offset (``Z``, ``+08:00``, ``+0800``, ``+08``); a date
#: alone (``2026-01-15``, whose ``-15`` is no offset) does not.
_OFFSET = r"\d{2}:?\d{2}(?::?\d{2}(?:[.,]\d+)?)?\s*(?:[zZ]|[+-]\d{2}(?::?\d{2})?)$"
_WHEN = "an ISO-8601 date-time with UTC offset like 2026-01-15T18:00:00+08:00"


@dataclass(frozen=True)
class Table:
    """Records read from a table.

    records : list of dict — one per row; a cell left empty (or null) is a key left out, so the model's default
        applies, as for a key left out of JSON
    rows : list of str — each record's place for messages (``sessions.csv row 7``: the 7th line, the header being
        row 1; ``sessions.parquet row 3``: the 3rd row)
    """

    records: list[dict]
    rows: list[str]


def report_rows(problems: list[FieldProblem], where: list[str], column: str, values: pd.Series, mask: np.ndarray,
                expected: str) -> None:
    """Append a problem per row of ``mask`` (the first :data:`SHOWN`, then one "N more rows like these")."""
    rows = np.flatnonzero(mask)
    for i in rows[:SHOWN]:
        value = values.iloc[i]
        empty = value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip() == ""
        problems.append(FieldProblem(f"{where[i]}.{column}", "(empty)" if empty else value, expected))
    if len(rows) > SHOWN:
        problems.append(FieldProblem(column, f"{len(rows) - SHOWN} more rows like these", expected))


def _leaves(annotation) -> list:
    """The plain types and literals inside an annotation (``Annotated``, unions and ``None`` unwrapped)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _leaves(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [leaf for arg in get_args(annotation) for leaf in _leaves(arg)]
    return [annotation]


def column_kinds(model: type[BaseModel]) -> dict[str, str]:
    """Each field's column kind: ``time``, ``number``, ``whole``, ``bool``, ``text`` or ``unsupported`` (lists,
    objects: not a table's cell)."""
    kinds = {}
    for name, info in model.model_fields.items():
        leaves = [leaf for leaf in _leaves(info.annotation) if leaf is not type(None)]
        if any(leaf is datetime for leaf in leaves):
            kind = "time"
        elif float in leaves:
            kind = "number"
        elif int in leaves:
            kind = "whole"
        elif bool in leaves:
            kind = "bool"
        elif leaves and all(leaf is str or get_origin(leaf) is Literal for leaf in leaves):
            kind = "text"
        else:
            kind = "unsupported"
        kinds[name] = kind
    return kinds


def read_frame(path: Path, label: str, what: str) -> pd.DataFrame:
    """The table at ``path`` (``.csv``: every cell as its text; ``.parquet``: typed columns); an unreadable file is an
    :class:`InstanceError` (``what``, ``label``) saying why."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InstanceError(FieldProblem("", str(path), "a .csv or .parquet table"), label, what=what)
    try:
        if suffix == ".csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")  # a spreadsheet's BOM
        return pd.read_parquet(path)
    except FileNotFoundError:
        raise InstanceError(FieldProblem("", str(path), "no such file; expected a .csv or .parquet table"), label,
                            what=what) from None
    except pd.errors.EmptyDataError:
        raise InstanceError(FieldProblem("", "empty file", "a header line and one row per record"), label,
                            what=what) from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        kind = "comma-separated UTF-8 text with a header line" if suffix == ".csv" else "a Parquet file"
        raise InstanceError(FieldProblem("", f"not a readable {suffix[1:]} table", f"{kind} ({exc})"), label,
                            what=what) from None


def _given(values: pd.Series) -> np.ndarray:
    """Which cells hold a value: not null, and for text not blank."""
    given = values.notna().to_numpy()
    if _is_text(values):
        given = given & values.astype(str).str.strip().ne("").to_numpy()
    return given


def _is_text(values: pd.Series) -> bool:
    return values.dtype == object or pd.api.types.is_string_dtype(values.dtype)


def _times(values: pd.Series, given: np.ndarray, zone, problems, where, column) -> list:
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        parsed = values
    elif pd.api.types.is_datetime64_dtype(values.dtype):
        report_rows(problems, where, column, values.astype(str), given,
                    "a time zone: write the column as tz-aware timestamps, or as text with a UTC offset; no zone is "
                    "guessed")
        return [None] * len(values)
    elif _is_text(values):
        text = values.astype(str).str.strip()
        parsed = pd.to_datetime(text.where(given, None), format="ISO8601", utc=True, errors="coerce")
        unreadable = given & parsed.isna().to_numpy()
        naive = given & ~unreadable & ~text.str.contains(_OFFSET, regex=True).to_numpy()
        report_rows(problems, where, column, values, unreadable, f"must be {_WHEN}")
        report_rows(problems, where, column, values, naive,
                    "has no UTC offset; write it like 2026-01-15T18:00:00+08:00 (no zone is guessed)")
    else:
        report_rows(problems, where, column, values, given, f"must be {_WHEN}, not a {values.dtype} value")
        return [None] * len(values)
    shown = parsed.dt.tz_convert(zone).dt.to_pydatetime() if len(parsed) else []
    return [value if ok else None for value, ok in zip(list(shown), (given & parsed.notna().to_numpy()).tolist())]


def _numbers(values: pd.Series, given: np.ndarray, whole: bool, problems, where, column) -> list:
    if pd.api.types.is_bool_dtype(values.dtype):
        report_rows(problems, where, column, values, given, "must be a number, not true/false")
        return [None] * len(values)
    if _is_text(values):
        numbers = pd.to_numeric(values.astype(str).str.strip().where(given, None), errors="coerce")
    elif pd.api.types.is_numeric_dtype(values.dtype):
        numbers = values
    else:
        report_rows(problems, where, column, values, given, f"must be a number, not a {values.dtype} value")
        return [None] * len(values)
    array = numbers.to_numpy(dtype=float, na_value=np.nan)
    report_rows(problems, where, column, values, given & ~np.isfinite(array),
                "must be a finite number" if not whole else "must be a whole number")
    if whole:
        fractional = given & np.isfinite(array) & (array != np.round(array))
        report_rows(problems, where, column, values, fractional, "must be a whole number")
        return [int(v) if ok else None for v, ok in zip(np.nan_to_num(array).tolist(), given.tolist())]
    return [v if ok else None for v, ok in zip(array.tolist(), given.tolist())]


def _booleans(values: pd.Series, given: np.ndarray, problems, where, column) -> list:
    if pd.api.types.is_bool_dtype(values.dtype):
        return [bool(v) if ok else None for v, ok in zip(values.tolist(), given.tolist())]
    text = values.astype(str).str.strip().str.lower()
    bad = given & ~text.isin(["true", "false"]).to_numpy()
    report_rows(problems, where, column, values, bad, "must be true or false")
    return [(t == "true") if ok else None for t, ok in zip(text.tolist(), given.tolist())]


def _texts(values: pd.Series, given: np.ndarray) -> list:
    if _is_text(values):
        return [v if ok else None for v, ok in zip(values.astype(str).str.strip().tolist(), given.tolist())]
    return [v if ok else None for v, ok in zip(values.tolist(), given.tolist())]  # the model says what is wrong


def read_table(path: str | Path, model: type[BaseModel], *, zone: str = "UTC", what: str = "invalid table",
               label: str | None = None) -> Table:
    """Read a CSV or Parquet table whose columns are fields of ``model``.

    Parameters
    ----------
    path : path of a ``.csv`` (UTF-8, header line) or ``.parquet`` file
    model : the pydantic model of one record; its required fields are required columns, its other fields optional
        columns, anything else an unknown column
    zone : str — IANA zone the date-times are given in (``to_pydatetime`` in that zone; the instant is the one
        written). A date-time must carry its UTC offset (text) or zone (a tz-aware Parquet column): no zone is guessed
    what : str — how an error begins (``"invalid sessions table"``)
    label : str, optional — what an error names as the source (default: the path)

    Returns
    -------
    Table — records as typed Python values (float, int, bool, str, tz-aware datetime), and their rows

    Raises
    ------
    InstanceError — an unreadable file, a missing or unknown column, or cells that are not of their column's kind
        (each named by row, column, value and what was expected)
    """
    path = Path(path)
    label = label or str(path)
    frame = read_frame(path, label, what)
    kinds = column_kinds(model)
    required = [name for name, info in model.model_fields.items() if info.is_required()]
    problems: list[FieldProblem] = []
    columns = [str(c) for c in frame.columns]
    allowed = ", ".join(name for name, kind in kinds.items() if kind != "unsupported")
    for column in columns:
        if column not in kinds:
            problems.append(FieldProblem(f"column {column!r}", column, f"unknown column; the columns are {allowed} "
                                                                       f"(required: {', '.join(required)})"))
        elif kinds[column] == "unsupported":
            problems.append(FieldProblem(f"column {column!r}", column,
                                         "cannot be given in a table (not a single value); give it in JSON"))
    for name in required:
        if name not in columns:
            problems.append(FieldProblem(f"column {name!r}", "(missing)",
                                         f"a required column (required: {', '.join(required)})"))
    if problems:
        raise InstanceError(problems, label, what=what)
    first = 2 if path.suffix.lower() == ".csv" else 1
    where = [f"{path.name} row {i + first}" for i in range(len(frame))]
    tz = ZoneInfo(zone)
    cells: dict[str, list] = {}
    for column in columns:
        values = frame[column].reset_index(drop=True)
        given = _given(values)
        kind = kinds[column]
        if kind == "time":
            cells[column] = _times(values, given, tz, problems, where, column)
        elif kind in ("number", "whole"):
            cells[column] = _numbers(values, given, kind == "whole", problems, where, column)
        elif kind == "bool":
            cells[column] = _booleans(values, given, problems, where, column)
        else:
            cells[column] = _texts(values, given)
    if problems:
        raise InstanceError(problems, label, what=what)
    names = list(cells)
    records = [{k: v for k, v in zip(names, row) if v is not None} for row in zip(*cells.values())]
    if not names:
        records = [{} for _ in range(len(frame))]
    return Table(records, where)


def write_table(path: str | Path, records: list[dict], model: type[BaseModel]) -> Path:
    """Write records as a CSV or Parquet table (by the suffix), replacing the file whole.

    Columns: the model's fields in its order, each one that some record gives (and every required one); a key a
    record leaves out is an empty cell (null in Parquet). Date-times are written as given (ISO-8601 text with offset)
    in a CSV and as tz-aware timestamps in Parquet (the records' common UTC offset, else UTC).

    Returns
    -------
    pathlib.Path — ``path``
    """
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise ValueError(f"{path}: expected a .csv or .parquet file name")
    kinds = column_kinds(model)
    present = {key for record in records for key in record}
    names = [n for n, info in model.model_fields.items() if n in present or info.is_required()]
    frame = pd.DataFrame.from_records(records, columns=names)
    if path.suffix.lower() == ".csv":
        return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))
    for name in names:
        if kinds[name] == "time":
            try:
                frame[name] = pd.to_datetime(frame[name], format="ISO8601")
            except (ValueError, TypeError):  # several offsets: one column needs one zone
                frame[name] = pd.to_datetime(frame[name], format="ISO8601", utc=True)
    return atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
