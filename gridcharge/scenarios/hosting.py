"""Hosting capacity: the probability that a day violates the criteria, per strategy and EV count, with a Wilson
score interval, and the largest EV count whose estimated probability stays at or below ``alpha``."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pandas as pd


def wilson_interval(violations: int, days: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (Wilson 1927, J. Am. Stat. Assoc. 22:209-212).

    Parameters
    ----------
    violations : int — days that violated
    days : int — days simulated (> 0)
    confidence : float — two-sided confidence level [-]

    Returns
    -------
    (low, high) — bounds on the probability of a violating day [-]
    """
    if days <= 0:
        raise ValueError(f"days: {days!r}; expected > 0")
    if not 0 <= violations <= days:
        raise ValueError(f"violations: {violations!r}; expected within 0..{days}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = violations / days
    z2n = z * z / days
    centre = (p + z2n / 2) / (1 + z2n)
    half = z / (1 + z2n) * math.sqrt(p * (1 - p) / days + z * z / (4 * days * days))
    low = 0.0 if violations == 0 else max(0.0, centre - half)  # exact ends (the formula gives them up to rounding)
    high = 1.0 if violations == days else min(1.0, centre + half)
    return low, high


def violation_curve(rows: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Per strategy and EV count: days, violating days, estimated probability and its Wilson interval.

    ``rows`` has columns ``strategy``, ``evs``, ``day``, ``violates`` (one row per simulated day).
    """
    grouped = rows.groupby(["strategy", "evs"], sort=False)["violates"].agg(days="count", violations="sum")
    grouped = grouped.reset_index()
    grouped["violations"] = grouped["violations"].astype(int)
    grouped["probability"] = grouped["violations"] / grouped["days"]
    bounds = [wilson_interval(v, d, confidence) for v, d in zip(grouped["violations"], grouped["days"])]
    grouped["ci_low"] = [b[0] for b in bounds]
    grouped["ci_high"] = [b[1] for b in bounds]
    return grouped.sort_values(["strategy", "evs"], kind="stable").reset_index(drop=True)


def hosting_capacity(curve: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Per strategy: the largest swept EV count up to which every count's estimated probability is <= ``alpha``
    (``hosting_evs``; 0 when the smallest count already exceeds it), and the same with the Wilson upper bound
    (``hosting_evs_confident``: the count one can claim at the interval's confidence). ``limited`` says whether
    some swept count exceeded ``alpha`` (False: the capacity is at least the largest count swept)."""
    out = []
    for strategy, group in curve.groupby("strategy", sort=False):
        group = group.sort_values("evs")
        counts = group["evs"].to_numpy()
        out.append({
            "strategy": strategy,
            "hosting_evs": _last_ok(counts, group["probability"].to_numpy() <= alpha + 1e-12),
            "hosting_evs_confident": _last_ok(counts, group["ci_high"].to_numpy() <= alpha + 1e-12),
            "limited": bool(np.any(group["probability"].to_numpy() > alpha + 1e-12)),
            "largest_swept": int(counts.max()),
        })
    return pd.DataFrame(out)


def _last_ok(counts: np.ndarray, ok: np.ndarray) -> int:
    bad = np.flatnonzero(~ok)
    if len(bad) == 0:
        return int(counts[-1])
    return int(counts[bad[0] - 1]) if bad[0] > 0 else 0
