"""Small instance builders for tests: readable, with defaults that keep every example short."""

from __future__ import annotations

import copy

START = "2026-07-01T00:00:00+08:00"


def at(hour: float, day: int = 1) -> str:
    """ISO time on 2026-07-<day> at ``hour`` (fractions allowed), Beijing time."""
    minutes = int(round(hour * 60))
    return f"2026-07-{day:02d}T{minutes // 60:02d}:{minutes % 60:02d}:00+08:00"


def instance(*, periods=4, step_minutes=60, start=START, nodes=None, chargers=None, sessions=None,
             import_price=1.0, export_price=0.0, objective=None, name="test") -> dict:
    """An instance-v1 mapping; by default one unlimited transformer ``T`` and nothing else."""
    data = {
        "format": "gridcharge/instance-v1",
        "name": name,
        "horizon": {"start": start, "step_minutes": step_minutes, "periods": periods},
        "nodes": nodes if nodes is not None else [node("T")],
        "chargers": chargers or [],
        "sessions": sessions or [],
        "tariff": {"import_cny_per_kwh": import_price, "export_cny_per_kwh": export_price},
    }
    if objective is not None:
        data["objective"] = objective
    return data


def node(id, parent=None, kind=None, **fields) -> dict:
    return {"id": id, "parent": parent, "kind": kind or ("transformer" if parent is None else "meter"), **fields}


def charger(id, node="T", max_charge_kw=7.0, **fields) -> dict:
    return {"id": id, "node": node, "max_charge_kw": max_charge_kw, **fields}


def session(id, charger, arrival, departure, energy_kwh, **fields) -> dict:
    return {"id": id, "charger": charger, "arrival": arrival, "departure": departure, "energy_kwh": energy_kwh,
            **fields}


def modified(data: dict, path: str, value) -> dict:
    """A deep copy of ``data`` with ``path`` (like ``sessions[0].departure``) set to ``value``; DELETE removes it."""
    out = copy.deepcopy(data)
    parts = path.replace("]", "").replace("[", ".").split(".")
    target = out
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target[part]
    last = parts[-1]
    key = int(last) if last.isdigit() else last
    if value is DELETE:
        del target[key]
    else:
        target[key] = value
    return out


DELETE = object()
