"""The report a person reads: ``report.md``, ``report.html`` (images embedded), ``results.parquet`` / ``.csv`` (one
row per simulated day and strategy), ``timeseries.parquet`` and four PNG plots.

Both reports come from one template, ``templates/report.md.j2``: report.md is its Markdown, report.html the same
Markdown (images as ``data:`` URIs) rendered by markdown-it-py, so they have the same sections by construction. The
findings are worded from the cells of the tables they sit beside.

Every file is staged and moved into place only when all of them are complete (:mod:`gridcharge._files`), so an
interrupted run never leaves a half-written report.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .._files import write_files_atomically
from .hosting import hosting_capacity, violation_curve
from .runner import StudyResult
from .spec import CHARGER_RATIO

#: Plot colours per strategy (stable across plots).
_COLOURS = {"uncontrolled": "#d62728", "equal_share": "#1f77b4", "edf": "#9467bd", "llf": "#8c564b",
            "greedy_cost": "#17becf", "online": "#2ca02c", "optimal": "#ff7f0e"}

#: Metric columns of the per-strategy table: (column, heading, aggregation over days, format); ``{currency}`` in a
#: heading is the tariff's ISO 4217 code.
_TABLE = [
    ("peak_loading_pct", "peak loading [% of kVA] mean / max", "meanmax", "{:.0f}"),
    ("hours_above_rating_h", "hours above rating [h/day]", "mean", "{:.2f}"),
    ("kwh_above_rating", "energy above rating [kWh/day]", "mean", "{:.0f}"),
    ("overload_kwh", "overload of controlled limits [kWh/day]", "mean", "{:.0f}"),
    ("max_hot_spot_c", "hot spot [°C] mean of daily max / max", "meanmax", "{:.1f}"),
    ("max_top_oil_c", "top oil [°C] max", "max", "{:.1f}"),
    ("loss_of_life_h", "ageing [equivalent h/day] mean / max", "meanmax", "{:.1f}"),
    ("unmet_kwh", "unmet energy [kWh/day]", "mean", "{:.1f}"),
    ("unmet_share", "unmet share [%]", "mean%", "{:.2f}"),
    ("energy_cost_cny", "EV energy cost [{currency}/day]", "mean", "{:.0f}"),
    ("v2g_exported_kwh", "V2G exported [kWh/day]", "mean", "{:.0f}"),
    ("executability_unmet_kwh", "unmet energy lost to executability [kWh/day]", "mean", "{:.2f}"),
    ("executability_cost_cny", "cost of executability [{currency}/day]", "mean", "{:.2f}"),
    ("violates", "violating days", "count", "{}"),
]
#: A cell of a metric no task of the strategy measured (executability: only optimal and online are compared).
NOT_MEASURED = "–"


def write_report(result: StudyResult, out_dir: str | Path) -> dict[str, Path]:
    """Write the report files into ``out_dir`` (created if missing; files replaced whole). Returns name → path."""
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    curve, capacity = hosting_tables(result)
    images = {
        "load_stack.png": _png(plot_load_stack(result)),
        "loading_duration.png": _png(plot_duration(result)),
        "hot_spot.png": _png(plot_hot_spot(result)),
    }
    if len(curve):
        images["hosting_capacity.png"] = _png(plot_hosting(result, curve, capacity))
    metrics = strategy_table(result)
    markdown = render_markdown(result, metrics, curve, capacity, {name: name for name in images})
    embedded = render_markdown(result, metrics, curve, capacity, {
        name: "data:image/png;base64," + base64.b64encode(data).decode("ascii") for name, data in images.items()})
    files: dict[str, bytes] = {name: data for name, data in images.items()}
    files["report.md"] = markdown.encode("utf-8")
    files["report.html"] = render_html(embedded, result.scenario.name).encode("utf-8")
    files["results.csv"] = result.rows.to_csv(index=False).encode("utf-8")
    files["results.parquet"] = _parquet(result.rows)
    if len(result.series):
        files["timeseries.parquet"] = _parquet(result.series)
    if len(curve):
        files["hosting.csv"] = curve.to_csv(index=False).encode("utf-8")
    return write_files_atomically(out, files)


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def _headings(result: StudyResult) -> list[tuple[str, str, str, str]]:
    """The metric columns with the study's currency in their headings."""
    return [(column, heading.format(currency=result.currency), how, fmt) for column, heading, how, fmt in _TABLE]


