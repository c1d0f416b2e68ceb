"""Time-of-use tariff presets."""

from __future__ import annotations

import numpy as np

from .profiles import hours_of_day

#: Time-of-use periods by hour of day (0 valley, 1 flat, 2 peak): valley 23:00-07:00, peak 10:00-15:00 and
#: 18:00-21:00, flat otherwise — modelled on the period split of Beijing's time-of-use tariff for general commercial users.
TOU_PERIOD_BY_HOUR = np.array([0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 1, 1, 1, 2, 2, 2, 1, 1, 0])
#: Illustrative prices for those periods [CNY/kWh] (valley, flat, peak).
TOU_PRICES_CNY_PER_KWH = np.array([0.30, 0.65, 1.00])


def tou_prices(start_hour: float, step_minutes: float, periods: int,
               prices_cny_per_kwh: np.ndarray = TOU_PRICES_CNY_PER_KWH,
               period_by_hour: np.ndarray = TOU_PERIOD_BY_HOUR) -> np.ndarray:
    """Import price per period of a time-of-use tariff.

    Parameters
    ----------
    start_hour : float — hour of day of the first period's start [h]
    step_minutes : float — period length [minutes]
    periods : int — number of periods
    prices_cny_per_kwh : numpy.ndarray — price of each tariff period class [CNY/kWh]
    period_by_hour : numpy.ndarray — 24 class indices into ``prices_cny_per_kwh``, one per hour of day

    Returns
    -------
    numpy.ndarray — price per period [CNY/kWh]
    """
    hours = hours_of_day(start_hour, step_minutes, periods)
    return np.asarray(prices_cny_per_kwh, dtype=float)[np.asarray(period_by_hour)[np.floor(hours).astype(int)]]


#: Named presets: name → (class index per hour of day, price per class [CNY/kWh]). ``beijing-tou`` is the default
#: above. ``beijing-residential`` is a two-period residential split — valley 23:00-07:00 at 0.30, otherwise 0.49 CNY/kWh
#: (modelled on Beijing's residential time-of-use option; illustrative prices).
TARIFF_PRESETS = {
    "beijing-tou": (TOU_PERIOD_BY_HOUR, TOU_PRICES_CNY_PER_KWH),
    "beijing-residential": (np.array([0] * 7 + [1] * 16 + [0]), np.array([0.30, 0.49])),
}


def preset_prices(name: str, start_hour: float, step_minutes: float, periods: int) -> np.ndarray:
    """Import price per period of a named preset (``TARIFF_PRESETS``) [CNY/kWh]."""
    if name not in TARIFF_PRESETS:
        raise ValueError(f"tariff preset {name!r}: expected one of {', '.join(TARIFF_PRESETS)}")
    by_hour, prices = TARIFF_PRESETS[name]
    return tou_prices(start_hour, step_minutes, periods, prices_cny_per_kwh=prices, period_by_hour=by_hour)
