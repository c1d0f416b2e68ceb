"""Daily load shapes and their resampling onto a period grid."""

from __future__ import annotations

import numpy as np

#: Residential household demand shape, hourly from 00:00, as a fraction of the evening peak [-]. A typical northern
#: Chinese urban residential feeder: overnight trough, morning shoulder, evening peak around 19:00-21:00.
HOUSEHOLD_SHAPE = np.array([
    0.42, 0.36, 0.33, 0.32, 0.32, 0.35, 0.45, 0.58, 0.60, 0.55, 0.52, 0.56,
    0.60, 0.55, 0.52, 0.52, 0.58, 0.72, 0.90, 1.00, 1.00, 0.92, 0.75, 0.55,
])
#: Evening peak of one household's diversified demand [kW].
HOUSEHOLD_PEAK_KW = 1.2


def hours_of_day(start_hour: float, step_minutes: float, periods: int) -> np.ndarray:
    """Hour of day at the start of each period.

    Parameters
    ----------
    start_hour : float — hour of day of the first period's start [h], e.g. 12.5 for 12:30
    step_minutes : float — period length [minutes]
    periods : int — number of periods

    Returns
    -------
    numpy.ndarray — hour of day in ``[0, 24)`` per period [h]
    """
    return (start_hour + np.arange(periods) * step_minutes / 60.0) % 24


def hourly_to_periods(hourly: np.ndarray, start_hour: float, step_minutes: float, periods: int) -> np.ndarray:
    """Resample a 24-value hourly daily shape onto a period grid by linear interpolation (wrapping at midnight).

    Parameters
    ----------
    hourly : numpy.ndarray — 24 values, one per hour from 00:00 [any unit]
    start_hour, step_minutes, periods : the period grid, as in :func:`hours_of_day`

    Returns
    -------
    numpy.ndarray — one value per period [same unit as ``hourly``]
    """
    hourly = np.asarray(hourly, dtype=float)
    if hourly.shape != (24,):
        raise ValueError(f"hourly: {hourly.shape[0] if hourly.ndim == 1 else hourly.shape} values; expected 24")
    hours = hours_of_day(start_hour, step_minutes, periods)
    return np.interp(hours, np.arange(25), np.r_[hourly, hourly[0]])


#: Office building demand shape, hourly from 00:00, as a fraction of the working-day peak [-]: night base (servers,
#: lighting) about a third of peak, ramp 07:00-09:00, plateau through the working day, fall after 18:00.
OFFICE_SHAPE = np.array([
    0.30, 0.29, 0.28, 0.28, 0.28, 0.30, 0.36, 0.52, 0.78, 0.95, 1.00, 1.00,
    0.92, 0.96, 1.00, 0.99, 0.95, 0.85, 0.66, 0.50, 0.42, 0.38, 0.34, 0.32,
])
#: Shopping-centre / commercial building demand shape, hourly from 00:00, fraction of peak [-]: open about
#: 10:00-22:00 with the peak in the afternoon and evening.
COMMERCIAL_SHAPE = np.array([
    0.25, 0.24, 0.23, 0.23, 0.23, 0.24, 0.28, 0.36, 0.50, 0.72, 0.90, 0.95,
    0.97, 0.97, 0.98, 1.00, 1.00, 0.99, 0.98, 0.97, 0.92, 0.80, 0.55, 0.32,
])
#: Shapes by name, for scenario files.
LOAD_SHAPES = {"residential": HOUSEHOLD_SHAPE, "office": OFFICE_SHAPE, "commercial": COMMERCIAL_SHAPE}

#: Beijing air temperature by season: (mean daily minimum, mean daily maximum) [°C], rounded from the 1981-2010
#: monthly climate normals of the China Meteorological Administration for Beijing (as commonly tabulated, e.g. in
#: encyclopaedia climate tables): January (winter), April (spring), July (summer), October (autumn).
#: ``beijing-summer-hot`` is a heat-wave day (27 / 38 °C, of the kind Beijing saw in June-July 2023) for stress tests.
#: Illustrative presets: use a CSV of measured ambient for a real study.
BEIJING_AMBIENT_C = {
    "beijing-winter": (-8.4, 1.8),
    "beijing-spring": (7.9, 21.0),
    "beijing-summer": (22.4, 31.5),
    "beijing-autumn": (7.8, 19.7),
    "beijing-summer-hot": (27.0, 38.0),
}
#: Sunrise and sunset in Beijing by season, local time [h] (mid-month, rounded to 15 minutes).
BEIJING_DAYLIGHT_H = {
    "beijing-winter": (7.5, 17.25),
    "beijing-spring": (5.75, 18.75),
    "beijing-summer": (5.0, 19.75),
    "beijing-autumn": (6.25, 17.5),
    "beijing-summer-hot": (5.0, 19.75),
}


def diurnal_temperature(minimum_c: float, maximum_c: float, coldest_hour: float = 6.0,
                        warmest_hour: float = 15.0) -> np.ndarray:
    """Hourly air temperature over a day from its minimum and maximum [°C], 24 values from 00:00.

    A half cosine rising from the minimum at ``coldest_hour`` to the maximum at ``warmest_hour`` and another
    falling back over the remaining hours — the usual two-branch sine interpolation of daily extremes.
    """
    hours = np.arange(24.0)
    rise = warmest_hour - coldest_hour
    since = (hours - coldest_hour) % 24
    frac = np.where(since <= rise, 0.5 - 0.5 * np.cos(np.pi * since / rise),
                    0.5 + 0.5 * np.cos(np.pi * (since - rise) / (24 - rise)))
    return minimum_c + (maximum_c - minimum_c) * frac


def ambient_preset(name: str) -> np.ndarray:
    """Hourly ambient temperature of a named preset (``BEIJING_AMBIENT_C``), 24 values from 00:00 [°C]."""
    if name not in BEIJING_AMBIENT_C:
        raise ValueError(f"ambient preset {name!r}: expected one of {', '.join(BEIJING_AMBIENT_C)}")
    return diurnal_temperature(*BEIJING_AMBIENT_C[name])


def pv_shape(sunrise_h: float, sunset_h: float, step_minutes: float = 60.0) -> np.ndarray:
    """Clear-sky PV output as a fraction of peak [-], one value per step from 00:00 (mean over each step).

    ``sin(π (t - sunrise) / (sunset - sunrise))`` between sunrise and sunset, 0 at night; the mean over each step
    is taken on a one-minute grid so that the energy is right at any step length.
    """
    minutes = np.arange(24 * 60) + 0.5
    t = minutes / 60.0
    day = sunset_h - sunrise_h
    value = np.where((t > sunrise_h) & (t < sunset_h), np.sin(np.pi * (t - sunrise_h) / day), 0.0)
    per = round(step_minutes)
    if per <= 0 or (24 * 60) % per:
        raise ValueError(f"step_minutes {step_minutes!r}: expected a divisor of 1440")
    return value.reshape(-1, per).mean(axis=1)