def number_text(template: str, value: float) -> str:
    """``template.format(value)``, except that a value rounding to zero is written as zero (``0.00``, not the
    ``-0.00`` of a difference of -1e-9)."""
    text, zero = template.format(value), template.format(0.0)
    return zero if text.lstrip("-") == zero else text


def strategy_table(result: StudyResult) -> pd.DataFrame:
    """The metrics table per strategy of the study's own EV count (rows: strategies, columns: headings)."""
    study = result.study
    table = {}
    for strategy in result.scenario.strategies:
        rows = study[study["strategy"] == strategy]
        cells = {}
        for column, heading, how, fmt in _headings(result):
            values = rows[column]
            if how != "count" and values.isna().all():
                cells[heading] = NOT_MEASURED
            elif how == "meanmax":
                cells[heading] = f"{number_text(fmt, values.mean())} / {number_text(fmt, values.max())}"
            elif how == "max":
                cells[heading] = number_text(fmt, values.max())
            elif how == "mean%":
                cells[heading] = number_text(fmt, 100 * values.mean())
            elif how == "count":
                cells[heading] = f"{int(values.sum())} of {len(values)}"
            else:
                cells[heading] = number_text(fmt, values.mean())
        table[strategy] = cells
    return pd.DataFrame(table).T


def hosting_tables(result: StudyResult) -> tuple[pd.DataFrame, pd.DataFrame]:
    s = result.scenario
    counts, strategies = s.hosting_counts(), s.hosting_strategies()
    if not counts or not strategies:
        return pd.DataFrame(), pd.DataFrame()
    rows = result.rows
    rows = rows[rows["strategy"].isin(strategies) & rows["evs"].isin(counts) & (rows["day"] < s.hosting_days())]
    curve = violation_curve(rows, s.hosting.confidence)
    order = {name: i for i, name in enumerate(strategies)}
    curve = curve.sort_values(["strategy", "evs"], key=lambda c: c.map(order) if c.name == "strategy" else c)
    return curve.reset_index(drop=True), hosting_capacity(curve, s.hosting.alpha)


# ------------------------------------------------------------------------------------------------------------------
# text


def site_lines(result: StudyResult) -> list[tuple[str, str]]:
    """(item, value) pairs of the site summary."""
    s = result.scenario
    site, tr, b, f = s.site, s.transformer, s.base_load, s.fleet
    ratio, minimum = CHARGER_RATIO[site.building_type]
    p = tr.thermal.parameters()
    base_peak = b.peak() if s.base_csv_kw is None else float(np.max(s.base_csv_kw))
    ambient = f"CSV {tr.ambient.csv}" if tr.ambient.csv else (tr.ambient.preset or "beijing-winter")
    return [
        ("building type", site.building_type),
        ("parking spaces", f"{site.parking_spaces}"),
        ("chargers", (f"{site.charger_count} x {site.charger_kw:g} kW, {site.charger_phases}-phase "
                     f"({site.phase_assignment}), meter limit {site.meter_limit_kw:g} kW per space")),
        ("Beijing ratio", f"{ratio:.0%} of spaces" + (f", at least {minimum}" if minimum else "")
         + f" = {site.required_chargers} chargers"),
        ("feeders", f"{site.feeders}" + (f", {site.feeder_limit_kw:g} kW each" if site.feeder_limit_kw else "")),
        ("transformer", (f"{tr.rated_kva:g} kVA, power factor {tr.power_factor:g} = {tr.rated_kw:.1f} kW rated; "
                        f"controlled strategies keep <= {tr.control_limit_pct:g} % = {tr.control_limit_kw:.1f} kW")),
        ("thermal model", (f"IEC 60076-7 {tr.thermal.preset}: Δθor {p.top_oil_rise_k:g} K, H·gr "
                          f"{p.hot_spot_gradient_k:g} K, R {p.loss_ratio:g}, x {p.oil_exponent:g}, "
                          f"y {p.winding_exponent:g}, k11 {p.k11:g}, k21 {p.k21:g}, k22 {p.k22:g}, "
                          f"τo {p.tau_oil_min:g} min, τw {p.tau_winding_min:g} min; ageing {tr.thermal.ageing}")),
        ("ambient", f"{ambient}, offset {tr.ambient.offset_c:+g} °C, day-to-day sd {tr.ambient.daily_sd_c:g} °C"),
        ("base load", (f"{b.households} households x {b.peak_kw_per_household:g} kW" if b.households else
                       f"CSV {b.csv}" if b.csv else f"{base_peak:g} kW peak") + f", {b.shape} shape, peak "
                       f"{base_peak:.0f} kW ({100 * base_peak / tr.power_factor / tr.rated_kva:.0f} % of rating)"),
        ("PV", f"{b.pv_peak_kw:g} kW peak" if b.pv_peak_kw else "none"),
        ("EVs per day", f"{s.evs}, V2G share {f.v2g_share:.0%}"),
        ("tariff", s.tariff.preset or "custom"),
        ("days, seed", f"{s.days} Monte Carlo days, seed {s.seed}"),
        ("run", f"{result.tasks} tasks in {result.wall_seconds:.1f} s on "
                f"{result.workers or 'no'} dask worker(s)" + (" (in-process)" if not result.workers else "")),
    ]


