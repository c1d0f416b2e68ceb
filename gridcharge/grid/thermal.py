"""Transformer thermal model: top-oil and hot-spot temperatures and insulation ageing.

The model is the exponential (differential-equation) method of IEC 60076-7:2018 *Loading guide for mineral-oil-
immersed power transformers*, clause 8.2 (equations of 8.2.2 for the top-oil rise and the two-part hot-spot rise,
with the thermal characteristics of Table 4 — "recommended thermal characteristics for exponential equations").
Ageing follows clause 6.3 (relative ageing rate, equations 2 and 3) and 6.4 (loss of life, equation 4); the IEEE
C57.91-2011 aging acceleration factor (clause 5, equation 2) is offered as an option. Clause, table and equation
numbers are given for the 2018 edition; the titles named with them ("relative ageing rate", "loss of life",
"recommended thermal characteristics for exponential equations") locate the same material in the 2005 edition.

Solution method
---------------
Load factor ``K`` and ambient ``θa`` are held constant over each step (as a meter's 15-minute mean is). Each of the
three first-order equations of 8.2.2 then has an exact solution over the step:
``x(t + Δt) = x_ss + (x(t) - x_ss) · exp(-Δt / τ)``, where ``x_ss`` is the steady state the current step's ``K`` and
``θa`` drive it towards and ``τ`` its time constant. The explicit difference form of Annex C (``Dx = Δt/τ · (x_ss -
x)``) is only stable for ``Δt`` well below the smallest time constant — ``k22 · τw`` = 8 min for an ONAN
distribution transformer — and oscillates or diverges at 15-minute steps; the exponential update is exact for any
step, and unconditionally stable.

Loss of life is ``∫ V dt`` (IEC 60076-7 eq. 4) on the same exact solution, by Simpson's rule on sub-steps of each
step, not ``V`` at the step ends times the step, which overstates it when the 8-min hot-spot time constant is
shorter than the step (docs/design/thermal-ageing.md).

Everything here is numpy on arrays; no import from the rest of gridcharge.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

#: Hot-spot temperature at which normal Kraft paper ages at the rated rate [°C] (IEC 60076-7 clause 6.3, eq. 2).
NORMAL_PAPER_REFERENCE_C = 98.0
#: Reference hot-spot temperature of thermally upgraded paper [°C] (IEC 60076-7 clause 6.3, eq. 3; IEEE C57.91-2011
#: clause 5.2, eq. 2: the 65 °C-rise insulation system's 110 °C).
UPGRADED_PAPER_REFERENCE_C = 110.0
#: Activation constant of the Arrhenius ageing law [K] (IEC 60076-7 eq. 3; IEEE C57.91-2011 eq. 2).
ARRHENIUS_B_K = 15000.0

AGEING_METHODS = ("iec-normal", "iec-upgraded", "ieee")

#: Longest sub-step of the ageing integral inside a step [min]: within 0.01 % of a settled ODE solution on an
#: uncontrolled evening-peak day at 15-min steps (convergence table in docs/design/thermal-ageing.md).
AGEING_SUBSTEP_MIN = 2.5


@dataclass(frozen=True)
class ThermalParameters:
    """Thermal characteristics of an oil-immersed transformer.

    Defaults: an ONAN distribution transformer, IEC 60076-7:2018 Table 4 (column "distribution transformers,
    ONAN"), with the rated temperature rises of that table. At rated load (``K = 1``) and 20 °C ambient the
    steady hot spot is ``20 + 55 + 23 = 98 °C``, the reference temperature of normal paper (clause 6.3).

    Attributes
    ----------
    top_oil_rise_k : float — Δθor, top-oil rise over ambient in steady state at rated losses [K] (Table 4: 55)
    hot_spot_gradient_k : float — Δθhr = H·gr, hot-spot-to-top-oil gradient at rated current [K] (Table 4: H·gr = 23,
        hot-spot factor H = 1.1 times the average winding-to-oil gradient)
    loss_ratio : float — R, load losses at rated current / no-load losses [-] (Table 4: 5)
    oil_exponent : float — x, top-oil rise versus total losses [-] (Table 4: 0.8)
    winding_exponent : float — y, hot-spot gradient versus current [-] (Table 4: 1.6 for distribution ONAN; 1.3
        for medium and large ONAN/ONAF)
    k11 : float — thermal model constant of the top-oil equation [-] (Table 4: 1.0)
    k21 : float — thermal model constant of the hot-spot equations [-] (Table 4: 1.0)
    k22 : float — thermal model constant of the hot-spot equations [-] (Table 4: 2.0)
    tau_oil_min : float — τo, average oil time constant [min] (Table 4: 180)
    tau_winding_min : float — τw, winding time constant [min] (Table 4: 4)
    """

    top_oil_rise_k: float = 55.0
    hot_spot_gradient_k: float = 23.0
    loss_ratio: float = 5.0
    oil_exponent: float = 0.8
    winding_exponent: float = 1.6
    k11: float = 1.0
    k21: float = 1.0
    k22: float = 2.0
    tau_oil_min: float = 180.0
    tau_winding_min: float = 4.0

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not np.isfinite(value) or value < 0 or (value == 0 and name not in ("top_oil_rise_k",
                                                                                  "hot_spot_gradient_k")):
                raise ValueError(f"{name}: {value!r}; expected a finite number > 0")

    def updated(self, **changes) -> ThermalParameters:
        """A copy with some parameters changed."""
        return replace(self, **changes)


#: Presets by name. ``onan-distribution``: IEC 60076-7:2018 Table 4, distribution transformers ONAN (the default).
#: ``onan-medium-large``: the same table's medium/large power transformer ONAN column (Δθor 52 K, H·gr 26 K, R 6,
#: y 1.3, k11 0.5, k21 2.0, τo 210 min, τw 10 min), for a substation transformer.
PRESETS = {
    "onan-distribution": ThermalParameters(),
    "onan-medium-large": ThermalParameters(top_oil_rise_k=52.0, hot_spot_gradient_k=26.0, loss_ratio=6.0,
                                           oil_exponent=0.8, winding_exponent=1.3, k11=0.5, k21=2.0, k22=2.0,
                                           tau_oil_min=210.0, tau_winding_min=10.0),
}


@dataclass(frozen=True)
class ThermalResult:
    """Temperatures at the end of each step and the ageing over it.

    top_oil_c, hot_spot_c : numpy.ndarray — [°C], value at the end of each step
    ageing_rate : numpy.ndarray — relative ageing rate V at the end of each step [-]
    step_loss_of_life_h : numpy.ndarray — equivalent ageing hours within each step, ``∫ V dt`` over the step [h]
    loss_of_life_h : float — equivalent ageing hours over the whole series, ``∫ V dt`` (IEC 60076-7 eq. 4) [h]
    """

    top_oil_c: np.ndarray
    hot_spot_c: np.ndarray
    ageing_rate: np.ndarray
    step_loss_of_life_h: np.ndarray
    loss_of_life_h: float


def steady_top_oil_rise_k(load_factor, params: ThermalParameters = ThermalParameters()) -> np.ndarray:
    """Ultimate top-oil rise over ambient at constant load factor ``K`` [K] (IEC 60076-7 8.2.2, steady state of
    the top-oil equation): ``Δθor · ((1 + R K²) / (1 + R))^x``."""
    k = np.asarray(load_factor, dtype=float)
    r = params.loss_ratio
    return params.top_oil_rise_k * ((1.0 + r * k * k) / (1.0 + r)) ** params.oil_exponent


def steady_hot_spot_rise_k(load_factor, params: ThermalParameters = ThermalParameters()) -> np.ndarray:
    """Ultimate hot-spot-to-top-oil gradient at constant ``K`` [K]: ``Δθhr · K^y`` (the two parts of 8.2.2,
    ``k21 K^y Δθhr - (k21 - 1) K^y Δθhr``)."""
    k = np.abs(np.asarray(load_factor, dtype=float))
    return params.hot_spot_gradient_k * k ** params.winding_exponent


def ageing_rate(hot_spot_c, method: str = "iec-normal") -> np.ndarray:
    """Relative ageing rate of the insulation at a hot-spot temperature [-].

    Parameters
    ----------
    hot_spot_c : array-like — hot-spot temperature [°C]
    method : str
        ``"iec-normal"``: non-thermally-upgraded paper, ``V = 2^((θh - 98) / 6)`` (IEC 60076-7 clause 6.3, eq. 2);
        ``"iec-upgraded"``: thermally upgraded paper, ``V = exp(15000 / (110 + 273) - 15000 / (θh + 273))``
        (eq. 3); ``"ieee"``: the IEEE C57.91-2011 aging acceleration factor ``F_AA`` (clause 5.2, eq. 2), the same
        Arrhenius law referred to 110 °C.
    """
    theta = np.asarray(hot_spot_c, dtype=float)
    if method == "iec-normal":
        return np.exp2((theta - NORMAL_PAPER_REFERENCE_C) / 6.0)
    if method in ("iec-upgraded", "ieee"):
        return np.exp(ARRHENIUS_B_K / (UPGRADED_PAPER_REFERENCE_C + 273.0) - ARRHENIUS_B_K / (theta + 273.0))
    raise ValueError(f"method {method!r}: expected one of {', '.join(AGEING_METHODS)}")


def simulate(load_factor, ambient_c, step_minutes: float, params: ThermalParameters = ThermalParameters(), *,
             ageing: str = "iec-normal", initial: str = "steady", initial_state: tuple | None = None,
             cycles: int = 3, ageing_substep_minutes: float = AGEING_SUBSTEP_MIN) -> ThermalResult:
    """Top-oil and hot-spot temperatures under a load profile, with the exact exponential update per step.

    Parameters
    ----------
    load_factor : array-like, shape (T,) — K, load current / rated current (= apparent power / rated kVA) [-]
    ambient_c : float or array-like, shape (T,) — ambient temperature θa [°C]
    step_minutes : float — step length Δt [min]; K and θa are constant within a step
    params : ThermalParameters
    ageing : {"iec-normal", "iec-upgraded", "ieee"} — see :func:`ageing_rate`
    initial : {"steady", "cyclic", "state"}
        ``"steady"``: start in the steady state of the first step's K and θa (IEC 60076-7 8.2.2 notes this as the
        usual assumption); ``"cyclic"``: the profile is one day of a repeating cycle — run it ``cycles`` times from
        the steady state of the mean loss and report the last pass (the periodic steady state);
        ``"state"``: start from ``initial_state``.
    initial_state : (top_oil_c, dh1_k, dh2_k), optional — top-oil [°C] and the two hot-spot rise parts [K]
    cycles : int — passes for ``initial="cyclic"``
    ageing_substep_minutes : float — longest sub-step of the ageing integral inside a step [min] (module notes)

    Returns
    -------
    ThermalResult — temperatures at the end of each step; ``V`` evaluated at those temperatures; loss of life
    ``∫ V dt`` [h] (IEC 60076-7 eq. 4) per step and in total, integrated on the exact temperatures within each step.
    """
    k = np.abs(np.asarray(load_factor, dtype=float))
    if k.ndim != 1:
        raise ValueError(f"load_factor: shape {k.shape}; expected one dimension")
    ambient = np.broadcast_to(np.asarray(ambient_c, dtype=float), k.shape)
    if not (np.all(np.isfinite(k)) and np.all(np.isfinite(ambient))):
        raise ValueError("load_factor and ambient_c must be finite")
    if not step_minutes > 0:
        raise ValueError(f"step_minutes: {step_minutes!r}; expected > 0")
    if not (np.isfinite(ageing_substep_minutes) and ageing_substep_minutes > 0):
        raise ValueError(f"ageing_substep_minutes: {ageing_substep_minutes!r}; expected a finite number > 0 [min]")
    p = params
    # steady-state targets of the three equations of 8.2.2 for each step's K and θa
    top_target = ambient + steady_top_oil_rise_k(k, p)
    kyh = p.hot_spot_gradient_k * k ** p.winding_exponent
    dh1_target = p.k21 * kyh
    dh2_target = (p.k21 - 1.0) * kyh
    # decay factors over one step: top oil τ = k11 τo, Δθh1 τ = k22 τw, Δθh2 τ = τo / k22
    a_top = np.exp(-step_minutes / (p.k11 * p.tau_oil_min))
    a_h1 = np.exp(-step_minutes / (p.k22 * p.tau_winding_min))
    a_h2 = np.exp(-step_minutes / (p.tau_oil_min / p.k22))

    if initial == "steady":
        state = (top_target[0], dh1_target[0], dh2_target[0]) if len(k) else (0.0, 0.0, 0.0)
        passes = 1
    elif initial == "cyclic":
        k_rms = float(np.sqrt(np.mean(k * k))) if len(k) else 0.0
        theta_a = float(np.mean(ambient)) if len(k) else 0.0
        kyh0 = p.hot_spot_gradient_k * k_rms ** p.winding_exponent
        state = (theta_a + float(steady_top_oil_rise_k(k_rms, p)), p.k21 * kyh0, (p.k21 - 1.0) * kyh0)
        passes = max(int(cycles), 1)
    elif initial == "state":
        if initial_state is None or len(initial_state) != 3:
            raise ValueError("initial='state' needs initial_state=(top_oil_c, dh1_k, dh2_k)")
        state = tuple(float(v) for v in initial_state)
        passes = 1
    else:
        raise ValueError(f"initial {initial!r}: expected 'steady', 'cyclic' or 'state'")

    # each part's value at the end of every step, and at the start of the reported pass
    top, top0 = _first_order(top_target, a_top, state[0], passes)
    dh1, dh10 = _first_order(dh1_target, a_h1, state[1], passes)
    dh2, dh20 = _first_order(dh2_target, a_h2, state[2], passes)
    hot = top + dh1 - dh2
    v = ageing_rate(hot, ageing)

    # ageing: V on the exact hot spot at the sub-step points of every step, (T, M + 1), by Simpson's rule
    m = 2 * max(1, int(np.ceil(step_minutes / ageing_substep_minutes / 2.0 - 1e-9)))  # even, sub-step <= asked
    t = np.linspace(0.0, step_minutes, m + 1)  # [min] into the step

    def within(target, end, first, tau_min):
        start = np.r_[first, end[:-1]]
        return target[:, None] + (start - target)[:, None] * np.exp(-t / tau_min)

    hot_sub = (within(top_target, top, top0, p.k11 * p.tau_oil_min)
               + within(dh1_target, dh1, dh10, p.k22 * p.tau_winding_min)
               - within(dh2_target, dh2, dh20, p.tau_oil_min / p.k22))
    weights = np.ones(m + 1)
    weights[1:-1:2], weights[2:-1:2] = 4.0, 2.0
    step_loss = ageing_rate(hot_sub, ageing) @ weights * (step_minutes / m / 3.0 / 60.0)  # [h]
    return ThermalResult(top_oil_c=top, hot_spot_c=hot, ageing_rate=v, step_loss_of_life_h=step_loss,
                         loss_of_life_h=float(step_loss.sum()))


def _first_order(target: np.ndarray, decay: float, x0: float, passes: int) -> tuple[np.ndarray, float]:
    """Exact solution of ``τ dx/dt = target - x`` with a piecewise-constant target, at the end of each step, and
    its value at the start of the last pass.

    ``x[n] = decay · x[n-1] + (1 - decay) · target[n]`` is a linear recurrence; it is evaluated in closed form,
    ``x[n] = decay^(n+1) x0 + (1 - decay) Σ_{j<=n} decay^(n-j) target[j]``, as a cumulative sum of scaled terms —
    no Python loop over steps. Long series are cut into blocks so that ``decay^-n`` stays finite.
    """
    T = len(target)
    out = np.empty(T)
    x = float(x0)
    block = max(1, min(T, int(60.0 / -np.log(decay)))) if decay < 1 else max(T, 1)  # decay^-block <= e^60
    first = x
    for _ in range(passes):
        first = x
        for start in range(0, T, block):
            seg = target[start:start + block]
            n = np.arange(len(seg))
            growth = decay ** -(n.astype(float))  # decay^-j
            acc = np.cumsum(seg * growth)
            out[start:start + len(seg)] = decay ** (n + 1) * x + (1.0 - decay) * decay ** n * acc
            x = out[start + len(seg) - 1]
    return out, first


__all__ = ["AGEING_METHODS", "PRESETS", "ThermalParameters", "ThermalResult", "ageing_rate", "simulate",
           "steady_hot_spot_rise_k", "steady_top_oil_rise_k"]
