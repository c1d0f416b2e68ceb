"""OCPP-J wire helpers shared by the central system and the simulated chargers: date-times, the parts of a
SetChargingProfile payload, the limit it sets at an instant, energy registers of meter values."""

from __future__ import annotations

import math
from datetime import datetime, timezone


def utc_text(moment: datetime) -> str:
    """RFC 3339 UTC with a ``Z``, whole seconds."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text) -> datetime | None:
    """An OCPP date-time → tz-aware datetime (None if absent or unreadable)."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def profile_of(payload: dict) -> dict:
    """The charging profile inside a SetChargingProfile request (1.6 ``csChargingProfiles``, 2.x
    ``chargingProfile``)."""
    return payload["csChargingProfiles"] if "csChargingProfiles" in payload else payload["chargingProfile"]


def purpose_of(payload: dict) -> str:
    return profile_of(payload)["chargingProfilePurpose"]


def schedule_of(payload: dict) -> dict:
    schedule = profile_of(payload)["chargingSchedule"]
    return schedule[0] if isinstance(schedule, list) else schedule


def limit_at(payload: dict, moment: datetime) -> float | None:
    """The ``limit`` of a SetChargingProfile payload's period that holds at ``moment`` (None outside it)."""
    schedule = schedule_of(payload)
    start = parse_time(schedule.get("startSchedule"))
    if start is None:
        return None
    offset = (moment - start).total_seconds()
    if offset < 0 or ("duration" in schedule and offset >= schedule["duration"]):
        return None
    current = None
    for period in schedule["chargingSchedulePeriod"]:
        if period["startPeriod"] <= offset:
            current = period
    return None if current is None else float(current.get("limit", 0.0))


def energy_registers(meter_values, version: str) -> tuple[float | None, float | None]:
    """The last total (phase-less) ``Energy.Active.Import.Register`` and ``...Export.Register`` readings [Wh] of an
    OCPP ``meterValue`` list (1.6 ``sampledValue.value`` is a string, ``unit`` Wh or kWh; 2.x a number with
    ``unitOfMeasure`` {unit, multiplier}). A sampled value without ``measurand`` is an import register reading."""
    imported = exported = None
    for meter in meter_values or ():
        for sample in meter.get("sampledValue", ()):
            if sample.get("phase"):
                continue
            measurand = sample.get("measurand", "Energy.Active.Import.Register")
            if measurand not in ("Energy.Active.Import.Register", "Energy.Active.Export.Register"):
                continue
            try:
                value = float(sample["value"])
            except (KeyError, TypeError, ValueError):
                continue
            if version == "1.6":
                unit, multiplier = sample.get("unit", "Wh"), 0
            else:
                uom = sample.get("unitOfMeasure") or {}
                unit, multiplier = uom.get("unit", "Wh"), int(uom.get("multiplier", 0))
            if unit not in ("Wh", "kWh"):
                continue
            wh = value * (1000.0 if unit == "kWh" else 1.0) * 10.0 ** multiplier
            if not math.isfinite(wh):
                continue
            if measurand.endswith("Import.Register"):
                imported = wh
            else:
                exported = wh
    return imported, exported


def with_transaction(payload: dict, transaction_id: str, evse_id: int, version: str) -> dict:
    """A TxProfile payload bound to a transaction: its id and EVSE (connector in 1.6)."""
    if version == "1.6":
        profile = dict(payload["csChargingProfiles"])
        profile["transactionId"] = int(transaction_id)
        return {**payload, "connectorId": evse_id, "csChargingProfiles": profile}
    profile = dict(payload["chargingProfile"])
    profile["transactionId"] = str(transaction_id)
    return {**payload, "evseId": evse_id, "chargingProfile": profile}


__all__ = ["energy_registers", "limit_at", "parse_time", "profile_of", "purpose_of", "schedule_of", "utc_text",
           "with_transaction"]