def compliance(result: StudyResult) -> str:
    site = result.scenario.site
    have, need = site.charger_count, site.required_chargers
    if have >= need:
        return f"Compliant: {have} chargers for {site.parking_spaces} spaces (required {need})."
    return (f"SHORTFALL: {have} chargers for {site.parking_spaces} spaces; the Beijing ratio for "
            f"{site.building_type} requires {need} ({need - have} missing).")


def findings(result: StudyResult, metrics: pd.DataFrame, curve: pd.DataFrame, capacity: pd.DataFrame) -> list[str]:
    """The findings, worded from the same numbers the report's tables show (``metrics``: :func:`strategy_table`;
    ``curve``, ``capacity``: :func:`hosting_tables`), so a finding never says what its table contradicts."""
    s = result.scenario
    lines = []
    heading = {column: heading for column, heading, _how, _fmt in _headings(result)}
    for strategy, cells in metrics.iterrows():
        def cell(column, part=-1):  # "mean / max" cells: the max (part -1) or the mean (part 0)
            return cells[heading[column]].split(" / ")[part]

        lines.append(f"`{strategy}`: peak loading {cell('peak_loading_pct')} % of rating on the worst day, hot spot "
                     f"up to {cell('max_hot_spot_c')} °C, ageing {cell('loss_of_life_h', 0)} equivalent h/day on "
                     f"average, unmet {cell('unmet_kwh')} kWh/day; {cell('violates')} days violate the criteria.")
    alpha = f"alpha {s.hosting.alpha:.0%}"
    for _, row in capacity.iterrows():
        group = curve[curve["strategy"] == row["strategy"]].sort_values("evs")
        days = f"{int(group['days'].iloc[0])}"
        if row["limited"]:
            over = group[group["probability"] > s.hosting.alpha + 1e-12].iloc[0]
            lines.append(f"Hosting capacity with `{row['strategy']}`: {row['hosting_evs']} EVs; at {over['evs']} EVs "
                         f"{over['violations']} of {over['days']} days violate, more than {alpha}.")
        elif group["violations"].sum() == 0:
            lines.append(f"Hosting capacity with `{row['strategy']}`: at least {row['largest_swept']} EVs, the largest "
                         f"count swept (no violating day at any count, {days} days each).")
        else:
            worst = group.loc[group["violations"].idxmax()]
            lines.append(f"Hosting capacity with `{row['strategy']}`: at least {row['largest_swept']} EVs, the largest "
                         f"count swept: every count stays within {alpha} (the most: at {worst['evs']} EVs "
                         f"{worst['violations']} of {worst['days']} days violate).")
    return lines


