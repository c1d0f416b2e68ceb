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
