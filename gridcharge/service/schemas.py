"""The pydantic bodies of the HTTP API (requests, and the problem details of errors), with the bounds each field
must meet (a value outside gets a 422 naming the field)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from ..instance import MAX_CHARGER_KW, MAX_ENERGY_KWH, MAX_NODE_KW, MAX_VOLTAGE_V, MIN_VOLTAGE_V

PROBLEM_JSON = "application/problem+json"


class Body(BaseModel):
    """A request body: unknown keys, wrong types and non-finite numbers are refused."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class ChargerSettingsIn(Body):
    """OCPP settings of one charger."""

    rate_unit: Literal["W", "A"] = Field("W", description="chargingRateUnit of its profiles")
    voltage_v: Annotated[float | None, Field(
        ge=MIN_VOLTAGE_V, le=MAX_VOLTAGE_V,
        description="optional: the charger's phase-to-neutral voltage [V], which must equal its voltage_v in the "
                    "instance (default 220 V there); the instance is the one place a charger's voltage is set")] = None
    evse_id: Annotated[int, Field(ge=0, le=999, description="EVSE / connector id of its TxProfile, 0..999")] = 1


class SiteIn(Body):
    """A site: an instance-v1 without sessions, and OCPP settings per charger (default: W, EVSE 1; the voltage is
    the instance charger's)."""

    instance: dict[str, Any] = Field(description="instance-v1 (format, name, horizon, nodes, chargers, tariff, "
                                                 "objective); no sessions")
    charger_settings: dict[str, ChargerSettingsIn] = Field(default_factory=dict)


#: An ISO-8601 date-time with UTC offset, kept as text (the controller parses it and names the field if it is not
#: one); documented as ``format: date-time`` in the OpenAPI document.
DateTimeText = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]


class SessionIn(Body):
    """A plug-in or reservation (instance-v1 session fields)."""

    id: Annotated[str, Field(min_length=1, max_length=200)]
    charger: Annotated[str, Field(min_length=1, max_length=200)]
    departure: DateTimeText = Field(description="ISO-8601 date-time with UTC offset")
    energy_kwh: Annotated[float, Field(ge=0, le=MAX_ENERGY_KWH, description="energy to add by departure [kWh]")]
    arrival: DateTimeText | None = Field(None, description="ISO-8601 date-time with offset; default: now (plug-in); "
                                                           "a future arrival is a reservation")
    max_charge_kw: Annotated[float | None, Field(gt=0, le=MAX_CHARGER_KW,
                                                 description="the car's charge limit [kW]")] = None
    max_discharge_kw: Annotated[float, Field(ge=0, le=MAX_CHARGER_KW,
                                             description="V2G consent: discharge limit [kW], 0 = none")] = 0.0
    battery_kwh: Annotated[float | None, Field(gt=0, le=MAX_ENERGY_KWH, description="[kWh]")] = None
    initial_kwh: Annotated[float | None, Field(ge=0, le=MAX_ENERGY_KWH, description="[kWh]")] = None
    min_kwh: Annotated[float | None, Field(ge=0, le=MAX_ENERGY_KWH, description="[kWh]")] = None


class SessionPatch(Body):
    """A change of a session: new departure, new energy wish, and/or a meter reading."""

    departure: DateTimeText | None = Field(None, description="ISO-8601 date-time with UTC offset")
    energy_kwh: Annotated[float | None, Field(ge=0, le=MAX_ENERGY_KWH,
                                              description="total energy to add since arrival [kWh]")] = None
    energy_delivered_kwh: float | None = Field(None, ge=-MAX_ENERGY_KWH, le=MAX_ENERGY_KWH,
                                               description="energy delivered since arrival (meter) [kWh]")


class CapIn(Body):
    """A demand-response cap on a node's net import for a time window."""

    node: Annotated[str, Field(min_length=1)]
    import_limit_kw: Annotated[float, Field(ge=0, le=MAX_NODE_KW, description="[kW]")]
    start: DateTimeText = Field(description="ISO-8601 date-time with UTC offset (rounded down to the period grid)")
    end: DateTimeText = Field(description="ISO-8601 date-time with UTC offset (rounded up to the period grid)")


class ProblemDetails(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[dict[str, Any]] = []


ERRORS = {code: {"model": ProblemDetails, "content": {PROBLEM_JSON: {}}, "description": text}
           for code, text in [(400, "malformed request"), (401, "missing or unknown token"), (403, "wrong token"),
                              (404, "not found"), (409, "conflict"), (413, "body too large"),
                              (422, "invalid values (each field named)")]}


__all__ = ["Body", "CapIn", "ChargerSettingsIn", "DateTimeText", "ERRORS", "PROBLEM_JSON", "ProblemDetails",
           "SessionIn", "SessionPatch", "SiteIn"]