def _criteria_text(s) -> str:
    c = s.hosting.criteria
    return (f"loading > {c.max_loading_pct:g} % of kVA, hot spot > {c.max_hot_spot_c:g} °C, top oil > "
            f"{c.max_top_oil_c:g} °C, ageing > {c.max_ageing_h_per_day:g} equivalent h/day, or unmet energy > "
            f"{100 * c.max_unmet_share:g} % of the requested")


@dataclass(frozen=True)
class _Table:
    """A table as the template draws it: column headings and rows of cells (already formatted)."""

    columns: list[str]
    rows: list[list]

    @classmethod
    def of(cls, frame: pd.DataFrame, index_name: str | None = None) -> _Table:
        if index_name is not None:
            frame = frame.reset_index(names=index_name)
        return cls([str(c) for c in frame.columns], frame.astype(object).values.tolist())


@dataclass(frozen=True)
class _Image:
    caption: str
    src: str  # the file name (report.md) or a data: URI (report.html)


def _template(name: str):
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("gridcharge.scenarios", "templates"),
                             autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",),
                                                                 default_for_string=False, default=False),
                             keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    # a table cell is one line and must not end the cell early
    env.filters["cell"] = lambda value: " ".join(str(value).split()).replace("|", "\\|")
    return env.get_template(name)


def render_markdown(result: StudyResult, metrics: pd.DataFrame, curve: pd.DataFrame, capacity: pd.DataFrame,
                    images: dict[str, str]) -> str:
    """The report as Markdown from ``templates/report.md.j2``; ``images`` maps each plot's file name to the link
    the text uses (the file name itself for report.md, a ``data:`` URI for report.html)."""
    s = result.scenario
    captions = _captions(result)
    hosting = None
    if len(curve):
        n, confidence, alpha = s.hosting_days(), s.hosting.confidence, s.hosting.alpha
        table = curve.copy()
        for column in ("probability", "ci_low", "ci_high"):
            table[column] = table[column].map("{:.2f}".format)
        upper = _upper_at_zero(n, confidence)
        hosting = {"days": n, "confidence": f"{confidence:.0%}", "alpha": f"{alpha:.0%}",
                   "capacity": _Table.of(capacity), "curve": _Table.of(table),
                   "upper_at_zero": f"{upper:.0%}", "zero_bound_above_alpha": upper > alpha + 1e-12,
                   "days_needed": _days_needed(alpha, confidence)}
    return _template("report.md.j2").render(
        s=s, site=_Table(["item", "value"], [list(pair) for pair in site_lines(result)]),
        compliance=compliance(result), findings=findings(result, metrics, curve, capacity),
        criteria=_criteria_text(s), metrics=_Table.of(metrics, "strategy"),
        images=[_Image(captions[name], src) for name, src in images.items()], hosting=hosting)


def render_html(markdown: str, title: str) -> str:
    """report.html: the Markdown of :func:`render_markdown` (with embedded images) as HTML (CommonMark and tables,
    raw HTML in the text escaped), in ``templates/report.html.j2``."""
    from markdown_it import MarkdownIt
    from markupsafe import Markup

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    return _template("report.html.j2").render(title=title, body=Markup(body))


def _upper_at_zero(n: int, confidence: float) -> float:
    from .hosting import wilson_interval

    return wilson_interval(0, n, confidence)[1]


def _days_needed(alpha: float, confidence: float) -> int:
    n = 1
    while _upper_at_zero(n, confidence) > alpha and n < 100000:
        n += 1
    return n


def _captions(result: StudyResult) -> dict[str, str]:
    s = result.scenario
    return {
        "load_stack.png": f"Transformer load over the mean day of {s.days} days per strategy: base load and EV "
                          "charging stacked, PV and V2G export below zero; the black line is the net load the "
                          "transformer carries (stack minus PV and V2G), against the rating. The panel titles give "
                          "the mean day's peak, which is below the worst day's peak in the metrics table",
        "loading_duration.png": "Loading duration curve: share of the time the loading exceeds a level, all days",
        "hot_spot.png": "Winding hot-spot temperature over the day (IEC 60076-7): mean of the days (solid) and the "
                        "day with the highest hot spot (dashed), per strategy",
        "hosting_capacity.png": "Hosting capacity: probability of a violating day vs EV count, Wilson interval",
    }


# ------------------------------------------------------------------------------------------------------------------
# plots


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _clock_axis(ax, result: StudyResult) -> None:
    s = result.scenario
    start = s.horizon.start_hour
    ticks = np.arange(0, 25, 3)
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{int((start + t) % 24):02d}:{round(((start + t) % 1) * 60):02d}" for t in ticks])
    ax.set_xlim(0, 24)


def _mean_by_period(series: pd.DataFrame, strategy: str, column: str) -> np.ndarray:
    rows = series[series["strategy"] == strategy]
    return rows.groupby("period")[column].mean().to_numpy()


def plot_load_stack(result: StudyResult) -> "matplotlib.figure.Figure":
    """Mean-day load stack per strategy (base load, EV load, V2G) against the rating [kW]: one panel a strategy."""
    import matplotlib.pyplot as plt

    s = result.scenario
    strategies = s.strategies
    series = result.series
    step_h = s.horizon.step_minutes / 60
    x = np.arange(s.horizon.periods) * step_h
    cols = min(len(strategies), 2)
    rows = int(np.ceil(len(strategies) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols, 3.6 * rows), sharex=True, sharey=True, squeeze=False)
    rated = s.transformer.rated_kw
    for ax, strategy in zip(axes.flat, strategies):
        base = _mean_by_period(series, strategy, "base_kw")
        pv = _mean_by_period(series, strategy, "pv_kw")
        ev = _mean_by_period(series, strategy, "ev_kw")
        load = _mean_by_period(series, strategy, "load_kw")
        charge = np.clip(ev, 0, None)
        ax.stackplot(x, base, charge, step="post", colors=["#9e9e9e", _COLOURS.get(strategy, "#1f77b4")],
                     labels=["base load", "EV charging"], alpha=0.85)
        if np.any(pv > 0):
            ax.fill_between(x, 0, -pv, step="post", color="#f2c12e", alpha=0.8, label="PV")
        if np.any(ev < 0):
            ax.fill_between(x, -pv, -pv + np.clip(ev, None, 0), step="post", color="#2e7d32", alpha=0.8,
                            label="V2G export")
        ax.step(x, load, where="post", color="black", lw=1.0, label="net load at the transformer")
        ax.axhline(rated, color="red", ls="--", lw=1.2, label=f"rating {rated:.0f} kW")
        if abs(s.transformer.control_limit_pct - 100) > 1e-9:
            ax.axhline(s.transformer.control_limit_kw, color="purple", ls=":", lw=1.2, label="control limit")
        ax.set_title(_load_stack_title(strategy, load, rated), fontsize=10)
        ax.grid(alpha=0.3)
        _clock_axis(ax, result)
        ax.tick_params(labelbottom=True)
    for ax in axes.flat[len(strategies):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("power [kW]")
    legend = {}
    for ax in axes.flat:  # every kind of area once (V2G may appear in one panel only)
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault("EV charging" if label == "EV charging" else label, handle)
    fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=7, fontsize=8,
               bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(f"{s.name}\nmean of {s.days} days, {s.evs} EVs", fontsize=11)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def _load_stack_title(strategy: str, mean_day_kw: np.ndarray, rated_kw: float) -> str:
    """A load-stack panel's title: the peak of the *mean* day [kW], which the metrics table's per-day peaks exceed."""
    peak = float(mean_day_kw.max())
    return f"{strategy}, mean day: peak {peak:.0f} kW ({100 * peak / rated_kw:.0f} % of rating)"


def plot_duration(result: StudyResult) -> "matplotlib.figure.Figure":
    """Loading duration curve per strategy [% of rating] over every simulated period."""
    import matplotlib.pyplot as plt

    s = result.scenario
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for strategy in s.strategies:
        values = np.sort(result.series.loc[result.series["strategy"] == strategy, "loading_pct"].to_numpy())[::-1]
        share = (np.arange(len(values)) + 1) / len(values) * 100
        ax.step(share, values, where="pre", color=_COLOURS.get(strategy), label=strategy, lw=1.5)
    ax.axhline(100, color="red", ls="--", lw=1, label="rating")
    ax.set_xlabel("share of the time [%]")
    ax.set_ylabel("loading [% of rated kVA]")
    ax.set_xlim(0, 100)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"Loading duration curve, {s.days} days x 24 h", fontsize=10)
    fig.tight_layout()
    return fig


def plot_hot_spot(result: StudyResult) -> "matplotlib.figure.Figure":
    """Winding hot-spot temperature per strategy [°C]: the mean day and the hottest day, against the limit."""
    import matplotlib.pyplot as plt

    s = result.scenario
    x = np.arange(s.horizon.periods) * s.horizon.step_minutes / 60
    fig, ax = plt.subplots(figsize=(9.5, 4.2))
    series = result.series
    for strategy in s.strategies:
        rows = series[series["strategy"] == strategy]
        colour = _COLOURS.get(strategy)
        hottest = rows.loc[rows["hot_spot_c"].idxmax(), "day"]  # the day with the highest hot spot
        ax.plot(x, rows.groupby("period")["hot_spot_c"].mean().to_numpy(), color=colour, lw=1.8,
                label=f"{strategy} (mean)")
        ax.plot(x, rows.loc[rows["day"] == hottest, "hot_spot_c"].to_numpy(), color=colour, lw=0.9, ls="--",
                label=f"{strategy} (hottest day)")
    ambient = series[series["strategy"] == s.strategies[0]].groupby("period")["ambient_c"].mean().to_numpy()
    ax.plot(x, ambient, color="grey", ls=":", label="ambient (mean)")
    c = s.hosting.criteria
    ax.axhline(c.max_hot_spot_c, color="red", ls="--", lw=1, label=f"limit {c.max_hot_spot_c:g} °C")
    ax.axhline(98, color="black", ls=":", lw=0.8, label="98 °C (V = 1, normal paper)")
    ax.set_ylabel("temperature [°C]")
    ax.grid(alpha=0.3)
    _clock_axis(ax, result)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.set_title("Winding hot-spot temperature (IEC 60076-7)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_hosting(result: StudyResult, curve: pd.DataFrame, capacity: pd.DataFrame) -> "matplotlib.figure.Figure":
    """Probability of a violating day per EV count and strategy (with its confidence interval) against alpha."""
    import matplotlib.pyplot as plt

    s = result.scenario
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    groups = list(curve.groupby("strategy", sort=False))
    counts = np.unique(curve["evs"])
    spacing = np.min(np.diff(counts)) if len(counts) > 1 else max(counts[0], 1)
    for i, (strategy, group) in enumerate(groups):
        colour = _COLOURS.get(strategy)
        shift = (i - (len(groups) - 1) / 2) * 0.12 * spacing  # side by side, so the intervals do not hide each other
        x = group["evs"].to_numpy() + shift
        p = group["probability"].to_numpy()
        cap = capacity.loc[capacity["strategy"] == strategy, "hosting_evs"].iloc[0]
        ax.errorbar(x, p, yerr=[p - group["ci_low"].to_numpy(), group["ci_high"].to_numpy() - p], color=colour,
                    marker="o", ms=4, capsize=3, lw=1.5, elinewidth=0.8, label=f"{strategy} (hosts {cap} EVs)")
    ax.axhline(s.hosting.alpha, color="black", ls="--", lw=1, label=f"alpha {s.hosting.alpha:.0%}")
    ax.set_xlabel("EVs per day")
    ax.set_ylabel("probability of a violating day [-]")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"Hosting capacity, {s.hosting_days()} days per count, {s.hosting.confidence:.0%} Wilson "
                 "intervals", fontsize=10)
    fig.tight_layout()
    return fig
